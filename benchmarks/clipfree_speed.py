"""What the output clip costs at run time: clipped vs clip-free, FP32 and INT8 ONNX Runtime, timed side by side.

    python benchmarks/clipfree_speed.py --model rfdn
    python benchmarks/clipfree_speed.py --model imdn_rtc --size 320

Both variants share the weights; the INT8 models are ``fullint`` (W8A8 with VNNI, else W7A8: ONNX Runtime's U8S8
kernels saturate) calibrated on a few patches, read out dequantized (the uint8 readout of the accuracy study is a
reading convention, not a runtime op). One LR input for all backends; warm-up, then the timed runs interleaved across
backends (``timeit`` of benchmarks/common.py) so load changes on a shared machine hit them alike; medians.
After the timings: the kernel time of the Clip op in each graph ONNX Runtime runs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

import srquant
from srquant.data import sample_lr_patches
from srquant.evaluate import prepare_input
from srquant.export import OrtRunner, export_float_onnx, export_onnx, op_report
from srquant.export.runtime import cpu_has_vnni
from srquant.methods import FullIntConfig
from srquant.rd import model_variant
from srquant.results import write_text_atomic

from common import CLIPFREE_MODELS as MODELS, SHARED, lr_input, timeit


def clip_ms(path: Path, x: torch.Tensor, threads: int, optimization: str) -> tuple[int, float]:
    """Clip nodes ONNX Runtime runs for ``path`` and their kernel time per run."""
    stat = op_report(path, x, threads=threads, optimization=optimization, runs=3).ops.get("Clip")
    return (stat.count, stat.ms) if stat else (0, 0.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="rfdn", choices=list(MODELS))
    p.add_argument("--size", type=int, default=256, help="LR input height and width")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--optimization", default="extended", choices=["basic", "extended", "all"])
    p.add_argument("--calib", type=Path, default=SHARED / "data" / "calib" / "SunHays80")
    p.add_argument("--out", type=Path, help="keep the ONNX files here (default: a temporary folder)")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    scale, weights = MODELS[args.model]
    weights = str(weights) if weights is not None else None
    w_bits = 8 if cpu_has_vnni() else 7
    tmp = tempfile.TemporaryDirectory(prefix="srquant-clipfree-") if args.out is None else None
    out = Path(tmp.name) if tmp else args.out
    out.mkdir(parents=True, exist_ok=True)

    backends, paths = {}, {}
    for clip in (True, False):
        tag = "clip" if clip else "no-clip"
        model = model_variant(args.model, scale, weights, clip=clip)
        calib = prepare_input(sample_lr_patches(args.calib, 8, 48, scale, seed=0).patches, model.sr_info)
        qmodel = srquant.quantize(model, FullIntConfig(w_bits=w_bits, readout="dequant"), calib)
        paths[f"fp32 {tag}"] = export_float_onnx(model, out / f"{args.model}_x{scale}_{tag}_fp32.onnx")
        paths[f"int8 {tag}"] = export_onnx(qmodel, out / f"{args.model}_x{scale}_{tag}_int8.onnx")
    for name, path in paths.items():
        backends[name] = OrtRunner(path, args.threads, args.optimization)
    info = model.sr_info
    x = lr_input(info, args.size, args.calib if args.calib.exists() else None)

    times = timeit(backends, x, args.repeats, args.warmup)
    med = {k: statistics.median(v) for k, v in times.items()}
    clips = {k: clip_ms(path, x, args.threads, args.optimization) for k, path in paths.items()}
    print(f"{args.model} x{scale}, LR {args.size}x{args.size}, ONNX Runtime {args.optimization}, "
          f"{args.threads} threads, INT8 = fullint W{w_bits}A8")
    print(f"\n| backend | median s (of {args.repeats}) | Clip nodes | Clip ms/run |\n|---|---:|---:|---:|")
    for name, t in med.items():
        print(f"| {name} | {t:.4f} | {clips[name][0]} | {clips[name][1]:.2f} |")
    ratios = {
        "fp32 clip / fp32 no-clip": med["fp32 clip"] / med["fp32 no-clip"],
        "int8 clip / int8 no-clip": med["int8 clip"] / med["int8 no-clip"],
        "fp32 clip / int8 no-clip": med["fp32 clip"] / med["int8 no-clip"],
        "int8 clip / fp32 no-clip": med["int8 clip"] / med["fp32 no-clip"],
    }
    print("\n| ratio | value |\n|---|---:|")
    for name, r in ratios.items():
        print(f"| {name} | {r:.3f} |")
    if args.json:
        figures = {"model": args.model, "scale": scale, "size": args.size, "threads": args.threads,
                   "optimization": args.optimization, "w_bits": w_bits, "median_s": med, "times_s": times,
                   "ratios": ratios, "clip_ops": clips}
        write_text_atomic(args.json, json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
