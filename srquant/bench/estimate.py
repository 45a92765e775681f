"""Estimate what a sweep costs before running it: CPU seconds (one thread) per cell, from short measurements
(``srquant bench CONFIG --estimate [--models imdn_x4] [--methods minmax,mse]``).

Measures, with ``time.process_time`` (CPU time, so a busy machine slows the command but not the numbers much):
evaluation of each model on Set5 (FP32, MinMax W4A4, bicubic) scaled to the sweep's datasets by their LR pixel count, and
the calibration of each method variant exactly as configured (its options, its lowest bit width) on the first model,
scaled to the other models by their FP32 evaluation cost, and its quantized model's evaluation relative to MinMax's
(DFSQ's dynamic quantizers and ONNX Runtime models run at other speeds). Prints a table and the projected total; a cell running
with 2 threads is assumed 1.7x faster than on one.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ..api import quantize
from ..data.benchmark import BenchmarkFolder
from ..evaluate import bicubic_predictor, calibration_batch, evaluate, model_predictor
from ..methods import MinMaxConfig, config_class
from ..models import create
from .config import SweepConfig, expand

TWO_THREAD_SPEEDUP = 1.7


def cpu_seconds(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def lr_pixels(folder: BenchmarkFolder) -> int:
    from PIL import Image

    s = folder.scale
    return sum((w // s) * (h // s) for w, h in (Image.open(p).size for p in folder.paths))


def estimate_sweep(sweep: SweepConfig, set5_root: str | Path) -> float:
    """Print the measured costs and a table of CPU seconds per model; returns the total (one thread). ``set5_root``:
    the Set5 benchmark folder every measurement evaluates on."""
    torch.set_num_threads(1)
    models, variants = sweep.models, sweep.methods
    c = sweep.calib

    eval_cost, set5_quant = {}, {}
    for m in models:
        model = create(m.name, m.scale, weights=m.weights, pretrained=m.weights is None, **m.kwargs)
        set5 = BenchmarkFolder(set5_root, m.scale)
        ratio = sum(lr_pixels(BenchmarkFolder(d, m.scale)) for d in sweep.datasets) / lr_pixels(set5)
        fp32 = cpu_seconds(lambda: evaluate(model_predictor(model, model.sr_info), [set5], model=m.label, progress=False))
        calib = calibration_batch(model.sr_info, c.folder, c.n, c.patch, c.seed, c.grayscale)
        try:
            qmodel = quantize(model, MinMaxConfig(w_bits=4, a_bits=4, scope=sweep.scope), calib)
            quant = cpu_seconds(lambda: evaluate(model_predictor(qmodel, model.sr_info), [set5], model=m.label, progress=False))
        except Exception as err:  # noqa: BLE001 - a model the quantizer cannot handle yet: take the FP32 cost
            print(f"{m.label}: MinMax W4A4 failed ({type(err).__name__}: {err}); quantized evaluation taken as FP32's")
            quant = fp32
        bicubic = cpu_seconds(lambda: evaluate(bicubic_predictor(m.scale), [set5], model=m.label, progress=False))
        eval_cost[m.label] = (fp32 * ratio, quant * ratio, bicubic * ratio)
        set5_quant[m.label] = quant
        print(f"{m.label}: evaluation on the sweep's datasets ({ratio:.1f}x Set5): FP32 {fp32 * ratio:.0f} s, "
              f"W4A4 {quant * ratio:.0f} s, bicubic {bicubic * ratio:.0f} s", flush=True)

    first = models[0]
    model = create(first.name, first.scale, weights=first.weights, pretrained=first.weights is None, **first.kwargs)
    calib = calibration_batch(model.sr_info, c.folder, c.n, c.patch, c.seed, c.grayscale)
    set5 = [BenchmarkFolder(set5_root, first.scale)]
    calib_cost, eval_factor = {}, {}
    for v in variants:
        w, a = min(v.bits or sweep.bits)
        config = config_class(v.method)(w_bits=w, a_bits=a, scope=v.scope or sweep.scope, seed=c.seed, **v.options)
        start = time.process_time()
        qmodel = quantize(model, config, calib)
        calib_cost[v.label] = time.process_time() - start
        quant = cpu_seconds(lambda: evaluate(model_predictor(qmodel, model.sr_info), set5, model=first.label, progress=False))
        eval_factor[v.label] = quant / set5_quant[first.label]
        print(f"{v.label}: on {first.label} at W{w}A{a}: calibration {calib_cost[v.label]:.1f} s, evaluation "
              f"{eval_factor[v.label]:.2f}x MinMax's", flush=True)

    print("\n| model | cells | CPU s (one thread) |\n|---|---|---|")
    total = 0.0
    for m in models:
        fp32, quant, bicubic = eval_cost[m.label]
        scale = fp32 / eval_cost[first.label][0]
        cells = [cell for cell in expand(sweep) if cell.model == m and cell.name in calib_cost | {"fp32": 0, "bicubic": 0}]
        cost = sum(fp32 if cell.method == "fp32" else bicubic if cell.method == "bicubic" else quant * eval_factor[cell.name] + calib_cost[cell.name] * scale
                   for cell in cells)
        total += cost
        print(f"| {m.label} | {len(cells)} | {cost:.0f} |")
    print(f"\ntotal {total:.0f} CPU s = {total / 60:.0f} min on one thread, about {total / TWO_THREAD_SPEEDUP / 60:.0f} min with "
          f"one 2-thread worker")
    return total

