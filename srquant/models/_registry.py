"""Model registry: every architecture registers a :class:`ModelSpec`; :func:`create` is the one constructor."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn

from ..errors import ModelError
from .checkpoints import load_state_dict_into


@dataclass(frozen=True)
class SRInfo:
    """What an evaluator needs to know to feed a model and read its output."""

    name: str
    scale: int
    input_range: float = 1.0  # 1.0 -> pixels in [0, 1]; 255.0 -> pixels in [0, 255]
    color: str = "rgb"  # "rgb" (3 channels in and out) or "y" (luma only, MATLAB rgb2ycbcr)
    upsample_input: bool = False  # True: the input is the bicubic-upsampled LR (VDSR)
    clip_output: bool = False  # True: the network itself clamps its output to the valid range


@dataclass(frozen=True)
class ModelSpec:
    """Declared defaults of one architecture (the timm ``default_cfg`` idea)."""

    name: str
    builder: Callable[..., nn.Module]
    scales: tuple[int, ...]
    input_range: float = 1.0
    color: str = "rgb"
    upsample_input: bool = False
    multi_scale: bool = False  # one network serves all scales; forward(x, scale=None) picks the branch
    checkpoint_keys: tuple[str, ...] = ("params_ema", "params", "state_dict", "model")
    strip_prefixes: tuple[str, ...] = ("module.",)
    remap_keys: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
    ignore_keys: tuple[str, ...] = ()  # glob patterns of checkpoint keys that carry no weights (buffers, counters)
    default_weights: Mapping[int, str] = field(default_factory=dict)  # scale -> file in srquant/assets
    kwargs: Mapping[str, object] = field(default_factory=dict)
    blocks: tuple[str, ...] = ()  # fnmatch patterns of the blocks reconstruction methods tune (empty: auto-detect)
    description: str = ""
    weights_note: str = ""  # where official weights come from / what the zoo tests against


_REGISTRY: dict[str, ModelSpec] = {}
ASSETS = Path(__file__).resolve().parent.parent / "assets"


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    key = name.lower()
    if key not in _REGISTRY:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def list_models(pattern: str = "*") -> list[str]:
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def create(
    name: str,
    scale: int,
    weights: str | Path | None = None,
    *,
    pretrained: bool = False,
    strict: bool = True,
    **kwargs,
) -> nn.Module:
    """Build model ``name`` at ``scale``; load ``weights`` (a checkpoint path) or the embedded default.

    The returned module is in eval mode and carries ``model.sr_info`` (:class:`SRInfo`).
    """
    spec = get_spec(name)
    if scale not in spec.scales:
        raise ModelError(f"{spec.name} supports scales {spec.scales}, not x{scale}")
    model = spec.builder(scale=scale, **{**spec.kwargs, **kwargs})
    if weights is None and pretrained:
        if scale not in spec.default_weights:
            raise FileNotFoundError(f"srquant ships no embedded weights for {spec.name} x{scale}")
        weights = ASSETS / spec.default_weights[scale]
    if weights is not None:
        load_state_dict_into(model, weights, spec, strict=strict)
    model.eval()
    model.srquant_build = {"name": spec.name, "scale": scale, "kwargs": dict(kwargs)}  # how to rebuild it (artifacts)
    model.sr_info = SRInfo(
        name=spec.name,
        scale=scale,
        input_range=spec.input_range,
        color=spec.color,
        upsample_input=spec.upsample_input,
        clip_output=bool(getattr(model, "clip_output", False)),
    )
    return model


def sr_info(model: nn.Module, scale: int | None = None) -> SRInfo:
    """The model's :class:`SRInfo`; a foreign model gets RGB, [0, 1] defaults at ``scale``."""
    info = getattr(model, "sr_info", None)
    if info is not None:
        return info
    if scale is None:
        raise ValueError("a model built outside srquant.models.create needs an explicit scale")
    return SRInfo(name=type(model).__name__.lower(), scale=scale)
