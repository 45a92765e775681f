"""Sweep outputs: the result schema (JSON), a flat CSV and tables in the papers' layout (Markdown; HTML reads
:func:`paper_table_data`)."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from ..results import ResultRecord

CSV_FIELDS = ["model", "scale", "method", "w_bits", "a_bits", "scope", "dataset", "psnr_y", "ssim_y", "n_images", "seconds", "calib_seconds"]


def to_csv(records: list[ResultRecord]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow(r.to_dict())
    return buf.getvalue()


def bits_label(r: ResultRecord) -> str:
    return "-" if r.w_bits is None else f"W{r.w_bits}A{r.a_bits}"


@dataclass
class TableRow:
    bits: str  # "W4A4", or "-" for the FP32 and bicubic references
    method: str
    values: list[tuple[float, float] | None]  # (PSNR, SSIM) per dataset of the table
    avg_psnr: float
    calib_seconds: float | None


@dataclass
class PaperTable:
    model: str
    datasets: list[str]
    rows: list[TableRow]


def paper_table_data(records: list[ResultRecord], method_order: list[str]) -> list[PaperTable]:
    """One table per model: FP32 and bicubic rows, then each bit width (widest first) with one row per method in
    ``method_order``; PSNR / SSIM per dataset, the average PSNR over datasets, and the calibration time."""
    datasets = list(dict.fromkeys(r.dataset for r in records))
    order = {"fp32": -2, "bicubic": -1, **{m: i for i, m in enumerate(method_order)}}
    tables = []
    for model in dict.fromkeys(r.model for r in records):
        cells: dict[tuple[str, str], dict[str, ResultRecord]] = {}
        for r in records:
            if r.model == model:
                cells.setdefault((bits_label(r), r.method), {})[r.dataset] = r
        bit_keys = sorted({b for b, _ in cells if b != "-"}, key=lambda b: tuple(-int(v) for v in b[1:].split("A")))
        keys = [k for k in (("-", "fp32"), ("-", "bicubic")) if k in cells]
        keys += [(b, m) for b in bit_keys for m in sorted({m for bb, m in cells if bb == b}, key=lambda m: (order.get(m, len(order)), m))]
        rows = []
        for bits, method in keys:
            got = cells[bits, method]
            values = [(got[d].psnr_y, got[d].ssim_y) if d in got else None for d in datasets]
            avg = sum(r.psnr_y for r in got.values()) / len(got)
            rows.append(TableRow(bits, method, values, avg, next(iter(got.values())).calib_seconds))
        tables.append(PaperTable(model, datasets, rows))
    return tables


def table_markdown(table: PaperTable) -> str:
    """One model's table as Markdown (no heading)."""
    out = ["| bits | method | " + " | ".join(f"{d} PSNR / SSIM" for d in table.datasets) + " | avg PSNR | calib s |",
           "|---|---|" + "---|" * (len(table.datasets) + 2)]
    for row in table.rows:
        vals = ["-" if v is None else f"{v[0]:.3f} / {v[1]:.4f}" for v in row.values]
        calib = "-" if row.calib_seconds is None else f"{row.calib_seconds:.0f}"
        out.append(f"| {row.bits} | {row.method} | " + " | ".join(vals) + f" | {row.avg_psnr:.3f} | {calib} |")
    return "\n".join(out) + "\n"


def paper_tables(records: list[ResultRecord], method_order: list[str]) -> str:
    """The tables of :func:`paper_table_data` as Markdown, one ``### model`` section each."""
    return "\n".join(f"### {t.model}\n\n{table_markdown(t)}" for t in paper_table_data(records, method_order))
