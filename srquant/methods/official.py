"""The seed methods as their authors' released code runs them (``variant="official"``; docs/fidelity.md).

Three shared pieces: how a config takes the release's values (:func:`apply_official`), which layers the release
quantizes and at which width, mapped onto any model (:func:`official_overrides`, :func:`official_prepare`), and the
release's training loop shape (one Adam per parameter group, absolute learning rates per step:
:func:`train_groups`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..quant.model import prepare
from ..quant.scope import find_ends, layer_call_order
from ..quant.units import find_units

VARIANTS = ("spec", "official")
LAYER_RULES = ("ends8", "first-last8", "blocks")
EIGHT = {"w_bits": 8, "a_bits": 8}
RELEASE_PIXEL_RANGE = 255.0  # the releases run EDSR-style models on pixels in [0, 255]


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def apply_official(config, values: dict[str, Any]) -> None:
    """Give every field of ``config`` still at its dataclass default the release's value from ``values`` (a field
    set to anything else is the caller's explicit choice and stays)."""
    for f in dataclasses.fields(config):
        if f.name in values and getattr(config, f.name) == _default(f):
            setattr(config, f.name, values[f.name])


def block_layers(model: nn.Module, config) -> set[str]:
    """Layers inside the model's multi-layer blocks (EDSR's ResBlocks, IMDN's IMDBs, PAN's SCPA blocks)."""
    probe = prepare(model, dataclasses.replace(config, scope="all", overrides={}))
    return {name for u in find_units(probe, "block") if u.kind == "block" and len(u.layers) > 1 for name, _ in u.layers}


def official_overrides(model: nn.Module, config, rule: str) -> dict[str, Any]:
    """An explicit rule for every executed quantizable layer of ``model`` (``"fp"`` or bit widths):

    * ``ends8``: every layer at the config's widths, head and tail (srquant's :func:`find_ends`) at W8A8
      (OAQ-SR ``--fq``: head, upsampler and last conv at 8 bits);
    * ``first-last8``: every layer at the config's widths, the first and the last conv of the forward at W8A8
      (PTQ4SR ``int8_scope: [conv_first, conv_last]``);
    * ``blocks``: only the layers inside multi-layer blocks, everything else in float (DFSQ quantizes EDSR's
      ResBlock convs only).
    """
    if rule not in LAYER_RULES:
        raise ValueError(f"layer rule must be one of {LAYER_RULES}, got {rule!r}")
    order = layer_call_order(model)
    own = {"w_bits": config.w_bits, "a_bits": config.a_bits}
    if rule == "blocks":
        inside = block_layers(model, config)
        return {n: dict(own) if n in inside else "fp" for n in order}
    if rule == "ends8":
        head, tail = find_ends(model)
        eight = head | tail
    else:
        eight = {order[0], order[-1]}
    return {n: dict(EIGHT) if n in eight else dict(own) for n in order}


def layer_rule_prepare(model: nn.Module, config) -> nn.Module:
    """The prepare step of the methods with official variants: the release's layers when ``config.layer_rule`` is
    set, else :func:`srquant.quant.model.prepare` (a saved model's config lists its layers, so loading it needs the
    plain one)."""
    return official_prepare(model, config, config.layer_rule) if config.layer_rule else prepare(model, config)


def official_prepare(model: nn.Module, config, rule: str) -> nn.Module:
    """The quantized copy with the release's layers; its config (kept for save / load) lists them as overrides, with
    the caller's own overrides on top."""
    overrides = {**official_overrides(model, config, rule), **config.overrides}
    return prepare(model, dataclasses.replace(config, scope="all", overrides=overrides))


def pixel_lr(lr: float, input_range: float) -> float:
    """A learning rate of a pixel-valued parameter (activation bound) given on the release's 0-255 scale, for a
    model whose pixels span ``input_range``."""
    return lr * input_range / RELEASE_PIXEL_RANGE


def cosine_lr(start: float, end: float, steps: int) -> list[float]:
    """PyTorch's CosineAnnealingLR from ``start`` to ``eta_min=end`` over ``steps`` steps, one value per step."""
    return [end + (start - end) * (1 + math.cos(math.pi * t / max(1, steps))) / 2 for t in range(steps)]


def epoch_batches(n: int, batch: int, steps: int, generator: torch.Generator) -> list[torch.Tensor]:
    """``steps`` batches of sample indices, each epoch a fresh shuffle of ``range(n)`` (a shuffling data loader)."""
    out: list[torch.Tensor] = []
    while len(out) < steps:
        perm = torch.randperm(n, generator=generator)
        out += [perm[s:s + batch] for s in range(0, n - batch + 1, batch)] or [perm]
    return out[:steps]


def train_groups(groups: dict[str, Sequence[nn.Parameter]], schedule: Sequence[tuple[str, float]],
                 loss_at: Callable[[int], torch.Tensor]) -> list[float]:
    """One Adam per parameter group (its state kept across the group's phases); step ``t`` updates only group
    ``schedule[t][0]`` at learning rate ``schedule[t][1]`` on ``loss_at(t)``. Returns the losses."""
    optimizers = {name: torch.optim.Adam(list(params), lr=0.0) for name, params in groups.items() if params}
    losses = []
    for step, (name, lr) in enumerate(schedule):
        if name not in optimizers:
            continue
        opt = optimizers[name]
        params = [p for g in opt.param_groups for p in g["params"]]
        for p in params:
            p.requires_grad_(True)
        try:
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss = loss_at(step)
                loss.backward()
            for p in params:
                if p.grad is not None:
                    p.grad.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
            opt.step()
            losses.append(float(loss.detach()))
        finally:
            for p in params:
                p.requires_grad_(False)
    return losses
