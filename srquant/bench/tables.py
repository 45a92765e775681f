"""Sweep outputs: the result schema (JSON), a flat CSV and Markdown tables in the papers' layout."""
from __future__ import annotations

import csv
import io

from ..results import ResultRecord

CSV_FIELDS = ["model", "scale", "method", "w_bits", "a_bits", "scope", "dataset", "psnr_y", "ssim_y", "n_images", "seconds", "calib_seconds"]


def to_csv(records: list[ResultRecord]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow(r.to_dict())
    return buf.getvalue()


def _bits(r: ResultRecord) -> str:
    return "-" if r.w_bits is None else f"W{r.w_bits}A{r.a_bits}"


def paper_tables(records: list[ResultRecord], method_order: list[str]) -> str:
    """One table per model: FP32 and bicubic rows, then each bit width with one row per method; PSNR / SSIM per
    dataset, the average PSNR over datasets, and the calibration time."""
    datasets = list(dict.fromkeys(r.dataset for r in records))
    out = []
    for model in dict.fromkeys(r.model for r in records):
        rows: dict[tuple[str, str], dict[str, ResultRecord]] = {}
        for r in records:
            if r.model == model:
                rows.setdefault((_bits(r), r.method), {})[r.dataset] = r
        order = {"fp32": -2, "bicubic": -1, **{m: i for i, m in enumerate(method_order)}}
        bit_keys = sorted({b for b, _ in rows if b != "-"}, key=lambda b: -int(b[1:].split("A")[0]))
        keys = [k for k in (("-", "fp32"), ("-", "bicubic")) if k in rows]
        keys += [(b, m) for b in bit_keys for m in sorted({m for bb, m in rows if bb == b}, key=lambda m: order.get(m, 99))]
        out.append(f"### {model}\n")
        out.append("| bits | method | " + " | ".join(f"{d} PSNR / SSIM" for d in datasets) + " | avg PSNR | calib s |")
        out.append("|---|---|" + "---|" * (len(datasets) + 2))
        for bits, method in keys:
            cells = rows[bits, method]
            vals = [f"{cells[d].psnr_y:.3f} / {cells[d].ssim_y:.4f}" if d in cells else "-" for d in datasets]
            avg = sum(c.psnr_y for c in cells.values()) / len(cells)
            calib = next(iter(cells.values())).calib_seconds
            out.append(f"| {bits} | {method} | " + " | ".join(vals) + f" | {avg:.3f} | {'-' if calib is None else f'{calib:.0f}'} |")
        out.append("")
    return "\n".join(out)
