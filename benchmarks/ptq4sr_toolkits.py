"""PTQ4SR's W8A8 comparison with 8-bit toolkits (supplement Table 1), rebuilt with the toolkit available here.

    python benchmarks/ptq4sr_toolkits.py --out runs/ptq4sr_toolkits
    python benchmarks/ptq4sr_toolkits.py --models imdn_x4 --datasets Set5 --n-calib 8 \\
        --option ptq4sr.iters_act=5 --option ptq4sr.iters_weight=5 --out /tmp/ptq4sr_smoke      # smoke run

Every layer at 8 bits (``scope="all"``) on IMDN x2/x4 and PAN x2/x4: srquant's DBDC and DBDC+PaC (``ptq4sr``) with
runtime quantization points, exported to INT8 ONNX and run in ONNX Runtime, against ONNX Runtime's own
quantize_static (MinMax, Percentile, Entropy) and FP32. Each model runs through ``benchmarks/int8_accuracy.py``
(calibration, export, evaluation, per-method cache in ``OUT/<model>/``; reuse an ``OUT`` only with the same
options); this script adds the models loop, the acceptance check (DBDC+PaC within 0.05 dB of FP32 on Set5 in ONNX
Runtime, and above every ONNX Runtime calibration on the average of the datasets) and ``OUT/results.json`` /
``OUT/table.md``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import int8_accuracy
from common import SHARED
from int8_accuracy import ORT_METHODS
from srquant.results import ResultRecord, read_results, write_results, write_text_atomic

MODELS = ("imdn_x2", "imdn_x4", "pan_x2", "pan_x4")
OURS = ("dbdc", "ptq4sr")
MAX_SET5_DROP = 0.05


def averages(records: list[ResultRecord]) -> dict[str, float]:
    """Average PSNR over the datasets per method, ONNX Runtime rows (and FP32) only."""
    got: dict[str, list[float]] = {}
    for r in records:
        if r.method == "fp32" or r.backend == "onnxruntime":
            got.setdefault(r.method, []).append(r.psnr_y)
    return {m: sum(v) / len(v) for m, v in got.items()}


def acceptance(records: list[ResultRecord]) -> list[str]:
    """One line per srquant method: Set5 drop against FP32 and margin over the best ONNX Runtime calibration."""
    set5 = {r.method: r.psnr_y for r in records if r.dataset == "Set5" and (r.method == "fp32" or r.backend == "onnxruntime")}
    avg = averages(records)
    ort = {m: avg[m] for m in ORT_METHODS if m in avg}
    best = max(ort, key=ort.get) if ort else None
    lines = []
    for method in (m for m in OURS if m in avg):
        parts = []
        if method in set5 and "fp32" in set5:
            drop = set5["fp32"] - set5[method]
            parts.append(f"Set5 drop {drop:.3f} dB ({'ok' if drop <= MAX_SET5_DROP else 'FAIL'}: <= {MAX_SET5_DROP})")
        if best:
            margin = avg[method] - ort[best]
            parts.append(f"average {margin:+.3f} dB vs the best ONNX Runtime row ({best}) ({'ok' if margin > 0 else 'FAIL'})")
        lines.append(f"- {method} (ONNX Runtime INT8): " + "; ".join(parts))
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated <name>_x<scale>; weights from "
                                                                "../shared/weights/<name>_x<scale>.pth")
    p.add_argument("--datasets", nargs="+", default=["Set5", "Set14", "B100"])
    p.add_argument("--calib", type=Path, default=SHARED / "data" / "calib" / "SunHays80")
    p.add_argument("--n-calib", type=int, default=32)
    p.add_argument("--option", action="append", default=[], help="method.key=value (repeatable), e.g. ptq4sr.iters_act=5")
    p.add_argument("--no-ort", action="store_true", help="skip ONNX Runtime's quantize_static rows")
    p.add_argument("--out", type=Path, required=True, help="folder: per-model ONNX files and caches, results.json, table.md")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    all_records: list[ResultRecord] = []
    text = "PTQ4SR toolkit comparison: W8A8, all layers; srquant rows exported to INT8 ONNX, all rows in ONNX Runtime\n"
    for label in [m for m in args.models.split(",") if m]:
        name, _, scale = label.rpartition("_x")
        if not name or not scale.isdigit():
            raise SystemExit(f"--models items look like imdn_x4, got {label!r}")
        out = args.out / label
        cmd = ["--model", name, "--scale", scale, "--weights", str(SHARED / "weights" / f"{label}.pth"),
               "--methods", ",".join(OURS), "--datasets", *args.datasets, "--calib", str(args.calib),
               "--n-calib", str(args.n_calib), "--out", str(out)]
        cmd += [] if args.no_ort else ["--ort"]
        cmd += [x for item in args.option for x in ("--option", item)] + (["--quiet"] if args.quiet else [])
        int8_accuracy.main(cmd)
        records = [r for f in ["fp32", *OURS, *([] if args.no_ort else ORT_METHODS)] for r in read_results(out / f"{f}.json")]
        all_records += records
        text += f"\n### {label}\n\n" + int8_accuracy.table(records) + "\n" + "\n".join(acceptance(records)) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    write_results(args.out / "results.json", all_records)
    write_text_atomic(args.out / "table.md", text)
    print(text, end="")
    print(f"wrote {args.out / 'results.json'} and {args.out / 'table.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
