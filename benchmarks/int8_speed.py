"""FP32 PyTorch vs FP32 and INT8 (srquant export) in ONNX Runtime and OpenVINO, timed side by side in one run.

    python benchmarks/int8_speed.py --model imdn --scale 4 --weights ../shared/weights/imdn_x4.pth
    python benchmarks/int8_speed.py --model pan --scale 4 --weights ../shared/weights/pan_x4.pth --ort-baseline

One LR input of --size x --size pixels (cut from a calibration image and shrunk with MATLAB bicubic, so that
models like PAN see natural statistics), the same for every backend; each backend gets --warmup runs, then the
--repeats timed runs are interleaved across backends (one run of each in turn) so that load changes on a shared
machine hit all of them alike; medians are reported. The INT8 model is srquant's runtime-point simulation
(``act_points="runtime"``, all layers, --method) exported to ONNX QDQ; ``--ort-baseline`` adds ONNX Runtime's own
quantize_static (ort-minmax) for comparison, ``--nncf`` NNCF's file at its most accurate setting found
(``preset=mixed, range_estimator=minmax``, docs/int8.md) in each runtime; ``--unpadded`` the same export without padding narrow convs (see
:func:`srquant.export.export_onnx`). ``--optimization extended,all`` times every ONNX Runtime model at each
graph optimization level in the same run; the INT8 ratios are taken against the fastest FP32 ONNX Runtime level, so
a level that helps FP32 more than INT8 cannot flatter the INT8 figure. Where OpenVINO is installed (``pip install
'srquant[openvino]'``; ``--no-openvino`` skips it) the FP32 and INT8 files also run in OpenVINO, and the ratios are
against the fastest FP32 runtime of all. The CPU's model name and its 8-bit dot-product flags are printed with the
figures (ONNX Runtime's and OpenVINO's integer kernels depend on them). After the timings: which ops ONNX Runtime
runs after graph optimization (at the last level given), which stay float and their share of kernel time.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import srquant
from srquant.data import sample_lr_patches
from srquant.evaluate import prepare_input
from srquant.export import OrtRunner, export_float_onnx, export_onnx, op_report
from srquant.export.openvino import OpenVinoRunner, openvino_available
from srquant.export.runtime import DEFAULT_OPT, OPT_LEVELS, cpu_description, cpu_has_vnni
from srquant.methods import NncfConfig, OrtMinMaxConfig, config_class
from srquant.results import write_text_atomic

from common import SHARED, lr_input, timeit


def tag(name: str, level: str, levels: list[str]) -> str:
    """A backend's row name, with its optimization level when several are timed."""
    return f"{name} [{level}]" if len(levels) > 1 else name


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="imdn")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--weights", help="checkpoint (default: the model's embedded weights)")
    p.add_argument("--size", type=int, default=256, help="LR input height and width")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--optimization", default=DEFAULT_OPT,
                   help="ONNX Runtime graph optimization level(s), comma list of basic, extended, all")
    p.add_argument("--method", default="int8", help="srquant calibration method of the INT8 model")
    p.add_argument("--w-bits", type=int, nargs="+", default=None,
                   help="weight bits of the INT8 models (default: 8, plus 7 on CPUs without VNNI, where 8-bit codes "
                        "are stored as uint8 to avoid the saturating U8S8 kernels and 7-bit codes run U8S8)")
    p.add_argument("--calib", type=Path, default=SHARED / "data" / "calib" / "SunHays80")
    p.add_argument("--n-calib", type=int, default=32)
    p.add_argument("--ort-baseline", action="store_true", help="also time ONNX Runtime's quantize_static (ort-minmax)")
    p.add_argument("--nncf", action="store_true",
                   help="also time NNCF's file (preset=mixed, range_estimator=minmax) in each runtime")
    p.add_argument("--unpadded", action="store_true",
                   help="also time the export without padding narrow convs to 16 filters (pad_out_channels=0)")
    p.add_argument("--no-openvino", action="store_true", help="time ONNX Runtime only")
    p.add_argument("--out", type=Path, help="keep the ONNX files here (default: a temporary folder)")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    levels = [lvl for lvl in args.optimization.split(",") if lvl]
    if not levels or any(lvl not in OPT_LEVELS for lvl in levels):
        p.error(f"--optimization takes levels from {sorted(OPT_LEVELS)}, got {args.optimization!r}")

    torch.set_num_threads(args.threads)
    vnni = cpu_has_vnni()
    w_bits_list = args.w_bits or ([8] if vnni else [8, 7])
    model = srquant.create(args.model, args.scale, weights=args.weights, pretrained=args.weights is None)
    info = model.sr_info
    calib_src = args.calib if args.calib.exists() else None
    if calib_src is None:
        from srquant.data.benchmark import DEMO_CALIB_FILES, demo_image_dir

        calib_src = [demo_image_dir() / f for f in DEMO_CALIB_FILES]
    calib = prepare_input(sample_lr_patches(calib_src, args.n_calib, 48, args.scale, seed=0).patches, info)
    x = lr_input(info, args.size, args.calib if args.calib.exists() else None)

    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="srquant-bench-")
        out = Path(tmp.name)
    else:
        out = args.out
        out.mkdir(parents=True, exist_ok=True)
    fp_path = export_float_onnx(model, out / f"{args.model}_x{args.scale}_fp32.onnx")
    backends = {"torch fp32": model}
    backends.update({tag("ort fp32", lvl, levels): OrtRunner(fp_path, args.threads, lvl) for lvl in levels})
    openvino = openvino_available() and not args.no_openvino
    if openvino:
        backends["openvino fp32"] = OpenVinoRunner(fp_path, args.threads)
    qmodels, int8_paths, calib_s = {}, {}, {}
    for w_bits in w_bits_list:
        config = config_class(args.method)(w_bits=w_bits, a_bits=8, scope="all", act_points="runtime")
        start = time.perf_counter()
        qmodels[w_bits] = srquant.quantize(model, config, calib)
        calib_s[w_bits] = time.perf_counter() - start
        stem = out / f"{args.model}_x{args.scale}_int8_{args.method}_w{w_bits}a8"
        int8_paths[w_bits] = export_onnx(qmodels[w_bits], f"{stem}.onnx")
        variants = {"srquant": int8_paths[w_bits]}
        if args.unpadded:
            variants["srquant, unpadded"] = export_onnx(qmodels[w_bits], f"{stem}_unpadded.onnx", pad_out_channels=0)
        for label, path in variants.items():
            for lvl in levels:
                backends[tag(f"ort int8 W{w_bits}A8 ({label})", lvl, levels)] = OrtRunner(path, args.threads, lvl)
            if openvino:
                backends[f"openvino int8 W{w_bits}A8 ({label})"] = OpenVinoRunner(path, args.threads)
    ort_q = None
    if args.ort_baseline:
        ort_q = srquant.quantize(model, OrtMinMaxConfig(scope="all", threads=args.threads), calib)
        for lvl in levels:
            backends[tag("ort int8 (quantize_static)", lvl, levels)] = OrtRunner(ort_q.onnx_path, args.threads, lvl)
    nncf_q = None
    if args.nncf:
        nncf_q = srquant.quantize(model, NncfConfig(preset="mixed", range_estimator="minmax", threads=args.threads), calib)
        for lvl in levels:
            backends[tag("ort int8 (nncf)", lvl, levels)] = OrtRunner(nncf_q.onnx_path, args.threads, lvl)
        if openvino:
            backends["openvino int8 (nncf)"] = OpenVinoRunner(nncf_q.onnx_path, args.threads)

    rng = info.input_range

    def psnr(a, b):
        mse = float(((a.clamp(0, rng) - b.clamp(0, rng)) / rng).pow(2).mean())
        return 10 * np.log10(1 / mse) if mse > 0 else float("inf")

    print(f"{args.model} x{args.scale}, LR {args.size}x{args.size}, {args.threads} threads, ORT {', '.join(levels)}, "
          f"CPU VNNI: {vnni}; INT8 = srquant {args.method} runtime points, all layers")
    print(f"CPU: {cpu_description()}")
    with torch.no_grad():
        ref = model(x)
        for w_bits, qmodel in qmodels.items():
            sim, real = qmodel(x), backends[tag(f"ort int8 W{w_bits}A8 (srquant)", levels[-1], levels)](x)
            print(f"W{w_bits}A8 (calibrated in {calib_s[w_bits]:.1f} s): output PSNR vs FP32 on this input: simulation "
                  f"{psnr(sim, ref):.2f} dB, ONNX Runtime INT8 {psnr(real, ref):.2f} dB; sim vs ORT max |diff| "
                  f"{float((sim - real).abs().max()):.4g}")
    times = timeit(backends, x, args.repeats, args.warmup)
    med = {k: statistics.median(v) for k, v in times.items()}
    best_fp = min((k for k in med if k.startswith(("ort fp32", "openvino fp32"))), key=med.get)
    print(f"\n| backend | median s (of {args.repeats}) | vs torch fp32 | vs {best_fp} (fastest) |")
    print("|---|---:|---:|---:|")
    for name, t in med.items():
        print(f"| {name} | {t:.4f} | {med['torch fp32'] / t:.2f}x | {med[best_fp] / t:.2f}x |")

    result = {"model": args.model, "scale": args.scale, "size": args.size, "threads": args.threads,
              "cpu": cpu_description(),
              "optimization": levels, "cpu_vnni": vnni, "method": args.method,
              "median_s": med, "times_s": times, "int8_ops": {}}
    lvl = levels[-1]
    for w_bits, path in int8_paths.items():
        report = op_report(path, x, threads=args.threads, optimization=lvl, runs=2)
        print(f"\nW{w_bits}A8:")
        print(report.format())
        result["int8_ops"][f"W{w_bits}A8"] = report.to_dict()
    if ort_q is not None:
        base = op_report(ort_q.onnx_path, x, threads=args.threads, optimization=lvl, runs=2)
        print("\nONNX Runtime quantize_static model:")
        print(base.format())
        result["ort_baseline_ops"] = base.to_dict()
    if nncf_q is not None:
        report = op_report(nncf_q.onnx_path, x, threads=args.threads, optimization=lvl, runs=2)
        print("\nNNCF model:")
        print(report.format())
        result["nncf_ops"] = report.to_dict()
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
