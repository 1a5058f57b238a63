"""The `clips` stage: training videos → clip index and uint8 frame cache (`clips.out`).

    python -m stages.clips        (params: the `clips` section of params.yaml)

Writes `clips.out` (frames.npy, videos.parquet, clips.parquet, meta.json) and reports/clips.json
(videos found / read / skipped with reasons, frames, clips, bytes, seconds). Broken videos are
skipped and listed; the stage fails only when no clip at all is left.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from selfsup.data.video import build_clip_cache
from selfsup.io import write_json
from stages.common import params, setup_logging
from stages.tracking import stage_run

log = logging.getLogger("stages.clips")

REPORT = Path("reports/clips.json")


def main() -> int:
    setup_logging()
    p = params()
    cfg = p.clips
    with stage_run("clips", cfg) as run:
        try:
            summary = build_clip_cache(cfg.videos, cfg.out, fps=cfg.fps, short_side=cfg.short_side,
                                       clip_len=cfg.clip_len, cache_frames=cfg.cache_frames,
                                       extensions=cfg.extensions, progress=True)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: clips: {exc}", file=sys.stderr)
            return 2
        report = summary.as_dict()
        report.update({"videos_dir": cfg.videos, "out": cfg.out, "fps": cfg.fps,
                       "short_side": cfg.short_side, "clip_len": cfg.clip_len,
                       "cache_frames": cfg.cache_frames})
        write_json(REPORT, report)
        run.log_metrics({k: report[k] for k in ("videos_found", "videos_read", "videos_skipped",
                                                 "frames", "clips", "bytes", "seconds")})
        run.set_tags({"clips.skipped": ", ".join(s.video for s in summary.skipped)[:4000]})
        run.log_artifact(REPORT)
    if summary.clips == 0:
        print(f"error: clips: no clip of {cfg.clip_len} frames in {summary.videos_found} videos under "
              f"{cfg.videos} (see {REPORT})", file=sys.stderr)
        return 1
    log.info("clips: %d clips from %d of %d videos -> %s", summary.clips, summary.videos_read,
             summary.videos_found, cfg.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
