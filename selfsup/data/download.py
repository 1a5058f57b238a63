"""Resumable, verified downloads and safe extraction for the registry's entries.

    from selfsup.data.download import fetch, Options
    result = fetch("davis", "data/raw", Options(cache="data/downloads", lock="registry.lock.json"))

How a data set gets to `<root>/<name>/`:

1. Each file is fetched into `<cache>/<name>/<file>.part` (HTTP Range resumes an interrupted
   transfer; a server that ignores Range makes it start again from byte 0), with retries and
   exponential backoff on network errors and 408/425/429/5xx answers, then renamed to
   `<cache>/<name>/<file>`.
2. The file is checked: its size and any published checksum (SHA-256, MD5, the torch.hub name tag),
   then the SHA-256 recorded in the lock file at its first download. A file that fails is deleted.
3. The archives are extracted into a temporary folder beside the target (members with absolute
   paths, `..`, links or device files are refused before anything is written), the layout is
   checked, and the folder replaces the target in one `os.replace`. A failed or interrupted
   download never leaves a partial data set at the target.
4. New SHA-256 sums are recorded in the lock file.

A mirror (`Options.mirror` or `SELFSUP_MIRROR`) replaces the public hosts: a local folder holding
the files by name (`<mirror>/<name>/<file>` or `<mirror>/<file>`), or a base URL that takes the place
of each URL's scheme and host (`https://host/a/b.zip` → `<mirror>/a/b.zip`).

Entries marked manual (registration or web forms) are accepted when already in place with the right
layout; their archives, when the entry names them, are picked up from the cache or the mirror
folder; otherwise `ManualDownloadRequired` carries the instructions.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import email.utils
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import stat
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

from tqdm import tqdm

from selfsup.data.registry import Dataset, RemoteFile, check_layout, get
from selfsup.io import atomic_dir, write_json

__all__ = [
    "DownloadError", "ChecksumError", "ManualDownloadRequired", "UnsafeArchiveError", "LayoutError",
    "Options", "FileResult", "Result", "fetch", "fetch_file", "safe_extract", "resolve_mirror",
    "Lock", "folder_stats", "generate_synthetic", "synthetic_is_current",
]

log = logging.getLogger(__name__)

USER_AGENT = "selfsup-download/1 (+urllib)"
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}

# Replaced in tests to observe the backoff without waiting for it.
_sleep: Callable[[float], None] = time.sleep


class DownloadError(RuntimeError):
    """A file could not be fetched, verified or put in place."""


class ChecksumError(DownloadError):
    """A file's size or hash differs from what was published or recorded."""


class ManualDownloadRequired(DownloadError):
    """The entry cannot be fetched automatically; the message says what to do by hand."""


class UnsafeArchiveError(DownloadError):
    """An archive member would escape the target or is not a plain file or folder."""


class LayoutError(DownloadError):
    """The extracted data set lacks files its layout requires."""


class _Retryable(Exception):
    """A transfer failure worth another try (network error, 5xx, short body)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class Options:
    """How to fetch. `cache`/`lock` default to `<root>/.downloads` and `<root>/.registry-lock.json`."""
    mirror: str | None = None
    retries: int = 5
    timeout_s: float = 60.0
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    cache: str | os.PathLike | None = None
    lock: str | os.PathLike | None = None
    keep_archives: bool = True
    force: bool = False
    progress: bool | None = None  # None: a bar only on a terminal
    chunk_size: int = 1 << 20
    use_env_mirror: bool = True

    def cache_dir(self, root: Path) -> Path:
        return Path(self.cache) if self.cache is not None else root / ".downloads"

    def lock_path(self, root: Path) -> Path:
        return Path(self.lock) if self.lock is not None else root / ".registry-lock.json"

    def mirror_value(self) -> str | None:
        if self.mirror:
            return self.mirror
        if self.use_env_mirror:
            return os.environ.get("SELFSUP_MIRROR") or None
        return None


@dataclass
class FileResult:
    filename: str
    path: Path
    size: int
    sha256: str
    source: str
    fetched_bytes: int = 0
    requests: int = 0
    resumed_from: int = 0
    from_cache: bool = False


@dataclass
class Result:
    """What `fetch` did for one entry (`status`: downloaded, extracted, present)."""
    name: str
    target: Path
    status: str
    files: int
    bytes: int
    seconds: float
    source: str
    fetched_bytes: int = 0
    archives: list[FileResult] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out = {"status": self.status, "files": self.files, "bytes": self.bytes,
               "seconds": round(self.seconds, 3), "source": self.source,
               "fetched_bytes": self.fetched_bytes, "target": str(self.target),
               "archives": {a.filename: {"sha256": a.sha256, "size": a.size, "source": a.source}
                            for a in self.archives}}
        if self.details:
            out["details"] = self.details
        return out


# --------------------------------------------------------------------------------------------
# Lock file: SHA-256 of every file at its first verified download
# --------------------------------------------------------------------------------------------

class Lock:
    """`{"format": 1, "files": {"<entry>/<file>": {"sha256", "size", "source", "recorded"}}}`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def read(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except json.JSONDecodeError as exc:
            raise DownloadError(f"{self.path}: lock file is not valid JSON ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
            raise DownloadError(f"{self.path}: lock file must hold {{\"format\": 1, \"files\": {{...}}}}")
        return data["files"]

    def get(self, key: str) -> dict[str, Any] | None:
        return self.read().get(key)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        guard = self.path.with_name(self.path.name + ".guard")
        with open(guard, "a") as fh:
            try:
                import fcntl
            except ImportError:  # not POSIX: no concurrent writers to guard against
                yield
                return
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def record(self, items: dict[str, dict[str, Any]]) -> None:
        """Add entries that are not there yet (a recorded hash is never silently replaced)."""
        if not items:
            return
        with self._exclusive():
            files = self.read()
            for key, value in items.items():
                old = files.get(key)
                if old is not None and old.get("sha256") != value["sha256"]:
                    raise ChecksumError(f"{self.path}: {key} is recorded with sha256 {old.get('sha256')}, "
                                        f"not {value['sha256']}")
                files.setdefault(key, value)
            write_json(self.path, {"format": 1, "files": files})


# --------------------------------------------------------------------------------------------
# Sources: public URLs or the mirror
# --------------------------------------------------------------------------------------------

def _is_url(value: str) -> bool:
    return urllib.parse.urlsplit(value).scheme in {"http", "https", "file"}


def resolve_mirror(mirror: str, url: str) -> str:
    """`url` with its scheme and host replaced by the base URL `mirror`."""
    parts = urllib.parse.urlsplit(url)
    base = mirror.rstrip("/")
    return f"{base}{parts.path}" + (f"?{parts.query}" if parts.query else "")


def _sources(entry: Dataset, rf: RemoteFile, mirror: str | None) -> list[str]:
    """Where `rf` may come from, in order: local paths (already-downloaded or mirrored) or URLs."""
    if mirror and not _is_url(mirror):
        folder = Path(mirror).expanduser()
        return [str(p) for p in (folder / entry.name / rf.filename, folder / rf.filename)]
    if mirror:
        return [resolve_mirror(mirror, u) for u in rf.urls]
    return list(rf.urls)


# --------------------------------------------------------------------------------------------
# One file
# --------------------------------------------------------------------------------------------

def _progress(total: int | None, initial: int, desc: str, enabled: bool | None) -> tqdm:
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=desc, disable=None if enabled is None else not enabled, leave=False)


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - _dt.datetime.now(when.tzinfo or _dt.timezone.utc)).total_seconds())


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _rf_name(part: Path) -> str:
    return part.name[:-len(".part")] if part.name.endswith(".part") else part.name


class _Transfer:
    """One HTTP(S) transfer into a `.part` file, resuming from its current length."""

    def __init__(self, url: str, part: Path, opts: Options, expected_size: int | None, desc: str):
        self.url, self.part, self.opts, self.expected_size, self.desc = url, part, opts, expected_size, desc
        self.meta_path = part.with_name(part.name + ".json")
        self.fetched = 0
        self.requests = 0
        self.resumed_from = 0

    def _meta(self) -> dict[str, Any]:
        try:
            return json.loads(self.meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def _restart(self) -> None:
        self.part.unlink(missing_ok=True)
        self.meta_path.unlink(missing_ok=True)

    def run(self) -> None:
        """Fetch the rest of the file; raises _Retryable for failures worth another try."""
        start = self.part.stat().st_size if self.part.exists() else 0
        if start and self.expected_size is not None and start == self.expected_size:
            return  # complete from an earlier attempt; the checks decide whether it is right
        if self.expected_size is not None and start > self.expected_size:
            log.warning("%s: partial file is larger than expected; starting again", self.part)
            self._restart()
            start = 0
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        meta = self._meta()
        if start:
            headers["Range"] = f"bytes={start}-"
            validator = meta.get("etag") if meta.get("url") == self.url else None
            if validator and validator.startswith("W/"):
                validator = None  # weak validators may not be used with If-Range
            validator = validator or (meta.get("last_modified") if meta.get("url") == self.url else None)
            if validator:
                headers["If-Range"] = validator
        self.requests += 1
        try:
            resp = urllib.request.urlopen(urllib.request.Request(self.url, headers=headers),
                                          timeout=self.opts.timeout_s)
        except urllib.error.HTTPError as exc:
            with exc:
                if exc.code == 416 and start:
                    m = re.search(r"/(\d+)", exc.headers.get("Content-Range", "") or "")
                    if m and int(m.group(1)) == start:
                        return  # the partial file already holds every byte
                    self._restart()
                    raise _Retryable(f"{self.url}: range not satisfiable; starting again") from None
                if exc.code in RETRY_STATUS:
                    raise _Retryable(f"{self.url}: HTTP {exc.code} {exc.reason}",
                                     _retry_after(exc.headers)) from None
                raise DownloadError(f"{self.url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Retryable(f"{self.url}: {type(reason).__name__}: {reason}") from None
        with resp:
            status = getattr(resp, "status", 200)
            length = resp.headers.get("Content-Length")
            if status == 206:
                m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != start:
                    self._restart()
                    raise _Retryable(f"{self.url}: unexpected Content-Range "
                                     f"{resp.headers.get('Content-Range')!r}; starting again")
                total = int(m.group(3)) if m.group(3) != "*" else None
                mode = "ab"
                self.resumed_from = start
            else:
                if start:
                    log.info("%s: the server ignored the Range request; starting again from byte 0", self.url)
                start = 0
                total = int(length) if length is not None and length.isdigit() else None
                mode = "wb"
            if self.expected_size is not None and total is not None and total != self.expected_size:
                raise ChecksumError(f"{_rf_name(self.part)} from {self.url}: the server offers {total} bytes, "
                                    f"the registry expects {self.expected_size}")
            if mode == "wb":  # remembered so that a later resume can ask for this same version
                self.meta_path.write_text(json.dumps({
                    "url": self.url, "etag": resp.headers.get("ETag"),
                    "last_modified": resp.headers.get("Last-Modified")}))
            total = total if total is not None else self.expected_size
            received = 0
            try:
                with open(self.part, mode) as out, _progress(total, start, self.desc, self.opts.progress) as bar:
                    while True:
                        block = resp.read(self.opts.chunk_size)
                        if not block:
                            break
                        out.write(block)
                        received += len(block)
                        bar.update(len(block))
            except (http.client.HTTPException, OSError) as exc:
                raise _Retryable(f"{self.url}: transfer broken after {start + received} bytes ({exc})") from None
            finally:
                self.fetched += received
        size = self.part.stat().st_size
        if total is not None and size < total:
            raise _Retryable(f"{self.url}: connection closed after {size} of {total} bytes")
        if total is not None and size > total:
            self._restart()
            raise _Retryable(f"{self.url}: received more bytes than announced; starting again")


def _copy_local(src: Path, part: Path, opts: Options, desc: str) -> int:
    total = src.stat().st_size
    with open(src, "rb") as fin, open(part, "wb") as fout, _progress(total, 0, desc, opts.progress) as bar:
        while block := fin.read(opts.chunk_size):
            fout.write(block)
            bar.update(len(block))
    return total


def _hashes(path: Path, want_md5: bool, chunk: int = 1 << 20) -> tuple[str, str | None]:
    sha = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False) if want_md5 else None
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            sha.update(block)
            if md5 is not None:
                md5.update(block)
    return sha.hexdigest(), md5.hexdigest() if md5 is not None else None


def _lock_key(entry: Dataset, rf: RemoteFile) -> str:
    return f"{entry.name}/{rf.filename}"


def verify_file(path: Path, entry: Dataset, rf: RemoteFile, lock: Lock | None, source: str) -> str:
    """Check `path` against the registry and the lock; return its SHA-256 or raise ChecksumError."""
    size = path.stat().st_size
    if rf.size is not None and size != rf.size:
        raise ChecksumError(f"{rf.filename} from {source}: {size} bytes, the registry expects {rf.size}")
    sha, md5 = _hashes(path, rf.md5 is not None)
    if rf.sha256 is not None and sha != rf.sha256:
        raise ChecksumError(f"{rf.filename} from {source}: sha256 {sha}, published {rf.sha256}")
    if rf.md5 is not None and md5 != rf.md5:
        raise ChecksumError(f"{rf.filename} from {source}: md5 {md5}, published {rf.md5} "
                            f"({rf.checksum_source or 'published checksum'})")
    prefix = rf.sha256_prefix
    if prefix is not None and not sha.startswith(prefix):
        raise ChecksumError(f"{rf.filename} from {source}: sha256 {sha} does not start with the "
                            f"file name's tag {prefix} (torch.hub convention)")
    if lock is not None:
        recorded = lock.get(_lock_key(entry, rf))
        if recorded is not None and recorded.get("sha256") != sha:
            raise ChecksumError(
                f"{rf.filename} from {source}: sha256 {sha} differs from {recorded.get('sha256')} recorded "
                f"in {lock.path} at its first download ({recorded.get('recorded', 'unknown date')}, from "
                f"{recorded.get('source', 'unknown source')}). The file has changed or is corrupt; if the "
                f"change is expected, remove the key {_lock_key(entry, rf)!r} from the lock file.")
    return sha


def fetch_file(entry: Dataset, rf: RemoteFile, cache_dir: Path, opts: Options,
               lock: Lock | None = None) -> FileResult:
    """Bring `rf` into `cache_dir/<entry>/`, verified; return where it is and what it cost."""
    folder = cache_dir / entry.name
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / rf.filename
    part = folder / (rf.filename + ".part")
    mirror = opts.mirror_value()

    if final.exists() and not opts.force:
        try:
            sha = verify_file(final, entry, rf, lock, str(final))
            return FileResult(rf.filename, final, final.stat().st_size, sha, source=str(final), from_cache=True)
        except ChecksumError as exc:
            log.warning("cached %s fails its check (%s); fetching it again", final, exc)
            final.unlink()
    if opts.force:
        final.unlink(missing_ok=True)

    sources = _sources(entry, rf, mirror)
    if not sources:
        raise ManualDownloadRequired(f"{entry.name}: {rf.filename} has no download location")
    errors: list[str] = []
    desc = f"{entry.name}/{rf.filename}"
    for source in sources:
        try:
            if _is_url(source) and not source.startswith("file:"):
                result = _fetch_url(rf, source, part, final, opts, desc, errors)
            else:
                result = _copy_from(source, rf, part, final, opts, desc, errors)
            if result is None:
                continue
            result.sha256 = verify_file(final, entry, rf, lock, source)
        except ChecksumError:
            # a wrong file is never kept, not even to resume from
            final.unlink(missing_ok=True)
            part.unlink(missing_ok=True)
            part.with_name(part.name + ".json").unlink(missing_ok=True)
            _remove_empty(folder)
            raise
        result.size = final.stat().st_size
        return result
    where = "mirror " + mirror if mirror else "its URLs"
    raise DownloadError(f"{entry.name}: could not fetch {rf.filename} from {where}:\n  " + "\n  ".join(errors))


def _copy_from(source: str, rf: RemoteFile, part: Path, final: Path, opts: Options, desc: str,
               errors: list[str]) -> FileResult | None:
    """A local file (mirror folder or file: URL) copied into the cache."""
    src = Path(urllib.request.url2pathname(urllib.parse.urlsplit(source).path)) if source.startswith("file:") \
        else Path(source)
    if not src.is_file():
        errors.append(f"{source}: not found")
        return None
    log.info("%s: copying %s", desc, src)
    n = _copy_local(src, part, opts, desc)
    os.replace(part, final)
    return FileResult(rf.filename, final, n, "", source=source, fetched_bytes=n)


def _fetch_url(rf: RemoteFile, url: str, part: Path, final: Path, opts: Options, desc: str,
               errors: list[str]) -> FileResult | None:
    """An HTTP(S) download with resume and retries; None (and a line in `errors`) if it failed."""
    transfer = _Transfer(url, part, opts, rf.size, desc)
    attempt = 0
    while True:
        try:
            log.info("%s: fetching %s%s", desc, url,
                     f" (resuming at byte {part.stat().st_size})" if part.exists() and part.stat().st_size else "")
            transfer.run()
            break
        except _Retryable as exc:
            if attempt >= opts.retries:
                kept = (f"; the partial file {part} is kept to resume from"
                        if part.exists() and part.stat().st_size else "")
                errors.append(f"{exc} (gave up after {attempt + 1} attempts{kept})")
                return None
            delay = min(opts.max_backoff_s, opts.backoff_s * (2 ** attempt))
            if exc.retry_after is not None:
                delay = min(opts.max_backoff_s, max(delay, exc.retry_after))
            log.warning("%s; retrying in %.2f s (%d/%d)", exc, delay, attempt + 1, opts.retries)
            _sleep(delay)
            attempt += 1
        except ChecksumError:
            raise
        except DownloadError as exc:
            errors.append(str(exc))
            return None
    os.replace(part, final)
    transfer.meta_path.unlink(missing_ok=True)
    return FileResult(rf.filename, final, final.stat().st_size, "", source=url,
                      fetched_bytes=transfer.fetched, requests=transfer.requests,
                      resumed_from=transfer.resumed_from)


def _remove_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


# --------------------------------------------------------------------------------------------
# Safe extraction
# --------------------------------------------------------------------------------------------

def _member_path(name: str, archive: Path) -> PurePosixPath | None:
    """The relative path a member may be written to, or UnsafeArchiveError (None: nothing to write)."""
    def refuse(reason: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(f"{archive}: refusing member {name!r}: {reason}")

    if "\x00" in name:
        raise refuse("NUL in its name")
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise refuse("absolute path")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise refuse("'..' escapes the target folder")
    return PurePosixPath(*parts) if parts else None


def _inside(dest: Path, rel: PurePosixPath, archive: Path, name: str) -> Path:
    out = dest / rel
    root = dest.resolve()
    resolved = out.resolve()
    if resolved != root and root not in resolved.parents:
        raise UnsafeArchiveError(f"{archive}: refusing member {name!r}: resolves outside the target ({resolved})")
    return out


def _tar_plan(tf: tarfile.TarFile, archive: Path, dest: Path) -> list[tuple[tarfile.TarInfo, Path]]:
    plan = []
    for m in tf.getmembers():
        rel = _member_path(m.name, archive)
        if m.issym() or m.islnk():
            raise UnsafeArchiveError(f"{archive}: refusing member {m.name!r}: "
                                     f"{'symbolic' if m.issym() else 'hard'} link to {m.linkname!r}")
        if m.ischr() or m.isblk() or m.isfifo() or m.isdev():
            raise UnsafeArchiveError(f"{archive}: refusing member {m.name!r}: device or FIFO")
        if not (m.isreg() or m.isdir()):
            raise UnsafeArchiveError(f"{archive}: refusing member {m.name!r}: unsupported type {m.type!r}")
        if rel is None:
            continue
        plan.append((m, _inside(dest, rel, archive, m.name)))
    return plan


def _zip_plan(zf: zipfile.ZipFile, archive: Path, dest: Path) -> list[tuple[zipfile.ZipInfo, Path]]:
    plan = []
    for info in zf.infolist():
        rel = _member_path(info.filename, archive)
        mode = info.external_attr >> 16
        if mode and stat.S_ISLNK(mode):
            raise UnsafeArchiveError(f"{archive}: refusing member {info.filename!r}: symbolic link")
        if mode and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            raise UnsafeArchiveError(f"{archive}: refusing member {info.filename!r}: device, FIFO or socket")
        if info.flag_bits & 0x1:
            raise UnsafeArchiveError(f"{archive}: refusing member {info.filename!r}: encrypted")
        if rel is None:
            continue
        plan.append((info, _inside(dest, rel, archive, info.filename)))
    return plan


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike, kind: str | None = None,
                 progress: bool | None = None) -> int:
    """Extract `archive` into `dest`, refusing any unsafe member before writing anything.

    Refused: absolute paths, `..` components, symbolic and hard links, devices/FIFOs, and anything
    resolving outside `dest`; the error names the member. Returns the number of files written.
    """
    archive, dest = Path(archive), Path(dest)
    kind = kind or ("zip" if zipfile.is_zipfile(archive) else "tar")
    dest.mkdir(parents=True, exist_ok=True)
    files = 0
    if kind == "zip":
        try:
            zf = zipfile.ZipFile(archive)
        except zipfile.BadZipFile as exc:
            raise DownloadError(f"{archive}: not a valid zip archive ({exc})") from None
        with zf:
            plan = _zip_plan(zf, archive, dest)
            for info, out in tqdm(plan, desc=f"extract {archive.name}", unit="file", leave=False,
                                  disable=None if progress is None else not progress):
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                files += 1
        return files
    try:
        tf = tarfile.open(archive, "r:*")
    except tarfile.TarError as exc:
        raise DownloadError(f"{archive}: not a valid tar archive ({exc})") from None
    with tf:
        plan = _tar_plan(tf, archive, dest)
        for m, out in tqdm(plan, desc=f"extract {archive.name}", unit="file", leave=False,
                           disable=None if progress is None else not progress):
            if m.isdir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(m)
            if src is None:
                raise UnsafeArchiveError(f"{archive}: refusing member {m.name!r}: no data")
            with src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            if m.mode & 0o111:
                out.chmod(0o755)
            files += 1
    return files


# --------------------------------------------------------------------------------------------
# A whole entry
# --------------------------------------------------------------------------------------------

def folder_stats(folder: Path) -> tuple[int, int]:
    """(files, bytes) below `folder`."""
    n = size = 0
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):
                size += os.lstat(os.path.join(dirpath, name)).st_size
                n += 1
    return n, size


def _fit(entry: Dataset, folder: Path) -> int:
    """How much of the layout `folder` satisfies (matches counted up to what each check needs)."""
    return sum(x.count(folder, limit=x.at_least) for x in entry.layout)


def _hoist_single_folder(entry: Dataset, tmp: Path) -> None:
    """Archives often wrap everything in one top folder (`horse2zebra/trainA/...`): lift it when the
    layout is found inside it and not at the top."""
    if not check_layout(entry, tmp):
        return
    children = [p for p in tmp.iterdir() if not p.name.startswith(".")]
    # lifted when that fits the layout better (an incomplete archive then reports what it lacks inside)
    if len(children) != 1 or not children[0].is_dir() or _fit(entry, children[0]) <= _fit(entry, tmp):
        return
    inner = tmp / f".hoist-{os.getpid()}"
    os.replace(children[0], inner)
    for child in inner.iterdir():
        os.replace(child, tmp / child.name)
    inner.rmdir()


def _layout_error(entry: Dataset, folder: Path, problems: list[str], what: str) -> LayoutError:
    try:
        found = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())[:20]
    except OSError:
        found = []
    return LayoutError(f"{entry.name}: {what} does not have the expected layout: " + "; ".join(problems)
                       + (f" (top level holds: {', '.join(found)})" if found else ""))


def _clean_stale(root: Path, name: str) -> None:
    """Remove temporary folders a killed run left beside the target (we hold the entry's lock)."""
    for p in root.glob(f".{name}.*"):
        if p.is_dir():
            log.info("removing leftover temporary folder %s", p)
            shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def _entry_lock(cache_dir: Path, name: str) -> Iterator[None]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f".{name}.lock", "a") as fh:
        try:
            import fcntl
        except ImportError:
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _instructions(entry: Dataset, target: Path, cache_dir: Path) -> str:
    return entry.instructions.format(target=target, cache=cache_dir / entry.name)


def fetch(name: str | Dataset, root: str | os.PathLike, options: Options | None = None) -> Result:
    """Put the entry `name` in `<root>/<name>/`, verified (see the module's documentation)."""
    opts = options or Options()
    entry = name if isinstance(name, Dataset) else get(name)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    target = entry.target(root)
    cache_dir = opts.cache_dir(root)
    lock = Lock(opts.lock_path(root))
    t0 = time.perf_counter()

    with _entry_lock(cache_dir, entry.name):
        _clean_stale(root, entry.name)
        by_hand = entry.manual and not _manual_archives_available(entry, cache_dir, opts)
        problems: list[str] = []
        if target.exists() and (not opts.force or by_hand):
            problems = check_layout(entry, target)
            if not problems:
                files, size = folder_stats(target)
                log.info("%s: already in place at %s (%d files)", entry.name, target, files)
                return Result(entry.name, target, "present", files, size, time.perf_counter() - t0, "present")
            if not by_hand:
                log.warning("%s: %s is incomplete (%s); fetching it again", entry.name, target,
                            "; ".join(problems))
        if by_hand:
            state = (f"{target} exists but is incomplete: {'; '.join(problems)}.\n" if problems else "")
            raise ManualDownloadRequired(
                f"{entry.name} ({entry.title}) must be downloaded by hand.\n{state}"
                + _instructions(entry, target, cache_dir)
                + f"\nLicence: {entry.licence}. Home page: {entry.homepage}")

        archives = [fetch_file(entry, rf, cache_dir, opts, lock) for rf in entry.files]
        with atomic_dir(target) as tmp:
            for res, rf in zip(archives, entry.files):
                if rf.archive == "file":
                    shutil.copyfile(res.path, tmp / rf.filename)
                else:
                    log.info("%s: extracting %s", entry.name, res.path.name)
                    safe_extract(res.path, tmp, "zip" if rf.archive == "zip" else "tar", opts.progress)
            _hoist_single_folder(entry, tmp)
            problems = check_layout(entry, tmp)
            if problems:
                raise _layout_error(entry, tmp, problems, "the extracted archive")
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        lock.record({_lock_key(entry, rf): {"sha256": res.sha256, "size": res.size, "source": res.source,
                                            "recorded": now}
                     for res, rf in zip(archives, entry.files)})
        if not opts.keep_archives:
            for res in archives:
                res.path.unlink(missing_ok=True)
            _remove_empty(cache_dir / entry.name)

    files, size = folder_stats(target)
    fetched = sum(a.fetched_bytes for a in archives)
    status = "downloaded" if fetched else "extracted"
    sources = sorted({a.source for a in archives})
    log.info("%s: %s into %s (%d files, %d bytes)", entry.name, status, target, files, size)
    return Result(entry.name, target, status, files, size, time.perf_counter() - t0,
                  sources[0] if len(sources) == 1 else ", ".join(sources), fetched, archives)


def _manual_archives_available(entry: Dataset, cache_dir: Path, opts: Options) -> bool:
    """A manual entry's archives are in the cache or the mirror folder (so it can be extracted)."""
    if not entry.files:
        return False
    mirror = opts.mirror_value()
    for rf in entry.files:
        candidates = [cache_dir / entry.name / rf.filename]
        if mirror and not _is_url(mirror):
            candidates += [Path(p) for p in _sources(entry, rf, mirror)]
        if not any(p.is_file() for p in candidates):
            return False
    return True


# --------------------------------------------------------------------------------------------
# The embedded synthetic world
# --------------------------------------------------------------------------------------------

def synthetic_is_current(folder: Path, synthetic_params: Any, seed: int) -> bool:
    """`folder` holds a world generated with these params and this seed (per its manifest)."""
    from selfsup.config import as_dict

    manifest = folder / "manifest.json"
    try:
        data = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and data.get("seed") == seed and data.get("params") == as_dict(synthetic_params)


def generate_synthetic(root: str | os.PathLike, synthetic_params: Any, seed: int, force: bool = False,
                       progress: bool | None = None) -> Result:
    """Generate the synthetic world into `<root>/synthetic/`; skipped when the world there is current.

    The generator writes into a temporary folder (`selfsup.io.atomic_dir`) that replaces the target
    only when complete, so an interrupted run never leaves half a world."""
    from selfsup.data import synthetic

    target = Path(root) / "synthetic"
    t0 = time.perf_counter()
    if not force and synthetic_is_current(target, synthetic_params, seed):
        files, size = folder_stats(target)
        log.info("synthetic: %s is current (%d files)", target, files)
        return Result("synthetic", target, "present", files, size, time.perf_counter() - t0, "present")
    details = synthetic.generate(target, synthetic_params, seed, progress=progress is not False)
    files, size = folder_stats(target)
    log.info("synthetic: generated %d files (%d bytes) in %s", files, size, target)
    return Result("synthetic", target, "generated", files, size, time.perf_counter() - t0, "generated",
                  details=dict(details) if isinstance(details, dict) else {})
