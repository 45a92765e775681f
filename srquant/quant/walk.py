"""Walking a prepared model: its quantized layers, quantizers and runtime points, quantizer modes, batched forwards."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from .layers import ActPoint, QuantLayer
from .quantizers import UniformQuantizer

POINTS_ATTR = "act_points"  # the root's ModuleDict of runtime points (act_points="runtime")


def quant_layers(qmodel: nn.Module) -> Iterator[tuple[str, QuantLayer]]:
    for name, module in qmodel.named_modules():
        if isinstance(module, QuantLayer):
            yield name, module


def quantizers(qmodel: nn.Module) -> Iterator[tuple[str, UniformQuantizer]]:
    for name, module in qmodel.named_modules():
        if isinstance(module, UniformQuantizer):
            yield name, module


def has_points(model: nn.Module) -> bool:
    return isinstance(getattr(model, POINTS_ATTR, None), nn.ModuleDict)


def act_points(model: nn.Module) -> list[tuple[str, ActPoint]]:
    if not has_points(model):
        return []
    return [(f"{POINTS_ATTR}.{k}", p) for k, p in getattr(model, POINTS_ATTR).items()]


def graph_quantizers(model: nn.Module) -> list[tuple[str, UniformQuantizer]]:
    """Quantizers owned by points (tensors no QuantLayer reads), by module name."""
    return [(f"{name}.quant", p.quant) for name, p in act_points(model) if p.quant is not None]


def set_mode(qmodel: nn.Module, mode: str, which: str = "all") -> None:
    """Switch quantizers to ``quant`` / ``observe`` / ``off``; ``which`` is all, weights or inputs."""
    for _, layer in quant_layers(qmodel):
        if which in ("all", "weights"):
            layer.weight_quant.mode = mode
        if which in ("all", "inputs"):
            layer.input_quant.mode = mode
    if which in ("all", "inputs"):
        for _, q in graph_quantizers(qmodel):  # runtime points (act_points="runtime")
            q.mode = mode


@contextmanager
def quantizers_off(qmodel: nn.Module):
    """Temporarily run the float path (remembers each quantizer's mode)."""
    saved = {id(q): (q, q.mode) for _, q in quantizers(qmodel)}
    for _, layer in quant_layers(qmodel):  # also quantizers of other kinds (DFSQ's SubsetQuantizer)
        for q in (layer.weight_quant, layer.input_quant):
            saved.setdefault(id(q), (q, q.mode))
    set_mode(qmodel, "off")
    try:
        yield qmodel
    finally:
        for q, mode in saved.values():
            q.mode = mode


@contextmanager
def observing(qmodel: nn.Module, observers: dict[nn.Module, object]):
    """The one calibration loop's setting: every quantizer of ``qmodel`` off (the float path), each quantizer in
    ``observers`` in ``"observe"`` mode feeding its observer (``update(x)``); afterwards those are ``"off"`` and
    observer-free again. Run the calibration forwards inside the ``with`` block."""
    set_mode(qmodel, "off")
    for q, observer in observers.items():
        q.observer, q.mode = observer, "observe"
    try:
        yield qmodel
    finally:
        for q in observers:
            q.observer, q.mode = None, "off"


def run_batches(model: nn.Module, calib: torch.Tensor, batch_size: int) -> None:
    with torch.no_grad():
        for start in range(0, len(calib), batch_size):
            model(calib[start : start + batch_size])
