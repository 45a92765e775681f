"""Margins of some methods over the best of a set of baselines, per model and bit width, from a sweep's results.

    srquant bench compare runs/bench/dfsq/results.json [MORE.json ...] --methods dfsq,dfsq-mse-w \
        --against minmax,brecq,qdrop

For each model and bit width: each method's Set5 PSNR against FP32 and its average over the sweep's datasets, then
the best average among ``--against`` and each method's margin over it. Cells missing from the results print "-";
with several files (runs of parts of one sweep), a later file's record replaces an earlier one's.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

from ..results import ResultRecord


def compare_table(records: Iterable[ResultRecord], methods: Sequence[str], against: Sequence[str],
                  reference: str = "Set5") -> str:
    """The Markdown table of the module docstring (a later record of a cell and dataset replaces an earlier one)."""
    psnr: dict[tuple, dict[str, float]] = defaultdict(dict)  # (model, method, bits) -> dataset -> PSNR
    for r in records:
        bits = "fp" if r.w_bits is None else f"W{r.w_bits}A{r.a_bits}"
        psnr[r.model, r.method, bits][r.dataset] = r.psnr_y

    def avg(model: str, method: str, bits: str) -> float | None:
        values = psnr.get((model, method, bits))
        return sum(values.values()) / len(values) if values else None

    models = list(dict.fromkeys(model for model, _, _ in psnr))
    widths = sorted({bits for _, _, bits in psnr if bits != "fp"}, key=lambda b: -int(b[1:b.index("A")]))
    head = [f"{m} {reference} vs FP32 | {m} avg" for m in methods]
    lines = ["| model | bits | " + " | ".join(head) + " | best of " + "/".join(against) + " (avg) | "
             + " | ".join(f"{m} margin" for m in methods) + " |"]
    lines.append("|---|---|" + "---|---|" * len(methods) + "---|" + "---|" * len(methods))
    for model in models:
        fp = psnr.get((model, "fp32", "fp"), {}).get(reference)
        for bits in widths:
            base = [(a, b) for a, b in ((avg(model, b, bits), b) for b in against) if a is not None]
            best = max(base) if base else None
            cells, margins = [], []
            for m in methods:
                ref = psnr.get((model, m, bits), {}).get(reference)
                a = avg(model, m, bits)
                cells.append(f"{ref:.3f} ({ref - fp:+.3f})" if ref is not None and fp is not None else "-")
                cells.append(f"{a:.3f}" if a is not None else "-")
                margins.append(f"{a - best[0]:+.3f}" if a is not None and best else "-")
            best_text = f"{best[0]:.3f} ({best[1]})" if best else "-"
            lines.append(f"| {model} | {bits} | " + " | ".join(cells) + f" | {best_text} | " + " | ".join(margins) + " |")
    return "\n".join(lines) + "\n"
