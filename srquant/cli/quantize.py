"""``srquant quantize`` and ``srquant int8``: calibrate, evaluate against FP32, save (reused by content)."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from .. import api
from ..data.benchmark import DEMO_CALIB_FILES, demo_image_dir
from ..data.images import list_images
from ..deploy import ONNX_FILE, check_runtime, int8_records
from ..errors import ConfigError, InputError
from ..evaluate import calibration_batch, evaluate, model_predictor
from ..export.onnx_qdq import export_onnx
from ..export.openvino import openvino_available
from ..fileio import parse_yaml, read_config_file, sha256_file, sha256_files
from ..methods import build_config, config_class, method_names
from ..models import get_spec
from ..models._registry import ASSETS
from ..rd import load_rd, model_variant, quantize_rd
from ..results import markdown_table, write_results, write_text_atomic
from ..runfolder import RunFolder
from ..validate import check_data_folders, check_image_folder, check_output_file
from .common import benchmark_folders, build_model, data_args, model_args


def add_commands(sub) -> None:
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


SWEEP_FLAGS = {"w_bits": "--w-bits", "a_bits": "--a-bits", "scope": "--scope", "seed": "--seed"}


def _method_config(args: argparse.Namespace):
    """The method config from --config, then --option (later wins), then the flags. A key that a flag sets is an
    error in --config/--option (it would be silently overridden otherwise). --quiet turns off a method's bars."""
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
    table = markdown_table(records)
    print(table, end="")
    write_text_atomic(run.staging / "results.md", table + (f"\n{note}\n" if note else ""))
    write_results(run.staging / "results.json", records)
    run.commit(files)


def _report_written(run, files: list[str], records, json_path: str | None) -> None:
    print(f"wrote {', '.join(str(run.path / f) for f in files)}")
    if json_path:
        write_results(json_path, records)
        print(f"wrote {json_path}")


def cmd_quantize(args: argparse.Namespace) -> None:
    config = _method_config(args)
    _check_quantize_inputs(args)
    if args.clip_output is None:
        model = build_model(args)
    else:
        model = model_variant(args.model, args.scale, args.weights, clip=args.clip_output == "on")
    info = model.sr_info
    datasets = benchmark_folders(args, args.scale)
    inputs = _quantize_inputs(args, config)
    run = RunFolder(args.out)
    try:
        qmodel = _reusable_model(run, inputs, model, args.force)
        if qmodel is not None:
            print(f"reusing {run.path / 'model.pt'} (same weights, calibration images and config; --force recalibrates)")
        else:
            if args.rd:  # whole LR images (srquant rd select / enhance output)
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
        records += api.evaluate_quantized(qmodel, config, info, datasets, **common)
        _commit_results(run, records, RUN_FILES)
    finally:
        run.discard()
    _report_written(run, RUN_FILES, records, args.json)


INT8_FILES = RUN_FILES + ["model_int8.onnx"]


def cmd_int8(args: argparse.Namespace) -> None:
    """Calibrate the int8 recipe, export the integer ONNX model, check it against the simulation, evaluate FP32,
    the simulation and the integer model in the runtime; the folder is written as one unit and reused by content."""
    args.method, args.w_bits, args.a_bits, args.scope = "int8", 8, 8, "all"
    args.clip_output, args.calib_gray, args.rd = None, False, None
    config = _method_config(args)
    _check_quantize_inputs(args)
    if args.runtime == "openvino":
        if not openvino_available():
            raise InputError("--runtime openvino needs the OpenVINO runtime: pip install 'srquant[openvino]'")
    model = build_model(args)
    info = model.sr_info
    datasets = benchmark_folders(args, args.scale)
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
