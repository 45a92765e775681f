"""Mixed precision under a size budget against uniform widths, with the same method and calibration patches.

    python benchmarks/mixed_precision.py --model imdn --scale 4 --weights ../shared/weights/imdn_x4.pth \\
        --method mse --avg-bits 4 --out runs/mixed_precision/imdn_x4_mse

Each quantizable layer's sensitivity is the output MSE against the float model on the calibration patches with only
that layer quantized by ``--method`` at W``b``A``b`` (b in ``--candidates``); :func:`srquant.quant.mixed_precision.
allocate_bits` then picks the widths whose size-weighted average weight and activation bits stay within
``--avg-bits`` (head and tail included: every layer is a candidate). No test image takes part in any choice. The
mixed model and the uniform W``avg``A``avg`` model are quantized by ``--method`` and evaluated on Set5 / Set14 /
B100 at the end. Sensitivities are cached in ``OUT/sensitivity.json`` (a rerun reuses them), the allocation in
``OUT/allocation.json``, the table in ``OUT/table.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import srquant
from srquant.data import BenchmarkFolder
from srquant.evaluate import calibration_batch, evaluate, model_predictor
from srquant.methods import config_class
from srquant.quant.mixed_precision import (CANDIDATE_BITS, allocate_bits, average_bits, bit_overrides, layer_costs,
                                           layer_sensitivities)
from srquant.quant.scope import plan
from srquant.results import write_text_atomic

from common import SHARED



def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="imdn")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--weights", help="checkpoint (default: the embedded weights)")
    p.add_argument("--method", default="mse")
    p.add_argument("--avg-bits", type=float, default=4.0, help="budget of the average weight and activation bits")
    p.add_argument("--candidates", default=",".join(map(str, CANDIDATE_BITS)))
    p.add_argument("--datasets", nargs="+", default=["Set5", "Set14", "B100"])
    p.add_argument("--calib", type=Path, default=SHARED / "data" / "calib" / "SunHays80")
    p.add_argument("--n-calib", type=int, default=32)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    torch.set_num_threads(2)
    candidates = tuple(int(b) for b in args.candidates.split(","))
    model = srquant.create(args.model, args.scale, weights=args.weights, pretrained=args.weights is None)
    info = model.sr_info
    calib = calibration_batch(info, args.calib, args.n_calib, 48, 0)
    Config = config_class(args.method)
    layers = list(plan(model, "all", 8, 8))
    args.out.mkdir(parents=True, exist_ok=True)

    with torch.no_grad():
        reference = model(calib)

    def output_mse(qmodel: torch.nn.Module) -> float:
        with torch.no_grad():
            return float((qmodel(calib) - reference).pow(2).mean())

    sens_path = args.out / "sensitivity.json"
    cached = json.loads(sens_path.read_text()) if sens_path.exists() else {}
    if cached.get("method") == args.method and cached.get("candidates") == list(candidates):
        sens = {n: {int(b): v for b, v in row.items()} for n, row in cached["layers"].items()}
    else:
        quantized = {b: srquant.quantize(model, Config(w_bits=b, a_bits=b, scope="all"), calib) for b in candidates}
        sens = layer_sensitivities(quantized, layers, output_mse, progress=not args.quiet)
        write_text_atomic(sens_path, json.dumps({"method": args.method, "candidates": list(candidates),
                                                  "layers": sens}, indent=1))
    costs = layer_costs(model, calib[:1], layers)
    bits = allocate_bits(sens, costs, args.avg_bits)
    w_avg, a_avg = average_bits(bits, costs)
    write_text_atomic(args.out / "allocation.json", json.dumps({"avg_w_bits": w_avg, "avg_a_bits": a_avg,
                                                                 "bits": bits}, indent=1))

    datasets = [BenchmarkFolder(SHARED / "data" / "benchmarks" / d, args.scale) for d in args.datasets]
    uniform = int(args.avg_bits)
    rows = [("fp32", model, 32.0, 32.0),
            (f"{args.method} W{uniform}A{uniform}",
             srquant.quantize(model, Config(w_bits=uniform, a_bits=uniform, scope="all"), calib), uniform, uniform),
            (f"{args.method} mixed (budget {args.avg_bits:g})",
             srquant.quantize(model, Config(w_bits=8, a_bits=8, scope="all", overrides=bit_overrides(bits)), calib),
             w_avg, a_avg)]
    lines = [f"{args.model} x{args.scale}, every layer quantized, {args.n_calib} calibration patches",
             "", "| model | avg W bits | avg A bits | " + " | ".join(args.datasets) + " | average |",
             "|---|---:|---:|" + "---:|" * (len(args.datasets) + 1)]
    for label, m, w, a in rows:
        psnr = [r.psnr_y for r in evaluate(model_predictor(m, info), datasets, model=info.name, progress=not args.quiet)]
        lines.append(f"| {label} | {w:.2f} | {a:.2f} | " + " | ".join(f"{v:.3f}" for v in psnr) +
                     f" | {sum(psnr) / len(psnr):.3f} |")
    counts = {b: sum(v == b for v in bits.values()) for b in candidates}
    lines += ["", "layers per width: " + ", ".join(f"{b} bits: {c}" for b, c in counts.items())]
    text = "\n".join(lines) + "\n"
    write_text_atomic(args.out / "table.md", text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
