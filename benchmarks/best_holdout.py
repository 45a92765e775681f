"""Choose `best`'s settings without test images: score a method's options on held-out calibration images.

    python benchmarks/best_holdout.py --model imdn --scale 4 --weights ../shared/weights/imdn_x4.pth --bits 4 \\
        --opts '{"iters": 120}' --log runs/best/holdout.jsonl

The model is calibrated on the usual 32 SunHays80 patches of 48 px (seed 0). Those patches come from 32 of the 50
images; the other 18 images are the held-out split: one 64 px LR patch from each (seed 123), scored as the mean
Y-PSNR against its HR crop (border shave = scale). Set5 / Set14 / B100 take no part. Each run appends one JSON line
(options, calibration seconds, held-out PSNR of FP32 and of the quantized model) to ``--log``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import srquant
from srquant.data.calib import sample_lr_patches
from srquant.data.images import list_images, read_image
from srquant.evaluate import calibration_batch, prepare_input
from srquant.methods import build_config
from srquant.metrics import psnr

from common import SHARED

N_CALIB = 32  # the patches calibration uses; their images are never held out


def held_out_split(folder: Path, scale: int, patch: int = 64, seed: int = 123) -> tuple[np.ndarray, list[np.ndarray]]:
    """LR patches and HR crops from the images the default calibration (32 patches, seed 0) does not visit."""
    paths = list_images(folder)
    order = np.random.default_rng(0).permutation(len(paths))  # the visiting order of sample_lr_patches(seed=0)
    held = [paths[int(k)] for k in order[N_CALIB:]]
    lr = sample_lr_patches(held, len(held), patch, scale, seed=seed)
    hr = []
    for source in lr.sources:
        name, where = source.split("@")
        top, left = map(int, where.split(","))
        hr.append(read_image(folder / name)[top : top + patch * scale, left : left + patch * scale])
    return lr.patches, hr


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="imdn")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--weights", help="checkpoint (default: the embedded weights)")
    p.add_argument("--method", default="best")
    p.add_argument("--bits", type=int, default=4, help="weight and activation bits (opts may override)")
    p.add_argument("--opts", default="{}", help="method options as JSON")
    p.add_argument("--n-calib", type=int, default=N_CALIB)
    p.add_argument("--calib", type=Path, default=SHARED / "data" / "calib" / "SunHays80")
    p.add_argument("--log", type=Path, required=True)
    args = p.parse_args(argv)

    torch.set_num_threads(2)
    model = srquant.create(args.model, args.scale, weights=args.weights, pretrained=args.weights is None)
    info = model.sr_info
    calib = calibration_batch(info, args.calib, args.n_calib, 48, 0)
    lr, hr = held_out_split(args.calib, args.scale)
    x = prepare_input(lr, info)

    def score(m: torch.nn.Module) -> float:
        with torch.no_grad():
            out = torch.cat([m(x[i : i + 6]) for i in range(0, len(x), 6)]).clamp(0, 1)
        sr = (out * 255).round().permute(0, 2, 3, 1).numpy().astype(np.uint8)
        return float(np.mean([psnr(s, h, shave=args.scale) for s, h in zip(sr, hr)]))

    opts = json.loads(args.opts)
    config = build_config(args.method, {"w_bits": args.bits, "a_bits": args.bits, **opts}, "--opts")
    start = time.perf_counter()
    qmodel = srquant.quantize(model, config, calib)
    seconds = time.perf_counter() - start
    row = {"model": f"{args.model}_x{args.scale}", "method": args.method, "bits": args.bits, "n_calib": args.n_calib,
           "opts": opts, "seconds": round(seconds, 1), "held_fp32": round(score(model), 3),
           "held_quant": round(score(qmodel), 3)}
    print(json.dumps(row))
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with open(args.log, "a") as f:
        f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
