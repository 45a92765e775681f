"""``srquant models``: the registered architectures; ``--verify``: the public checkpoints' reference Y-PSNR."""
from __future__ import annotations

import argparse
import fnmatch
from pathlib import Path

import torch

from ..data import BenchmarkFolder
from ..errors import InputError
from ..evaluate import bicubic_predictor, evaluate, model_predictor
from ..models import create, get_spec, list_models
from ..models.releases import BICUBIC_PSNR, RELEASES


def add_commands(sub) -> None:
    p = sub.add_parser("models", help="list the registered architectures (--verify: reproduce the public checkpoints' "
                                      "reference Y-PSNR)")
    p.add_argument("filter", nargs="?", default="*", help="glob pattern on model names")
    p.add_argument("--verify", action="store_true",
                   help="evaluate every public checkpoint in --shared (and bicubic) against its reference Y-PSNR: "
                        "a Markdown table of measured, reference and difference")
    p.add_argument("--shared", default="../shared", help="with --verify: the folder holding weights/ and "
                                                         "data/benchmarks/")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> None:
    if args.verify:
        verify_releases(Path(args.shared), args.filter)
        return
    for name in list_models(args.filter):
        spec = get_spec(name)
        embedded = ",".join(f"x{s}" for s in spec.default_weights) or "-"
        scales = ",".join(f"x{s}" for s in spec.scales)
        print(f"{name:16s} scales {scales:10s} range [0,{spec.input_range:g}] {spec.color:3s} embedded {embedded:8s} {spec.description}")


def verify_releases(shared: Path, pattern: str = "*") -> None:
    """Print measured vs reference Y-PSNR: the bicubic baselines (``gray="native"``, as published) and every
    checkpoint of :data:`srquant.models.releases.RELEASES` whose model name matches ``pattern``."""
    for sub in ("weights", "data/benchmarks"):
        if not (shared / sub).is_dir():
            raise InputError(f"--verify needs {shared / sub} (pass the shared folder with --shared)")
    torch.set_num_threads(2)
    print("| model | scale | dataset | gray | measured | reference | diff |\n|---|---|---|---|---|---|---|")
    if fnmatch.fnmatch("bicubic", pattern):
        for (dataset, scale), ref in BICUBIC_PSNR.items():
            folder = BenchmarkFolder(shared / "data" / "benchmarks" / dataset, scale)
            rec = evaluate(bicubic_predictor(scale), [folder], model="bicubic", gray="native", progress=False)[0]
            print(f"| bicubic | x{scale} | {dataset} | native | {rec.psnr_y:.3f} | {ref:.2f} | {rec.psnr_y - ref:+.3f} |")
    for r in RELEASES:
        if not fnmatch.fnmatch(r.model, pattern):
            continue
        model = create(r.model, r.scale, weights=shared / "weights" / r.file)
        folder = BenchmarkFolder(shared / "data" / "benchmarks" / r.dataset, r.scale)
        with torch.inference_mode():
            rec = evaluate(model_predictor(model, model.sr_info), [folder], model=r.model, progress=False)[0]
        print(f"| {r.model} | x{r.scale} | {r.dataset} | rgb2y | {rec.psnr_y:.3f} | {r.psnr_y:.3f} | "
              f"{rec.psnr_y - r.psnr_y:+.3f} |", flush=True)
