"""The ``srquant`` command line: models, eval, quantize, export, bench, train (and the methods' own tools)."""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from .data.benchmark import BenchmarkFolder
from .errors import ConfigError, InputError, SrquantError, clean_message
from .validate import check_data_folders, check_image_folder, check_input_file, check_output_file, check_scale


def _datasets(args: argparse.Namespace, scale: int) -> list[BenchmarkFolder]:
    if not args.data:
        return [BenchmarkFolder.demo(scale)]
    return [BenchmarkFolder(d, scale) for d in args.data]


def _build_model(args: argparse.Namespace):
    """The float model of --model: a registered name, or ``path/to/file.py:ClassName`` with --model-args."""
    from .models import create, get_spec, list_models
    from .models.from_file import create_from_file, is_model_file, parse_model_args

    if is_model_file(args.model):
        check_scale(args.scale, None, args.model)
        if args.weights:
            check_input_file(args.weights, "--weights")
        return create_from_file(args.model, args.scale, args.weights, parse_model_args(args.model_args),
                                args.input_range)
    spec = get_spec(args.model)
    check_scale(args.scale, spec.scales, spec.name)
    if args.weights is None and args.scale not in spec.default_weights:
        embedded = [f"{n} x{s}" for n in list_models() for s in get_spec(n).default_weights]
        raise InputError(f"{spec.name} x{args.scale} has no embedded weights; pass --weights (embedded: {', '.join(embedded)})")
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
    datasets = None if args.onnx else _datasets(args, args.scale)
    if args.onnx:
        from .export import open_runner

        runner = open_runner(args.onnx, args.runtime, threads=args.threads)
        info = runner.sr_info(args.scale, args.model if args.model and args.model != "bicubic" else None)
        predict, name, backend = model_predictor(runner, info), info.name, runner.backend
        try:
            config = json.loads(runner.metadata().get("srquant_config", "{}"))
        except ValueError:
            raise ConfigError(f"{args.onnx}: its srquant_config metadata is not valid JSON") from None
        kwargs.update(method=config.get("method", "onnx"), w_bits=config.get("w_bits"), a_bits=config.get("a_bits"),
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


SWEEP_FLAGS = {"w_bits": "--w-bits", "a_bits": "--a-bits", "scope": "--scope", "seed": "--seed"}


def _method_config(args: argparse.Namespace):
    """The method config from --config, then --option (later wins), then the flags. A key that a flag sets is an
    error in --config/--option (it would be silently overridden otherwise). --quiet turns off a method's bars."""
    import dataclasses

    from .fileio import parse_yaml, read_config_file
    from .methods import build_config, config_class

    sources: list[tuple[str, dict]] = []
    if args.config:
        sources.append((f"--config file {args.config}", read_config_file(args.config, "--config file")))
    for item in args.option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option takes key=value, got {item!r}")
        sources.append((f"--option {item}", {key.replace("-", "_"): parse_yaml(value, f"--option {item}")}))
    fields: dict = {}
    for source, values in sources:
        for key in values:
            if key in SWEEP_FLAGS:
                raise ConfigError(f"{source}: set {key} with {SWEEP_FLAGS[key]}, not in --config or --option")
        build_config(args.method, values, source)  # names and types, checked where they came from
        fields.update(values)
    fields.update(w_bits=args.w_bits, a_bits=args.a_bits, scope=args.scope, seed=args.seed)
    if args.quiet and "progress" in {f.name for f in dataclasses.fields(config_class(args.method))}:
        fields["progress"] = False
    return build_config(args.method, fields, "method options")


RUN_FILES = ["model.pt", "inputs.json", "results.json", "results.md"]
NOT_IDENTITY = ("progress",)  # config fields that do not change the calibrated model


def _config_identity(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in NOT_IDENTITY}


def _quantize_inputs(args: argparse.Namespace, config) -> dict:
    """What the calibrated model depends on, by content: SHA-256 of the weights file (the embedded one by default),
    of the calibration images, of the --rd images; the method config; the sampling options. Paths are kept apart,
    for reading only."""
    from .data.benchmark import DEMO_CALIB_FILES, demo_image_dir
    from .data.images import list_images
    from .fileio import sha256_file, sha256_files
    from .models import get_spec
    from .models._registry import ASSETS

    weights = args.weights
    if weights is None:
        try:
            weights = ASSETS / get_spec(args.model).default_weights[args.scale]
        except KeyError:
            weights = None
    model_file = Path(args.model.partition(":")[0])  # a model given as path/to/file.py:ClassName
    calib = list_images(args.calib) if args.calib else [demo_image_dir() / f for f in DEMO_CALIB_FILES]
    inputs = {
        "model": args.model,
        "model_file_sha256": sha256_file(model_file) if model_file.suffix == ".py" and model_file.is_file() else None,
        "scale": args.scale,
        "weights_sha256": sha256_file(weights) if weights is not None else None,
        "clip_output": args.clip_output,
        "calib_sha256": None if args.rd else sha256_files(calib),
        "calib_gray": args.calib_gray,
        "n_calib": args.n_calib,
        "patch": args.patch,
        "seed": args.seed,
        "rd_sha256": sha256_files(list_images(args.rd)) if args.rd else None,
        "config": _config_identity(config.to_dict()),
        # options that change the float model, where the command has them
        **{k: getattr(args, k) for k in ("model_args", "input_range") if hasattr(args, k)},
    }
    return json.loads(json.dumps(inputs, default=str))  # as it reads back from inputs.json


def _reusable_model(run, inputs: dict, model, force: bool, files: list[str] = RUN_FILES):
    """The committed model of ``run`` when its manifest verifies (with ``files``) and it was made from ``inputs``,
    else None."""
    from . import api

    if force:
        return None
    manifest = run.valid_manifest()
    if manifest is None or not set(files) <= set(manifest["files"]):
        if (run.path / "model.pt").exists():
            print(f"{run.path} holds no complete run (manifest.json missing or not matching the files): calibrating")
        return None
    saved = json.loads((run.path / "inputs.json").read_text())
    saved.pop("paths", None)
    if saved != inputs:
        changed = sorted(k for k in inputs.keys() | saved.keys() if saved.get(k) != inputs.get(k))
        print(f"{run.path} holds a model of other inputs (changed: {', '.join(changed)}): calibrating")
        return None
    qmodel = api.load(run.path / "model.pt", model=model)
    stored = json.loads(json.dumps(_config_identity(qmodel.srquant_config.to_dict()), default=str))
    if stored != inputs["config"]:
        print(f"{run.path / 'model.pt'} holds another config than inputs.json says: calibrating")
        return None
    return qmodel


def _check_quantize_inputs(args: argparse.Namespace) -> None:
    """Everything quantize reads or writes, checked before the model is built or calibrated."""
    if args.n_calib < 1 or args.patch < 1:
        raise ConfigError(f"--n-calib and --patch must be >= 1, got {args.n_calib} and {args.patch}")
    if args.calib:
        check_image_folder(args.calib, "calibration folder (--calib)")
    if args.rd:
        check_image_folder(args.rd, "RD folder (--rd)")
    check_data_folders(args.data, args.scale)
    if args.json:
        check_output_file(args.json, "--json")


def _commit_results(run, records, files: list[str], note: str = "") -> None:
    """Print the results table, stage results.md (with ``note`` under the table) and results.json, commit ``files``."""
    from .results import markdown_table, write_results, write_text_atomic

    table = markdown_table(records)
    print(table, end="")
    write_text_atomic(run.staging / "results.md", table + (f"\n{note}\n" if note else ""))
    write_results(run.staging / "results.json", records)
    run.commit(files)


def _report_written(run, files: list[str], records, json_path: str | None) -> None:
    from .results import write_results

    print(f"wrote {', '.join(str(run.path / f) for f in files)}")
    if json_path:
        write_results(json_path, records)
        print(f"wrote {json_path}")


def cmd_quantize(args: argparse.Namespace) -> None:
    from . import api
    from .evaluate import calibration_batch, evaluate, model_predictor
    from .results import write_text_atomic
    from .runfolder import RunFolder

    config = _method_config(args)
    _check_quantize_inputs(args)
    if args.clip_output is None:
        model = _build_model(args)
    else:
        from .rd import model_variant

        model = model_variant(args.model, args.scale, args.weights, clip=args.clip_output == "on")
    info = model.sr_info
    datasets = _datasets(args, args.scale)
    inputs = _quantize_inputs(args, config)
    run = RunFolder(args.out)
    try:
        qmodel = _reusable_model(run, inputs, model, args.force)
        if qmodel is not None:
            print(f"reusing {run.path / 'model.pt'} (same weights, calibration images and config; --force recalibrates)")
        else:
            if args.rd:  # whole LR images (srquant rd select / enhance output)
                from .rd import load_rd, quantize_rd

                qmodel = quantize_rd(model, config, load_rd(args.rd, args.scale, gray=args.calib_gray).values())
            else:
                calib = calibration_batch(info, args.calib, args.n_calib, args.patch, args.seed, args.calib_gray)
                qmodel = api.quantize(model, config, calib)
            api.save(qmodel, run.staging / "model.pt")
            paths = {"weights": args.weights, "calib": args.calib, "rd": args.rd}
            write_text_atomic(run.staging / "inputs.json", json.dumps({**inputs, "paths": paths}, indent=2) + "\n")
            print(f"calibrated {config.method} W{config.w_bits}A{config.a_bits} in {qmodel.calib_seconds:.1f} s")
        common = dict(channel=args.channel, shave=args.shave, gray=args.gray, progress=not args.quiet, model=info.name)
        records = evaluate(model_predictor(model, info), datasets, **common)
        records += evaluate(
            model_predictor(qmodel, info), datasets, method=config.method, w_bits=config.w_bits, a_bits=config.a_bits,
            scope=config.scope, calib_seconds=getattr(qmodel, "calib_seconds", None), config=config.to_dict(), **common,
        )
        _commit_results(run, records, RUN_FILES)
    finally:
        run.discard()
    _report_written(run, RUN_FILES, records, args.json)


INT8_FILES = RUN_FILES + ["model_int8.onnx"]


def cmd_int8(args: argparse.Namespace) -> None:
    """Calibrate the int8 recipe, export the integer ONNX model, check it against the simulation, evaluate FP32,
    the simulation and the integer model in the runtime; the folder is written as one unit and reused by content."""
    from . import api
    from .deploy import ONNX_FILE, check_runtime, int8_records
    from .export import export_onnx
    from .evaluate import calibration_batch
    from .results import write_text_atomic
    from .runfolder import RunFolder

    args.method, args.w_bits, args.a_bits, args.scope = "int8", 8, 8, "all"
    args.clip_output, args.calib_gray, args.rd = None, False, None
    config = _method_config(args)
    _check_quantize_inputs(args)
    if args.runtime == "openvino":
        from .export.openvino import openvino_available

        if not openvino_available():
            raise InputError("--runtime openvino needs the OpenVINO runtime: pip install 'srquant[openvino]'")
    model = _build_model(args)
    info = model.sr_info
    datasets = _datasets(args, args.scale)
    inputs = _quantize_inputs(args, config)
    run = RunFolder(args.out)
    try:
        qmodel = _reusable_model(run, inputs, model, args.force, INT8_FILES)
        if qmodel is not None:
            onnx_path = run.path / ONNX_FILE
            print(f"reusing {run.path / 'model.pt'} and {onnx_path} (same weights, calibration images and options)")
        else:
            calib = calibration_batch(info, args.calib, args.n_calib, args.patch, args.seed)
            qmodel = api.quantize(model, config, calib)
            print(f"calibrated int8 on {len(calib)} patches in {qmodel.calib_seconds:.1f} s")
            api.save(qmodel, run.staging / "model.pt")
            paths = {"weights": args.weights, "calib": args.calib}
            write_text_atomic(run.staging / "inputs.json", json.dumps({**inputs, "paths": paths}, indent=2) + "\n")
            onnx_path = export_onnx(qmodel, run.staging / ONNX_FILE)
        runner, diff = check_runtime(qmodel, onnx_path, args.runtime, args.threads)
        check = f"simulation vs {args.runtime}: max |diff| {diff:.3g} on a 64 px check input (output range {info.input_range:g})"
        print(check)
        records = int8_records(model, qmodel, runner, datasets, channel=args.channel, shave=args.shave,
                               gray=args.gray, progress=not args.quiet)
        _commit_results(run, records, INT8_FILES, note=check)
    finally:
        run.discard()
    _report_written(run, INT8_FILES, records, args.json)


def cmd_train(args: argparse.Namespace) -> None:
    from .train import TrainConfig, train

    check_image_folder(args.data, "training folder (--data)")
    check_output_file(args.out, "--out")
    cfg = TrainConfig(args.model, args.scale, args.data, iters=args.iters, batch=args.batch, patch=args.patch, lr=args.lr, seed=args.seed)
    summary = train(cfg, args.out, progress=not args.quiet)
    print(json.dumps(summary, indent=2))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srquant", description="Post-training quantization of super-resolution networks",
                                     epilog="--debug (anywhere on the line) prints the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the registered architectures")
    p.add_argument("filter", nargs="?", default="*", help="glob pattern on model names")
    p.set_defaults(func=cmd_models)

    def model_args(p: argparse.ArgumentParser, default_model: str | None = "abpn") -> None:
        p.add_argument("--model", default=default_model,
                       help="registered model name (see `srquant models`) or path/to/file.py:ClassName (an nn.Module "
                            "taking NCHW RGB in [0, 1], or [0, 255] with --input-range 255)")
        p.add_argument("--scale", type=int, default=4)
        p.add_argument("--weights", help="checkpoint; default: the model's embedded weights")
        p.add_argument("--model-args", help="JSON object of constructor arguments for a model file, e.g. '{\"c\": 32}'")
        p.add_argument("--input-range", type=float, default=1.0, choices=[1.0, 255.0],
                       help="pixel range a model file takes (1 or 255)")

    def data_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", action="append", help="benchmark folder (repeatable); default: scikit-image demo photos")
        p.add_argument("--channel", choices=["y", "rgb"], default="y", help="metric channel (default: MATLAB Y)")
        p.add_argument("--shave", type=int, help="border cut before the metric (default: the scale)")
        p.add_argument("--gray", choices=["native", "rgb2y"], default="rgb2y", help="how single-channel HR images are scored on Y")
        p.add_argument("--json", help="write the result schema here")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("eval", help="evaluate a model (or `--model bicubic`, or an ONNX file) on benchmark folders")
    model_args(p, None)
    data_args(p)
    p.add_argument("--onnx", help="evaluate this ONNX file (from `srquant export` / `srquant int8`, or a foreign file "
                                  "with --scale and optionally --model for its input range and colour mode)")
    p.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "openvino"], help="runtime for --onnx")
    p.add_argument("--threads", type=int, default=2, help="runtime threads")
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

    p = sub.add_parser("int8", help="deployable INT8: calibrate, export an integer ONNX model, evaluate it in a runtime")
    model_args(p)
    p.add_argument("--calib", help="folder of HR calibration images (default: scikit-image sample photos)")
    p.add_argument("--n-calib", type=int, default=128, help="number of calibration patches")
    p.add_argument("--patch", type=int, default=48, help="LR patch size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", help="YAML file of int8 recipe options")
    p.add_argument("--option", action="append", help="int8 recipe option key=value (repeatable), e.g. percentile=99.99")
    p.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "openvino"],
                   help="runtime that runs and checks the integer model")
    p.add_argument("--threads", type=int, default=2, help="runtime threads")
    p.add_argument("--out", default="runs/int8", help="folder for model_int8.onnx, model.pt, results.json, results.md")
    p.add_argument("--force", action="store_true", help="recalibrate even if --out holds a model of these inputs")
    data_args(p)
    p.set_defaults(func=cmd_int8)

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
    """Run one command. A bad input prints ``srquant: error: ...`` and returns 2, without a traceback unless
    ``--debug`` is on the command line (anywhere); an unexpected failure returns 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    try:
        args.func(args)
    except (SrquantError, OSError, ValueError, KeyError, RuntimeError) as err:
        if debug:
            traceback.print_exc()
        message = err.args[0] if isinstance(err, KeyError) and not isinstance(err, SrquantError) and err.args else err
        print(f"srquant: error: {clean_message(str(message))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("srquant: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the command line's boundary: a bug, reported in one line
        if debug:
            traceback.print_exc()
        print(f"srquant: internal error: {type(err).__name__}: {clean_message(str(err))} (rerun with --debug for the "
              "traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
