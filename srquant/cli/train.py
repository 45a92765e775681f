"""``srquant train``: the small embedded-default models."""
from __future__ import annotations

import argparse
import json

from ..train import TrainConfig, train
from ..validate import check_image_folder, check_output_file
from .common import model_args


def add_commands(sub) -> None:
    p = sub.add_parser("train", help="train a small model (the embedded defaults) on a folder of HR images")
    model_args(p)
    p.add_argument("--data", required=True, help="folder of HR training images")
    p.add_argument("--out", required=True, help="where to write the state dict")
    p.add_argument("--iters", type=int, default=3000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patch", type=int, default=48, help="LR patch size")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> None:
    check_image_folder(args.data, "training folder (--data)")
    check_output_file(args.out, "--out")
    cfg = TrainConfig(args.model, args.scale, args.data, iters=args.iters, batch=args.batch, patch=args.patch, lr=args.lr, seed=args.seed)
    summary = train(cfg, args.out, progress=not args.quiet)
    print(json.dumps(summary, indent=2))
