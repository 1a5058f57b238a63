"""`selfsup eval {davis,jhmdb,vip,fid}`: score a results folder with the official protocol.

    selfsup eval davis --root data/DAVIS --results results/davis [--set val] [--json scores.json]
    selfsup eval jhmdb --root data/jhmdb --results results/jhmdb [--split 1] [--grid-size 40]
    selfsup eval vip --root data/vip --results results/vip
    selfsup eval fid REAL_FOLDER FAKE_FOLDER [--kid] [--mode legacy|clean]

A folder that does not follow the result format (a missing frame, a colour PNG, the wrong size,
object ids the ground truth does not have, ...) stops with one line naming the file.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="metric", metavar="METRIC", required=True)

    p = sub.add_parser("davis", help="DAVIS-2017 semi-supervised J&F",
                       description="DAVIS J&F: global table, then one row per object <seq>_<k>.")
    p.add_argument("--root", required=True, help="DAVIS folder (JPEGImages, Annotations, ImageSets)")
    p.add_argument("--results", required=True, help="folder of <seq>/<frame>.png indexed PNGs")
    p.add_argument("--set", default="val", help="ImageSets/2017/<set>.txt (default val)")
    p.add_argument("--sequences", nargs="+", default=None, help="score only these sequences")
    p.add_argument("--workers", type=int, default=1, help="processes (sequences in parallel)")
    p.add_argument("--json", default=None, help="write the numbers here as JSON")

    p = sub.add_parser("jhmdb", help="JHMDB keypoint PCK",
                       description="PCK@0.1..0.5 (mean of per-joint PCK, frame 0 not scored).")
    p.add_argument("--root", required=True, help="JHMDB folder (Rename_Images, joint_positions, splits)")
    p.add_argument("--results", required=True, help="folder of <class>__<video>.npy (or .dat)")
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--grid-size", type=float, default=40.0,
                   help="prediction grid size (crop size / stride; 320/8 = 40 officially)")
    p.add_argument("--json", default=None)

    p = sub.add_parser("vip", help="VIP part mIoU", description="mIoU over the 20 VIP classes.")
    p.add_argument("--root", required=True, help="VIP_Fine folder (or a folder holding it)")
    p.add_argument("--results", required=True, help="folder of <video>/<frame>.png class-id PNGs")
    p.add_argument("--subset", default="val", help="lists/<subset>_videos.txt")
    p.add_argument("--json", default=None)

    # FID's options belong to selfsup.metrics.fid; it is imported only when this command runs
    p = sub.add_parser("fid", help="FID (pytorch-fid protocol) between two image folders",
                       add_help=False, prefix_chars="\0")
    p.add_argument("fid_args", nargs=argparse.REMAINDER, help="REAL FAKE [options]; see `selfsup eval fid -h`")


def _write_json(path: str | None, data: dict) -> None:
    if path:
        from ..io import write_json

        write_json(Path(path), data)


def main(args: argparse.Namespace) -> int:
    if args.metric == "davis":
        from .davis import evaluate_davis

        scores = evaluate_davis(args.root, args.results, args.set, sequences=args.sequences,
                                workers=args.workers, progress=True)
        print(scores.table())
        _write_json(args.json, scores.to_dict())
        return 0
    if args.metric == "jhmdb":
        from .pck import ALPHAS, evaluate_jhmdb

        out = evaluate_jhmdb(args.root, args.results, split=args.split, grid_size=args.grid_size)
        print(f"JHMDB split {args.split}: {out['videos']} videos")
        print("  ".join(f"PCK@{a:g} {out[f'PCK@{a:g}']:.2f}" for a in ALPHAS))
        per = out["per_joint"]
        for joint in per["PCK@0.1"]:
            values = [per[f"PCK@{a:g}"][joint] for a in ALPHAS]
            print(f"  {joint:>15}: " + "  ".join("  n/a" if v is None else f"{v:6.2f}" for v in values))
        _write_json(args.json, out)
        return 0
    if args.metric == "vip":
        from .miou import evaluate_vip

        out = evaluate_vip(args.root, args.results, subset=args.subset)
        print(f"VIP {args.subset}: {out['videos']} videos, {out['frames']} frames: mIoU {out['mIoU']:.2f}")
        for name, v in out["per_class"].items():
            print(f"  {name:>14}: " + ("   n/a" if v is None else f"{v:6.2f}"))
        _write_json(args.json, out)
        return 0
    if args.metric == "fid":
        from . import fid

        parser = argparse.ArgumentParser(prog="selfsup eval fid",
                                         description="FID between two image folders (pytorch-fid protocol)")
        fid.configure_cli(parser)
        return int(fid.main_cli(parser.parse_args(args.fid_args)) or 0)
    raise ValueError(f"unknown metric {args.metric!r}")
