"""`selfsup translate train|test`: CUT / FastCUT / SinCUT from the command line.

    selfsup translate train --dataroot datasets/horse2zebra --out models/h2z_cut --mode cut
    selfsup translate test --checkpoint checkpoints/horse2zebra_cut_pretrained/latest_net_G.pth \\
        --input datasets/horse2zebra/testA --out results/h2z_cut

Training defaults are the paper's (epochs from the mode, 286 → 256 crops, batch 1); `--steps` and
`--steps-decay` switch the schedule to optimisation steps. Training resumes from `<out>/latest.pt`.
"""
from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="translate_command", metavar="train|test")
    sub.required = True
    tr = sub.add_parser("train", help="train a model on <dataroot>/{trainA,trainB}")
    tr.add_argument("--dataroot", required=True, help="folder holding trainA/ and trainB/ (testA/ for visuals)")
    tr.add_argument("--out", required=True, help="checkpoint folder (latest.pt, latest_net_{G,D,F}.pth)")
    tr.add_argument("--mode", choices=["cut", "fastcut", "sincut"], default="cut")
    tr.add_argument("--load-size", type=int, default=None, help="resize before cropping (default 286; SinCUT unused)")
    tr.add_argument("--crop-size", type=int, default=256)
    tr.add_argument("--ngf", type=int, default=None, help="generator width (default: the mode's)")
    tr.add_argument("--ndf", type=int, default=None, help="discriminator width (default: the mode's)")
    tr.add_argument("--n-layers-d", type=int, default=3,
                    help="PatchGAN depth (receptive field 16/34/70 px for 1/2/3; ResNet modes)")
    tr.add_argument("--n-blocks", type=int, default=9, help="residual blocks of the ResNet generator")
    tr.add_argument("--num-patches", type=int, default=None, help="patches per NCE layer (default: the mode's)")
    tr.add_argument("--lambda-nce", type=float, default=None, help="default: 1 (CUT), 10 (FastCUT), 4 (SinCUT)")
    tr.add_argument("--lr", type=float, default=None)
    tr.add_argument("--epochs", type=int, default=None, help="epochs at constant lr (default: the mode's)")
    tr.add_argument("--epochs-decay", type=int, default=None, help="epochs of linear decay (default: the mode's)")
    tr.add_argument("--steps", type=int, default=None, help="count the schedule in steps: steps at constant lr")
    tr.add_argument("--steps-decay", type=int, default=None, help="steps of linear decay (with --steps)")
    tr.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (schedule unchanged)")
    tr.add_argument("--crop-in-decay", action="store_true", help="keep random crops in the decay phase")
    tr.add_argument("--no-flip", action="store_true", help="no horizontal flip augmentation")
    tr.add_argument("--checkpoint-every", type=int, default=5000)
    tr.add_argument("--log-every", type=int, default=100)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--device", default="auto", help="auto, cpu or cuda")
    tr.add_argument("--no-bf16", action="store_true", help="fp32 on GPU too")
    tr.add_argument("--preload", action="store_true", help="decode every training image once, keep it in memory")
    tr.add_argument("--restart", action="store_true", help="ignore an existing latest.pt and start over")

    te = sub.add_parser("test", help="translate every image of a folder into PNGs")
    te.add_argument("--checkpoint", required=True,
                    help="official *_net_G.pth or a selfsup latest.pt")
    te.add_argument("--input", required=True, help="folder of input images (e.g. <dataroot>/testA)")
    te.add_argument("--out", required=True, help="output folder: <stem>.png per input")
    te.add_argument("--size", type=int, default=256, help="resize inputs to size×size bicubic (official test)")
    te.add_argument("--keep-size", action="store_true", help="no resize; sides rounded to a multiple of 4 (SinCUT)")
    te.add_argument("--num-test", type=int, default=None, help="only the first N inputs (default: all)")
    te.add_argument("--round", action="store_true", help="round to uint8 instead of truncating")
    te.add_argument("--device", default="auto")


def _train(args: argparse.Namespace) -> int:
    from .model import CUTConfig
    from .train import TrainConfig, train

    if (args.steps is None) != (args.steps_decay is None):
        raise ValueError("--steps and --steps-decay go together")
    if args.steps is not None and (args.epochs is not None or args.epochs_decay is not None):
        raise ValueError("use either --steps/--steps-decay or --epochs/--epochs-decay")
    model = CUTConfig(mode=args.mode, ngf=args.ngf, ndf=args.ndf, n_layers_D=args.n_layers_d,
                      n_blocks=args.n_blocks,
                      num_patches=args.num_patches, lambda_NCE=args.lambda_nce, lr=args.lr,
                      bf16=not args.no_bf16)
    by_steps = args.steps is not None
    cfg = TrainConfig(
        dataroot=args.dataroot, out_dir=args.out, model=model,
        load_size=args.load_size if args.load_size is not None else 286, crop_size=args.crop_size,
        flip=not args.no_flip, crop_in_decay=args.crop_in_decay,
        schedule_unit="step" if by_steps else "epoch",
        n_const=args.steps if by_steps else args.epochs, n_decay=args.steps_decay if by_steps else args.epochs_decay,
        seed=args.seed, device=args.device, preload=args.preload, checkpoint_every=args.checkpoint_every,
        log_every=args.log_every, max_steps=args.max_steps)
    train(cfg, resume=not args.restart)
    log.info("checkpoints in %s", args.out)
    return 0


def _test(args: argparse.Namespace) -> int:
    from .infer import load_generator, translate_folder
    from .train import resolve_device

    device = resolve_device(args.device)
    gen, mode = load_generator(args.checkpoint, map_location="cpu")
    size = None if args.keep_size or mode == "sincut" else args.size
    written = translate_folder(gen, args.input, args.out, size=size, device=device,
                               rounding="round" if args.round else "truncate", num_test=args.num_test)
    print(f"{len(written)} images written to {args.out}")
    return 0


def main(args: argparse.Namespace) -> int:
    if args.translate_command == "train":
        return _train(args)
    return _test(args)
