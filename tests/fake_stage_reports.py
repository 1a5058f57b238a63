"""Small stand-ins for the JSON reports of the adapt, ttt, test_time and baselines stages.

Same layouts as the stages write (stages/adapt.py, stages/ttt.py, stages/test_time.py,
stages/baselines.py), with round numbers the tests can look for.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def crw_report() -> dict[str, Any]:
    """reports/test_time/crw.json of the adapt stage (with the stream switched on)."""
    return {
        "davis": {
            "frozen": {"J&F-Mean": 0.48, "J-Mean": 0.46, "F-Mean": 0.5},
            "adapted": {"J&F-Mean": 0.52, "J-Mean": 0.5, "F-Mean": 0.54},
            "gain": 0.04,
            "seconds_per_video": {"frozen": 1.5, "adapted": 4.0, "adaptation_only": 2.5},
            "videos": 2,
            "per_sequence": {"seq0": {"frozen": 0.4, "adapted": 0.45, "frozen_seconds": 1.4, "adapt_seconds": 2.4,
                                      "propagate_seconds": 1.6, "adapt_first_loss": 2.0, "adapt_last_loss": 1.8}},
            "variants": {"statistics_only": {"J&F-Mean": 0.5, "J-Mean": 0.49, "F-Mean": 0.51,
                                             "seconds_per_video": 1.9}},
        },
        "stream": {"videos": 2, "total": 2, "running": 0.5, "frozen_running": 0.48, "gain": 0.02,
                   "seconds_per_video": 3.25},
        "stream_curve": [{"position": 0, "video": "seq0", "score": 0.48}],
    }


def ttt_report() -> dict[str, Any]:
    """reports/test_time/ttt.json of the ttt stage."""
    return {
        "clean": {"baseline": 0.9, "standard": 0.91, "online": 0.92, "rotation_accuracy": 0.8,
                  "standard_seconds_per_image": 0.01, "online_seconds_per_image": 0.02},
        "shifts": {"gaussian_noise@5": {"baseline": 0.42, "standard": 0.61, "online": 0.64,
                                        "rotation_accuracy": 0.55, "standard_seconds_per_image": 0.01,
                                        "online_seconds_per_image": 0.02}},
        "mean": {"baseline": 0.42, "standard": 0.61, "online": 0.64},
        "test_images": 100,
        "train": {"accuracy": 0.95, "rotation_accuracy": 0.85, "epochs": 10, "images": 2000,
                  "test_accuracy": 0.9, "test_rotation_accuracy": 0.8},
    }


def merged_report() -> dict[str, Any]:
    """reports/test_time.json: what stages.test_time.merged_metrics makes of the two above."""
    crw = crw_report()
    return {"crw_adapt": {"davis": crw["davis"]}, "stream": crw["stream"], "ttt": ttt_report()}


def _model(jf: float, pck: float, miou: float, p1: float) -> dict[str, Any]:
    return {"width": 0.125,
            "propagation": {"davis": {"J&F-Mean": jf, "J-Mean": jf - 0.01, "F-Mean": jf + 0.01},
                            "jhmdb": {"PCK@0.1": pck, "PCK@0.2": pck + 20}, "vip": {"mIoU": miou}},
            "probe": {"orientation": 60.0, "colour": 40.0},
            "retrieval": {"esvm": {"P@1": p1, "P@5": p1 - 10}, "cosine": {"P@1": p1 - 5, "P@5": p1 - 15}},
            "seconds": 12.0}


def baselines_report() -> dict[str, Any]:
    """reports/baselines.json of the baselines stage."""
    simclr = {**_model(0.35, 30.0, 20.0, 70.0), "training": {"steps": 200, "loss": 3.1, "accuracy": 0.4,
                                                             "seconds": 50.0}}
    no_crop = {**_model(0.31, 28.0, 18.0, 60.0), "propagation": {"davis": {"J&F-Mean": 0.31, "J-Mean": 0.3,
                                                                           "F-Mean": 0.32}}}
    return {"baselines": {
        "settings": {"width": 0.125, "videos": 2, "sets": ["davis", "jhmdb", "vip"], "ablation_sets": ["davis"],
                     "top_k": [1, 5], "augmentations": ["crop", "flip"]},
        "chance": {"orientation": 25.0, "colour": 16.7},
        "retrieval": {"queries": 8, "collection": 40, "objects": 8},
        "models": {"pixels": _model(0.2, 20.0, 10.0, 50.0), "random": _model(0.25, 22.0, 12.0, 55.0),
                   "exemplar": _model(0.3, 25.0, 15.0, 65.0), "simclr": simclr,
                   "colorization": _model(0.33, 27.0, 17.0, 66.0), "crw": _model(0.45, 35.0, 25.0, 80.0)},
        "ablation": {"all (crop, flip)": {**simclr, "propagation": {"davis": simclr["propagation"]["davis"]}},
                     "− crop": no_crop},
        "seconds": {"training": 100.0, "evaluation": 50.0, "total": 150.0},
        "checkpoints": {"simclr": "models/baselines/simclr/checkpoint.pt"},
    }}


def write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path
