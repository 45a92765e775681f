"""Reproduce the reference Y-PSNR of every public checkpoint in ../shared/weights, and the bicubic baselines.

    python benchmarks/zoo_psnr.py [--shared ../shared]

Prints a Markdown table: measured vs reference, difference in dB.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from srquant.data import BenchmarkFolder
from srquant.evaluate import bicubic_predictor, evaluate, model_predictor
from srquant.models import create
from srquant.models.releases import BICUBIC_PSNR, RELEASES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    args = parser.parse_args()
    shared = Path(args.shared)
    torch.set_num_threads(2)
    print("| model | scale | dataset | gray | measured | reference | diff |\n|---|---|---|---|---|---|---|")
    for (dataset, scale), ref in BICUBIC_PSNR.items():
        folder = BenchmarkFolder(shared / "data" / "benchmarks" / dataset, scale)
        rec = evaluate(bicubic_predictor(scale), [folder], model="bicubic", gray="native", progress=False)[0]
        print(f"| bicubic | x{scale} | {dataset} | native | {rec.psnr_y:.3f} | {ref:.2f} | {rec.psnr_y - ref:+.3f} |")
    for r in RELEASES:
        model = create(r.model, r.scale, weights=shared / "weights" / r.file)
        folder = BenchmarkFolder(shared / "data" / "benchmarks" / r.dataset, r.scale)
        with torch.inference_mode():
            rec = evaluate(model_predictor(model, model.sr_info), [folder], model=r.model, progress=False)[0]
        print(f"| {r.model} | x{r.scale} | {r.dataset} | rgb2y | {rec.psnr_y:.3f} | {r.psnr_y:.3f} | {rec.psnr_y - r.psnr_y:+.3f} |", flush=True)


if __name__ == "__main__":
    main()
