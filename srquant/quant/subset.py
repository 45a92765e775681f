"""Subset quantization (DFSQ, Zhong et al. 2023): universal sets, the normalized nearest-point activation quantizer,
and per-channel normalization.

Universal set. Each word set holds 4 elements (0 or powers of two); a universal value is the mean of one element
from every word set, negatives are added and duplicates removed. Presets:

* ``"code"``: the word sets of the official code (``cluster_process.py gen_universal_set``),
  {1, 2^-1, 2^-5, 0}, {1, 2^-2, 2^-6, 0}, {1, 2^-3, 2^-7, 0}, {1, 2^-4, 2^-8, 0} -> **377** values.
* ``"paper107"``: RECONSTRUCTED. The paper states 107 values, but its word sets are only in a figure. Among the
  60 families {1, 2^-a, 2^-b, 0}^4 (1 <= a < b <= 8) that give 107 values, this keeps those holding the paper's
  worked example 0.8125 (18 families), then the smallest largest gap in [0, 1] (0.1875), then the finest
  resolution near 0, then lexicographic order: {1, 2^-2, 2^-5, 0} x 3, {1, 2^-5, 2^-8, 0}. Not the authors' set.

The selection of a channel's points from the universal set is in :mod:`srquant.quant.subset_select`.
"""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import torch

from .quantizers import Quantizer

WORD_SETS: dict[str, tuple[tuple[float, ...], ...]] = {
    "code": (
        (1.0, 2.0**-1, 2.0**-5, 0.0),
        (1.0, 2.0**-2, 2.0**-6, 0.0),
        (1.0, 2.0**-3, 2.0**-7, 0.0),
        (1.0, 2.0**-4, 2.0**-8, 0.0),
    ),
    "paper107": (  # reconstructed, see the module docstring
        (1.0, 2.0**-2, 2.0**-5, 0.0),
        (1.0, 2.0**-2, 2.0**-5, 0.0),
        (1.0, 2.0**-2, 2.0**-5, 0.0),
        (1.0, 2.0**-5, 2.0**-8, 0.0),
    ),
}
EPS = 1e-8


def universal_set(word_sets: str | Sequence[Sequence[float]] = "code", negatives: bool = True) -> torch.Tensor:
    """Sorted unique values (float32) of mean(one element per word set), with their negatives when ``negatives``."""
    if isinstance(word_sets, str) and word_sets not in WORD_SETS:
        raise KeyError(f"unknown universal set preset {word_sets!r}; known: {sorted(WORD_SETS)}")
    sets = WORD_SETS[word_sets] if isinstance(word_sets, str) else tuple(tuple(float(v) for v in s) for s in word_sets)
    if not sets or any(len(s) == 0 for s in sets):
        raise ValueError("need at least one non-empty word set")
    values = {sum(combo) / len(sets) for combo in itertools.product(*sets)}
    if negatives:
        values |= {-v for v in values}
    return torch.tensor(sorted(values), dtype=torch.float64).float()


# --------------------------------------------------------------------------------------------------------------
# Nearest-point quantization and per-channel normalization
# --------------------------------------------------------------------------------------------------------------
def nearest_index(x: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Index of the nearest entry of each row of sorted ``points`` (R, K) for the values ``x`` (R, N).

    Ties go to the lower point (as ``argmin`` over |x - q|)."""
    mids = (points[:, 1:] + points[:, :-1]) / 2
    return torch.searchsorted(mids.contiguous(), x.contiguous())


def snap(values: torch.Tensor, universal: torch.Tensor) -> torch.Tensor:
    """Each value replaced by the nearest element of the (sorted) universal set."""
    u = universal.to(values.dtype)
    idx = nearest_index(values.reshape(1, -1), u[None])
    return u[idx].reshape(values.shape)


def quantize_to_points(x: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Nearest point (no gradient) for x of shape (B, C, ...) and sorted ``points`` (C, K) or (1, K)."""
    if points.shape[0] == 1:
        idx = nearest_index(x.reshape(1, -1), points)
        return points[0][idx].reshape(x.shape)
    channels = x.shape[1]
    xt = x.transpose(0, 1).reshape(channels, -1)
    q = torch.gather(points, 1, nearest_index(xt, points))
    return q.reshape(channels, x.shape[0], *x.shape[2:]).transpose(0, 1)


def normalize(x: torch.Tensor, post_relu: torch.Tensor | bool, group: int = 1,
              eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DFSQ's per-sample, per-channel normalization: (x - mean) / (max|x - mean| + eps), no mean for post-ReLU.

    Returns (normalized, scale, shift) with x = normalized * scale + shift. ``post_relu`` is a bool or a (C,) bool
    tensor. ``group`` > 1 (calibration only) pools the statistics over ``group`` consecutive samples, which imitates
    the larger extent of a whole test image when calibrating on small patches (an incomplete last group pools over
    what it has).
    """
    if x.dim() < 3:
        x = x.reshape(*x.shape, 1)  # (B, C) -> (B, C, 1): statistics of one value (lossless; see SubsetQuantizer)
    b, c = x.shape[:2]
    relu = torch.as_tensor(post_relu, device=x.device).reshape(-1)
    relu = relu.reshape(1, -1, *([1] * (x.dim() - 2))) if relu.numel() > 1 else relu.reshape(*([1] * x.dim()))
    if group <= 1:
        dims = tuple(range(2, x.dim()))
        shift = torch.where(relu, 0.0, x.mean(dims, keepdim=True))
        xc = x - shift
        scale = xc.abs().amax(dims, keepdim=True) + eps
        return xc / scale, scale, shift
    parts = []
    unfold = lambda t: t.squeeze(0).transpose(0, 1)  # (1, C, g, ...) -> (g, C, ...)
    for s in range(0, b, group):  # a group of samples is normalized as one sample (1, C, g, ...)
        xn, scale, shift = normalize(x[s : s + group].transpose(0, 1).unsqueeze(0), post_relu, 1, eps)
        size = (min(group, b - s), *([-1] * (x.dim() - 1)))
        parts.append((unfold(xn), unfold(scale).expand(size), unfold(shift).expand(size)))
    return tuple(torch.cat(p) for p in zip(*parts))


class SubsetQuantizer(Quantizer):
    """DFSQ activation quantizer: optional static clamp, per-sample per-channel normalization, nearest point of the
    channel's point set with a straight-through gradient, de-normalization.

    State (all buffers of fixed shape, so ``load_state_dict`` restores it): ``points`` (C, 2^bits) sorted, or
    (1, 2^bits) for layer-wise points, duplicates allowed; ``post_relu`` (C,) bool; ``clamp_lo``/``clamp_hi`` (C,)
    (+-inf: no clamp). Modes as every :class:`~srquant.quant.quantizers.Quantizer`.

    Inputs without spatial extent (e.g. the 1x1 pooled statistics of channel attention) normalize to 0 or +-1, which
    the de-normalization maps back exactly when 0 and 1 are points: DFSQ leaves such inputs effectively unquantized.
    """

    calibrated_key = "points"  # loaded points are calibrated points

    def __init__(self, bits: int, channels: int, channelwise: bool = True, normalize: bool = True):
        if not 1 <= bits <= 8:
            raise ValueError(f"subset quantization supports 1 to 8 bits, got {bits}")
        super().__init__(bits)
        self.channels, self.channelwise, self.normalize = channels, channelwise, normalize
        k = 2**bits
        self.register_buffer("points", torch.linspace(-1, 1, k).repeat(channels if channelwise else 1, 1))
        self.register_buffer("post_relu", torch.zeros(channels, dtype=torch.bool))
        self.register_buffer("clamp_lo", torch.full((channels,), -math.inf))
        self.register_buffer("clamp_hi", torch.full((channels,), math.inf))

    def extra_repr(self) -> str:
        return (f"bits={self.bits}, channels={self.channels}, {'channel' if self.channelwise else 'layer'}-wise points, "
                f"normalize={self.normalize}, mode={self.mode}")

    @torch.no_grad()
    def set_points(self, points: torch.Tensor) -> None:
        points = torch.as_tensor(points, dtype=torch.float32)
        if points.shape != self.points.shape:
            raise ValueError(f"points must have shape {tuple(self.points.shape)}, got {tuple(points.shape)}")
        self.points.copy_(points.sort(dim=1).values)

    def clamp(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` clamped to the static per-channel range [clamp_lo, clamp_hi]."""
        view = (1, -1, *([1] * (x.dim() - 2)))
        return torch.clamp(x, self.clamp_lo.reshape(view), self.clamp_hi.reshape(view))

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        if torch.isfinite(self.clamp_lo).any() or torch.isfinite(self.clamp_hi).any():
            x = self.clamp(x)
        if not self.normalize:
            return x + (quantize_to_points(x.detach(), self.points) - x).detach()
        xn, scale, shift = normalize(x, self.post_relu)
        q = quantize_to_points(xn.detach(), self.points)
        return ((xn + (q - xn).detach()) * scale + shift).reshape(x.shape)
