"""Registry, resumable verified download and safe extraction, against a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import stat
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from selfsup.data import download as dl
from selfsup.data import registry
from selfsup.data.registry import Dataset, Expect, RemoteFile


# --------------------------------------------------------------------------------------------
# A small HTTP server: Range support, transfers cut midway, Range ignored, scripted failures
# --------------------------------------------------------------------------------------------

class _State:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[dict] = []
        self.cut: dict[str, list[int]] = {}        # path -> bytes to send on the next GETs, then drop
        self.ignore_range: set[str] = set()
        self.fail: dict[str, list[int]] = {}       # path -> statuses for the next GETs
        self.stall: dict[str, list[float]] = {}    # path -> seconds to wait before answering
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        st: _State = self.server.state  # type: ignore[attr-defined]
        path = urlsplit(self.path).path
        rec = {"path": path, "range": self.headers.get("Range"), "status": None, "sent": 0}
        with st.lock:
            st.requests.append(rec)
            failure = st.fail[path].pop(0) if st.fail.get(path) else None
            limit = st.cut[path].pop(0) if st.cut.get(path) else None
            stall = st.stall[path].pop(0) if st.stall.get(path) else 0.0
        if stall:
            time.sleep(stall)
        if failure is not None:
            rec["status"] = failure
            self.send_response(failure)
            self.send_header("Content-Length", "0")
            if failure == 429:
                self.send_header("Retry-After", "0.25")
            self.end_headers()
            return
        data = st.files.get(path)
        if data is None:
            rec["status"] = 404
            self.send_error(404)
            return
        start, end, status = 0, len(data) - 1, 200
        rng = self.headers.get("Range")
        if rng and path not in st.ignore_range:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng)
            assert m, rng
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else len(data) - 1
            if start >= len(data):
                rec["status"] = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:end + 1]
        rec["status"] = status
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        out = body if limit is None else body[:limit]
        self.wfile.write(out)
        self.wfile.flush()
        rec["sent"] = len(out)
        if limit is not None:
            self.close_connection = True


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = _State()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    st = httpd.state  # type: ignore[attr-defined]
    st.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    st.url = lambda path: st.base + path
    try:
        yield st
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def _no_env_mirror(monkeypatch):
    monkeypatch.delenv("SELFSUP_MIRROR", raising=False)


@pytest.fixture
def sleeps(monkeypatch):
    recorded: list[float] = []
    monkeypatch.setattr(dl, "_sleep", recorded.append)
    return recorded


# --------------------------------------------------------------------------------------------
# Archives built by the tests
# --------------------------------------------------------------------------------------------

def payload(n: int, seed: int) -> bytes:
    """Incompressible bytes (so archives are as large as their content)."""
    out, block = bytearray(), hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


TOY_FILES = {f"toy/data/{i}.bin": payload(40_000, i) for i in range(3)} | {"toy/README.txt": b"toy\n"}


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def make_tar(files: dict[str, bytes], mode: str = "w:gz", extra: list[tarfile.TarInfo] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in extra:
            tf.addfile(info)
    return buf.getvalue()


def toy_entry(urls, *, filename="toy.zip", name="toy", layout=(Expect("data/*.bin", 3), Expect("README.txt")),
              **file_kw) -> Dataset:
    return Dataset(name=name, title="toy", kind="dataset", homepage="http://example.invalid", licence="test",
                   files=(RemoteFile(filename, tuple(urls), **file_kw),), layout=tuple(layout))


@pytest.fixture
def dirs(tmp_path):
    root = tmp_path / "raw"
    opts = dl.Options(cache=tmp_path / "cache", lock=tmp_path / "lock.json", backoff_s=0.001, retries=3,
                      timeout_s=10, progress=False, chunk_size=8192)
    return root, opts


def assert_nothing_at_target(root: Path, name: str) -> None:
    assert not (root / name).exists()
    leftovers = [p.name for p in root.iterdir()] if root.exists() else []
    assert leftovers == [], f"temporary leftovers in {root}: {leftovers}"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

def test_registry_entries_are_complete():
    names = registry.names()
    for expected in ("davis", "jhmdb", "vip", "kinetics400", "horse2zebra", "afhq", "cityscapes",
                     "cityscapes_val_cut", "cut_pretrained", "crw_pretrained", "fid_inception", "cifar10",
                     "cifar10c"):
        assert expected in names
    for name in names:
        e = registry.get(name)
        assert e.licence and e.homepage and e.layout, name
        if e.manual:
            assert "{target}" in e.instructions, name
        else:
            assert e.files and all(f.urls for f in e.files), name
            for f in e.files:
                assert all(u.startswith(("http://", "https://")) for u in f.urls), name
    assert len(registry.get("jhmdb").files) == 3
    assert registry.get("cat2dog") is registry.get("afhq")
    assert registry.get("afhq").view("/d", "cat2dog")["testB"] == Path("/d/afhq/val/dog")


def test_inception_name_tag_is_a_sha256_prefix():
    rf = registry.get("fid_inception").files[0]
    assert rf.filename == "pt_inception-2015-12-05-6726825d.pth"
    assert rf.sha256_prefix == "6726825d"
    assert registry.name_tag_prefix("resnet18-f37072fd.pth") == "f37072fd"
    assert registry.name_tag_prefix("pretrained.pth") is None
    with pytest.raises(ValueError, match="carries no"):
        RemoteFile("weights.pth", ("http://x",), name_tag=True)


def test_published_md5_for_cifar():
    assert registry.get("cifar10").files[0].md5 == "c58f30108f718f92721af3b95e74349a"
    assert registry.get("cifar10").files[0].size == 170_498_071
    assert registry.get("cifar10c").files[0].md5 == "56bf5dcef84df0e2308c6dcbcbbd8499"
    assert any("2535967" in u for u in registry.get("cifar10c").files[0].urls)


def test_unknown_name_lists_known_names():
    with pytest.raises(registry.UnknownDataset) as err:
        registry.get("davsi")
    msg = str(err.value)
    assert "'davsi'" in msg
    for name in ("davis", "jhmdb", "fid_inception", "cifar10c", "cat2dog"):
        assert name in msg


# --------------------------------------------------------------------------------------------
# Download, extraction, layout
# --------------------------------------------------------------------------------------------

def test_zip_download_extracts_verifies_and_records(server, dirs):
    root, opts = dirs
    archive = make_zip(TOY_FILES)
    server.files["/sets/toy.zip"] = archive
    res = dl.fetch(toy_entry([server.url("/sets/toy.zip")]), root, opts)
    assert res.status == "downloaded" and res.target == root / "toy"
    # the single top folder of the archive is lifted so the layout sits at the target
    for name, data in TOY_FILES.items():
        assert (root / name).read_bytes() == data
    assert res.files == 4 and res.bytes == sum(map(len, TOY_FILES.values()))
    assert res.fetched_bytes == len(archive)
    lock = json.loads((opts.lock).read_text())
    assert lock["files"]["toy/toy.zip"]["sha256"] == sha(archive)
    assert lock["files"]["toy/toy.zip"]["source"] == server.url("/sets/toy.zip")
    assert sorted(p.name for p in root.iterdir()) == ["toy"]  # no temporary folders left
    # a second call finds it in place and sends nothing
    n = len(server.requests)
    again = dl.fetch(toy_entry([server.url("/sets/toy.zip")]), root, opts)
    assert again.status == "present" and len(server.requests) == n


def test_tar_gz_and_several_files_into_one_folder(server, dirs):
    root, opts = dirs
    frames = make_tar({"Frames/a/00001.png": b"png1", "Frames/b/00001.png": b"png2"})
    joints = make_zip({"joints/a/j.mat": b"mat"})
    server.files["/j/Frames.tar.gz"] = frames
    server.files["/j/joints.zip"] = joints
    entry = Dataset(name="multi", title="t", kind="dataset", homepage="h", licence="l",
                    files=(RemoteFile("Frames.tar.gz", (server.url("/j/Frames.tar.gz"),)),
                           RemoteFile("joints.zip", (server.url("/j/joints.zip"),))),
                    layout=(Expect("Frames/*/00001.png", 2), Expect("joints/a/j.mat")))
    res = dl.fetch(entry, root, opts)
    assert (root / "multi/Frames/b/00001.png").read_bytes() == b"png2"
    assert (root / "multi/joints/a/j.mat").read_bytes() == b"mat"
    assert {a.filename: a.sha256 for a in res.archives} == {"Frames.tar.gz": sha(frames), "joints.zip": sha(joints)}


def test_plain_weight_file_with_name_tag(server, dirs):
    root, opts = dirs
    weights = payload(5000, 7)
    name = f"net-{sha(weights)[:8]}.pth"
    server.files[f"/w/{name}"] = weights
    entry = toy_entry([server.url(f"/w/{name}")], filename=name, name="net", layout=[Expect(name)], name_tag=True)
    dl.fetch(entry, root, opts)
    assert (root / "net" / name).read_bytes() == weights


def test_layout_mismatch_fails_and_leaves_nothing(server, dirs):
    root, opts = dirs
    server.files["/toy.zip"] = make_zip(TOY_FILES)
    entry = toy_entry([server.url("/toy.zip")], layout=[Expect("data/*.bin", 5)])
    with pytest.raises(dl.LayoutError, match=r"data/\*\.bin: 3 found, at least 5 expected"):
        dl.fetch(entry, root, opts)
    assert_nothing_at_target(root, "toy")


def test_interrupted_transfer_resumes_with_range(server, dirs):
    root, opts = dirs
    archive = make_zip(TOY_FILES)
    half = len(archive) // 2
    server.files["/toy.zip"] = archive
    server.cut["/toy.zip"] = [half]
    res = dl.fetch(toy_entry([server.url("/toy.zip")]), root, opts)
    gets = [r for r in server.requests if r["path"] == "/toy.zip"]
    assert len(gets) == 2
    assert gets[0]["range"] is None and gets[0]["sent"] == half
    assert gets[1]["range"] == f"bytes={half}-" and gets[1]["status"] == 206
    assert sum(r["sent"] for r in gets) == len(archive)  # each byte once, not twice
    assert res.fetched_bytes == len(archive) and res.archives[0].resumed_from == half
    assert (root / "toy/data/2.bin").read_bytes() == TOY_FILES["toy/data/2.bin"]


def test_interrupted_run_resumes_in_the_next_run(server, dirs):
    root, opts = dirs
    archive = make_zip(TOY_FILES)
    third = len(archive) // 3
    server.files["/toy.zip"] = archive
    server.cut["/toy.zip"] = [third]
    opts.retries = 0
    entry = toy_entry([server.url("/toy.zip")])
    with pytest.raises(dl.DownloadError, match="connection closed after"):
        dl.fetch(entry, root, opts)
    assert_nothing_at_target(root, "toy")
    part = Path(opts.cache) / "toy" / "toy.zip.part"
    assert part.stat().st_size == third
    dl.fetch(entry, root, opts)
    assert server.requests[-1]["range"] == f"bytes={third}-"
    assert sum(r["sent"] for r in server.requests) == len(archive)
    assert not part.exists()
    assert (root / "toy/README.txt").read_bytes() == b"toy\n"


def test_server_ignoring_range_restarts_from_zero(server, dirs):
    root, opts = dirs
    archive = make_zip(TOY_FILES)
    server.files["/toy.zip"] = archive
    server.ignore_range.add("/toy.zip")
    part = Path(opts.cache) / "toy" / "toy.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 1000)  # stale bytes that must not end up in the file
    dl.fetch(toy_entry([server.url("/toy.zip")]), root, opts)
    assert server.requests[0]["range"] == "bytes=1000-" and server.requests[0]["status"] == 200
    assert json.loads(Path(opts.lock).read_text())["files"]["toy/toy.zip"]["sha256"] == sha(archive)


def test_retries_with_exponential_backoff_recover_from_503(server, dirs, sleeps):
    root, opts = dirs
    server.files["/toy.zip"] = make_zip(TOY_FILES)
    server.fail["/toy.zip"] = [503, 503]
    opts.backoff_s = 0.5
    dl.fetch(toy_entry([server.url("/toy.zip")]), root, opts)
    assert [r["status"] for r in server.requests] == [503, 503, 200]
    assert sleeps == [0.5, 1.0]


def test_retry_after_is_honoured(server, dirs, sleeps):
    root, opts = dirs
    server.files["/toy.zip"] = make_zip(TOY_FILES)
    server.fail["/toy.zip"] = [429]
    dl.fetch(toy_entry([server.url("/toy.zip")]), root, opts)
    assert sleeps == [0.25]  # the server's Retry-After, longer than the first backoff


def test_a_stalled_server_times_out_and_is_retried(server, dirs, sleeps):
    root, opts = dirs
    server.files["/toy.zip"] = make_zip(TOY_FILES)
    server.stall["/toy.zip"] = [1.0]
    opts.timeout_s = 0.2
    res = dl.fetch(toy_entry([server.url("/toy.zip")]), root, opts)
    assert res.status == "downloaded" and len(server.requests) == 2 and len(sleeps) == 1


def test_complete_partial_file_is_not_fetched_again(server, dirs):
    root, opts = dirs
    archive = make_zip(TOY_FILES)
    server.files["/toy.zip"] = archive
    part = Path(opts.cache) / "toy" / "toy.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(archive)  # a run that was stopped between the last byte and the rename
    dl.fetch(toy_entry([server.url("/toy.zip")]), root, opts)
    assert [(r["range"], r["status"], r["sent"]) for r in server.requests] == [(f"bytes={len(archive)}-", 416, 0)]
    assert (root / "toy/data/0.bin").read_bytes() == TOY_FILES["toy/data/0.bin"]


def test_gives_up_after_the_retries_and_names_the_error(server, dirs, sleeps):
    root, opts = dirs
    server.files["/toy.zip"] = make_zip(TOY_FILES)
    server.fail["/toy.zip"] = [503] * 10
    opts.retries = 2
    with pytest.raises(dl.DownloadError, match=r"HTTP 503.*gave up after 3 attempts"):
        dl.fetch(toy_entry([server.url("/toy.zip")]), root, opts)
    assert len(server.requests) == 3 and sleeps == [0.001, 0.002]
    assert_nothing_at_target(root, "toy")


def test_404_falls_through_to_the_next_url(server, dirs, sleeps):
    root, opts = dirs
    server.files["/b/toy.zip"] = make_zip(TOY_FILES)
    res = dl.fetch(toy_entry([server.url("/a/toy.zip"), server.url("/b/toy.zip")]), root, opts)
    assert [r["status"] for r in server.requests] == [404, 200] and sleeps == []
    assert res.source == server.url("/b/toy.zip")


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("check", ["sha256", "md5", "size", "name_tag"])
def test_wrong_checksum_fails_and_leaves_nothing(server, dirs, check):
    root, opts = dirs
    archive = make_zip(TOY_FILES)
    filename = "toy-00000000.zip" if check == "name_tag" else "toy.zip"
    server.files[f"/{filename}"] = archive
    kw = {"sha256": {"sha256": "0" * 64}, "md5": {"md5": "0" * 32}, "size": {"size": len(archive) + 1},
          "name_tag": {"name_tag": True}}[check]
    with pytest.raises(dl.ChecksumError) as err:
        dl.fetch(toy_entry([server.url(f"/{filename}")], filename=filename, **kw), root, opts)
    assert filename in str(err.value)
    assert_nothing_at_target(root, "toy")
    leftovers = [p.name for p in Path(opts.cache).rglob("*") if not p.name.startswith(".")]
    assert leftovers == []
    assert not Path(opts.lock).exists()


def test_correct_published_checksums_pass(server, dirs):
    root, opts = dirs
    archive = make_zip(TOY_FILES)
    server.files["/toy.zip"] = archive
    entry = toy_entry([server.url("/toy.zip")], sha256=sha(archive), md5=hashlib.md5(archive).hexdigest(),
                      size=len(archive))
    assert dl.fetch(entry, root, opts).status == "downloaded"


def test_hash_recorded_at_first_download_then_a_changed_file_is_rejected(server, dirs, tmp_path):
    root, opts = dirs
    first = make_zip(TOY_FILES)
    server.files["/toy.zip"] = first
    entry = toy_entry([server.url("/toy.zip")])
    dl.fetch(entry, root, opts)
    assert json.loads(Path(opts.lock).read_text())["files"]["toy/toy.zip"]["sha256"] == sha(first)
    # elsewhere (fresh root and cache, same lock): the host now serves a different file
    changed = make_zip(TOY_FILES | {"toy/extra.txt": b"new"})
    server.files["/toy.zip"] = changed
    root2 = tmp_path / "raw2"
    opts.cache = tmp_path / "cache2"
    with pytest.raises(dl.ChecksumError) as err:
        dl.fetch(entry, root2, opts)
    msg = str(err.value)
    assert sha(changed) in msg and sha(first) in msg and str(opts.lock) in msg
    assert_nothing_at_target(root2, "toy")
    assert json.loads(Path(opts.lock).read_text())["files"]["toy/toy.zip"]["sha256"] == sha(first)


def test_corrupted_cached_archive_is_fetched_again(server, dirs):
    root, opts = dirs
    archive = make_zip(TOY_FILES)
    server.files["/toy.zip"] = archive
    entry = toy_entry([server.url("/toy.zip")])
    dl.fetch(entry, root, opts)
    cached = Path(opts.cache) / "toy" / "toy.zip"
    cached.write_bytes(b"bit rot")
    shutil.rmtree(root / "toy")  # as DVC does before re-running the stage
    n = len(server.requests)
    res = dl.fetch(entry, root, opts)  # the kept archive fails the lock check: fetched again
    assert res.status == "downloaded" and cached.read_bytes() == archive and len(server.requests) == n + 1
    shutil.rmtree(root / "toy")
    res = dl.fetch(entry, root, opts)  # a good kept archive is only extracted
    assert res.status == "extracted" and len(server.requests) == n + 1


# --------------------------------------------------------------------------------------------
# Hostile archives
# --------------------------------------------------------------------------------------------

def _tar_link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def _tar_device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 3
    return info


def _zip_symlink(name: str, target: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("toy/data/0.bin", b"ok")
        info = zipfile.ZipInfo(name)
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, target)
    return buf.getvalue()


HOSTILE = {
    "tar-absolute": ("evil.tar.gz", lambda esc: make_tar({"toy/ok.txt": b"ok", str(esc): b"pwned"}), "absolute path"),
    "tar-dotdot": ("evil.tar.gz", lambda esc: make_tar({"toy/ok.txt": b"ok", "toy/../../../escape.txt": b"pwned"}),
                   "'..'"),
    "tar-symlink": ("evil.tar", lambda esc: make_tar({"toy/ok.txt": b"ok"}, "w",
                                                     [_tar_link("toy/link", str(esc.parent), tarfile.SYMTYPE)]),
                    "symbolic link"),
    "tar-hardlink": ("evil.tar", lambda esc: make_tar({"toy/ok.txt": b"ok"}, "w",
                                                      [_tar_link("toy/hard", "/etc/passwd", tarfile.LNKTYPE)]),
                     "hard link"),
    "tar-device": ("evil.tar", lambda esc: make_tar({"toy/ok.txt": b"ok"}, "w", [_tar_device("toy/null")]),
                   "device"),
    "zip-absolute": ("evil.zip", lambda esc: make_zip({"toy/ok.txt": b"ok", str(esc): b"pwned"}), "absolute path"),
    "zip-dotdot": ("evil.zip", lambda esc: make_zip({"toy/ok.txt": b"ok", "../../escape.txt": b"pwned"}), "'..'"),
    "zip-backslash-dotdot": ("evil.zip", lambda esc: make_zip({"toy/ok.txt": b"ok", "..\\..\\escape.txt": b"x"}),
                             "'..'"),
    "zip-symlink": ("evil.zip", lambda esc: _zip_symlink("toy/link", str(esc.parent)), "symbolic link"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_before_anything_is_written(server, dirs, tmp_path, case):
    root, opts = dirs
    filename, build, reason = HOSTILE[case]
    escape = tmp_path / "outside" / "escape.txt"
    escape.parent.mkdir()
    server.files[f"/{filename}"] = build(escape)
    with pytest.raises(dl.UnsafeArchiveError) as err:
        dl.fetch(toy_entry([server.url(f"/{filename}")], filename=filename, layout=[Expect("ok.txt")]), root, opts)
    msg = str(err.value)
    assert "refusing member" in msg and reason in msg
    assert_nothing_at_target(root, "toy")
    assert list(escape.parent.iterdir()) == []
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path.parent / "escape.txt").exists()


def test_safe_extract_names_the_member(tmp_path):
    archive = tmp_path / "a.tar"
    archive.write_bytes(make_tar({"fine.txt": b"1", "sub/../../up.txt": b"2"}, "w"))
    with pytest.raises(dl.UnsafeArchiveError, match=r"'sub/\.\./\.\./up\.txt'"):
        dl.safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "fine.txt").exists()


# --------------------------------------------------------------------------------------------
# Mirrors
# --------------------------------------------------------------------------------------------

UNREACHABLE = "http://public.invalid/datasets/toy.zip"


def test_mirror_local_folder(server, dirs, tmp_path, sleeps):
    root, opts = dirs
    archive = make_zip(TOY_FILES)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "toy.zip").write_bytes(archive)
    opts.mirror = str(mirror)
    res = dl.fetch(toy_entry([UNREACHABLE]), root, opts)
    assert res.source == str(mirror / "toy.zip") and server.requests == [] and sleeps == []
    assert (root / "toy/data/1.bin").read_bytes() == TOY_FILES["toy/data/1.bin"]
    assert json.loads(Path(opts.lock).read_text())["files"]["toy/toy.zip"]["sha256"] == sha(archive)


def test_mirror_from_environment_and_per_entry_folder(dirs, tmp_path, monkeypatch):
    root, opts = dirs
    mirror = tmp_path / "mirror"
    (mirror / "toy").mkdir(parents=True)
    (mirror / "toy" / "toy.zip").write_bytes(make_zip(TOY_FILES))
    monkeypatch.setenv("SELFSUP_MIRROR", str(mirror))
    res = dl.fetch(toy_entry([UNREACHABLE]), root, opts)
    assert res.source == str(mirror / "toy" / "toy.zip")


def test_mirror_missing_file_is_an_error_naming_the_mirror(dirs, tmp_path):
    root, opts = dirs
    (tmp_path / "mirror").mkdir()
    opts.mirror = str(tmp_path / "mirror")
    with pytest.raises(dl.DownloadError, match="mirror"):
        dl.fetch(toy_entry([UNREACHABLE]), root, opts)
    assert_nothing_at_target(root, "toy")


def test_mirror_base_url_replaces_the_host(server, dirs):
    root, opts = dirs
    server.files["/mirror/datasets/toy.zip"] = make_zip(TOY_FILES)
    opts.mirror = server.url("/mirror")
    res = dl.fetch(toy_entry([UNREACHABLE]), root, opts)
    assert [r["path"] for r in server.requests] == ["/mirror/datasets/toy.zip"]
    assert res.source == server.url("/mirror/datasets/toy.zip")
    assert dl.resolve_mirror("http://m/base/", "https://host/a/b.zip?dl=1") == "http://m/base/a/b.zip?dl=1"


def test_mirror_file_url(dirs, tmp_path):
    root, opts = dirs
    (tmp_path / "m/datasets").mkdir(parents=True)
    (tmp_path / "m/datasets/toy.zip").write_bytes(make_zip(TOY_FILES))
    opts.mirror = (tmp_path / "m").as_uri()
    res = dl.fetch(toy_entry([UNREACHABLE]), root, opts)
    assert res.source == (tmp_path / "m/datasets/toy.zip").as_uri() and (root / "toy/README.txt").exists()


# --------------------------------------------------------------------------------------------
# Manual data sets
# --------------------------------------------------------------------------------------------

def test_manual_dataset_gives_instructions_then_accepts_it_in_place(dirs):
    root, opts = dirs
    entry = registry.get("vip")
    with pytest.raises(dl.ManualDownloadRequired) as err:
        dl.fetch("vip", root, opts)
    msg = str(err.value)
    assert str(root / "vip") in msg and "VIP_Fine/lists/val_videos.txt" in msg and "sysu-hcp.net/lip" in msg
    assert entry.licence in msg
    # the user puts it in place: verified and accepted
    base = root / "vip" / "VIP_Fine"
    (base / "Images/v1").mkdir(parents=True)
    (base / "Images/v1/000.jpg").write_bytes(b"jpg")
    (base / "Annotations/Category_ids/v1").mkdir(parents=True)
    (base / "Annotations/Category_ids/v1/000.png").write_bytes(b"png")
    # incomplete: still the instructions, now saying what is missing
    with pytest.raises(dl.ManualDownloadRequired, match="missing VIP_Fine/lists/val_videos.txt"):
        dl.fetch("vip", root, opts)
    (base / "lists").mkdir()
    (base / "lists/val_videos.txt").write_text("v1\n")
    res = dl.fetch("vip", root, opts)
    assert res.status == "present" and res.files == 3


def test_manual_archives_in_the_cache_are_verified_and_extracted(dirs):
    root, opts = dirs
    entry = Dataset(name="reg", title="registration only", kind="dataset", homepage="h", licence="l",
                    files=(RemoteFile("part1.zip"), RemoteFile("part2.tar.gz")), manual=True,
                    instructions="log in, then put part1.zip and part2.tar.gz in {cache}; or fill {target}",
                    layout=(Expect("a/x.txt"), Expect("b/y.txt")))
    with pytest.raises(dl.ManualDownloadRequired, match=re.escape(str(Path(opts.cache) / "reg"))):
        dl.fetch(entry, root, opts)
    folder = Path(opts.cache) / "reg"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "part1.zip").write_bytes(make_zip({"a/x.txt": b"x"}))
    (folder / "part2.tar.gz").write_bytes(make_tar({"b/y.txt": b"y"}))
    res = dl.fetch(entry, root, opts)
    assert res.status == "extracted" and (root / "reg/b/y.txt").read_bytes() == b"y"
    assert set(json.loads(Path(opts.lock).read_text())["files"]) == {"reg/part1.zip", "reg/part2.tar.gz"}


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------

def test_cli_list_info_check_and_unknown(tmp_path, capsys):
    from selfsup.cli import main

    assert main(["download", "--list"]) == 0
    out = capsys.readouterr().out
    assert "fid_inception" in out and "kinetics400" in out and "manual" in out
    assert main(["download", "--info", "fid_inception"]) == 0
    assert "name tag 6726825d" in capsys.readouterr().out
    assert main(["download", "--check", "--root", str(tmp_path), "vip"]) == 1
    assert "vip: NOT OK" in capsys.readouterr().out
    assert main(["download", "--root", str(tmp_path), "davsi"]) == 1
    assert "unknown data set 'davsi'" in capsys.readouterr().err


def test_cli_fetches_through_a_mirror(tmp_path, capsys, monkeypatch):
    from selfsup.cli import main

    weights = payload(3000, 11)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    # a file that is not the real Inception weights: its name tag does not match
    (mirror / "pt_inception-2015-12-05-6726825d.pth").write_bytes(weights)
    args = ["download", "--params", str(tmp_path / "none.yaml"), "--root", str(tmp_path / "raw"),
            "--cache", str(tmp_path / "cache"), "--lock", str(tmp_path / "lock.json"), "--mirror", str(mirror),
            "--no-progress", "fid_inception"]
    assert main(args) == 1
    assert "does not start with the file name's tag 6726825d" in capsys.readouterr().out
    assert not (tmp_path / "raw" / "fid_inception").exists()
