"""Where the W8A8 loss comes from: the simulation with one group of activation quantization points off.

    python benchmarks/point_groups.py --model imdn --scale 4 --weights ../shared/weights/imdn_x4.pth
    python benchmarks/point_groups.py --model imdn_rtc --scale 2 --weights ../shared/weights/imdn_rtc_x2.pth --scope body

Quantizes at W8A8 with MinMax ranges and evaluates Set5 with everything quantized, with each group of activation
points in float, with every activation point in float, and with float weights. ``--scope all`` (default) uses
runtime points (what ONNX Runtime rounds), grouped by the op that produces the tensor (e.g. every ``cat`` or every
conv output named ``c``); ``--scope body`` quantizes layer inputs only, grouped by the layer's own name (e.g. every
block's ``c5``). A group whose removal recovers most of the loss is the one to fix; a loss spread over every group
has no single culprit.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict

import torch

import srquant
from srquant.data import BenchmarkFolder
from srquant.evaluate import calibration_batch, evaluate, model_predictor
from srquant.methods import config_class
from srquant.quant.walk import quant_layers

from common import SHARED


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="imdn")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--weights", help="checkpoint (default: the embedded weights)")
    p.add_argument("--method", default="minmax")
    p.add_argument("--scope", choices=["all", "body"], default="all",
                   help="all: every layer and runtime points; body: head and tail in float, layer inputs only")
    p.add_argument("--dataset", default="Set5")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    model = srquant.create(args.model, args.scale, weights=args.weights, pretrained=args.weights is None)
    info = model.sr_info
    calib = calibration_batch(info, SHARED / "data" / "calib" / "SunHays80", 32, 48, 0)
    config = config_class(args.method)(w_bits=8, a_bits=8, scope=args.scope,
                                       act_points="runtime" if args.scope == "all" else "inputs")
    qmodel = srquant.quantize(model, config, calib)
    datasets = [BenchmarkFolder(SHARED / "data" / "benchmarks" / args.dataset, args.scale)]

    def psnr(forward) -> float:
        return evaluate(model_predictor(forward, info), datasets, model=info.name, progress=False)[0].psnr_y

    groups: dict[str, list] = defaultdict(list)
    if args.scope == "all":
        for point in qmodel.act_points.values():
            if point.primary:  # group by the producing op's name without its index: c, cat, mul, add, sqrt, ...
                kind = re.sub(r"[_\d]+$", "", point.tensor.split(":")[-1]) or "(unnamed)"
                groups[f"{kind} outputs"].append(point.quantizer)
    else:
        for name, layer in quant_layers(qmodel):  # group by the layer's own name: every block's c5, ...
            groups[f"{name.rsplit('.', 1)[-1]} inputs"].append(layer.input_quant)
    groups["every activation point"] = [q for quants in list(groups.values()) for q in quants]
    fp, full = psnr(model), psnr(qmodel)
    where = "all layers, runtime points" if args.scope == "all" else "body, layer inputs"
    print(f"{info.name} x{args.scale}, {args.method} W8A8, {where}, {args.dataset}: "
          f"FP32 {fp:.3f}, quantized {full:.3f} ({full - fp:+.3f} dB)\n")
    print("| in float | points | PSNR | recovered dB |\n|---|---:|---:|---:|")
    for kind, quants in groups.items():
        for q in quants:
            q.mode = "off"
        value = psnr(qmodel)
        for q in quants:
            q.mode = "quant"
        print(f"| {kind} | {len(quants)} | {value:.3f} | {value - full:+.3f} |")
    for _, layer in quant_layers(qmodel):
        layer.weight_quant.mode = "off"
    value = psnr(qmodel)
    print(f"| weights | {len(list(quant_layers(qmodel)))} layers | {value:.3f} | {value - full:+.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
