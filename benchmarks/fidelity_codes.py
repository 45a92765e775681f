"""Count the activation codes each quantizer of the fair-bits table really uses (docs/fidelity.md).

    python benchmarks/fidelity_codes.py

Every activation quantizer kind is set to a range with outliers on both sides (l_a = -3, u_a = 4, bp = 1) or, for
the one-sided forms, to inputs that are never negative; a ramp of 200,001 values through it gives the number of
distinct outputs. Effective bits = ceil(log2(codes)): what an integer code for that grid needs.
"""
from __future__ import annotations

import math

import torch

from srquant.quant.dual_region import DualRegionQuantizer, ReleaseDualRegionQuantizer
from srquant.quant.quantizers import UniformQuantizer
from srquant.quant.subset import SubsetQuantizer, universal_set

RAMP = 200_001


def distinct(q, lo: float, hi: float) -> int:
    with torch.no_grad():
        return len(torch.unique(q(torch.linspace(lo, hi, RAMP))))


def uniform(bits: int) -> tuple[torch.nn.Module, float, float]:
    q = UniformQuantizer(bits)
    q.set_range(torch.tensor(-3.0), torch.tensor(4.0))
    return q, -3.0, 4.0


def spec_grid(bits: int, split: str, one_sided: bool) -> tuple[torch.nn.Module, float, float]:
    q = DualRegionQuantizer(bits, split)
    q.set_range(0.0 if one_sided else -3.0, 4.0, 1.0, one_sided=one_sided)
    return q, (0.0 if one_sided else -3.0), 4.0


def release_grid(bits: int, fair: bool, l_a: float) -> tuple[torch.nn.Module, float, float]:
    q = ReleaseDualRegionQuantizer(bits, fair)
    q.set_range(l_a, 4.0, 1.0)
    return q, l_a, 4.0


def subset(bits: int) -> tuple[torch.nn.Module, float, float]:
    """DFSQ's point set without normalization: 2^b points of the universal set, evenly picked (spec and official
    share the quantizer; the official variant differs in which layers it quantizes)."""
    values = universal_set("code")
    q = SubsetQuantizer(bits, channels=1, normalize=False)
    q.set_points(values[torch.linspace(0, len(values) - 1, 2**bits).round().long()][None])
    q.mode = "quant"
    return lambda x: q(x.reshape(1, 1, -1)), -1.0, 1.0


ROWS = {
    "uniform (minmax, mse, brecq, qdrop, dbdc, ptq4sr)": lambda b: uniform(b),
    "oa-spec, two-sided (summary split)": lambda b: spec_grid(b, "summary", False),
    "oa-spec, never-negative input (summary split)": lambda b: spec_grid(b, "summary", True),
    "oa-official, l_a < -bp (release grid)": lambda b: release_grid(b, False, -3.0),
    "oa-official, l_a >= -bp (release grid)": lambda b: release_grid(b, False, -0.5),
    "oa-spec-release-grid / oa-official-fair, l_a < -bp": lambda b: release_grid(b, True, -3.0),
    "oa-spec-release-grid / oa-official-fair, l_a >= -bp": lambda b: release_grid(b, True, -0.5),
    "dfsq (spec and official): points per input channel": lambda b: subset(b),
}


def main() -> None:
    print("| activation quantizer | codes at A4 | effective bits | codes at A3 | effective bits |")
    print("|---|---|---|---|---|")
    for label, build in ROWS.items():
        cells = []
        for bits in (4, 3):
            codes = distinct(*build(bits))
            cells += [str(codes), str(math.ceil(math.log2(codes)))]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
