"""DFSQ point selection: fast k-means vs exhaustive search over subsets (and the exact DP optimum), timed side by side
on the same layer's normalized calibration activations and the same universal set.

    python benchmarks/dfsq_selection.py [--model imdn --scale 4 --weights ../shared/weights/imdn_x4.pth]
        [--layer IMDB2.c1] [--bits 2] [--budget 60] [--size U] [--calib-n 32] [--channels 64]

The universal set is the official code's 377 values thinned to U values (evenly spaced in rank); without --size, U is
the largest size whose exhaustive search is predicted (from a measured rate) to finish within --budget seconds over
all selected channels. Prints times, the k-means/exhaustive time ratio and the quantization losses of all three.
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from srquant.data import sample_lr_patches
from srquant.evaluate import prepare_input
from srquant.models import create
from srquant.quant.subset import normalize, universal_set
from srquant.quant.subset_select import (
    SortedRows, select_exhaustive, select_kmeans, select_optimal, thin_universal,
)

from common import SHARED


def layer_values(model, calib: torch.Tensor, layer: str, batch: int = 8) -> tuple[torch.Tensor, bool]:
    """Per-channel DFSQ-normalized inputs (C, N) of ``layer`` over the calibration set, and the post-ReLU flag."""
    chunks = []
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: chunks.append(i[0].detach()))
    with torch.no_grad():
        for s in range(0, len(calib), batch):
            model(calib[s : s + batch])
    handle.remove()
    raw = torch.cat(chunks)
    post_relu = bool(raw.min() >= 0)
    xn = normalize(raw, post_relu)[0]
    return xn.transpose(0, 1).reshape(raw.shape[1], -1), post_relu


def exhaustive_rate(values: torch.Tensor, universal: torch.Tensor, bits: int) -> float:
    """Subsets evaluated per second by the exhaustive search (measured on a universal set with ~200k subsets)."""
    k = 2**bits
    size = k + 1
    while math.comb(size + 1, k) <= 200_000 and size + 1 <= len(universal):
        size += 1
    u = thin_universal(universal, size)
    start = time.perf_counter()
    select_exhaustive(values[0], u, bits)
    return math.comb(len(u), k) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="imdn")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--weights", default=str(SHARED / "weights" / "imdn_x4.pth"))
    parser.add_argument("--layer", default="IMDB2.c1")
    parser.add_argument("--bits", type=int, default=2)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds allowed for the exhaustive search")
    parser.add_argument("--size", type=int, default=None, help="universal-set size (default: auto from --budget)")
    parser.add_argument("--channels", type=int, default=None, help="first C channels only (default: all)")
    parser.add_argument("--calib", default=str(SHARED / "data" / "calib" / "SunHays80"))
    parser.add_argument("--calib-n", type=int, default=32)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (small ops: 1 is fastest)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = create(args.model, args.scale, weights=args.weights).eval()
    calib = prepare_input(sample_lr_patches(args.calib, args.calib_n, args.patch, args.scale, seed=0).patches, model.sr_info)
    values, post_relu = layer_values(model, calib, args.layer)
    if args.channels:
        values = values[: args.channels]
    channels, n = values.shape
    full = universal_set("code")
    k = 2**args.bits
    if args.size is None:
        rate = exhaustive_rate(values, full, args.bits)
        size = k
        while size + 1 <= len(full) and math.comb(size + 1, k) * channels / rate <= args.budget:
            size += 1
        print(f"measured exhaustive rate {rate:,.0f} subsets/s -> largest universal set within {args.budget:.0f} s: {size}")
    else:
        size = args.size
    u = thin_universal(full, size)
    subsets = math.comb(len(u), k)
    print(f"{args.model} x{args.scale} layer {args.layer}: {channels} channels x {n} values (post-ReLU {post_relu}), "
          f"{args.bits}-bit (k={k}), universal set {len(u)} values (code set thinned), {subsets:,} subsets per channel")

    start = time.perf_counter()
    rows = SortedRows(values)
    t_sort = time.perf_counter() - start
    start = time.perf_counter()
    _, loss_km = select_kmeans(rows, u, args.bits, restarts=args.restarts, pin_zero=True)
    t_km = time.perf_counter() - start + t_sort
    start = time.perf_counter()
    _, loss_paper = select_kmeans(rows, u, args.bits, restarts=3, pin_zero=False, criterion="sse")
    t_paper = time.perf_counter() - start + t_sort
    start = time.perf_counter()
    _, loss_dp = select_optimal(rows, u, args.bits)
    t_dp = time.perf_counter() - start + t_sort
    start = time.perf_counter()
    loss_ex = torch.cat([select_exhaustive(values[c], u, args.bits)[1] for c in range(channels)])
    t_ex = time.perf_counter() - start

    total = channels * n
    print("| selection | seconds | loss (MSE per value) | vs exhaustive | channels at optimum |")
    print("|---|---|---|---|---|")
    for name, secs, loss in [(f"k-means, {args.restarts} restarts, 0 pinned (code)", t_km, loss_km),
                             ("k-means, 3 restarts, min SSE (paper)", t_paper, loss_paper),
                             ("exhaustive search", t_ex, loss_ex), ("exact DP", t_dp, loss_dp)]:
        at_opt = int((loss <= loss_ex * (1 + 1e-9) + 1e-12).sum())
        print(f"| {name} | {secs:.2f} | {float(loss.sum()) / total:.4e} | {float(loss.sum() / loss_ex.sum()):.4f}x | "
              f"{at_opt}/{channels} |")
    print(f"exhaustive / k-means time ratio: {t_ex / t_km:.1f}x  (sorting {t_sort:.2f} s counted for k-means and DP)")
    print(f"exhaustive and DP agree: {bool(torch.allclose(loss_ex, loss_dp, rtol=1e-6, atol=1e-9))}")

    # the full universal set: no exhaustive search possible (C(377, k) subsets), the DP still gives the optimum
    start = time.perf_counter()
    _, full_km = select_kmeans(rows, full, args.bits, restarts=args.restarts, pin_zero=True)
    t_full_km = time.perf_counter() - start
    start = time.perf_counter()
    _, full_dp = select_optimal(rows, full, args.bits)
    t_full_dp = time.perf_counter() - start
    print(f"full universal set ({len(full)} values, {math.comb(len(full), k):.3g} subsets per channel): "
          f"k-means {t_full_km:.2f} s, loss {float(full_km.sum()) / total:.4e} = {float(full_km.sum() / full_dp.sum()):.4f}x "
          f"the exact optimum (DP {t_full_dp:.2f} s, {float(full_dp.sum()) / total:.4e})")


if __name__ == "__main__":
    main()
