"""Activation equalization through positively homogeneous activations (cross-layer scale migration).

For a convolution ``A`` whose only user is a ReLU or leaky ReLU ``f``, and whose activation output is read only as
the whole input of convolutions ``B1..Bk``, ``f(x / s) = f(x) / s`` for ``s > 0``: dividing A's output channel
``i`` (weights and bias) by ``s_i`` and multiplying every ``B``'s input channel ``i`` by ``s_i`` leaves the float
model's output unchanged. An integer runtime gives the activation one scale per tensor, so channels with a small
range waste levels next to channels with a large one; choosing ``s_i = (r_i / r_max) ** alpha`` (``r_i`` the
channel's calibrated range) spreads the small channels over more of the grid, at the cost of a coarser relative
grid for the ``B`` weights of those channels (per output channel, so ``alpha`` < 1 keeps a balance).

The pairs are found on the float model's ``torch.fx`` graph; a model that does not trace gets no equalization.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .walk import run_batches

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU)
ACTIVATION_FUNCTIONS = (F.relu, F.leaky_relu, torch.relu)
MIN_SCALE = 1e-2  # a dead channel is not scaled by more than this


@dataclass(frozen=True)
class ScalingPair:
    """A conv, the positively homogeneous activation after it, and the convs that read the activation."""

    producer: str
    slope: float  # the activation's negative slope (0 for ReLU)
    consumers: tuple[str, ...]


def _activation_slope(node: fx.Node, modules: dict[str, nn.Module]) -> float | None:
    if node.op == "call_module" and isinstance(modules.get(node.target), ACTIVATIONS):
        module = modules[node.target]
        return float(getattr(module, "negative_slope", 0.0))
    if node.op == "call_function" and node.target in ACTIVATION_FUNCTIONS:
        if node.target is F.leaky_relu:
            slope = node.args[1] if len(node.args) > 1 else node.kwargs.get("negative_slope", 0.01)
            return float(slope) if isinstance(slope, (int, float)) and slope >= 0 else None
        return 0.0
    return None


def _plain_conv(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    module = modules.get(node.target) if node.op == "call_module" else None
    return isinstance(module, nn.Conv2d) and module.groups == 1


def scaling_pairs(model: nn.Module) -> list[ScalingPair]:
    """Every conv -> activation -> conv(s) chain of ``model`` that scale migration keeps exact (empty if the model
    does not trace)."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - tracing fails on data-dependent control flow: then no pairs
        return []
    modules = dict(model.named_modules())
    pairs = []
    for node in graph.nodes:
        if not _plain_conv(node, modules) or len(node.users) != 1:
            continue
        act = next(iter(node.users))
        slope = _activation_slope(act, modules)
        users = list(act.users)
        if slope is None or not users or act.args[0] is not node:
            continue
        if all(_plain_conv(u, modules) and u.args[0] is act and len(u.args) == 1 for u in users):
            pairs.append(ScalingPair(node.target, slope, tuple(u.target for u in users)))
    return pairs


def _conv(model: nn.Module, name: str) -> nn.Conv2d:
    """The float conv at ``name`` (a prepared model wraps it in a QuantLayer's ``layer``)."""
    module = model.get_submodule(name)
    return getattr(module, "layer", module)


def channel_extents(model: nn.Module, pairs: list[ScalingPair], calib: torch.Tensor,
                    batch_size: int) -> dict[str, torch.Tensor]:
    """Per output channel of each producer: the extent ``f(max) - f(min)`` of the activation on ``calib``."""
    lo: dict[str, torch.Tensor] = {}
    hi: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(module, args, out):
            c_lo, c_hi = out.detach().amin(dim=(0, 2, 3)), out.detach().amax(dim=(0, 2, 3))
            lo[name] = torch.minimum(lo[name], c_lo) if name in lo else c_lo
            hi[name] = torch.maximum(hi[name], c_hi) if name in hi else c_hi
        return record

    handles = [model.get_submodule(p.producer).register_forward_hook(hook(p.producer)) for p in pairs]
    try:
        run_batches(model, calib, batch_size)
    finally:
        for h in handles:
            h.remove()
    extents = {}
    for p in pairs:
        def act(x, slope=p.slope):
            return torch.where(x >= 0, x, x * slope)
        extents[p.producer] = act(hi[p.producer]) - act(lo[p.producer])
    return extents


def equalization_scales(extents: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """``s_i = (r_i / r_max) ** alpha``, at least :data:`MIN_SCALE`."""
    return {name: (r / r.max().clamp_min(1e-12)).pow(alpha).clamp_min(MIN_SCALE) for name, r in extents.items()}


@torch.no_grad()
def apply_scales(model: nn.Module, pairs: list[ScalingPair], scales: dict[str, torch.Tensor]) -> None:
    """Divide each producer's output channels by its scales, multiply its consumers' input channels by them."""
    for p in pairs:
        s = scales[p.producer]
        producer = _conv(model, p.producer)
        producer.weight.div_(s.view(-1, 1, 1, 1))
        if producer.bias is not None:
            producer.bias.div_(s)
        for name in p.consumers:
            _conv(model, name).weight.mul_(s.view(1, -1, 1, 1))


def equalize(models: list[nn.Module], calib: torch.Tensor, alpha: float, batch_size: int = 8) -> int:
    """Equalize the activations of every model in ``models`` alike (the first measures the ranges; all share the
    float architecture and names). Returns the number of conv -> activation -> conv chains scaled."""
    pairs = scaling_pairs(models[0])
    if not pairs:
        return 0
    scales = equalization_scales(channel_extents(models[0], pairs, calib, batch_size), alpha)
    for model in models:
        apply_scales(model, pairs, scales)
    return len(pairs)
