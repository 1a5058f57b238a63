"""Stage `test_time`: one metrics file for everything learned at test time.

    python -m stages.test_time

Merges the `adapt` stage's `reports/test_time/crw.json` and the `ttt` stage's
`reports/test_time/ttt.json` into `reports/test_time.json`:

    {"crw_adapt": {"davis": {"frozen": {J&F...}, "adapted": {J&F...}, "gain": ..,
                             "seconds_per_video": {...}, "per_sequence": {...}}},
     "stream":    {"videos", "running", "frozen_running", "gain", "seconds_per_video"},
     "ttt":       {"clean": {...}, "shifts": {"<shift>@<severity>": {"baseline", "standard", "online", ...}},
                   "mean": {"baseline", "standard", "online"}, "train": {...}}}

`merged_metrics()` returns the same mapping (what the evaluate stage puts under "test_time").
A part whose stage has not run is left out.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from selfsup.io import read_json, write_json

from stages.common import setup_logging

log = logging.getLogger("stages.test_time")

CRW_REPORT = Path("reports/test_time/crw.json")
TTT_REPORT = Path("reports/test_time/ttt.json")
OUT = Path("reports/test_time.json")


def merged_metrics(crw_report: str | Path = CRW_REPORT, ttt_report: str | Path = TTT_REPORT) -> dict[str, Any]:
    """The merged test-time metrics (numbers only; the stream's per-video curve stays in its CSV)."""
    out: dict[str, Any] = {}
    if Path(crw_report).is_file():
        crw = read_json(crw_report)
        out["crw_adapt"] = {"davis": crw["davis"]}
        if "stream" in crw:
            out["stream"] = crw["stream"]
    if Path(ttt_report).is_file():
        out["ttt"] = read_json(ttt_report)
    return out


def main() -> int:
    setup_logging()
    metrics = merged_metrics()
    if not metrics:
        log.error("neither %s nor %s exists: run the adapt and ttt stages first", CRW_REPORT, TTT_REPORT)
        return 1
    write_json(OUT, metrics)
    log.info("wrote %s (%s)", OUT, ", ".join(metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
