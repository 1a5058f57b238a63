"""`selfsup propagate {davis,jhmdb,vip}`: propagate first-frame labels through every video of a set.

    selfsup propagate davis --checkpoint pretrained.pth --root data/DAVIS --out results/davis
    selfsup propagate jhmdb --model random --root data/jhmdb --out results/jhmdb
    selfsup propagate vip --model pixels --root data/vip --out results/vip --crop-size 560

Results are written in each set's official result format (DAVIS: indexed PNGs at the ground-truth
size; JHMDB: `<class>__<video>.npy`, 2×15×T grid units; VIP: class-id PNGs at the input size) and
scored with `selfsup eval <set>`. The output folder is replaced whole when the run succeeds.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from .propagate import PROTOCOLS

log = logging.getLogger(__name__)

MODELS = ("checkpoint", "imagenet", "random", "pixels")


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="set", metavar="SET", required=True)
    for name, help_text in (("davis", "DAVIS-2017 masks (J&F)"), ("jhmdb", "JHMDB keypoints (PCK)"),
                            ("vip", "VIP parts (mIoU)")):
        p = sub.add_parser(name, help=help_text, description=f"Propagate {help_text} from the first frame.")
        p.add_argument("--root", required=True, help="data set folder (or a folder holding it)")
        p.add_argument("--out", required=True, help="results folder (replaced when the run succeeds)")
        p.add_argument("--model", choices=MODELS, default=None,
                       help="checkpoint (CRW, official or selfsup layout; the default when --checkpoint "
                            "is given), imagenet (torchvision ResNet-18 weights in --checkpoint), random "
                            "(seeded random-init encoder; the architecture of --checkpoint if given), pixels")
        p.add_argument("--checkpoint", default=None, help="weights file for checkpoint / imagenet / random")
        p.add_argument("--seed", type=int, default=0, help="initialisation seed of --model random")
        p.add_argument("--pixel-colorspace", choices=["rgb", "lab"], default="rgb")
        default = PROTOCOLS[name]
        g = p.add_argument_group("protocol (defaults: the official settings for this set)")
        g.add_argument("--context", type=int, default=default["context"], help="short-term frames L")
        g.add_argument("--topk", type=int, default=10)
        g.add_argument("--radius", type=float, default=12.0, help="grid cells (keys with distance < R)")
        g.add_argument("--temperature", type=float, default=0.05)
        g.add_argument("--crop-size", type=int, default=default["crop_size"],
                       help="square input size; -1 = native frame size")
        g.add_argument("--no-pad-context", action="store_true",
                       help="do not prepend L copies of frame 0 to the context")
        g.add_argument("--radius-on-first-frame", action="store_true",
                       help="restrict the long-memory frame 0 to the radius too")
        g.add_argument("--hard-recurrence", action="store_true",
                       help="feed back one-hot argmax labels instead of soft labels")
        if name == "vip":
            g.add_argument("--label-resize-interp", choices=["linear", "nearest"], default="linear",
                           help="resize of the first label map to the crop (official: linear)")
        r = p.add_argument_group("what to run")
        if name == "davis":
            r.add_argument("--set", dest="image_set", default="val", help="ImageSets/2017/<set>.txt")
        elif name == "jhmdb":
            r.add_argument("--split", type=int, default=1)
        else:
            r.add_argument("--subset", default="val", help="lists/<subset>_videos.txt")
        r.add_argument("--videos", nargs="+", default=None,
                       help="only these sequences / videos (JHMDB: <class>__<video>)")
        r.add_argument("--device", default="auto", help="auto, cpu or cuda")
        r.add_argument("--batch-size", type=int, default=8, help="frames encoded at once")
        r.add_argument("--tile", type=int, default=8, help="query tile of the local-window correlation")
        r.add_argument("--json", default=None, help="also write the run's timing summary here")


def main(args: argparse.Namespace) -> int:
    from . import propagate as pg
    from .io import atomic_dir, write_json

    model = args.model or ("checkpoint" if args.checkpoint else None)
    if model is None:
        raise ValueError("give --checkpoint PATH or choose --model random / pixels")
    device = pg.resolve_device(args.device)
    extractor = pg.build_extractor(model, args.checkpoint, seed=args.seed, device=device,
                                   pixel_colorspace=args.pixel_colorspace)
    config = pg.PropagationConfig(context=args.context, topk=args.topk, radius=args.radius,
                                  temperature=args.temperature,
                                  pad_context_with_first_frame=not args.no_pad_context,
                                  radius_on_first_frame=args.radius_on_first_frame,
                                  soft_recurrence=not args.hard_recurrence, tile=args.tile)
    common = dict(device=device, batch_size=args.batch_size, crop_size=args.crop_size)
    log.info("propagating %s with %s on %s: %s", args.set, model, device, config)
    with atomic_dir(args.out) as tmp:
        if args.set == "davis":
            stats = pg.propagate_davis(extractor, args.root, tmp, config, set_name=args.image_set,
                                       sequences=args.videos, **common)
        elif args.set == "jhmdb":
            stats = pg.propagate_jhmdb(extractor, args.root, tmp, config, split=args.split,
                                       videos=args.videos, **common)
        else:
            stats = pg.propagate_vip(extractor, args.root, tmp, config, subset=args.subset,
                                     videos=args.videos, label_resize_interp=args.label_resize_interp,
                                     **common)
    stats = {"set": args.set, "model": model, "device": str(device), **stats}
    print(json.dumps(stats, indent=2))
    if args.json:
        write_json(Path(args.json), stats)
    return 0
