"""Observers (what a quantizer sees during calibration) and range choosers (min/max, percentile, MSE)."""
from __future__ import annotations

import torch

from .primitives import amin_amax, fake_quant, qparams, reduce_dims


class RangeObserver:
    """Running min/max per ``axis`` plus (when ``max_samples`` > 0) a seeded random sample of the values."""

    def __init__(self, axis: int | tuple[int, ...] | None = None, max_samples: int = 1 << 21, seed: int = 0):
        self.axis, self.max_samples = axis, max_samples
        self.lo = self.hi = None
        self.chunks: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def update(self, x: torch.Tensor) -> None:
        lo, hi = amin_amax(x.float(), self.axis)
        self.lo = lo if self.lo is None else torch.minimum(self.lo, lo)
        self.hi = hi if self.hi is None else torch.maximum(self.hi, hi)
        if self.max_samples <= 0:
            return
        self.chunks.append(x.reshape(-1).float())
        if sum(c.numel() for c in self.chunks) > self.max_samples:  # thin to half the budget: amortized cost
            merged = torch.cat(self.chunks)
            keep = torch.randint(merged.numel(), (self.max_samples // 2,), generator=self.generator)
            self.chunks = [merged[keep]]

    def samples(self) -> torch.Tensor:
        return torch.cat(self.chunks)


def percentile_range(values: torch.Tensor, percentile: float) -> tuple[torch.Tensor, torch.Tensor]:
    """[lo, hi] at the (100 - p) and p percentiles of ``values`` (p in (50, 100])."""
    if not 50 < percentile <= 100:
        raise ValueError(f"percentile must be in (50, 100], got {percentile}")
    v, _ = values.flatten().sort()
    n = v.numel()
    k_hi = min(n - 1, int(round(percentile / 100 * (n - 1))))
    k_lo = max(0, int(round((1 - percentile / 100) * (n - 1))))
    return v[k_lo], v[k_hi]


def histogram(values: torch.Tensor, bins: int = 2048) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Counts, bin centres, min and max of ``values``."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        hi = lo + 1e-8
    counts = torch.histc(values.float(), bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1)
    return counts, (edges[:-1] + edges[1:]) / 2, lo, hi


def mse_range(values: torch.Tensor, bits: int, symmetric: bool, grid: int = 40, bins: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """The [lo, hi] among shrunk min/max candidates that minimizes the expected squared quantization error.

    Candidates shrink the lower and upper bound independently (``grid`` x ``grid`` pairs, fractions 0.2 .. 1);
    the error is evaluated on a ``bins``-bin histogram of ``values``.
    """
    counts, centres, lo, hi = histogram(values, bins)
    fracs = torch.linspace(0.2, 1.0, grid)
    cand_lo = (lo * fracs)[:, None].expand(grid, grid).reshape(-1, 1)
    cand_hi = (hi * fracs)[None, :].expand(grid, grid).reshape(-1, 1)
    if symmetric:  # one bound is enough: use the diagonal
        cand_lo, cand_hi = (lo * fracs)[:, None], (hi * fracs)[:, None]
    err = ((fake_quant(centres[None, :], *qparams(cand_lo, cand_hi, bits, symmetric)) - centres) ** 2 * counts).sum(1)
    best = int(err.argmin())
    return cand_lo[best, 0], cand_hi[best, 0]


def mse_range_weights(w: torch.Tensor, axis, bits: int, symmetric: bool, grid: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight clipping per ``axis`` group (channel, kernel or whole tensor): shrink each group's min/max by the
    factor with the least squared error."""
    lo, hi = amin_amax(w, axis)
    best_err = torch.full_like(lo, float("inf"))
    best_lo, best_hi = lo.clone(), hi.clone()
    dims = reduce_dims(w, axis)
    for frac in torch.linspace(0.3, 1.0, grid):
        c_lo, c_hi = lo * frac, hi * frac
        err = ((fake_quant(w, *qparams(c_lo, c_hi, bits, symmetric)) - w) ** 2).sum(dim=dims, keepdim=True)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_lo, best_hi = torch.where(better, c_lo, best_lo), torch.where(better, c_hi, best_hi)
    return best_lo, best_hi


class TensorList:
    """An observer that keeps every tensor it sees (DFSQ selects its points from whole layer inputs)."""

    def __init__(self):
        self.tensors: list[torch.Tensor] = []

    def update(self, x: torch.Tensor) -> None:
        self.tensors.append(x)
