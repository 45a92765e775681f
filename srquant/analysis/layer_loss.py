"""Where a quantized model's loss sits, layer by layer: each layer's weights, then its input, put back in float.

Takes any quantized model (e.g. one saved by ``srquant quantize --save``) and its float original. The row of a layer
gives the Y-PSNR (mean over the datasets) with that layer's weight quantizer off, and with its input quantizer off,
and the dB each recovers; two last rows put every weight, then every layer input, in float.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from torch import nn

from ..data.benchmark import BenchmarkFolder
from ..evaluate import evaluate, model_predictor
from ..quant.walk import quant_layers
from .sensitivity import write_rows


def layer_loss_scan(qmodel: nn.Module, model: nn.Module, datasets: Sequence[BenchmarkFolder],
                    progress: bool = False) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """FP32 and quantized Y-PSNR (mean over ``datasets``), and one row per quantized layer with the PSNR its
    weights and its input recover when put in float (see the module docstring)."""
    info = model.sr_info

    def psnr(forward: nn.Module) -> float:
        records = evaluate(model_predictor(forward, info), datasets, model=info.name, progress=False)
        return sum(r.psnr_y for r in records) / len(records)

    summary = {"fp32": psnr(model), "quantized": psnr(qmodel)}
    layers = list(quant_layers(qmodel))

    def recovered(quants: list[nn.Module]) -> float:
        modes = [q.mode for q in quants]
        for q in quants:
            q.mode = "off"
        try:
            return psnr(qmodel) - summary["quantized"]
        finally:
            for q, mode in zip(quants, modes):
                q.mode = mode

    from tqdm.auto import tqdm

    rows = []
    for name, layer in tqdm(layers, desc="layer loss", disable=not progress, leave=False):
        rows.append({"layer": name, "w bits": layer.weight_quant.bits, "a bits": layer.input_quant.bits,
                     "weights in float dB": recovered([layer.weight_quant]),
                     "input in float dB": recovered([layer.input_quant])})
    rows.append({"layer": "every weight", "w bits": "", "a bits": "",
                 "weights in float dB": recovered([layer.weight_quant for _, layer in layers]), "input in float dB": ""})
    rows.append({"layer": "every input", "w bits": "", "a bits": "", "weights in float dB": "",
                 "input in float dB": recovered([layer.input_quant for _, layer in layers])})
    return summary, rows


def write_layer_loss(rows: list[dict[str, Any]], out: str | Path, title: str = "") -> list[Path]:
    """``layer_loss.csv`` and ``layer_loss.md``."""
    return write_rows(rows, out, "layer_loss", title)
