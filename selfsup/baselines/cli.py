"""`selfsup retrieve`: rank a folder of images by similarity to a query image.

    selfsup retrieve --checkpoint models/baselines/simclr/checkpoint.pt --query q.png --collection photos/ --top 10

The collection is encoded once (layer3 features of the checkpoint's encoder, average pooled to a
grid) and cached under --cache-dir, keyed by the checkpoint's SHA-256 and the file list. The
default ranking is the query's Exemplar-SVM (the query and jittered copies of it against the whole
collection); `--method cosine` ranks by cosine similarity, `--method both` prints both.
`--checkpoint pixels` uses raw pixels (average pooled to stride 8) instead of a network.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="encoder checkpoint (any layout `selfsup propagate` loads), or 'pixels'")
    parser.add_argument("--query", required=True, help="query image file")
    parser.add_argument("--collection", required=True, help="folder of images to rank (searched recursively)")
    parser.add_argument("--top", type=int, default=10, help="results to print (default 10)")
    parser.add_argument("--method", choices=["esvm", "cosine", "both"], default="esvm")
    parser.add_argument("--jitter", type=int, default=8,
                        help="jittered copies of the query added as SVM positives (default 8; 0 = the query alone)")
    parser.add_argument("--size", type=int, default=64, help="images are resized to size x size (default 64)")
    parser.add_argument("--grid", type=int, default=2,
                        help="feature map average pooled to grid x grid (default 2; 1 = global average)")
    parser.add_argument("--c-positive", type=float, default=0.5, help="SVM C of the positives (default 0.5)")
    parser.add_argument("--c-negative", type=float, default=0.01, help="SVM C of the negatives (default 0.01)")
    parser.add_argument("--cache-dir", default=None,
                        help="descriptor cache (default $XDG_CACHE_HOME/selfsup/retrieval or ~/.cache/...)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the descriptor cache")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--json", action="store_true", help="print the rankings as JSON")


def main(args: argparse.Namespace) -> int:
    import torch

    from ..propagate import build_extractor
    from .retrieval import (DescriptorConfig, ExemplarSVMConfig, default_cache_dir, describe, encode_collection,
                            model_identity, query_jitter, rank_cosine, rank_esvm, read_images)

    if args.top < 1:
        raise ValueError(f"--top must be >= 1, got {args.top}")
    if args.jitter < 0:
        raise ValueError(f"--jitter must be >= 0, got {args.jitter}")
    query_path = Path(args.query)
    if not query_path.is_file():
        raise FileNotFoundError(f"{query_path}: query image not found")
    config = DescriptorConfig(size=args.size, grid=args.grid)
    svm = ExemplarSVMConfig(c_positive=args.c_positive, c_negative=args.c_negative)
    if args.checkpoint == "pixels":
        extractor, model_id = build_extractor("pixels"), "pixels"
    else:
        extractor = build_extractor("checkpoint", args.checkpoint, device=args.device)
        model_id = model_identity(args.checkpoint)
    cache_dir = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    folder = Path(args.collection)
    files, collection, cached = encode_collection(extractor, folder, model_id=model_id, config=config,
                                                  cache_dir=cache_dir)
    log.info("%d images in %s (%s)", len(files), folder, "cached descriptors" if cached else "encoded")
    query_image = read_images([query_path], args.size)[0]
    query = describe(extractor, query_image[None], args.grid)[0]
    rankings = {}
    with torch.no_grad():
        if args.method in ("esvm", "both"):
            jitter = query_jitter(query_image, args.jitter)
            extra = describe(extractor, jitter, args.grid) if len(jitter) else None
            rankings["esvm"] = rank_esvm(query, collection, extra, svm)
        if args.method in ("cosine", "both"):
            rankings["cosine"] = rank_cosine(query, collection)
    top = min(args.top, len(files))
    if args.json:
        out = {m: [{"rank": r + 1, "score": float(scores[i]), "path": str(files[i])}
                   for r, i in enumerate(order[:top])] for m, (order, scores) in rankings.items()}
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for method, (order, scores) in rankings.items():
        title = "Exemplar-SVM decision value" if method == "esvm" else "cosine similarity"
        print(f"# {method}: top {top} of {len(files)} by {title}")
        for r, i in enumerate(order[:top]):
            print(f"{r + 1:>4}  {scores[i]:+.4f}  {files[i]}")
    return 0
