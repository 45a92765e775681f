"""Turning a float model into a fake-quantized copy, and running calibration data through it."""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from .layers import make_quant_layer
from .observers import RangeObserver
from .points import insert_points
from .quantizers import UniformQuantizer
from .scope import plan
from .walk import act_points, graph_quantizers, has_points, observing, quant_layers, run_batches, set_mode


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
        insert_points(qmodel, config)
    return qmodel


def observe_inputs(qmodel: nn.Module, calib: torch.Tensor, batch_size: int, seed: int = 0, samples: bool = True) -> dict[str, RangeObserver]:
    """Feed ``calib`` through the float path and record every layer input (min/max, and a value sample).

    With runtime points, each quantized tensor is observed once and the result also holds the observers of the
    point-owned quantizers (see :func:`observe_points`)."""
    if has_points(qmodel):
        return observe_points(qmodel, calib, batch_size, seed, samples)
    observers = {name: RangeObserver(layer.input_quant.axis, max_samples=(1 << 21) if samples else 0, seed=seed)
                 for name, layer in quant_layers(qmodel)}
    with observing(qmodel, {layer.input_quant: observers[name] for name, layer in quant_layers(qmodel)}):
        run_batches(qmodel, calib, batch_size)
    return observers


def observe_points(qmodel: nn.Module, calib: torch.Tensor, batch_size: int, seed: int = 0,
                   samples: bool = True) -> dict[str, RangeObserver]:
    """Run ``calib`` through the float path, observing each quantized tensor once (at its primary point).

    Returns observers keyed by QuantLayer name (the observer of the tensor the layer reads) and by the name of
    each point-owned quantizer; layers no point covers (inside opaque modules) observe their own input.
    """
    by_quant: dict[int, RangeObserver] = {}
    observers: dict[str, RangeObserver] = {}
    max_samples = (1 << 21) if samples else 0
    for name, point in act_points(qmodel):
        if point.primary:
            point.observer = RangeObserver(None, max_samples=max_samples, seed=seed)
            by_quant[id(point.quantizer)] = point.observer
            if point.quant is not None:
                observers[f"{name}.quant"] = point.observer
    direct = {}  # layers no point covers (inside opaque modules) observe inside the layer as usual
    for name, layer in quant_layers(qmodel):
        obs = by_quant.get(id(layer.input_quant))
        if obs is None:
            obs = direct[layer.input_quant] = RangeObserver(layer.input_quant.axis, max_samples=max_samples, seed=seed)
        observers[name] = obs
    try:
        with observing(qmodel, direct):
            run_batches(qmodel, calib, batch_size)
    finally:
        for _, point in act_points(qmodel):
            point.observer = None
    return observers


RangeFn = Callable[[torch.Tensor, UniformQuantizer], tuple[torch.Tensor, torch.Tensor]]


def calibrate_ranges(qmodel: nn.Module, calib: torch.Tensor, config, act_range: Callable[[RangeObserver, UniformQuantizer], tuple],
                     weight_range: RangeFn, samples: bool = True) -> None:
    """Set every weight range with ``weight_range(weight, quantizer)`` and every input range with
    ``act_range(observer, quantizer)``, then switch all quantizers on."""
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
