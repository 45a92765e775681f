"""Where the W8A8 loss comes from: the simulation with one group of activation quantization points in float.

The model is quantized at W8A8 (MinMax ranges by default) and evaluated with everything quantized, with each group of
activation points in float, with every activation point in float, and with float weights. Scope ``all`` uses runtime
points (what ONNX Runtime rounds), grouped by the op that produces the tensor (every ``cat``, every conv output named
``c``); scope ``body`` quantizes layer inputs only, grouped by the layer's own name (every block's ``c5``). A group
whose removal recovers most of the loss is the one to fix; a loss spread over every group has no single culprit.
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..api import quantize
from ..data.benchmark import BenchmarkFolder
from ..evaluate import evaluate, model_predictor
from ..methods import config_class
from ..quant.walk import quant_layers
from .sensitivity import write_rows


def point_groups(qmodel: nn.Module, scope: str) -> dict[str, list[nn.Module]]:
    """The activation quantizers of ``qmodel`` by group (see the module docstring), then all of them."""
    groups: dict[str, list[nn.Module]] = defaultdict(list)
    if scope == "all":
        for point in qmodel.act_points.values():
            if point.primary:  # the producing op's name without its index: c, cat, mul, add, sqrt, ...
                kind = re.sub(r"[_\d]+$", "", point.tensor.split(":")[-1]) or "(unnamed)"
                groups[f"{kind} outputs"].append(point.quantizer)
    else:
        for name, layer in quant_layers(qmodel):  # the layer's own name: every block's c5, ...
            groups[f"{name.rsplit('.', 1)[-1]} inputs"].append(layer.input_quant)
    groups["every activation point"] = [q for quants in list(groups.values()) for q in quants]
    return dict(groups)


def point_group_scan(model: nn.Module, calib: torch.Tensor, datasets: Sequence[BenchmarkFolder], method: str = "minmax",
                     scope: str = "all") -> tuple[dict[str, float], list[dict[str, Any]]]:
    """FP32 and W8A8 Y-PSNR (mean over ``datasets``), and one row per group put in float: its size, the PSNR and
    the dB it recovers; a last row with the weights in float."""
    info = model.sr_info
    config = config_class(method)(w_bits=8, a_bits=8, scope=scope, act_points="runtime" if scope == "all" else "inputs")
    qmodel = quantize(model, config, calib)

    def psnr(forward) -> float:
        records = evaluate(model_predictor(forward, info), datasets, model=info.name, progress=False)
        return sum(r.psnr_y for r in records) / len(records)

    summary = {"fp32": psnr(model), "quantized": psnr(qmodel)}
    rows = []
    for kind, quants in point_groups(qmodel, scope).items():
        for q in quants:
            q.mode = "off"
        value = psnr(qmodel)
        for q in quants:
            q.mode = "quant"
        rows.append({"in float": kind, "points": len(quants), "PSNR": value, "recovered dB": value - summary["quantized"]})
    layers = list(quant_layers(qmodel))
    for _, layer in layers:
        layer.weight_quant.mode = "off"
    value = psnr(qmodel)
    rows.append({"in float": "weights", "points": f"{len(layers)} layers", "PSNR": value,
                 "recovered dB": value - summary["quantized"]})
    return summary, rows


def write_point_groups(rows: list[dict[str, Any]], out: str | Path, title: str = "") -> list[Path]:
    """``point_groups.csv`` and ``point_groups.md``."""
    return write_rows(rows, out, "point_groups", title)
