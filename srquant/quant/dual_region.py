"""Dual-region activation quantizer of outlier-aware PTQ (Wang et al., ICCV 2025, arXiv 2511.00682).

A breakpoint ``bp > 0`` splits the clipping range [l_a, u_a] into a dense region [-bp, bp] and an outlier region
[l_a, -bp) and (bp, u_a]; each region is quantized uniformly with its own step. ``bp``, ``l_a`` and ``u_a`` are
learnable through the straight-through rounding of :func:`srquant.quant.primitives.round_ste`.

How the 2^b levels are split between the regions (``level_split``):

* ``"summary"`` (the default; the allocation the secondary summary of the paper reports): the dense region holds
  2^(b-1) - 1 levels (a symmetric grid with 0 and +-bp), each outlier side 2^(b-2) - 1 more levels (a grid starting
  at the shared point +-bp and ending at u_a / l_a). 4 bits: 7 + 3 + 3 = 13 distinct values.
* ``"full"`` (a reconstruction that spends every code): dense 2^(b-1) levels on [-bp, bp] (0 is then not a level),
  2^(b-2) levels per outlier side beyond +-bp. 4 bits: 8 + 4 + 4 = 16 values.

One-sided form (a reconstruction, ``one_sided=True``): for inputs that are never negative (calibration minimum
>= 0) the negative side is dropped and its codes go to the other regions: dense [0, bp] with 2^(b-1) levels and
(bp, u_a] with 2^(b-1) - 1 ("summary") or 2^(b-1) ("full") more levels; negative inputs are clamped to 0.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .observers import RangeObserver, histogram
from .primitives import EPS, round_ste
from .quantizers import Quantizer

LEVEL_SPLITS = ("summary", "full")


def split_levels(bits: int, split: str = "summary", one_sided: bool = False) -> tuple[int, int]:
    """(levels of the dense region including its ends, levels of each outlier side beyond the breakpoint)."""
    if split not in LEVEL_SPLITS:
        raise ValueError(f"level_split must be one of {LEVEL_SPLITS}, got {split!r}")
    if not 2 <= bits <= 8:
        raise ValueError(f"dual-region quantization supports 2 to 8 bits, got {bits}")
    half, quarter = 2 ** (bits - 1), 2 ** (bits - 2)
    if one_sided:
        dense, side = half, half - 1 if split == "summary" else half
    else:
        dense, side = (half - 1, quarter - 1) if split == "summary" else (half, quarter)
    if dense < 2 or side < 1:
        raise ValueError(f"level_split={split!r} leaves no outlier levels at {bits} bits; use level_split='full'")
    return dense, side


def abs_percentile(x: torch.Tensor, percentile: float) -> torch.Tensor:
    """The ``percentile``-th percentile of |x| (nearest rank: the ceil(p/100 * n)-th smallest value)."""
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    flat = x.detach().abs().reshape(-1).float()
    k = max(1, min(flat.numel(), math.ceil(percentile / 100 * flat.numel() - 1e-9)))
    return flat.kthvalue(k).values


def dual_region_quant(x: torch.Tensor, l_a: torch.Tensor, u_a: torch.Tensor, bp: torch.Tensor, dense_levels: int,
                      side_levels: int, one_sided: bool = False) -> torch.Tensor:
    """Fake-quantize ``x`` on the dual-region grid (straight-through rounding; gradients reach l_a, u_a and bp).

    The parameters are used in a consistent form: bp >= EPS, u_a >= bp, and (two-sided) l_a <= -bp; an outlier side
    whose bound lies inside the dense region is empty. ``x`` is clamped to [l_a, u_a] ([0, u_a] one-sided).
    """
    bp = bp.clamp_min(EPS)
    upper = torch.maximum(u_a, bp)
    dense_lo = torch.zeros_like(bp) if one_sided else -bp
    lower = dense_lo if one_sided else torch.minimum(l_a, -bp)
    x = torch.minimum(torch.maximum(x, lower), upper)
    # each region is a uniform grid start + k * step, k >= 0 (the negative side runs down from -bp: step < 0)
    start = torch.where(x > bp, bp, dense_lo)
    step = torch.where(x > bp, (upper - bp).clamp_min(EPS) / side_levels, (bp - dense_lo) / (dense_levels - 1))
    if not one_sided:
        start = torch.where(x < -bp, -bp, start)
        step = torch.where(x < -bp, -(-bp - lower).clamp_min(EPS) / side_levels, step)
    return start + round_ste((x - start) / step) * step


class EMAObserver(RangeObserver):
    """Per-batch min, max and ``percentile`` of |x|, each averaged over batches with an EMA
    (``v <- beta * v + (1 - beta) * batch value``, the first batch initialises); plus what a per-tensor
    :class:`RangeObserver` keeps (overall min / max, a seeded sample of ``max_samples`` values)."""

    def __init__(self, beta: float = 0.9, percentile: float = 99.0, max_samples: int = 0, seed: int = 0):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"EMA beta must be in [0, 1), got {beta}")
        super().__init__(None, max_samples, seed)
        self.beta, self.percentile = beta, percentile
        self.ema: dict[str, torch.Tensor] = {}

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        super().update(x)
        batch = {"min": x.min(), "max": x.max(), "bp": abs_percentile(x, self.percentile)}
        for key, value in batch.items():
            self.ema[key] = value if key not in self.ema else self.beta * self.ema[key] + (1 - self.beta) * value


def dual_region_mse_range(values: torch.Tensor, bits: int, split: str = "summary", one_sided: bool = False,
                          grid: int = 12, bins: int = 2048) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(l_a, u_a, bp) with the least expected squared quantization error of ``values`` (on a ``bins``-bin histogram)
    among a grid: u_a and l_a shrunk from the max / min by fractions 0.2 .. 1 (``grid`` each), bp a fraction
    1/(2 grid) .. 1 of max |x| (``2 grid`` values)."""
    counts, centres, lo, hi = histogram(values, bins)
    dense, side = split_levels(bits, split, one_sided)
    fracs = torch.linspace(0.2, 1.0, grid)
    span = max(abs(lo), abs(hi), EPS)
    u_a, l_a, bp = torch.meshgrid(hi * fracs, lo * (fracs if not one_sided else fracs[-1:]),
                                  span * torch.linspace(1 / (2 * grid), 1.0, 2 * grid), indexing="ij")
    u_a, l_a, bp = (t.reshape(-1, 1) for t in (u_a, l_a, bp))
    err = ((dual_region_quant(centres[None, :], l_a, u_a, bp, dense, side, one_sided) - centres) ** 2 * counts).sum(1)
    best = int(err.argmin())
    return l_a[best, 0], u_a[best, 0], bp[best, 0]


class DualRegionQuantizer(Quantizer):
    """Per-tensor dual-region activation quantizer with learnable ``l_a``, ``u_a`` and ``bp``.

    Modes as :class:`~srquant.quant.quantizers.UniformQuantizer`: ``"quant"`` (fake-quantize), ``"observe"`` (pass
    through and call ``observer.update``), ``"off"``. The one-sided flag is a buffer, so a loaded state dict restores
    the exact grid (loading also switches the quantizer to ``"quant"``).
    """

    calibrated_key = "bp"  # a saved breakpoint is a calibrated one

    def __init__(self, bits: int, level_split: str = "summary"):
        split_levels(bits, level_split, one_sided=True)  # validates bits and split
        super().__init__(bits)
        self.level_split, self.axis = level_split, None
        self.l_a = nn.Parameter(torch.tensor(-1.0), requires_grad=False)
        self.u_a = nn.Parameter(torch.tensor(1.0), requires_grad=False)
        self.bp = nn.Parameter(torch.tensor(0.5), requires_grad=False)
        self.register_buffer("one_sided", torch.tensor(False))

    def extra_repr(self) -> str:
        dense, side = self.levels()
        sides = 1 if bool(self.one_sided) else 2
        return f"bits={self.bits}, {self.level_split}: dense {dense} + {sides}x{side} outlier levels, mode={self.mode}"

    def levels(self) -> tuple[int, int]:
        return split_levels(self.bits, self.level_split, bool(self.one_sided))

    @torch.no_grad()
    def set_range(self, l_a, u_a, bp, one_sided: bool = False) -> None:
        """Set the clipping bounds and breakpoint (validated against the grid's needs) and switch to ``"quant"``."""
        if not one_sided:
            split_levels(self.bits, self.level_split, one_sided=False)
        self.one_sided.fill_(bool(one_sided))
        for name, value in (("l_a", l_a), ("u_a", u_a), ("bp", bp)):
            getattr(self, name).copy_(torch.as_tensor(value, dtype=torch.float32).reshape(()))
        self.mode = "quant"

    def range_params(self) -> dict[str, list[nn.Parameter]]:
        """Learnable range parameters by group for the tuning loop: ``bounds`` [l_a, u_a], ``breakpoint`` [bp]."""
        return {"bounds": [self.l_a, self.u_a], "breakpoint": [self.bp]}

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        return dual_region_quant(x, self.l_a, self.u_a, self.bp, *self.levels(), one_sided=bool(self.one_sided))



# --------------------------------------------------------------------------------------------------------------
# The released code's grid (haiiling/OAQ-SR, src/model/quantize.py, QConv2d.forward)
# --------------------------------------------------------------------------------------------------------------
def _affine_grid(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, levels: int) -> torch.Tensor:
    """``levels`` uniform levels from ``lo`` to ``hi`` (both included); ``x`` is clamped with the bounds detached,
    so the bounds learn only through the step and offset (as the release's float() clamps)."""
    step = (hi - lo).clamp_min(EPS) / (levels - 1)
    x = torch.minimum(torch.maximum(x, lo.detach()), hi.detach())
    return torch.clamp(round_ste((x - lo) / step), 0, levels - 1) * step + lo


def _symmetric_grid(x: torch.Tensor, bp: torch.Tensor, levels: int) -> torch.Tensor:
    """The release's dense region: step 2 bp / (levels - 1), integer codes -levels/2 .. levels/2 - 1 (0 is a level)."""
    step = 2 * bp.clamp_min(EPS) / (levels - 1)
    x = torch.minimum(torch.maximum(x, -bp.detach()), bp.detach())
    return torch.clamp(round_ste(x / step), -(levels // 2), levels // 2 - 1) * step


def release_quant(x: torch.Tensor, l_a: torch.Tensor, u_a: torch.Tensor, bp: torch.Tensor, dense_bits: int) -> torch.Tensor:
    """The released dual-region grid with ``dense_bits`` = b. If ``l_a < -bp``: dense [-bp, bp] with 2^b codes and
    each tail ([l_a, -bp], [bp, u_a]) with 2^(b-1); else [l_a, bp] and [bp, u_a] with 2^b codes each. Either way
    2^(b+1) codes: a (b+1)-bit activation. The branch is chosen at every call, as in the release."""
    full, half = 2**dense_bits, 2 ** (dense_bits - 1)
    if bool(l_a < -bp):
        out = torch.where(x > -bp, _symmetric_grid(x, bp, full), _affine_grid(x, l_a, -bp, half))
        return torch.where(x < bp, out, _affine_grid(x, bp, u_a, half))
    return torch.where(x > bp, _affine_grid(x, bp, u_a, full), _affine_grid(x, l_a, bp, full))


def release_codes(dense_bits: int) -> int:
    """Codes of :func:`release_quant` at ``dense_bits`` (either branch): 2^(b+1)."""
    return 2 ** (dense_bits + 1)


def grid_codes(bits: int, split: str = "summary", one_sided: bool = False) -> int:
    """Distinct values of the spec's dual-region grid (:func:`split_levels`; +-bp are shared between regions)."""
    dense, side = split_levels(bits, split, one_sided)
    return dense + side * (1 if one_sided else 2)


class ReleaseDualRegionQuantizer(DualRegionQuantizer):
    """The release's dual-region quantizer (:func:`release_quant`). ``code_bits`` is the activation width it really
    uses: ``bits + 1`` with ``fair=False`` (the release: the dense region gets the full ``bits``), ``bits`` with
    ``fair=True`` (the same grid one bit narrower: dense ``bits - 1``)."""

    def __init__(self, bits: int, fair: bool = False):
        super().__init__(bits, "full")
        self.fair = fair
        if self.dense_bits < 2:
            raise ValueError(f"the release grid needs a dense region of >= 2 bits, got {self.dense_bits}")

    @property
    def dense_bits(self) -> int:
        return self.bits - 1 if self.fair else self.bits

    @property
    def code_bits(self) -> int:
        return self.dense_bits + 1

    def extra_repr(self) -> str:
        return f"bits={self.bits}, release grid, {release_codes(self.dense_bits)} codes, mode={self.mode}"

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        return release_quant(x, self.l_a, self.u_a, self.bp, self.dense_bits)
