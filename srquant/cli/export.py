"""``srquant export`` (saved quantized model -> ONNX QDQ) and ``srquant ort-report`` (what ONNX Runtime runs)."""
from __future__ import annotations

import torch

from .. import api
from ..export.onnx_qdq import export_onnx
from ..export.runtime import DEFAULT_OPT, OPT_LEVELS, OrtRunner, op_report, smooth_input
from ..models import create
from ..models.from_file import create_from_file, is_model_file, parse_model_args
from ..validate import check_input_file, check_output_file


def add_commands(sub) -> None:
    """Register ``srquant export`` (saved quantized model -> ONNX QDQ) and ``srquant ort-report`` (what an
    ONNX file runs as in ONNX Runtime) on the CLI's subparsers."""
    p = sub.add_parser("export", help="export a saved quantized model (srquant quantize) to ONNX QDQ INT8")
    p.add_argument("artifact", help="model.pt written by `srquant quantize` (quantize with --option act_points=runtime "
                                    "for an all-integer graph)")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--format", default="onnx-int8", choices=["onnx-int8"], help="export format (ONNX QDQ, 8-bit)")
    p.add_argument("--weight-storage", default="auto", choices=["auto", "int8", "uint8"],
                   help="weight code type (auto: uint8 with zero point 128 where int8 kernels would saturate)")
    p.add_argument("--model", help="float architecture (a registered name or path/to/file.py:ClassName), for "
                                   "artifacts srquant cannot rebuild by name")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--weights", help="float checkpoint for --model")
    p.add_argument("--model-args", help="JSON object of constructor arguments for a model file")
    p.add_argument("--input-range", type=float, default=1.0, choices=[1.0, 255.0], help="pixel range of a model file")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--size", type=int, default=64, help="LR size of the check input (sim vs ONNX Runtime, op report)")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("ort-report", help="ops ONNX Runtime runs for an ONNX file, kernel time, float ops")
    p.add_argument("onnx", help="ONNX file")
    p.add_argument("--size", type=int, default=256, help="LR input height and width")
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--input-range", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--optimization", default=DEFAULT_OPT, choices=sorted(OPT_LEVELS))
    p.add_argument("--runs", type=int, default=3)
    p.set_defaults(func=_cmd_ort_report)


def _cmd_export(args) -> None:
    check_input_file(args.artifact, "model file")
    check_output_file(args.out, "--out")
    model = None
    if args.model and is_model_file(args.model):
        model = create_from_file(args.model, args.scale, args.weights, parse_model_args(args.model_args),
                                 args.input_range)
    elif args.model:
        model = create(args.model, args.scale, weights=args.weights)
    qmodel = api.load(args.artifact, model=model)
    path = export_onnx(qmodel, args.out, opset=args.opset, weight_storage=args.weight_storage)
    info = getattr(qmodel, "sr_info", None)
    x = smooth_input(1 if info is not None and info.color == "y" else 3, args.size, info.input_range if info else 1.0)
    with torch.no_grad():
        sim = qmodel(x)
    real = OrtRunner(path, threads=args.threads)(x)
    print(f"wrote {path}; simulation vs ONNX Runtime on a {args.size}px input: max |diff| "
          f"{float((sim - real).abs().max()):.4g} (output max {float(sim.abs().max()):.4g})")
    print(op_report(path, x, threads=args.threads).format())


def _cmd_ort_report(args) -> None:
    x = smooth_input(args.channels, args.size, args.input_range)
    print(op_report(args.onnx, x, threads=args.threads, optimization=args.optimization, runs=args.runs).format())
