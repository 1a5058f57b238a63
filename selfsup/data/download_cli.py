"""`selfsup download`: fetch, generate, check or describe the registry's data sets.

    selfsup download --list                 every entry: kind, size, how it is obtained, licence
    selfsup download --info davis           URLs, checksums, layout, instructions
    selfsup download davis jhmdb            fetch into <root>/<name>/ (verified, resumable)
    selfsup download synthetic              generate the embedded synthetic world
    selfsup download --check vip            verify what is in place, without any network access

Defaults come from the `download` section of params.yaml (`--params`); options override them; a
mirror is taken from `--mirror`, else `SELFSUP_MIRROR`, else `download.mirror`.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from selfsup.config import Params, load_params
from selfsup.data import registry
from selfsup.data.download import DownloadError, Options, fetch, folder_stats, generate_synthetic

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="registry names or 'synthetic' (default: download.datasets from the params)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--list", action="store_true", help="list the registry and exit")
    what.add_argument("--info", action="store_true", help="describe the named entries and exit")
    what.add_argument("--check", action="store_true", help="verify the layout of what is in place; no network")
    parser.add_argument("--params", default="params.yaml",
                        help="params file for the defaults (skipped when absent; default: %(default)s)")
    parser.add_argument("--root", help="where data sets land (default: download.root)")
    parser.add_argument("--mirror", help="local folder or base URL replacing the public hosts")
    parser.add_argument("--cache", help="archives and partial downloads (default: download.cache)")
    parser.add_argument("--lock", help="lock file of SHA-256 sums (default: download.lock)")
    parser.add_argument("--retries", type=int, help="retries per file (default: download.retries)")
    parser.add_argument("--timeout", type=float, help="socket timeout in seconds (default: download.timeout_s)")
    parser.add_argument("--force", action="store_true", help="fetch or generate again even if in place")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _params(path: str) -> Params:
    return load_params(path) if Path(path).is_file() else Params()


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def list_entries() -> str:
    rows = [("name", "kind", "size", "obtained", "licence")]
    rows.append(("synthetic", "dataset", "-", "generated", "part of selfsup"))
    for name in registry.names():
        e = registry.get(name)
        how = "manual" if e.manual else ("download" if len(e.files) == 1 else f"download ({len(e.files)} files)")
        rows.append((e.name + (f" ({', '.join(e.aliases)})" if e.aliases else ""), e.kind, _size(e.total_size),
                     how, e.licence))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows)


def describe(name: str, root: Path, cache: Path) -> str:
    e = registry.get(name)
    lines = [f"{e.name}: {e.title}", f"  kind:      {e.kind}", f"  home page: {e.homepage}",
             f"  licence:   {e.licence}", f"  target:    {e.target(root)}"]
    if e.data_root:
        lines.append(f"  read from: {e.path(root)}")
    if e.counts:
        lines.append(f"  counts:    {e.counts}")
    for rf in e.files:
        checks = [f"sha256 {rf.sha256}" if rf.sha256 else "", f"md5 {rf.md5}" if rf.md5 else "",
                  f"name tag {rf.sha256_prefix}" if rf.sha256_prefix else ""]
        check = ", ".join(c for c in checks if c) or "none published (recorded in the lock file at first download)"
        lines.append(f"  file {rf.filename} ({rf.archive}, {_size(rf.size)}; checksum: {check})")
        for url in rf.urls:
            lines.append(f"    {url}")
    lines.append("  layout:")
    lines += [f"    {x.pattern}" + (f"  (at least {x.at_least})" if x.at_least > 1 else "") for x in e.layout]
    if e.views:
        for view, parts in e.views.items():
            lines.append(f"  view {view}: " + ", ".join(f"{k} = {v}" for k, v in parts.items()))
    if e.notes:
        lines.append(f"  notes:     {e.notes}")
    if e.manual:
        lines.append("  by hand:\n    " + e.instructions.format(target=e.target(root), cache=cache / e.name)
                     .replace("\n", "\n    "))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if args.list:
        print(list_entries())
        return 0
    p = _params(args.params)
    d = p.download
    root = Path(args.root or d.root)
    opts = Options(mirror=args.mirror or os.environ.get("SELFSUP_MIRROR") or d.mirror,
                   retries=d.retries if args.retries is None else args.retries,
                   timeout_s=d.timeout_s if args.timeout is None else args.timeout,
                   backoff_s=d.backoff_s, cache=args.cache or d.cache, lock=args.lock or d.lock,
                   keep_archives=d.keep_archives, force=args.force,
                   progress=False if args.no_progress else None)
    names = args.names or list(d.datasets)
    for name in names:  # unknown names fail before anything is fetched
        if name != "synthetic":
            registry.get(name)
    if args.info:
        print("\n\n".join(describe(n, root, opts.cache_dir(root)) for n in names if n != "synthetic"))
        return 0
    if args.check:
        bad = 0
        for name in names:
            if name == "synthetic":
                continue
            e = registry.get(name)
            problems = registry.check_layout(e, e.target(root))
            if problems:
                bad += 1
                print(f"{name}: NOT OK at {e.target(root)}: " + "; ".join(problems))
            else:
                files, size = folder_stats(e.target(root))
                print(f"{name}: ok at {e.target(root)} ({files} files, {_size(size)})")
        return 1 if bad else 0
    failed = 0
    for name in names:
        try:
            if name == "synthetic":
                res = generate_synthetic(root, p.synthetic, p.seed, force=args.force)
            else:
                res = fetch(name, root, opts)
        except DownloadError as exc:
            failed += 1
            print(f"{name}: {exc}")
            continue
        print(f"{name}: {res.status} at {res.target} ({res.files} files, {_size(res.bytes)}, "
              f"{res.seconds:.1f} s, source: {res.source})")
    return 1 if failed else 0
