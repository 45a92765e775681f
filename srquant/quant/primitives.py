"""Quantization math as small free functions: integer grids, parameters from a range, fake quantization with STE."""
from __future__ import annotations

import torch

EPS = 1e-8


def int_range(bits: int, signed: bool) -> tuple[int, int]:
    """Integer grid of a ``bits``-bit code: [-2^(b-1), 2^(b-1)-1] signed, [0, 2^b-1] unsigned."""
    if not 2 <= bits <= 8:
        raise ValueError(f"srquant supports 2- to 8-bit integer grids, not {bits} bits")
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even (as ONNX QuantizeLinear) with a straight-through gradient."""
    return (torch.round(x) - x).detach() + x


def qparams(lo: torch.Tensor, hi: torch.Tensor, bits: int, symmetric: bool) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Scale, zero point and integer range that cover [lo, hi].

    Symmetric: signed grid, zero point 0, scale = max(|lo|, |hi|) / (2^(b-1) - 1).
    Asymmetric: unsigned grid, scale = (hi - lo) / (2^b - 1), integer zero point so that 0.0 is exact (ONNX QDQ).
    Differentiable in ``lo`` and ``hi`` (the zero point's rounding passes gradients straight through).
    """
    if symmetric:
        qmin, qmax = int_range(bits, signed=True)
        scale = torch.maximum(lo.abs(), hi.abs()).clamp_min(EPS) / qmax
        return scale, torch.zeros_like(scale), qmin, qmax
    qmin, qmax = int_range(bits, signed=False)
    lo = torch.minimum(lo, torch.zeros_like(lo))  # the grid must contain 0 (zero padding, ReLU outputs)
    hi = torch.maximum(hi, torch.zeros_like(hi))
    scale = (hi - lo).clamp_min(EPS) / (qmax - qmin)
    zero_point = torch.clamp(round_ste(-lo / scale), qmin, qmax)
    return scale, zero_point, qmin, qmax


def fake_quant(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """Quantize then dequantize: (clamp(round(x / s) + z, qmin, qmax) - z) * s, straight-through rounding."""
    q = torch.clamp(round_ste(x / scale) + zero_point, qmin, qmax)
    return (q - zero_point) * scale


def quantize_to_int(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """The integer codes of ``x`` (no gradient), for export and inspection."""
    return torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax)


def reduce_dims(x: torch.Tensor, axis: int | tuple[int, ...] | None) -> tuple[int, ...]:
    """Dimensions to reduce over when statistics are kept per ``axis`` (None: per tensor)."""
    if axis is None:
        return tuple(range(x.dim()))
    keep = {axis} if isinstance(axis, int) else set(axis)
    return tuple(d for d in range(x.dim()) if d not in keep)


def amin_amax(x: torch.Tensor, axis: int | tuple[int, ...] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Min and max of ``x`` kept broadcastable against ``x`` (size 1 on reduced dims)."""
    dims = reduce_dims(x, axis)
    return x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
