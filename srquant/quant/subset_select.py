"""Selecting a channel's 2^bits points from a universal set (DFSQ, see :mod:`srquant.quant.subset`): fast k-means
with centroids snapped to the set, exhaustive search over subsets, and the exact optimum by dynamic programming.

Point selection works on per-channel value matrices ``x`` of shape (C, N) (C = 1 for layer-wise points). All
three selectors sort each row once and use prefix sums, so a quantization loss or a k-means step costs
O(C k log N) instead of O(C N k); everything is vectorized over channels (torch uses both cores).
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from .subset import snap

# --------------------------------------------------------------------------------------------------------------
# Sorted rows + prefix sums: the quantization loss of any sorted point set in O(k log N)
# --------------------------------------------------------------------------------------------------------------
class SortedRows:
    """Rows of values sorted once, with float64 prefix sums of x and x^2 (for segment costs)."""

    def __init__(self, x: torch.Tensor):
        if x.dim() == 1:
            x = x[None]
        # numpy's sort is ~10x faster than torch.sort on CPU rows of this size
        self.x = torch.from_numpy(np.sort(np.ascontiguousarray(x.detach().float().cpu().numpy()), axis=1))
        xd = self.x.double()
        zero = torch.zeros(xd.shape[0], 1, dtype=torch.float64)
        self.s1 = torch.cat([zero, xd.cumsum(1)], 1)
        self.s2 = torch.cat([zero, (xd * xd).cumsum(1)], 1)
        self.rows, self.n = self.x.shape

    def take(self, index: slice) -> "SortedRows":
        """The rows at ``index`` (shares storage)."""
        part = SortedRows.__new__(SortedRows)
        part.x, part.s1, part.s2 = self.x[index], self.s1[index], self.s2[index]
        part.rows, part.n = part.x.shape
        return part

    def count_le(self, t: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Number of values <= t per row (t: (R, M); ``rows`` selects which sorted rows, default all)."""
        xs = self.x if rows is None else self.x[rows]
        return torch.searchsorted(xs, t.float().contiguous(), right=True)

    def count_lt(self, t: torch.Tensor) -> torch.Tensor:
        return torch.searchsorted(self.x, t.float().contiguous(), right=False)

    def segment(self, lo: torch.Tensor, hi: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(count, sum, squared error about c) of the values with sorted indices [lo, hi) per row."""
        n = (hi - lo).double()
        s1 = self.s1.gather(1, hi) - self.s1.gather(1, lo)
        s2 = self.s2.gather(1, hi) - self.s2.gather(1, lo)
        c = c.double()
        return n, s1, (s2 - 2 * c * s1 + c * c * n).clamp_min(0)

    def assign(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cluster boundaries [lo, hi) of sorted ``points`` (R, K): values go to the nearest point (ties lower)."""
        mids = (points[:, 1:] + points[:, :-1]) / 2
        cut = self.count_le(mids)
        zeros = torch.zeros(self.rows, 1, dtype=torch.long)
        full = torch.full((self.rows, 1), self.n, dtype=torch.long)
        return torch.cat([zeros, cut], 1), torch.cat([cut, full], 1)

    def loss(self, points: torch.Tensor) -> torch.Tensor:
        """Sum over each row of min_q (x - q)^2 for sorted ``points`` (R, K) (float64)."""
        lo, hi = self.assign(points)
        return self.segment(lo, hi, points)[2].sum(1)


def quant_loss(x: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Per-row sum of squared nearest-point quantization error of ``x`` (R, N) to ``points`` (R, K) or (1, K)."""
    points = points.sort(dim=1).values.expand(x.shape[0] if x.dim() == 2 else 1, -1)
    return SortedRows(x).loss(points)


# --------------------------------------------------------------------------------------------------------------
# Fast selection: 1-D k-means (vectorized over rows), snap centroids to the universal set
# --------------------------------------------------------------------------------------------------------------
def _init_random(rows: SortedRows, k: int, gen: torch.Generator) -> torch.Tensor:
    idx = torch.randint(rows.n, (rows.rows, k), generator=gen)
    return rows.x.gather(1, idx)


def _init_kmeanspp(rows: SortedRows, k: int, gen: torch.Generator, pinned: torch.Tensor | None,
                   max_points: int = 2048) -> torch.Tensor:
    """k-means++ seeding on a subsample of each row (D^2 sampling); ``pinned`` (R, m) centroids count as chosen."""
    n = rows.n
    sub = rows.x if n <= max_points else rows.x[:, torch.randint(n, (max_points,), generator=gen)]
    chosen = [] if pinned is None else [pinned[:, i : i + 1] for i in range(pinned.shape[1])]
    if not chosen:
        first = sub.gather(1, torch.randint(sub.shape[1], (sub.shape[0], 1), generator=gen))
        chosen.append(first)
    dist = torch.stack([(sub - c) ** 2 for c in chosen]).amin(0)
    out = [] if pinned is not None else [chosen[0]]
    while len(out) < k:  # D^2 sampling by inverse CDF (torch.multinomial is slow on wide rows)
        cdf = dist.double().cumsum(1)
        total = cdf[:, -1:]
        cdf = torch.where(total > 0, cdf, torch.arange(1, cdf.shape[1] + 1, dtype=torch.float64)[None])  # all covered
        r = torch.rand(dist.shape[0], 1, generator=gen, dtype=torch.float64) * cdf[:, -1:]
        pick = torch.searchsorted(cdf, r, right=True).clamp_max(dist.shape[1] - 1)
        c = sub.gather(1, pick)
        out.append(c)
        dist = torch.minimum(dist, (sub - c) ** 2)
    return torch.cat(out, 1)


def kmeans_1d(x: torch.Tensor | SortedRows, k: int, pin_zero: bool = False, iters: int = 100, tol: float = 1e-4,
              init: str = "kmeans++", generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on each row of ``x`` (R, N), all rows at once. Returns sorted centroids (R, k) and SSE (R,).

    ``pin_zero`` fixes one centroid at 0 (the official code's KMeans: k-1 free centroids plus 0). Empty clusters keep
    their centroid. Stops when no centroid moves more than ``tol`` or after ``iters`` steps.
    """
    rows = x if isinstance(x, SortedRows) else SortedRows(x)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    free = k - 1 if pin_zero else k
    zero = torch.zeros(rows.rows, 1)
    if init == "random":
        cent = _init_random(rows, free, gen)
    elif init == "kmeans++":
        cent = _init_kmeanspp(rows, free, gen, zero if pin_zero else None)
    else:
        raise ValueError(f"unknown k-means init {init!r} (kmeans++, random)")
    pinned = torch.zeros(rows.rows, k, dtype=torch.bool)
    if pin_zero:
        cent = torch.cat([zero, cent], 1)
        pinned[:, 0] = True
    cent, order = cent.sort(dim=1)
    pinned = pinned.gather(1, order)
    for _ in range(iters):
        lo, hi = rows.assign(cent)
        n, s1, _ = rows.segment(lo, hi, cent)
        new = torch.where((n > 0) & ~pinned, s1 / n.clamp_min(1), cent.double()).float()
        shift = (new - cent).abs().max()
        new, order = new.sort(dim=1)
        cent, pinned = new, pinned.gather(1, order)
        if shift <= tol:
            break
    return cent, rows.loss(cent)


def select_kmeans(x: torch.Tensor | SortedRows, universal: torch.Tensor, bits: int, restarts: int = 5,
                  pin_zero: bool = True, criterion: str = "quant_loss", iters: int = 100, tol: float = 1e-4,
                  init: str = "kmeans++", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """DFSQ's fast selection, per row: ``restarts`` k-means runs (k = 2^bits), centroids snapped to the universal set;
    per row keep the restart with the lowest quantization loss after snapping (``criterion="quant_loss"``, the
    official code) or the lowest k-means SSE (``"sse"``, the paper). Returns sorted points (R, 2^bits) (duplicates
    possible) and their quantization losses (R,)."""
    if criterion not in ("quant_loss", "sse"):
        raise ValueError(f"criterion must be quant_loss or sse, got {criterion!r}")
    if restarts < 1:
        raise ValueError("restarts must be >= 1")
    rows = x if isinstance(x, SortedRows) else SortedRows(x)
    gen = torch.Generator().manual_seed(seed)
    best_pts = best_loss = best_key = None
    for _ in range(restarts):
        cent, sse = kmeans_1d(rows, 2**bits, pin_zero, iters, tol, init, gen)
        pts = snap(cent, universal).sort(dim=1).values
        loss = rows.loss(pts)
        key = loss if criterion == "quant_loss" else sse
        if best_pts is None:
            best_pts, best_loss, best_key = pts, loss, key
        else:
            better = key < best_key
            best_pts = torch.where(better[:, None], pts, best_pts)
            best_loss, best_key = torch.where(better, loss, best_loss), torch.where(better, key, best_key)
    return best_pts, best_loss


# --------------------------------------------------------------------------------------------------------------
# References: exhaustive search over subsets, and the exact optimum by dynamic programming
# --------------------------------------------------------------------------------------------------------------
def select_exhaustive(x: torch.Tensor, universal: torch.Tensor, bits: int, batch: int = 1 << 16,
                      max_subsets: int | None = 50_000_000) -> tuple[torch.Tensor, torch.Tensor]:
    """Try every 2^bits-subset of the universal set on one row of values ``x`` (N,) (or (1, N)); returns the best
    subset (1, K) and its loss (1,). Cost C(|U|, 2^bits): for small universal sets only."""
    rows = SortedRows(x.reshape(1, -1))
    u = universal.sort().values.float()
    k = 2**bits
    if k > len(u):
        raise ValueError(f"the universal set has {len(u)} values, fewer than 2^{bits}")
    total = math.comb(len(u), k)
    if max_subsets is not None and total > max_subsets:
        raise ValueError(f"{total} subsets of {len(u)} values is too many for an exhaustive search (max {max_subsets})")
    combos = itertools.combinations(range(len(u)), k)
    best_loss, best_idx = math.inf, None
    while True:
        flat = np.fromiter(itertools.chain.from_iterable(itertools.islice(combos, batch)), dtype=np.int64)
        if flat.size == 0:
            break
        idx = torch.from_numpy(flat).reshape(-1, k)
        pts = u[idx]  # (M, K), sorted since combinations are increasing
        mids = (pts[:, 1:] + pts[:, :-1]) / 2
        cut = torch.searchsorted(rows.x[0], mids.contiguous(), right=True)
        m = len(idx)
        lo = torch.cat([torch.zeros(m, 1, dtype=torch.long), cut], 1)
        hi = torch.cat([cut, torch.full((m, 1), rows.n, dtype=torch.long)], 1)
        s1 = rows.s1[0][hi] - rows.s1[0][lo]
        s2 = rows.s2[0][hi] - rows.s2[0][lo]
        n = (hi - lo).double()
        p = pts.double()
        loss = (s2 - 2 * p * s1 + p * p * n).clamp_min(0).sum(1)
        j = int(loss.argmin())
        if float(loss[j]) < best_loss:
            best_loss, best_idx = float(loss[j]), idx[j]
    return u[best_idx][None], torch.tensor([best_loss], dtype=torch.float64)


def select_optimal(x: torch.Tensor | SortedRows, universal: torch.Tensor, bits: int,
                   chunk: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact minimum-loss 2^bits-subset of the universal set for every row, by dynamic programming.

    With chosen points u_{i1} < ... < u_{ik} the loss splits into the values below u_{i1}, the values between
    consecutive points (each half goes to its nearer point) and the values above u_{ik}; the best chain of k points
    is a shortest path: O(k |U|^2) per row, vectorized over rows (|U| = 377 takes milliseconds)."""
    rows = x if isinstance(x, SortedRows) else SortedRows(x)
    if rows.rows > chunk:  # bounded memory: (chunk, |U|, |U|) float64 temporaries
        parts = [select_optimal(rows.take(slice(s, s + chunk)), universal, bits, chunk) for s in range(0, rows.rows, chunk)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    u = universal.sort().values.float()
    size, k, r = len(u), 2**bits, rows.rows
    if k > size:
        raise ValueError(f"the universal set has {size} values, fewer than 2^{bits}")
    big = torch.tensor(math.inf, dtype=torch.float64)
    pos = rows.count_lt(u[None].expand(r, -1))  # (R, U): values < u_j
    full = torch.full_like(pos, rows.n)
    left = rows.segment(torch.zeros_like(pos), pos, u[None].expand(r, -1))[2]  # values < u_j -> u_j
    right = rows.segment(pos, full, u[None].expand(r, -1))[2]  # values >= u_j -> u_j
    # pair[r, i, j] (i < j): values in [u_i, u_j) to the nearer of u_i, u_j
    mid = (u[:, None] + u[None, :]) / 2
    cut = rows.count_le(mid.reshape(1, -1).expand(r, -1)).reshape(r, size, size)
    lo_i = pos[:, :, None].expand(r, size, size)
    hi_j = pos[:, None, :].expand(r, size, size)
    cut = torch.minimum(torch.maximum(cut, lo_i), hi_j)
    flat = lambda t: t.reshape(r, -1)
    c_low = rows.segment(flat(lo_i), flat(cut), u[:, None].expand(size, size).reshape(1, -1).expand(r, -1))[2]
    c_high = rows.segment(flat(cut), flat(hi_j), u[None, :].expand(size, size).reshape(1, -1).expand(r, -1))[2]
    pair = (c_low + c_high).reshape(r, size, size)
    upper = torch.ones(size, size, dtype=torch.bool).triu(1)
    pair = torch.where(upper, pair, big)
    cost, back = left, []
    for _ in range(k - 1):
        total = cost[:, :, None] + pair  # (R, i, j)
        cost, arg = total.min(1)
        back.append(arg)
    total = cost + right
    loss, last = total.min(1)
    chain = [last]
    for arg in reversed(back):
        chain.append(arg.gather(1, chain[-1][:, None])[:, 0])
    idx = torch.stack(chain[::-1], 1)
    return u[idx], loss


def thin_universal(universal: torch.Tensor, size: int) -> torch.Tensor:
    """``size`` values of a sorted universal set, evenly spaced in rank and symmetric about 0 when possible
    (a smaller universal set for the exhaustive reference)."""
    u = universal.sort().values
    if size >= len(u):
        return u
    idx = torch.linspace(0, len(u) - 1, size).round().long().unique()
    return u[idx]
