"""Mixed precision under a size budget: one bit width per layer, chosen from measured sensitivities.

Three small steps, each usable alone:

* :func:`layer_costs`: what one bit of each layer costs, its weight count and the activation values it reads per LR
  pixel (its input channels times its resolution relative to the input);
* :func:`layer_sensitivities`: the loss each layer alone causes at each candidate width (every other layer in
  float), from models calibrated at each width and a loss on calibration data, never on a test set;
* :func:`allocate_bits`: the widths that keep the size-weighted average weight and activation bits within their
  budgets with the least summed sensitivity (greedy: start every layer at the narrowest candidate, then take the
  upgrade with the best sensitivity gain per budget share until no upgrade fits). One width per layer, for its
  weights and its input; :func:`allocate_split` gives weights and inputs their own widths, each from its own
  sensitivity (``layer_sensitivities(..., part="weights")`` and ``part="inputs"``) and budget.

:func:`bit_overrides` turns an allocation into the ``overrides`` every method config takes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from .layers import QUANTIZABLE
from .walk import quantizers_off

CANDIDATE_BITS = (3, 4, 6, 8)


@dataclass(frozen=True)
class LayerCost:
    """The sizes a layer's bit width multiplies: weight elements and activation values read per LR pixel."""

    params: int
    act_per_pixel: float


def layer_costs(model: nn.Module, example: torch.Tensor, layers: Sequence[str]) -> dict[str, LayerCost]:
    """Weight count and input values per LR pixel of each named layer, from one forward pass of ``example``."""
    modules = dict(model.named_modules())
    missing = [n for n in layers if n not in modules or not isinstance(modules[n], QUANTIZABLE)]
    if missing:
        raise ValueError(f"not quantizable layers of the model: {missing}")
    pixels = example.shape[0] * example.shape[-2] * example.shape[-1]
    seen: dict[str, float] = {}
    hooks = [modules[n].register_forward_pre_hook(
        lambda m, args, n=n: seen.__setitem__(n, seen.get(n, 0.0) + args[0].numel() / pixels)) for n in layers]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return {n: LayerCost(modules[n].weight.numel(), seen.get(n, 0.0)) for n in layers}


SENSITIVITY_PARTS = ("both", "weights", "inputs")


def layer_sensitivities(quantized: Mapping[int, nn.Module], layers: Sequence[str], loss: Callable[[nn.Module], float],
                        part: str = "both", progress: bool = False) -> dict[str, dict[int, float]]:
    """``loss`` with only ``layer`` quantized at width ``b``, for each layer and each width ``b`` of ``quantized``.

    ``quantized`` maps each candidate width to a model calibrated with every layer at that width; each layer's
    quantizers are switched on alone (the rest run float), which equals quantizing that layer alone whenever the
    calibration observes the float path (MinMax, percentile, MSE). ``part`` picks what is switched on: the layer's
    weights and input (``both``), or only one of them. ``loss(model)`` measures it on calibration data (e.g. the
    output MSE against the float model).
    """
    from tqdm.auto import tqdm

    if part not in SENSITIVITY_PARTS:
        raise ValueError(f"part must be one of {SENSITIVITY_PARTS}, got {part!r}")
    result: dict[str, dict[int, float]] = {name: {} for name in layers}
    bar = tqdm(total=len(layers) * len(quantized), desc=f"layer sensitivity ({part})", disable=not progress,
               leave=False)
    for bits, qmodel in quantized.items():
        modules = dict(qmodel.named_modules())
        for name in layers:
            with quantizers_off(qmodel):
                if part != "inputs":
                    modules[name].weight_quant.mode = "quant"
                if part != "weights":
                    modules[name].input_quant.mode = "quant"
                result[name][bits] = float(loss(qmodel))
            bar.update()
    bar.close()
    return result


def average_bits(bits: Mapping[str, int], costs: Mapping[str, LayerCost]) -> tuple[float, float]:
    """Size-weighted average weight bits and activation bits of an allocation."""
    w_total = sum(c.params for c in costs.values())
    a_total = sum(c.act_per_pixel for c in costs.values())
    w = sum(bits[n] * c.params for n, c in costs.items()) / w_total if w_total else 0.0
    a = sum(bits[n] * c.act_per_pixel for n, c in costs.items()) / a_total if a_total else 0.0
    return w, a


def allocate_bits(sensitivity: Mapping[str, Mapping[int, float]], costs: Mapping[str, LayerCost],
                  w_budget: float, a_budget: float | None = None) -> dict[str, int]:
    """Per-layer widths whose size-weighted averages stay within ``w_budget`` (weights) and ``a_budget``
    (activations; default the same) with the least summed sensitivity (greedy, deterministic)."""
    a_budget = w_budget if a_budget is None else a_budget
    if set(sensitivity) != set(costs):
        raise ValueError("sensitivity and costs must name the same layers")
    bits = {n: min(s) for n, s in sensitivity.items()}
    floor_w, floor_a = average_bits(bits, costs)
    if floor_w > w_budget + 1e-9 or floor_a > a_budget + 1e-9:
        raise ValueError(f"budget W{w_budget:g}/A{a_budget:g} is below the narrowest candidate "
                         f"({floor_w:.2f}/{floor_a:.2f} average bits)")
    w_total = sum(c.params for c in costs.values()) or 1
    a_total = sum(c.act_per_pixel for c in costs.values()) or 1
    while True:
        best: tuple[float, str, int] | None = None
        for name in sorted(bits):
            for wider in sorted(b for b in sensitivity[name] if b > bits[name]):
                trial = {**bits, name: wider}
                w, a = average_bits(trial, costs)
                if w > w_budget + 1e-9 or a > a_budget + 1e-9:
                    continue
                gain = sensitivity[name][bits[name]] - sensitivity[name][wider]
                share = (wider - bits[name]) * (costs[name].params / w_total + costs[name].act_per_pixel / a_total)
                ratio = gain / share if share > 0 else float("inf")
                if best is None or ratio > best[0]:
                    best = (ratio, name, wider)
        if best is None or best[0] <= 0:
            return bits
        bits[best[1]] = best[2]


def allocate_split(w_sensitivity: Mapping[str, Mapping[int, float]], a_sensitivity: Mapping[str, Mapping[int, float]],
                   costs: Mapping[str, LayerCost], w_budget: float, a_budget: float | None = None
                   ) -> dict[str, tuple[int, int]]:
    """(weight width, input width) per layer: the weights allocated from their own sensitivity within ``w_budget``,
    the inputs from theirs within ``a_budget`` (default the same), each by :func:`allocate_bits`."""
    a_budget = w_budget if a_budget is None else a_budget
    w_bits = allocate_bits(w_sensitivity, {n: LayerCost(c.params, 0.0) for n, c in costs.items()}, w_budget, 8.0)
    a_bits = allocate_bits(a_sensitivity, {n: LayerCost(0, c.act_per_pixel) for n, c in costs.items()}, 8.0, a_budget)
    return {name: (w_bits[name], a_bits[name]) for name in costs}


def bit_overrides(bits: Mapping[str, int | tuple[int, int]]) -> dict[str, dict[str, int]]:
    """Scope overrides giving each named layer its width: one for weights and activations, or a (weights, input)
    pair."""
    pairs = {name: b if isinstance(b, tuple) else (b, b) for name, b in bits.items()}
    return {name: {"w_bits": w, "a_bits": a} for name, (w, a) in pairs.items()}
