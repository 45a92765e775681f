"""Helpers the command modules share: the float model and benchmark folders from the flags, their flags, tables."""
from __future__ import annotations

import argparse

from ..data.benchmark import BenchmarkFolder
from ..errors import InputError
from ..models import create, get_spec, list_models
from ..models.from_file import create_from_file, is_model_file, parse_model_args
from ..results import markdown_table
from ..validate import check_input_file, check_scale


def benchmark_folders(args: argparse.Namespace, scale: int) -> list[BenchmarkFolder]:
    """The benchmark folders of --data at ``scale`` (default: the demo photos)."""
    if not args.data:
        return [BenchmarkFolder.demo(scale)]
    return [BenchmarkFolder(d, scale) for d in args.data]


def build_model(args: argparse.Namespace):
    """The float model of --model: a registered name, or ``path/to/file.py:ClassName`` with --model-args."""
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


def print_table(records) -> None:
    """The result records as a Markdown table on stdout."""
    print(markdown_table(records), end="")


def model_args(p: argparse.ArgumentParser, default_model: str | None = "abpn") -> None:
    """--model, --scale, --weights and the options of a model given as a file."""
    p.add_argument("--model", default=default_model,
                   help="registered model name (see `srquant models`) or path/to/file.py:ClassName (an nn.Module "
                        "taking NCHW RGB in [0, 1], or [0, 255] with --input-range 255)")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--weights", help="checkpoint; default: the model's embedded weights")
    p.add_argument("--model-args", help="JSON object of constructor arguments for a model file, e.g. '{\"c\": 32}'")
    p.add_argument("--input-range", type=float, default=1.0, choices=[1.0, 255.0],
                   help="pixel range a model file takes (1 or 255)")

def data_args(p: argparse.ArgumentParser) -> None:
    """--data and the evaluation options (channel, shave, gray), --json, --quiet."""
    p.add_argument("--data", action="append", help="benchmark folder (repeatable); default: scikit-image demo photos")
    p.add_argument("--channel", choices=["y", "rgb"], default="y", help="metric channel (default: MATLAB Y)")
    p.add_argument("--shave", type=int, help="border cut before the metric (default: the scale)")
    p.add_argument("--gray", choices=["native", "rgb2y"], default="rgb2y", help="how single-channel HR images are scored on Y")
    p.add_argument("--json", help="write the result schema here")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
