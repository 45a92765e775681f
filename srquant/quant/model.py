"""Turning a float model into a fake-quantized copy, and running calibration data through it."""
from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from .layers import QuantLayer, make_quant_layer
from .observers import RangeObserver
from .quantizers import UniformQuantizer
from .scope import plan


def prepare(model: nn.Module, config) -> nn.Module:
    """A deep copy of ``model`` whose in-scope layers are :class:`QuantLayer` (quantizers not yet calibrated).

    The float model is never modified. ``config`` is a method config (bits, scope, granularity, overrides).
    """
    qmodel = copy.deepcopy(model).eval()
    bits = plan(qmodel, config.scope, config.w_bits, config.a_bits, config.overrides)
    for p in qmodel.parameters():
        p.requires_grad_(False)
    for name, lb in bits.items():
        parent_name, _, child = name.rpartition(".")
        parent = qmodel.get_submodule(parent_name) if parent_name else qmodel
        layer = getattr(parent, child)
        setattr(parent, child, make_quant_layer(layer, lb.w_bits, lb.a_bits, config.w_granularity,
                                                config.a_granularity, config.w_symmetric, config.a_symmetric))
    qmodel.srquant_config = config
    if getattr(config, "act_points", "inputs") == "runtime":  # also quantize what an INT8 runtime quantizes
        from .graph_points import insert_points

        insert_points(qmodel, config)
    return qmodel


def quant_layers(qmodel: nn.Module) -> Iterator[tuple[str, QuantLayer]]:
    for name, module in qmodel.named_modules():
        if isinstance(module, QuantLayer):
            yield name, module


def quantizers(qmodel: nn.Module) -> Iterator[tuple[str, UniformQuantizer]]:
    for name, module in qmodel.named_modules():
        if isinstance(module, UniformQuantizer):
            yield name, module


def set_mode(qmodel: nn.Module, mode: str, which: str = "all") -> None:
    """Switch quantizers to ``quant`` / ``observe`` / ``off``; ``which`` is all, weights or inputs."""
    from .graph_points import graph_quantizers

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


def run_batches(model: nn.Module, calib: torch.Tensor, batch_size: int) -> None:
    with torch.no_grad():
        for start in range(0, len(calib), batch_size):
            model(calib[start : start + batch_size])


def observe_inputs(qmodel: nn.Module, calib: torch.Tensor, batch_size: int, seed: int = 0, samples: bool = True) -> dict[str, RangeObserver]:
    """Feed ``calib`` through the float path and record every layer input (min/max, and a value sample).

    With runtime points, each quantized tensor is observed once and the result also holds the observers of the
    point-owned quantizers (see :func:`srquant.quant.graph_points.observe_points`)."""
    from .graph_points import has_points, observe_points

    if has_points(qmodel):
        return observe_points(qmodel, calib, batch_size, seed, samples)
    observers = {}
    set_mode(qmodel, "off")
    for name, layer in quant_layers(qmodel):
        observer = RangeObserver(layer.input_quant.axis, max_samples=(1 << 21) if samples else 0, seed=seed)
        observers[name] = layer.input_quant.observer = observer
        layer.input_quant.mode = "observe"
    run_batches(qmodel, calib, batch_size)
    for _, layer in quant_layers(qmodel):
        layer.input_quant.observer = None
        layer.input_quant.mode = "off"
    return observers


RangeFn = Callable[[torch.Tensor, UniformQuantizer], tuple[torch.Tensor, torch.Tensor]]


def calibrate_ranges(qmodel: nn.Module, calib: torch.Tensor, config, act_range: Callable[[RangeObserver, UniformQuantizer], tuple],
                     weight_range: RangeFn, samples: bool = True) -> None:
    """Set every weight range with ``weight_range(weight, quantizer)`` and every input range with
    ``act_range(observer, quantizer)``, then switch all quantizers on."""
    from .graph_points import graph_quantizers

    observers = observe_inputs(qmodel, calib, config.batch_size, config.seed, samples)
    done: set[int] = set()  # layers reading one tensor share their input quantizer under runtime points
    for name, layer in quant_layers(qmodel):
        layer.weight_quant.set_range(*weight_range(layer.weight.detach(), layer.weight_quant))
        if id(layer.input_quant) not in done:
            done.add(id(layer.input_quant))
            layer.input_quant.set_range(*act_range(observers[name], layer.input_quant))
    for name, q in graph_quantizers(qmodel):
        q.set_range(*act_range(observers[name], q))
    set_mode(qmodel, "quant")
