"""The `selfsup` command.

Each sub-command lives in its own module, imported only when it runs (so `selfsup --help` is
fast and the library's modules never pull in DVC, Prefect or MLflow). A command module exposes
`configure(parser)` to declare its options and `main(args) -> int | None` to run.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "download": ("selfsup.data.download_cli", "fetch or generate data sets from the registry"),
    "propagate": ("selfsup.propagate_cli", "propagate labels from the first frame (davis, jhmdb, vip)"),
    "eval": ("selfsup.metrics.cli", "score results: davis J&F, jhmdb PCK, vip mIoU, fid"),
    "translate": ("selfsup.cut.cli", "train or test CUT / FastCUT / SinCUT"),
    "table": ("pipeline.tables", "regenerate a paper table (or its synthetic counterpart)"),
    "runs": ("pipeline.compare", "compare tracked runs side by side"),
    "retrieve": ("selfsup.baselines.cli", "Exemplar-SVM retrieval: rank a folder of images against a query"),
}


def _build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="selfsup", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:  # only the command being run pays for its imports
            mod = importlib.import_module(module)
            mod.configure(p)
            modules[name] = mod
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, modules = _build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(modules[args.command].main(args) or 0)
    except (ValueError, FileNotFoundError) as exc:  # user errors: one clear line, no traceback
        if args.verbose:
            raise
        print(f"selfsup {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
