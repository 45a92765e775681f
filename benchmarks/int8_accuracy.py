"""Real INT8 accuracy: srquant methods (simulation and exported ONNX in ONNX Runtime and OpenVINO) against ONNX
Runtime's own quantize_static and NNCF, all at W8A8 with every layer quantized (or ``--scope body``: head and tail
in float on both sides), on Set5/Set14/B100.

    python benchmarks/int8_accuracy.py --model imdn --scale 4 --weights ../shared/weights/imdn_x4.pth \\
        --methods minmax,brecq --ort --out runs/int8_accuracy/imdn_x4

Each srquant method is calibrated with ``scope="all"`` and ``act_points="runtime"`` (the simulation rounds every
tensor ONNX Runtime rounds), exported with :func:`srquant.export.export_onnx` and evaluated twice: the PyTorch
simulation and the ONNX file in ONNX Runtime. ``--ort`` adds ort-minmax, ort-percentile and ort-entropy
(evaluated in ONNX Runtime; with ``--scope body`` their head and tail convolutions are left in float through
``nodes_to_exclude``). ``--option method.key=value`` sets a method option (e.g. ``brecq.iters=400``); a method
written with its options, ``nncf[preset=mixed,fast_bias_correction=false]``, runs beside the plain ``nncf``.
``--runtimes onnxruntime,openvino`` evaluates srquant's exports and NNCF's files in each (the ``ort-*`` files run in
ONNX Runtime only).
Every finished method is cached as ``OUT/<label>.json``, so a rerun resumes (at the same ``--optimization`` level,
which ``OUT/optimization.txt`` records); the table goes to ``OUT/table.md``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import yaml

import srquant
from srquant.data import BenchmarkFolder
from srquant.evaluate import calibration_batch, evaluate, model_predictor
from srquant.export import OrtRunner, export_onnx, open_runner
from srquant.export.runtime import DEFAULT_OPT, OPT_LEVELS
from srquant.methods import config_class
from srquant.results import ResultRecord, read_results, write_results, write_text_atomic

from common import SHARED

ORT_METHODS = ("ort-minmax", "ort-percentile", "ort-entropy")


def method_options(items: list[str]) -> dict[str, dict]:
    options: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, field = key.rpartition(".")
        if not sep or not dot:
            raise SystemExit(f"--option takes method.key=value, got {item!r}")
        options.setdefault(method, {})[field.replace("-", "_")] = yaml.safe_load(value)
    return options


def split_top(text: str) -> list[str]:
    """Split on commas outside brackets."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [p for p in parts + [current] if p]


def split_method(spec: str) -> tuple[str, dict]:
    """``nncf[preset=mixed,ignored_types=[Pow,Sqrt]]`` -> ("nncf", {"preset": "mixed", "ignored_types": [...]})."""
    name, _, rest = spec.partition("[")
    options = {}
    for item in split_top(rest[:-1] if rest.endswith("]") else rest):
        key, _, value = item.partition("=")
        options[key.replace("-", "_")] = yaml.safe_load(value)
    return name, options


def method_label(method: str, options: dict) -> str:
    """The method's name with its options, e.g. ``brecq[init=minmax]`` (list values joined by ``+``): the table row
    and cache name."""
    def text(v):
        return "+".join(map(str, v)) if isinstance(v, list) else v

    return method + ("[" + ",".join(f"{k}={text(v)}" for k, v in sorted(options.items())) + "]" if options else "")


PEERS = ("ort-", "nncf")  # methods whose result is an ONNX file of another tool


def run_method(method: str, model, calib, datasets, out: Path, options: dict, progress: bool,
               scope: str = "all", optimization: str = DEFAULT_OPT,
               runtimes: tuple[str, ...] = ("onnxruntime",)) -> list[ResultRecord]:
    """Calibrate ``method`` at W8A8 over ``scope``, evaluate the simulation and the ONNX file in each runtime."""
    label = method_label(method, options)
    info = model.sr_info
    fields = dict(w_bits=8, a_bits=8, scope=scope, **options)
    if method.startswith(PEERS):
        fields["optimization"] = optimization
    elif method != "int8":
        fields["act_points"] = "runtime"
    config = config_class(method)(**fields)
    start = time.perf_counter()
    qmodel = srquant.quantize(model, config, calib)
    calib_s = time.perf_counter() - start
    common = dict(model=info.name, method=label, w_bits=8, a_bits=8, scope=scope, calib_seconds=calib_s,
                  config=config.to_dict(), progress=progress)
    records = []
    onnx_path = out / f"{info.name}_x{info.scale}_{label}.onnx"
    if method.startswith(PEERS):
        qmodel.save_onnx(onnx_path)
    else:
        records += evaluate(model_predictor(qmodel, info), datasets, backend="torch", **common)
        export_onnx(qmodel, onnx_path)
    for runtime in ("onnxruntime",) if method.startswith("ort-") else runtimes:  # ONNX Runtime's own files: ORT only
        runner = OrtRunner(onnx_path, optimization=optimization) if runtime == "onnxruntime" else open_runner(onnx_path, runtime)
        records += evaluate(model_predictor(runner, info), datasets, backend=runtime, **common)
    return records


def table(records: list[ResultRecord]) -> str:
    datasets = list(dict.fromkeys(r.dataset for r in records))
    fp = {r.dataset: r.psnr_y for r in records if r.method == "fp32"}
    head = ("| method | backend | " + " | ".join(f"{d} PSNR / SSIM" for d in datasets) +
            " | average | Set5 vs FP32 | calib s |\n|---|---|" + "---:|" * (len(datasets) + 3))
    rows: dict[tuple[str, str], dict[str, ResultRecord]] = {}
    for r in records:
        rows.setdefault((r.method, r.backend), {})[r.dataset] = r
    lines = [head]
    for (method, backend), cells in rows.items():
        vals = [f"{cells[d].psnr_y:.3f} / {cells[d].ssim_y:.4f}" for d in datasets]
        avg = sum(cells[d].psnr_y for d in datasets) / len(datasets)
        first = next(iter(cells.values()))
        delta = f"{cells['Set5'].psnr_y - fp['Set5']:+.3f}" if "Set5" in cells and "Set5" in fp else "-"
        calib = f"{first.calib_seconds:.0f}" if first.calib_seconds is not None else "-"
        lines.append(f"| {method} | {backend} | " + " | ".join(vals) + f" | {avg:.3f} | {delta} | {calib} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="imdn")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--weights", help="checkpoint (default: the embedded weights)")
    p.add_argument("--methods", default="minmax", help="comma-separated methods, each optionally with options in "
                                                        "brackets: int8,nncf,nncf[preset=mixed]")
    p.add_argument("--ort", action="store_true", help="add ort-minmax, ort-percentile, ort-entropy")
    p.add_argument("--runtimes", default="onnxruntime", help="runtimes that run each ONNX file: onnxruntime,openvino")
    p.add_argument("--option", action="append", default=[], help="method.key=value (repeatable)")
    p.add_argument("--datasets", nargs="+", default=["Set5", "Set14", "B100"])
    p.add_argument("--calib", type=Path, default=SHARED / "data" / "calib" / "SunHays80")
    p.add_argument("--n-calib", type=int, default=32)
    p.add_argument("--scope", choices=["all", "body"], default="all", help="layers quantized, for every method")
    p.add_argument("--optimization", default=DEFAULT_OPT, choices=sorted(OPT_LEVELS),
                   help="ONNX Runtime graph optimization level of every ONNX Runtime evaluation")
    p.add_argument("--out", type=Path, required=True, help="folder for the ONNX files, cached results and table.md")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    torch.set_num_threads(2)
    model = srquant.create(args.model, args.scale, weights=args.weights, pretrained=args.weights is None)
    datasets = [BenchmarkFolder(SHARED / "data" / "benchmarks" / d, args.scale) for d in args.datasets]
    calib = calibration_batch(model.sr_info, args.calib, args.n_calib, 48, 0)
    options = method_options(args.option)
    methods = ["fp32"] + split_top(args.methods) + (list(ORT_METHODS) if args.ort else [])
    runtimes = tuple(r for r in args.runtimes.split(",") if r)
    args.out.mkdir(parents=True, exist_ok=True)
    level_file = args.out / "optimization.txt"  # the cached results hold for one ONNX Runtime level
    if level_file.exists() and level_file.read_text().strip() != args.optimization:
        raise SystemExit(f"{args.out} holds results at ONNX Runtime level {level_file.read_text().strip()!r}, not "
                         f"{args.optimization!r}: pass that level or another --out")
    write_text_atomic(level_file, args.optimization + "\n")
    records: list[ResultRecord] = []
    failures: list[str] = []
    for spec in methods:
        method, inline = split_method(spec)
        method_opts = {**options.get(method, {}), **inline}
        cache = args.out / f"{method_label(method, method_opts)}.json"
        if cache.exists():
            records += read_results(cache)
            continue
        label = method_label(method, method_opts)
        if method == "fp32":
            got = evaluate(model_predictor(model, model.sr_info), datasets, model=model.sr_info.name,
                           progress=not args.quiet)
        else:
            try:
                got = run_method(method, model, calib, datasets, args.out, method_opts, not args.quiet,
                                 args.scope, args.optimization, runtimes)
            except Exception as err:  # noqa: BLE001 - a peer tool that fails on a model is a result, not a stop
                failures.append(f"{label} failed: {type(err).__name__}: {str(err).strip().splitlines()[-1][:200]}")
                print(failures[-1], file=sys.stderr, flush=True)
                continue
        write_results(cache, got)
        records += got
        print(f"{label}: done", file=sys.stderr, flush=True)
    layers = "all layers" if args.scope == "all" else "body scope (head and tail in float)"
    head = f"{args.model} x{args.scale}, W8A8, {layers}, runtime points, ONNX Runtime {args.optimization}"
    text = head + "\n\n" + table(records) + "".join(f"\n{f}\n" for f in failures)
    write_text_atomic(args.out / "table.md", text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
