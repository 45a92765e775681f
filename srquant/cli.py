"""The ``srquant`` command line: models, eval, quantize, export, bench, train (and the methods' own tools)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .data.benchmark import BenchmarkFolder


def _datasets(args: argparse.Namespace, scale: int) -> list[BenchmarkFolder]:
    if not args.data:
        return [BenchmarkFolder.demo(scale)]
    return [BenchmarkFolder(d, scale) for d in args.data]


def _build_model(args: argparse.Namespace):
    from .models import create, get_spec, list_models

    spec = get_spec(args.model)
    if args.weights is None and args.scale not in spec.default_weights:
        embedded = [f"{n} x{s}" for n in list_models() for s in get_spec(n).default_weights]
        raise SystemExit(f"srquant: {spec.name} x{args.scale} has no embedded weights; pass --weights (embedded: {', '.join(embedded)})")
    return create(args.model, args.scale, weights=args.weights, pretrained=args.weights is None)


def _print_table(records) -> None:
    from .results import markdown_table

    print(markdown_table(records), end="")


def cmd_models(args: argparse.Namespace) -> None:
    from .models import get_spec, list_models

    for name in list_models(args.filter):
        spec = get_spec(name)
        embedded = ",".join(f"x{s}" for s in spec.default_weights) or "-"
        scales = ",".join(f"x{s}" for s in spec.scales)
        print(f"{name:16s} scales {scales:10s} range [0,{spec.input_range:g}] {spec.color:3s} embedded {embedded:8s} {spec.description}")


def cmd_eval(args: argparse.Namespace) -> None:
    from .evaluate import bicubic_predictor, evaluate, model_predictor
    from .results import write_results

    kwargs = dict(channel=args.channel, shave=args.shave, gray=args.gray, progress=not args.quiet)
    datasets = None if args.onnx else _datasets(args, args.scale)
    if args.onnx:
        from .export import OrtRunner

        runner = OrtRunner(args.onnx, threads=args.threads)
        info = runner.sr_info(args.scale)
        predict, name, backend = model_predictor(runner, info), info.name, "onnxruntime"
        config = json.loads(runner.metadata().get("srquant_config", "{}"))
        kwargs.update(method=config.get("method"), w_bits=config.get("w_bits"), a_bits=config.get("a_bits"),
                      scope=config.get("scope"), config=config or None)
        datasets = _datasets(args, info.scale)
    elif args.model == "bicubic":
        predict, name, backend = bicubic_predictor(args.scale), "bicubic", "numpy"
        kwargs["method"] = "bicubic"
    else:
        model = _build_model(args)
        predict, name, backend = model_predictor(model, model.sr_info), model.sr_info.name, "torch"
    records = evaluate(predict, datasets, model=name, backend=backend, **kwargs)
    _print_table(records)
    if args.json:
        write_results(args.json, records)
        print(f"wrote {args.json}")


def _method_config(args: argparse.Namespace):
    import yaml

    from .methods import config_class

    fields = yaml.safe_load(open(args.config)) if args.config else {}
    for item in args.option or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--option takes key=value, got {item!r}")
        fields[key.replace("-", "_")] = yaml.safe_load(value)
    fields.update(w_bits=args.w_bits, a_bits=args.a_bits, scope=args.scope, seed=args.seed)
    return config_class(args.method)(**fields)


def cmd_quantize(args: argparse.Namespace) -> None:
    from . import api
    from .evaluate import calibration_batch, evaluate, model_predictor
    from .results import markdown_table, write_results, write_text_atomic

    config = _method_config(args)
    if args.clip_output is None:
        model = _build_model(args)
    else:
        from .rd import model_variant

        model = model_variant(args.model, args.scale, args.weights, clip=args.clip_output == "on")
    info = model.sr_info
    out = Path(args.out)
    artifact, inputs_file = out / "model.pt", out / "inputs.json"
    inputs = {k: getattr(args, k) for k in ("model", "scale", "weights", "clip_output", "calib", "calib_gray",
                                            "n_calib", "patch", "seed", "rd")}
    inputs["config"] = config.to_dict()
    same = artifact.exists() and inputs_file.exists() and json.loads(inputs_file.read_text()) == inputs
    if same and not args.force:
        print(f"reusing {artifact} (same model, calibration data and config; --force recalibrates)")
        qmodel = api.load(artifact, model=model)
    else:
        if args.rd:  # whole LR images (srquant rd select / enhance output)
            from .rd import load_rd, quantize_rd

            qmodel = quantize_rd(model, config, load_rd(args.rd, args.scale, gray=args.calib_gray).values())
        else:
            calib = calibration_batch(info, args.calib, args.n_calib, args.patch, args.seed, args.calib_gray)
            qmodel = api.quantize(model, config, calib)
        api.save(qmodel, artifact)
        write_text_atomic(inputs_file, json.dumps(inputs, indent=2, default=str) + "\n")
        print(f"calibrated {config.method} W{config.w_bits}A{config.a_bits} in {qmodel.calib_seconds:.1f} s -> {artifact}")
    datasets = _datasets(args, args.scale)
    common = dict(channel=args.channel, shave=args.shave, gray=args.gray, progress=not args.quiet, model=info.name)
    records = evaluate(model_predictor(model, info), datasets, **common)
    records += evaluate(
        model_predictor(qmodel, info), datasets, method=config.method, w_bits=config.w_bits, a_bits=config.a_bits,
        scope=config.scope, calib_seconds=getattr(qmodel, "calib_seconds", None), config=config.to_dict(), **common,
    )
    table = markdown_table(records)
    print(table, end="")
    write_text_atomic(out / "results.md", table)
    write_results(args.json or out / "results.json", records)
    print(f"wrote {out / 'results.md'} and {args.json or out / 'results.json'}")


def cmd_train(args: argparse.Namespace) -> None:
    from .train import TrainConfig, train

    cfg = TrainConfig(args.model, args.scale, args.data, iters=args.iters, batch=args.batch, patch=args.patch, lr=args.lr, seed=args.seed)
    summary = train(cfg, args.out, progress=not args.quiet)
    print(json.dumps(summary, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srquant", description="Post-training quantization of super-resolution networks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the registered architectures")
    p.add_argument("filter", nargs="?", default="*", help="glob pattern on model names")
    p.set_defaults(func=cmd_models)

    def model_args(p: argparse.ArgumentParser, default_model: str | None = "abpn") -> None:
        p.add_argument("--model", default=default_model, help="registered model name (see `srquant models`)")
        p.add_argument("--scale", type=int, default=4)
        p.add_argument("--weights", help="checkpoint; default: the model's embedded weights")

    def data_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", action="append", help="benchmark folder (repeatable); default: scikit-image demo photos")
        p.add_argument("--channel", choices=["y", "rgb"], default="y", help="metric channel (default: MATLAB Y)")
        p.add_argument("--shave", type=int, help="border cut before the metric (default: the scale)")
        p.add_argument("--gray", choices=["native", "rgb2y"], default="rgb2y", help="how single-channel HR images are scored on Y")
        p.add_argument("--json", help="write the result schema here")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("eval", help="evaluate a model (or `--model bicubic`, or an ONNX file) on benchmark folders")
    model_args(p)
    data_args(p)
    p.add_argument("--onnx", help="evaluate this ONNX file in ONNX Runtime (e.g. from `srquant export`)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads")
    p.set_defaults(func=cmd_eval)

    from .methods import method_names

    p = sub.add_parser("quantize", help="calibrate a quantized model, evaluate it against FP32, save it")
    model_args(p)
    p.add_argument("--method", default="mse", choices=method_names())
    p.add_argument("--w-bits", type=int, default=8)
    p.add_argument("--a-bits", type=int, default=8)
    p.add_argument("--scope", default="body", choices=["body", "all-ends8", "all"])
    p.add_argument("--calib", help="folder of HR calibration images (default: scikit-image sample photos)")
    p.add_argument("--calib-gray", action="store_true", help="grayscale calibration patches")
    p.add_argument("--rd", help="folder of whole LR representative images (srquant rd select/enhance); "
                                "min/max methods only")
    p.add_argument("--clip-output", choices=["on", "off"],
                   help="build the clipped or clip-free variant (models with a clip_output option)")
    p.add_argument("--n-calib", type=int, default=32, help="number of calibration patches")
    p.add_argument("--patch", type=int, default=48, help="LR patch size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", help="YAML file of method options")
    p.add_argument("--option", action="append", help="method option key=value (repeatable), e.g. percentile=99.9")
    p.add_argument("--out", default="runs/quantize", help="folder for model.pt, results.json, results.md")
    p.add_argument("--force", action="store_true", help="recalibrate even if --out holds a model with this config")
    data_args(p)
    p.set_defaults(func=cmd_quantize)

    from .bench.cli import add_bench_commands

    add_bench_commands(sub)

    from .report import add_report_commands

    add_report_commands(sub)

    from .export import add_export_commands

    add_export_commands(sub)

    from .rd import add_rd_commands

    add_rd_commands(sub)

    from .analysis import add_analyze_commands

    add_analyze_commands(sub)

    p = sub.add_parser("train", help="train a small model (the embedded defaults) on a folder of HR images")
    model_args(p)
    p.add_argument("--data", required=True, help="folder of HR training images")
    p.add_argument("--out", required=True, help="where to write the state dict")
    p.add_argument("--iters", type=int, default=3000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patch", type=int, default=48, help="LR patch size")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as err:
        print(f"srquant: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
