"""Quantized layers: a float layer plus a weight quantizer and an input-activation quantizer; and the activation
point that applies one quantizer at one graph tensor (runtime points, see :mod:`srquant.quant.points`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .observers import RangeObserver
from .quantizers import UniformQuantizer

QUANTIZABLE = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def weight_axis(layer: nn.Module, granularity: str) -> int | tuple[int, ...] | None:
    """Axis of per-output-channel statistics (ConvTranspose2d keeps output channels on dim 1)."""
    if granularity == "tensor":
        return None
    out_axis = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
    if granularity == "channel":
        return out_axis
    if granularity == "kernel":  # one range per (out, in) kernel of a convolution
        return (0, 1) if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)) else out_axis
    raise ValueError(f"unknown weight granularity {granularity!r} (tensor, channel, kernel)")


class QuantLayer(nn.Module):
    """Wraps Conv2d / ConvTranspose2d / Linear; ``input_quant`` and ``weight_quant`` may be any quantizer module."""

    def __init__(self, layer: nn.Module, weight_quant: nn.Module, input_quant: nn.Module):
        super().__init__()
        if not isinstance(layer, QUANTIZABLE):
            raise TypeError(f"cannot quantize {type(layer).__name__}")
        self.layer, self.weight_quant, self.input_quant = layer, weight_quant, input_quant

    @property
    def weight(self) -> torch.Tensor:
        return self.layer.weight

    def quantized_weight(self) -> torch.Tensor:
        return self.weight_quant(self.layer.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_quant(x)
        w = self.quantized_weight()
        layer = self.layer
        if isinstance(layer, nn.Conv2d):
            return layer._conv_forward(x, w, layer.bias)
        if isinstance(layer, nn.ConvTranspose2d):
            return F.conv_transpose2d(x, w, layer.bias, layer.stride, layer.padding, layer.output_padding, layer.groups, layer.dilation)
        return F.linear(x, w, layer.bias)


def make_quant_layer(layer: nn.Module, w_bits: int, a_bits: int, w_granularity: str, a_granularity: str,
                     w_symmetric: bool, a_symmetric: bool) -> QuantLayer:
    a_axis = None if a_granularity == "tensor" else 1
    if a_granularity not in ("tensor", "channel"):
        raise ValueError(f"unknown activation granularity {a_granularity!r} (tensor, channel)")
    return QuantLayer(
        layer,
        UniformQuantizer(w_bits, w_symmetric, weight_axis(layer, w_granularity)),
        UniformQuantizer(a_bits, a_symmetric, a_axis),
    )


class ActPoint(nn.Module):
    """Applies one activation quantizer at one graph tensor.

    The quantizer is either owned (``self.quant``: tensors no QuantLayer reads) or tied to a QuantLayer's
    ``input_quant`` (kept as a plain reference, so its state lives once, under the layer). A ``primary`` point
    sits right after the op that produces the tensor and observes it during calibration; secondary points re-apply
    the same quantizer after split/reshape-like ops (a no-op on values already on the grid; it gives an integer
    runtime the quantize/dequantize pair it needs in front of an integer op).
    """

    def __init__(self, tensor: str, primary: bool, quant: UniformQuantizer | None = None,
                 tied: UniformQuantizer | None = None, tied_to: str = ""):
        super().__init__()
        if (quant is None) == (tied is None):
            raise ValueError("an ActPoint needs exactly one of quant / tied")
        self.tensor, self.primary, self.tied_to = tensor, primary, tied_to
        self.quant = quant
        object.__setattr__(self, "_tied", tied)  # a reference, not a child: state stays under the owning layer
        self.observer: RangeObserver | None = None

    @property
    def quantizer(self) -> UniformQuantizer:
        return self.quant if self.quant is not None else self._tied

    def tie(self, quantizer: UniformQuantizer) -> None:
        object.__setattr__(self, "_tied", quantizer)

    def extra_repr(self) -> str:
        owner = f"tied to {self.tied_to}" if self.quant is None else "own quantizer"
        return f"{self.tensor}, {'primary' if self.primary else 're-apply'}, {owner}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.quantizer
        if q.mode == "quant":
            return q(x)
        if self.observer is not None:
            self.observer.update(x.detach().clone())
        return x
