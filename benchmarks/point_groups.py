"""Where the W8A8 all-layer loss comes from: the simulation with one group of runtime quantization points off.

    python benchmarks/point_groups.py --model imdn --scale 4 --weights ../shared/weights/imdn_x4.pth

Quantizes every layer at W8A8 with MinMax ranges and runtime points (what ONNX Runtime rounds), then evaluates
Set5 with everything quantized, with each group of points in float (grouped by the op that produces the tensor,
e.g. every ``cat`` or every conv output named ``c``), and with float weights. A group whose removal recovers most of
the loss is the one to fix; a loss spread over every group has no single culprit.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

import torch

import srquant
from srquant.data import BenchmarkFolder
from srquant.evaluate import calibration_batch, evaluate, model_predictor
from srquant.methods import config_class
from srquant.quant.model import quant_layers

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="imdn")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--weights", help="checkpoint (default: the embedded weights)")
    p.add_argument("--method", default="minmax")
    p.add_argument("--dataset", default="Set5")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    model = srquant.create(args.model, args.scale, weights=args.weights, pretrained=args.weights is None)
    info = model.sr_info
    calib = calibration_batch(info, SHARED / "data" / "calib" / "SunHays80", 32, 48, 0)
    config = config_class(args.method)(w_bits=8, a_bits=8, scope="all", act_points="runtime")
    qmodel = srquant.quantize(model, config, calib)
    datasets = [BenchmarkFolder(SHARED / "data" / "benchmarks" / args.dataset, args.scale)]

    def psnr(forward) -> float:
        return evaluate(model_predictor(forward, info), datasets, model=info.name, progress=False)[0].psnr_y

    groups: dict[str, list] = defaultdict(list)
    for point in qmodel.act_points.values():
        if point.primary:  # group by the producing op's name without its index: c, cat, mul, add, sqrt, ...
            groups[re.sub(r"[_\d]+$", "", point.tensor.split(":")[-1]) or "(unnamed)"].append(point.quantizer)
    fp, full = psnr(model), psnr(qmodel)
    print(f"{info.name} x{args.scale}, {args.method} W8A8, all layers, runtime points, {args.dataset}: "
          f"FP32 {fp:.3f}, quantized {full:.3f} ({full - fp:+.3f} dB)\n")
    print("| in float | points | PSNR | recovered dB |\n|---|---:|---:|---:|")
    for kind, quants in groups.items():
        for q in quants:
            q.mode = "off"
        value = psnr(qmodel)
        for q in quants:
            q.mode = "quant"
        print(f"| {kind} outputs | {len(quants)} | {value:.3f} | {value - full:+.3f} |")
    for _, layer in quant_layers(qmodel):
        layer.weight_quant.mode = "off"
    value = psnr(qmodel)
    print(f"| weights | {len(list(quant_layers(qmodel)))} layers | {value:.3f} | {value - full:+.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
