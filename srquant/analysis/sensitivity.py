"""Per-layer quantization sensitivity: quantize one layer at a time, measure the PSNR drop against FP32."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..data.benchmark import BenchmarkFolder
from ..evaluate import evaluate, model_predictor
from ..quant.scope import plan
from ..results import write_text_atomic
from .plots import save_figure


def single_layer_overrides(layer: str, bits: int) -> dict[str, Any]:
    """Scope overrides that leave every layer in floating point except ``layer`` (W``bits``A``bits``)."""
    return {"*": "fp", layer: {"w_bits": bits, "a_bits": bits}}


def sensitivity_scan(model: nn.Module, calib: torch.Tensor, datasets: Sequence[BenchmarkFolder], bits: int = 4,
                     method: str = "minmax", layers: Sequence[str] | None = None, options: dict | None = None,
                     progress: bool = False) -> list[dict[str, Any]]:
    """One row per layer (every quantizable layer, head and tail included, unless ``layers`` names them): the
    model with only that layer quantized by ``method`` at W``bits``A``bits``, its Y-PSNR per dataset and the drop
    against FP32 (``drop`` = mean over datasets, in dB, positive = worse)."""
    from .. import api
    from ..methods import config_class

    info = model.sr_info
    names = list(layers) if layers is not None else list(plan(model, "all", bits, bits))
    name = info.name
    fp = {r.dataset: r.psnr_y for r in evaluate(model_predictor(model, info), datasets, model=name, progress=progress)}
    rows = []
    for index, layer in enumerate(names):
        config = config_class(method)(w_bits=bits, a_bits=bits, scope="all",
                                      overrides=single_layer_overrides(layer, bits), **(options or {}))
        records = api.quantize_and_evaluate(model, config, calib, datasets, label=method, model=name, progress=progress)[1]
        row: dict[str, Any] = {"index": index, "layer": layer}
        for r in records:
            row[f"{r.dataset} fp32"], row[f"{r.dataset} psnr"] = fp[r.dataset], r.psnr_y
        row["drop"] = sum(fp[r.dataset] - r.psnr_y for r in records) / len(records)
        rows.append(row)
    return rows


def _cell(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    keys = list(rows[0]) if rows else []
    return "\n".join([",".join(keys)] + [",".join(_cell(r[k], 4) for k in keys) for r in rows]) + "\n"


def rows_to_markdown(rows: list[dict[str, Any]], title: str = "") -> str:
    keys = list(rows[0]) if rows else []
    lines = ([title, ""] if title else []) + ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(r[k], 3) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_rows(rows: list[dict[str, Any]], out: str | Path, stem: str, title: str = "") -> list[Path]:
    """``OUT/<stem>.csv`` and ``OUT/<stem>.md`` of a table of rows (written atomically)."""
    out = Path(out)
    paths = [out / f"{stem}.csv", out / f"{stem}.md"]
    write_text_atomic(paths[0], rows_to_csv(rows))
    write_text_atomic(paths[1], rows_to_markdown(rows, title))
    return paths


def write_sensitivity(rows: list[dict[str, Any]], out: str | Path, title: str = "") -> list[Path]:
    """``sensitivity.csv``, ``sensitivity.md`` and a bar plot ``sensitivity.png`` of the drop per layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    paths = [out / "sensitivity.csv", out / "sensitivity.md", out / "sensitivity.png"]
    write_text_atomic(paths[0], rows_to_csv(rows))
    write_text_atomic(paths[1], rows_to_markdown(rows, title))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(rows) + 2), 4.0))
    ax.bar(range(len(rows)), [r["drop"] for r in rows], color="tab:red")
    ax.set_xticks(range(len(rows)), [r["layer"] for r in rows], rotation=90, fontsize=7)
    ax.set_ylabel("PSNR drop vs FP32 (dB)")
    ax.set_title(title or "one layer quantized at a time")
    fig.tight_layout()
    save_figure(fig, paths[2])
    plt.close(fig)
    return paths
