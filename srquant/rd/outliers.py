"""ON(image): the outlier count of the FP32 clip-free model's response to a representative image, and its ranking.

An outlier is by default an output value outside the range the removed clip would have enforced ([0, 255] in pixel
units), i.e. a value the clipped model would have clipped. Other definitions: ``zscore`` (output values more than
``k`` standard deviations from the image's output mean) and ``activation`` (values of chosen layers' outputs whose
magnitude exceeds ``threshold``, in model units). Each outlier is also located on the LR grid (the input pixel under
it), which the local blurs of :mod:`srquant.rd.enhance` repair.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..evaluate import prepare_input
from ..models import sr_info

KINDS = ("range", "zscore", "activation")


@dataclass(frozen=True)
class OutlierConfig:
    """What counts as an outlier. ``lo``, ``hi`` and ``tolerance`` are in 8-bit pixel units (model independent)."""

    kind: str = "range"  # range | zscore | activation
    lo: float = 0.0  # range: valid output interval (the clip's bounds)
    hi: float = 255.0
    tolerance: float = 0.0  # range: values within this distance of [lo, hi] are not outliers
    k: float = 3.0  # zscore: outlier beyond k standard deviations
    threshold: float | None = None  # activation: |value| above this (model units)
    layers: tuple[str, ...] = ("*",)  # activation: fnmatch patterns of the conv layers whose outputs count

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"outlier kind must be one of {KINDS}, got {self.kind!r}")
        if self.hi <= self.lo:
            raise ValueError(f"need lo < hi, got lo={self.lo}, hi={self.hi}")
        if self.tolerance < 0 or self.k <= 0:
            raise ValueError(f"need tolerance >= 0 and k > 0, got tolerance={self.tolerance}, k={self.k}")
        if self.kind == "activation" and (self.threshold is None or self.threshold <= 0):
            raise ValueError("kind='activation' needs a positive threshold (model units)")


@dataclass(frozen=True)
class Outliers:
    """ON and where the outliers sit: ``lr_map[i, j]`` is True when an outlier lies over LR pixel (i, j).

    ``out_range`` is the lowest and highest output value in pixel units: with a uint8 readout an RD whose output
    range falls short of [0, 255] stretches the output as much as one that overshoots (docs/clipfree.md).
    """

    count: int
    lr_map: np.ndarray
    out_range: tuple[float, float]


@dataclass(frozen=True)
class Score:
    name: str
    on: int
    out_range: tuple[float, float] | None = None  # the output's min and max in pixel units


def range_mask(y: torch.Tensor, config: OutlierConfig, input_range: float) -> torch.Tensor:
    """Output values outside [lo - tolerance, hi + tolerance] (pixel units)."""
    px = y * (255.0 / input_range)
    return (px < config.lo - config.tolerance) | (px > config.hi + config.tolerance)


def zscore_mask(y: torch.Tensor, k: float) -> torch.Tensor:
    """Values more than ``k`` standard deviations from the tensor's mean."""
    return (y - y.mean()).abs() > k * y.std()


def to_lr_grid(mask: torch.Tensor, lr_shape: tuple[int, int]) -> np.ndarray:
    """A ...xHxW outlier mask at any resolution -> HxW bool map on the LR grid (the input pixel under each value)."""
    spatial = mask.reshape(-1, *mask.shape[-2:]).any(dim=0).cpu().numpy()
    rows, cols = np.nonzero(spatial)
    lr_map = np.zeros(lr_shape, dtype=bool)
    lr_map[rows * lr_shape[0] // spatial.shape[0], cols * lr_shape[1] // spatial.shape[1]] = True
    return lr_map


def _conv_layers(model: nn.Module, patterns: tuple[str, ...]) -> list[nn.Module]:
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    chosen = [m for n, m in convs if any(fnmatch.fnmatch(n, p) for p in patterns)]
    if not chosen:
        raise ValueError(f"no conv layer matches {list(patterns)}")
    return chosen


def find_outliers(model: nn.Module, lr: np.ndarray, config: OutlierConfig = OutlierConfig()) -> Outliers:
    """ON(lr) for the float model ``model`` (its clip removed) on one LR image (uint8 HxWx3), and the LR map."""
    info = sr_info(model)
    masks: list[torch.Tensor] = []
    hooks = []
    if config.kind == "activation":
        def grab(module, args, out):
            masks.append(out.detach().abs() > config.threshold)

        hooks = [m.register_forward_hook(grab) for m in _conv_layers(model, config.layers)]
    try:
        with torch.inference_mode():
            y = model(prepare_input(lr, info))
    finally:
        for h in hooks:
            h.remove()
    if config.kind == "range":
        masks = [range_mask(y, config, info.input_range)]
    elif config.kind == "zscore":
        masks = [zscore_mask(y, config.k)]
    lr_map = np.zeros(lr.shape[:2], dtype=bool)
    for m in masks:
        lr_map |= to_lr_grid(m, lr.shape[:2])
    px = y * (255.0 / info.input_range)
    return Outliers(int(sum(int(m.sum()) for m in masks)), lr_map, (float(px.min()), float(px.max())))


def score_images(model: nn.Module, images: dict[str, np.ndarray],
                 config: OutlierConfig = OutlierConfig()) -> list[Score]:
    """ON of every image, in the given order."""
    found = {name: find_outliers(model, img, config) for name, img in images.items()}
    return [Score(name, f.count, f.out_range) for name, f in found.items()]


def rank(scores: list[Score]) -> list[Score]:
    """Fewest outliers first (ties by name, so the order is deterministic): good RD images first."""
    return sorted(scores, key=lambda s: (s.on, s.name))


def select_good(scores: list[Score], k: int) -> list[str]:
    """M1: the names of the ``k`` images with the fewest outliers."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return [s.name for s in rank(scores)[:k]]


def select_clean(scores: list[Score], max_on: int = 0) -> list[str]:
    """M1 by threshold: the names of the images with at most ``max_on`` outliers, fewest first."""
    if max_on < 0:
        raise ValueError(f"max_on must be >= 0, got {max_on}")
    return [s.name for s in rank(scores) if s.on <= max_on]
