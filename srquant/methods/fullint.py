"""Full-integer INT8 as mobile runtimes deploy it (TFLite ``TFLITE_BUILTINS_INT8`` with uint8 input and output).

Min/max ranges from the calibration data (TFLite's representative dataset), every layer quantized, every tensor an
integer runtime rounds (``act_points="runtime"``) plus the model's **output** on its own 8-bit grid, so that the
output range comes from the calibration data as it does on device. This is the setting of the clip-free study
(docs/clipfree.md), where it decides everything:

* ``fold_clip``: an output clip (``clamp`` after the pixel shuffle) is folded into the range of the tensors the
  output is a permutation of (the last conv's output), as TFLite propagates one scale through same-scale ops
  (DEPTH_TO_SPACE, MINIMUM, MAXIMUM) and ONNX Runtime drops a Clip in front of a QuantizeLinear: the clipped model's
  output grid never exceeds the clip range, whatever the calibration images do.
* ``readout="uint8"``: the output's integer codes are read as pixel values, as the Mobile AI evaluation scripts do
  with a uint8-output model (NJU-Jet/SR_Mobile_Quantization ``generate_tflite.py``); unless the calibrated output
  range is exactly [0, 255] this shifts and stretches the image, which is how a bad calibration image ruins the
  clip-free model. ``readout="dequant"`` dequantizes (ONNX Runtime's float output).
* ``raw_input``: pixels go in as the input's integer codes (uint8 input, same scripts), so an input range other than
  [0, 255] distorts the input too.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..quant.layers import ActPoint
from ..quant.quantizers import UniformQuantizer
from ..quant.walk import POINTS_ATTR, quantizers_off
from .base import QuantConfig, register_method
from .uniform import minmax

OUTPUT_POINT = "output"
PROBE_SIZE = 48  # LR pixels of the input crop that finds the tensors feeding the output


@dataclass
class FullIntConfig(QuantConfig):
    """Min/max full-integer quantization with a quantized model output (the seed's INT8 setting)."""

    method = "fullint"
    scope: str = "all"
    act_points: str = "runtime"
    fold_clip: bool = True  # narrow the tensors feeding an output clip to the clipped output's range
    readout: str = "uint8"  # uint8: output codes read as pixels | dequant: dequantized output
    raw_input: bool = False  # pixels fed as the input's integer codes (uint8 input)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scope == "body":
            raise ValueError("fullint quantizes every layer (full integer): scope must be 'all' or 'all-ends8'")
        if self.act_points != "runtime":
            raise ValueError("fullint quantizes every runtime tensor and the output: act_points must be 'runtime'")
        if self.readout not in ("uint8", "dequant"):
            raise ValueError(f"readout must be 'uint8' or 'dequant', got {self.readout!r}")
        if (self.readout == "uint8" or self.raw_input) and (self.a_bits != 8 or self.a_symmetric):
            raise ValueError("uint8 readout / raw input need unsigned 8-bit activations (a_bits=8, a_symmetric=False)")


def pixel_unit(model: nn.Module) -> float:
    """Model units per 8-bit pixel level (input_range / 255)."""
    info = getattr(model, "sr_info", None)
    return (info.input_range if info is not None else 1.0) / 255.0


def codes_as_pixels(y: torch.Tensor, q: UniformQuantizer, unit: float) -> torch.Tensor:
    """A dequantized output read back as its integer codes, taken as pixel values (in model units)."""
    scale, zero_point, _, _ = q.params()
    return torch.round(y / scale + zero_point) * unit


def pixels_as_codes(x: torch.Tensor, q: UniformQuantizer, unit: float) -> torch.Tensor:
    """An input whose pixel values are the integer codes of ``q``: the value the integer network sees."""
    scale, zero_point, _, _ = q.params()
    return (torch.round(x / unit) - zero_point) * scale


def _points(qmodel: nn.Module) -> nn.ModuleDict:
    return getattr(qmodel, POINTS_ATTR)


def input_quantizer(qmodel: nn.Module) -> UniformQuantizer:
    for point in _points(qmodel).values():
        if point.primary and point.tensor == "input":
            return point.quantizer
    raise ValueError("the model input has no quantization point (no layer reads it directly)")


def _raw_input_codes(module: nn.Module, args: tuple) -> tuple | None:
    """Forward pre-hook: with ``raw_input``, the pixels go in as the input's integer codes."""
    q_in = input_quantizer(module) if module.srquant_config.raw_input else None
    if q_in is None or q_in.mode != "quant":
        return None
    return (pixels_as_codes(args[0], q_in, pixel_unit(module)), *args[1:])


def _quantized_output(module: nn.Module, args: tuple, y: torch.Tensor) -> torch.Tensor:
    """Forward hook: the output on its own 8-bit grid; with ``readout="uint8"`` its codes read as pixels."""
    point = _points(module)[OUTPUT_POINT]
    y = point(y)
    if module.srquant_config.readout == "uint8" and point.quantizer.mode == "quant":
        y = codes_as_pixels(y, point.quantizer, pixel_unit(module))
    return y


def install_output_point(qmodel: nn.Module, config: FullIntConfig) -> None:
    """Quantize the model output: an owned 8-bit point applied by a forward hook after the model's own forward
    (and the raw-input pre-hook); idempotent. ``qmodel.forward(x)`` is the model without them."""
    points = _points(qmodel)
    if OUTPUT_POINT in points:
        return
    points[OUTPUT_POINT] = ActPoint(OUTPUT_POINT, True, quant=UniformQuantizer(config.a_bits, config.a_symmetric, None))
    qmodel.register_forward_pre_hook(_raw_input_codes)
    qmodel.register_forward_hook(_quantized_output)


def output_sources(qmodel: nn.Module, x: torch.Tensor) -> list[UniformQuantizer]:
    """Quantizers of the tensors that reach the output through permutations (pixel shuffle) and the output clip.

    Found on the float path: a tensor qualifies when, clamped to the output's value range, it holds exactly the
    output's values (a clamp commutes with a permutation).
    """
    points = _points(qmodel)
    seen: dict[str, torch.Tensor] = {}
    hooks = [p.register_forward_hook(lambda m, a, out, key=key: seen.__setitem__(key, out.detach().clone()))
             for key, p in points.items() if p.primary and key != OUTPUT_POINT]
    try:
        with quantizers_off(qmodel), torch.no_grad():
            y = qmodel.forward(x)  # without the output point's hooks
    finally:
        for h in hooks:
            h.remove()
    target = y.flatten().sort().values
    return [points[key].quantizer for key, t in seen.items()
            if t.numel() == y.numel() and torch.equal(t.flatten().clamp(target[0], target[-1]).sort().values, target)]


def fold_output_clip(qmodel: nn.Module, x: torch.Tensor) -> int:
    """Narrow the ranges of the output's source tensors to the output's range; returns how many were narrowed."""
    out = _points(qmodel)[OUTPUT_POINT].quantizer
    sources = [q for q in output_sources(qmodel, x) if q is not out]
    for q in sources:
        q.set_range(torch.maximum(q.lo, out.lo), torch.minimum(q.hi, out.hi))
    return len(sources)


@register_method(FullIntConfig, install=install_output_point)
def fullint(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: FullIntConfig) -> None:
    minmax(qmodel, fp_model, calib, config)
    if config.fold_clip:
        fold_output_clip(qmodel, calib[:1, :, :PROBE_SIZE, :PROBE_SIZE])
