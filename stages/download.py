"""DVC stage `download`: fetch or generate every data set named in `download.datasets`.

- `synthetic` → `selfsup.data.synthetic.generate(<root>/synthetic, params.synthetic, params.seed)`,
  written into a temporary folder that replaces `<root>/synthetic` only when complete.
- any registry name → `selfsup.data.download.fetch` into `<root>/<name>/` (verified, atomic).

Writes `reports/download.json` (per data set: files, bytes, seconds, source) and logs counts, bytes
and time to MLflow. `python -m stages.download`.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from selfsup.config import Params
from selfsup.data import registry
from selfsup.data.download import DownloadError, Options, fetch, generate_synthetic
from selfsup.io import write_json

from stages.common import params as load_stage_params, setup_logging
from stages.tracking import stage_run

log = logging.getLogger("stages.download")

REPORT = Path("reports/download.json")


def options(p: Params) -> Options:
    d = p.download
    # the environment (one machine's mirror) takes precedence over the params file
    return Options(mirror=os.environ.get("SELFSUP_MIRROR") or d.mirror, retries=d.retries,
                   timeout_s=d.timeout_s, backoff_s=d.backoff_s, cache=d.cache, lock=d.lock,
                   keep_archives=d.keep_archives)


def check_names(p: Params) -> None:
    """Every name in download.datasets is `synthetic` or in the registry (else one clear error)."""
    for i, name in enumerate(p.download.datasets):
        if name != "synthetic":
            try:
                registry.get(name)
            except registry.UnknownDataset as exc:
                raise registry.UnknownDataset(f"download.datasets[{i}]: {exc}") from None


def run(p: Params, report_path: Path = REPORT) -> dict[str, Any]:
    """Fetch or generate every data set; write and return the report."""
    check_names(p)
    root = Path(p.download.root)
    opts = options(p)
    datasets: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for name in p.download.datasets:
        if name == "synthetic":
            datasets[name] = generate_synthetic(root, p.synthetic, p.seed).summary()
        else:
            datasets[name] = fetch(name, root, opts).summary()
    report = {
        "datasets": datasets,
        "total": {"datasets": len(datasets),
                  "files": sum(d["files"] for d in datasets.values()),
                  "bytes": sum(d["bytes"] for d in datasets.values()),
                  "fetched_bytes": sum(d.get("fetched_bytes", 0) for d in datasets.values()),
                  "seconds": round(time.perf_counter() - t0, 3)},
    }
    write_json(report_path, report)
    return report


def main() -> int:
    setup_logging()
    p = load_stage_params()
    with stage_run("download", p.download) as tracking:
        try:
            report = run(p)
        except (DownloadError, registry.UnknownDataset) as exc:
            # one clear message, no traceback; raised inside the run so MLflow marks it failed
            print(f"download: error: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        metrics = {f"{name}.{key}": value for name, d in report["datasets"].items()
                   for key, value in d.items() if key in ("files", "bytes", "seconds", "fetched_bytes")}
        metrics.update({f"total.{k}": v for k, v in report["total"].items()})
        tracking.log_metrics(metrics)
        tracking.set_tags({f"download.source.{n}": d["source"] for n, d in report["datasets"].items()})
        tracking.log_artifact(REPORT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
