"""``srquant eval``: a model, bicubic or an ONNX file on benchmark folders."""
from __future__ import annotations

import argparse
import json

from ..errors import ConfigError
from ..evaluate import bicubic_predictor, evaluate, model_predictor
from ..export.runtime import open_runner
from ..results import write_results
from ..validate import check_data_folders, check_input_file, check_output_file, check_scale
from .common import benchmark_folders, build_model, data_args, model_args, print_table


def add_commands(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a model (or `--model bicubic`, or an ONNX file) on benchmark folders")
    model_args(p, None)
    data_args(p)
    p.add_argument("--onnx", help="evaluate this ONNX file (from `srquant export` / `srquant int8`, or a foreign file "
                                  "with --scale and optionally --model for its input range and colour mode)")
    p.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "openvino"], help="runtime for --onnx")
    p.add_argument("--threads", type=int, default=2, help="runtime threads")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> None:
    check_data_folders(args.data, None if args.onnx else args.scale)
    if args.json:
        check_output_file(args.json, "--json")
    if args.onnx:
        check_input_file(args.onnx, "--onnx file")
    else:
        args.model = args.model or "abpn"  # the embedded default; with --onnx, --model only describes a foreign file
        if args.model == "bicubic":
            check_scale(args.scale, None, "bicubic")
    kwargs = dict(channel=args.channel, shave=args.shave, gray=args.gray, progress=not args.quiet)
    datasets = None if args.onnx else benchmark_folders(args, args.scale)
    if args.onnx:
        runner = open_runner(args.onnx, args.runtime, threads=args.threads)
        info = runner.sr_info(args.scale, args.model if args.model and args.model != "bicubic" else None)
        predict, name, backend = model_predictor(runner, info), info.name, runner.backend
        try:
            config = json.loads(runner.metadata().get("srquant_config", "{}"))
        except ValueError:
            raise ConfigError(f"{args.onnx}: its srquant_config metadata is not valid JSON") from None
        kwargs.update(method=config.get("method", "onnx"), w_bits=config.get("w_bits"), a_bits=config.get("a_bits"),
                      scope=config.get("scope"), config=config or None)
        datasets = benchmark_folders(args, info.scale)
    elif args.model == "bicubic":
        predict, name, backend = bicubic_predictor(args.scale), "bicubic", "numpy"
        kwargs["method"] = "bicubic"
    else:
        model = build_model(args)
        predict, name, backend = model_predictor(model, model.sr_info), model.sr_info.name, "torch"
    records = evaluate(predict, datasets, model=name, backend=backend, **kwargs)
    print_table(records)
    if args.json:
        write_results(args.json, records)
        print(f"wrote {args.json}")
