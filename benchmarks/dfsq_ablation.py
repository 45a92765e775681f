"""DFSQ ablation in the layout of the paper's Table 1: channel-wise vs layer-wise points, with and without
per-sample/channel normalization (plus, optionally, the full-precision reference).

    python benchmarks/dfsq_ablation.py --model imdn --scale 4 --weights ../shared/weights/imdn_x4.pth --bits 4 \\
        [--datasets Set5 Set14] [--rows all|dfsq] [--calib-n 32] [--patch 48] [--set key=value ...]

``--rows dfsq`` runs only the method itself (channel-wise + normalization); ``--set`` overrides any DFSQConfig field
(e.g. ``--set selection=optimal --set calib_norm_group=4``). Prints the Markdown table, the calibration time of
each variant, and (with ``--json``) writes the rows.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import time
from pathlib import Path

import torch

import srquant
from srquant.analysis.dfsq_ablation import format_ablation, run_ablation
from srquant.data import BenchmarkFolder, sample_lr_patches
from srquant.evaluate import evaluate, model_predictor, prepare_input
from srquant.methods.dfsq import DFSQConfig, ablation_configs
from srquant.models import create

from common import SHARED


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--scale", type=int, required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--bits", type=int, nargs="+", default=[4], help="W=A bit widths")
    parser.add_argument("--w-bits", type=int, default=None, help="weight bits (default: same as --bits)")
    parser.add_argument("--datasets", nargs="+", default=["Set5"])
    parser.add_argument("--bench-root", default=str(SHARED / "data" / "benchmarks"))
    parser.add_argument("--calib", default=str(SHARED / "data" / "calib" / "SunHays80"))
    parser.add_argument("--calib-n", type=int, default=32)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", choices=["all", "dfsq"], default="all")
    parser.add_argument("--fp", action="store_true", help="also evaluate the float model")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="DFSQConfig override")
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args()

    model = create(args.model, args.scale, weights=args.weights)
    calib = prepare_input(sample_lr_patches(args.calib, args.calib_n, args.patch, args.scale, seed=args.seed).patches,
                          model.sr_info)
    datasets = [BenchmarkFolder(Path(args.bench_root) / d, args.scale) for d in args.datasets]
    overrides = dict(item.split("=", 1) for item in args.set)
    all_rows = []
    if args.fp:
        with torch.inference_mode():
            for r in evaluate(model_predictor(model, model.sr_info), datasets, model=args.model, progress=False):
                print(f"FP32 {r.dataset}: {r.psnr_y:.3f}/{r.ssim_y:.4f}", flush=True)
    for bits in args.bits:
        base = DFSQConfig(w_bits=args.w_bits or bits, a_bits=bits, seed=args.seed,
                          **{k: _value(v) for k, v in overrides.items()})
        if args.rows == "all":
            rows = run_ablation(model, calib, datasets, base, model_name=args.model)
        else:  # only the method's own row
            start = time.perf_counter()
            rows = []
            label, config = ablation_configs(base)[-1]
            qmodel, records = srquant.api.quantize_and_evaluate(model, config, calib, datasets, model=args.model,
                                                                progress=False)
            for r in records:
                rows.append({"label": label, "channelwise": True, "normalize": True, "dataset": r.dataset,
                             "psnr_y": r.psnr_y, "ssim_y": r.ssim_y, "calib_seconds": qmodel.calib_seconds})
            print(f"  (quantize + evaluate {time.perf_counter() - start:.1f} s)")
        print(f"\n{args.model} x{args.scale} W{base.w_bits}A{base.a_bits}  ({args.calib_n} patches {args.patch}px, "
              f"{', '.join(f'{k}={v}' for k, v in overrides.items()) or 'defaults'})")
        print(format_ablation(rows))
        for label in dict.fromkeys(r["label"] for r in rows):
            secs = next(r["calib_seconds"] for r in rows if r["label"] == label)
            print(f"  calibration {label}: {secs:.1f} s")
        all_rows += [{**r, "w_bits": base.w_bits, "a_bits": base.a_bits, "config": dataclasses.asdict(base)} for r in rows]
    if args.json:
        Path(args.json).write_text(json.dumps(all_rows, indent=1))


if __name__ == "__main__":
    main()
