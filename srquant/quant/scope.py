"""Which layers are quantized, at which bit widths: presets ``body``, ``all-ends8``, ``all`` plus name overrides.

The head (first convolution) and tail (the convolutions that feed the first upsampling op, and every convolution
after it) are found from the traced graph, so the presets work on models srquant does not know.
"""
from __future__ import annotations

import contextlib
import fnmatch
import inspect
import io
from dataclasses import dataclass

import torch
import torch.fx as fx
from torch.fx.passes.shape_prop import ShapeProp
from torch import nn

from .layers import QUANTIZABLE

SCOPES = ("body", "all-ends8", "all")


@dataclass(frozen=True)
class LayerBits:
    w_bits: int
    a_bits: int


def _quantizable_names(model: nn.Module) -> list[str]:
    """Conv/deconv/linear layers with trainable weights (frozen ones, e.g. mean shifts, stay float)."""
    return [n for n, m in model.named_modules() if isinstance(m, QUANTIZABLE) and m.weight.requires_grad]


def _example_input(model: nn.Module, first_layer: nn.Module) -> torch.Tensor:
    """A 1x C x 16 x 16 input (C from the model's ``sr_info`` colour space or the first layer's in-channels)."""
    info = getattr(model, "sr_info", None)
    channels = (1 if info.color == "y" else 3) if info else first_layer.weight.shape[1]
    return torch.rand(1, channels, 16, 16, generator=torch.Generator().manual_seed(0))


def layer_call_order(model: nn.Module) -> list[str]:
    """Names of the quantizable layers a forward pass actually runs, in the order it first runs them (multi-scale
    nets skip other scales' branches)."""
    names = _quantizable_names(model)
    if not names:
        return []
    modules = dict(model.named_modules())
    order: list[str] = []
    handles = [modules[n].register_forward_pre_hook(lambda *_, n=n: order.append(n)) for n in names]
    try:
        with torch.no_grad():
            model(_example_input(model, modules[names[0]]))
    finally:
        for h in handles:
            h.remove()
    return list(dict.fromkeys(order))


def executed_layers(model: nn.Module) -> set[str]:
    """Names of the quantizable layers a forward pass actually runs."""
    return set(layer_call_order(model))


def trace(model: nn.Module) -> fx.GraphModule:
    """FX-trace ``model``; forward arguments after the input with defaults are fixed to those defaults."""
    params = list(inspect.signature(model.forward).parameters.values())[1:]
    concrete = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    return fx.symbolic_trace(model, concrete_args=concrete or None)


def find_ends(model: nn.Module) -> tuple[set[str], set[str]]:
    """(head, tail) layer names from the traced graph.

    The upsampling op is the first node whose output is spatially larger than the input (found by shape
    propagation on a 16x16 input), so attention branches that pool and re-interpolate are not mistaken for it.
    If tracing fails, the first and last quantizable layers are returned.
    """
    names = _quantizable_names(model)
    if not names:
        return set(), set()
    modules = dict(model.named_modules())
    try:
        gm = trace(model)
        example = _example_input(model, modules[names[0]])
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):  # ShapeProp prints tracebacks itself
            ShapeProp(gm).propagate(example)
    except Exception:  # untraceable forward (data-dependent control flow): fall back to module order
        return {names[0]}, {names[-1]}
    quantizable = set(names)

    def is_conv(n: fx.Node) -> bool:
        return n.op == "call_module" and str(n.target) in quantizable

    def is_upsample(n: fx.Node) -> bool:
        meta = n.meta.get("tensor_meta")
        return hasattr(meta, "shape") and len(meta.shape) == 4 and meta.shape[-1] > 16 and meta.shape[-2] > 16

    order = list(gm.graph.nodes)
    convs = [n for n in order if is_conv(n)]
    if not convs:
        return set(), set()
    head = {str(convs[0].target)}
    first_up = next((i for i, n in enumerate(order) if is_upsample(n)), None)
    if first_up is None:
        return head, {str(convs[-1].target)}
    tail = {str(n.target) for n in order[first_up:] if is_conv(n)}
    stack, seen = list(order[first_up].all_input_nodes), set()
    while stack:  # convs reaching the upsampling op without passing through another conv
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if is_conv(node):
            tail.add(str(node.target))
        else:
            stack.extend(node.all_input_nodes)
    return head, tail - head


def plan(
    model: nn.Module,
    scope: str,
    w_bits: int,
    a_bits: int,
    overrides: dict[str, dict | str] | None = None,
) -> dict[str, LayerBits]:
    """Bit widths per quantizable layer name; layers left out stay in floating point, as do layers a forward
    pass never runs (they would observe nothing during calibration).

    ``overrides`` maps fnmatch patterns to ``"fp"`` (keep float) or ``{"w_bits": .., "a_bits": ..}``; later
    patterns win.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of {SCOPES}")
    head, tail = find_ends(model)
    executed = executed_layers(model)
    result: dict[str, LayerBits] = {}
    for name in _quantizable_names(model):
        if name not in executed:
            continue
        if name in head or name in tail:
            if scope == "body":
                continue
            bits = LayerBits(8, 8) if scope == "all-ends8" else LayerBits(w_bits, a_bits)
        else:
            bits = LayerBits(w_bits, a_bits)
        result[name] = bits
    for pattern, rule in (overrides or {}).items():
        matched = [n for n in _quantizable_names(model) if fnmatch.fnmatch(n, pattern)]
        if not matched:
            raise ValueError(f"override pattern {pattern!r} matches no quantizable layer")
        for name in matched:
            if name not in executed:
                continue
            if rule == "fp":
                result.pop(name, None)
            elif isinstance(rule, dict):
                base = result.get(name, LayerBits(w_bits, a_bits))
                result[name] = LayerBits(int(rule.get("w_bits", base.w_bits)), int(rule.get("a_bits", base.a_bits)))
            else:
                raise ValueError(f"override for {pattern!r} must be 'fp' or a dict of bit widths, not {rule!r}")
    return result
