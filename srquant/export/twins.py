"""Export twins: a copy of a calibrated model whose quantizers emit ONNX QuantizeLinear / DequantizeLinear nodes
when traced (activations: uint8 per tensor; weights: the int8 codes srquant chose). See :mod:`srquant.export.onnx_qdq`."""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from ..errors import ExportError
from ..quant.layers import QuantLayer
from ..quant.quantizers import UniformQuantizer
from ..quant.walk import quant_layers
from .runtime import cpu_has_vnni


class _ActQDQ(torch.autograd.Function):
    """Per-tensor fake quantization whose ONNX form is QuantizeLinear -> DequantizeLinear."""

    @staticmethod
    def forward(ctx, x, scale: float, zero_point: int, qmin: int, qmax: int, signed: bool):  # noqa: D102
        q = torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax)
        return (q - zero_point) * scale

    @staticmethod
    def symbolic(g, x, scale: float, zero_point: int, qmin: int, qmax: int, signed: bool):  # noqa: D102
        s = g.op("Constant", value_t=torch.tensor(scale, dtype=torch.float32))
        z = g.op("Constant", value_t=torch.tensor(zero_point, dtype=torch.int8 if signed else torch.uint8))
        return g.op("DequantizeLinear", g.op("QuantizeLinear", x, s, z), s, z)


class _Codes:
    """Integer weight codes with their scale and zero point, passed to the ONNX symbolic as one Python object
    (tensor arguments of an autograd Function reach the symbolic as graph values, not data)."""

    def __init__(self, codes: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, axis: int, signed: bool):
        self.codes, self.scale, self.zero_point, self.axis, self.signed = codes, scale, zero_point, axis, signed

    def dequantized(self) -> torch.Tensor:
        shape = [1] * self.codes.dim()
        if self.scale.numel() > 1:
            shape[self.axis] = -1
        return (self.codes.float() - self.zero_point.float().reshape(shape)) * self.scale.reshape(shape)


class _WeightDQ(torch.autograd.Function):
    """Dequantized weight whose ONNX form is DequantizeLinear(int8 codes, scale, zero point, axis)."""

    @staticmethod
    def forward(ctx, w, codes: _Codes):  # noqa: D102
        return codes.dequantized()

    @staticmethod
    def symbolic(g, w, codes: _Codes):  # noqa: D102
        dtype = torch.int8 if codes.signed else torch.uint8
        c = g.op("Constant", value_t=codes.codes.detach().to(dtype))
        s = g.op("Constant", value_t=codes.scale.detach().float())
        z = g.op("Constant", value_t=codes.zero_point.detach().round().to(dtype))
        if codes.scale.numel() > 1:
            return g.op("DequantizeLinear", c, s, z, axis_i=codes.axis)
        return g.op("DequantizeLinear", c, s, z)


def _act_params(q: UniformQuantizer, where: str) -> tuple[float, int, int, int, bool]:
    if q.bits != 8:
        raise ExportError(f"{where}: {q.bits}-bit activations cannot run on an INT8 runtime; export needs a_bits=8")
    if q.axis is not None:
        raise ExportError(f"{where}: per-channel activation ranges cannot be exported (use a_granularity='tensor')")
    scale, zp, qmin, qmax = q.params()
    return float(scale.reshape(())), int(round(float(zp.reshape(())))), qmin, qmax, q.symmetric


def _weight_codes(layer: QuantLayer, where: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, bool]:
    q = layer.weight_quant
    if not isinstance(q, UniformQuantizer):
        raise ExportError(f"{where}: weight quantizer {type(q).__name__} has no ONNX form")
    out_axis = 1 if isinstance(layer.layer, nn.ConvTranspose2d) else 0
    if q.axis not in (None, out_axis):
        raise ExportError(f"{where}: weight ranges per {q.axis} cannot be exported (ONNX has one quantization axis)")
    scale, zp, qmin, qmax = q.params()
    with torch.no_grad():
        w_hat = q(layer.layer.weight)  # srquant's quantized weight (learned rounding included)
        codes = torch.clamp(torch.round(w_hat / scale) + zp, qmin, qmax)
    if q.bits == 8 and not q.symmetric and qmin == 0:
        signed = False
    else:
        signed = True
        if q.symmetric is False:
            raise ExportError(f"{where}: asymmetric weights below 8 bits cannot be stored in int8/uint8 exactly")
    return codes, scale.detach().reshape(-1), zp.detach().reshape(-1), out_axis, signed


SATURATION_FREE = 64  # |int8 weight code| <= 64 keeps u8 x s8 pair sums inside int16 (255 * 64 * 2 < 32768)
WEIGHT_STORAGE = ("auto", "int8", "uint8")


def resolve_storage(storage: str, max_code: int, where: str) -> str:
    """int8 or uint8 weight codes. ``auto``: int8 unless the CPU lacks VNNI and a code exceeds +-64, where ONNX
    Runtime's U8S8 kernels would saturate; symmetric codes are then stored as uint8 with zero point 128 (U8U8
    kernels: exact, slower)."""
    if storage not in WEIGHT_STORAGE:
        raise ExportError(f"weight_storage must be one of {WEIGHT_STORAGE}, got {storage!r}")
    saturates = max_code > SATURATION_FREE and cpu_has_vnni() is False
    if storage == "auto":
        return "uint8" if saturates else "int8"
    if storage == "int8" and saturates:
        warnings.warn(
            f"weight codes up to {max_code} (e.g. {where}): on this CPU (no AVX512-VNNI / AVX-VNNI / AMX) ONNX "
            "Runtime's U8S8 kernels add pairs of u8 x s8 products in saturating int16, so the INT8 model will not "
            "match the simulation; use weight_storage='uint8' or w_bits=7 for an exact export", stacklevel=4)
    return storage


def export_copy(qmodel: nn.Module, weight_storage: str = "auto") -> nn.Module:
    """A copy of ``qmodel`` whose quantizers emit QDQ nodes when traced."""
    model = copy.deepcopy(qmodel).eval()
    packed_weights: list[tuple[QuantLayer, _Codes]] = []
    max_code, max_where = 0, ""
    for name, layer in quant_layers(model):
        if layer.weight_quant.mode != "quant":
            raise ExportError(f"{name}: weights are not quantized (mode {layer.weight_quant.mode!r}); calibrate first")
        if not isinstance(layer.input_quant, UniformQuantizer) and getattr(layer.input_quant, "mode", "off") != "off":
            raise ExportError(f"{name}: input quantizer {type(layer.input_quant).__name__} has no ONNX QDQ form "
                              "(only uniform 8-bit per-tensor activations export)")
        codes, scale, zp, axis, signed = _weight_codes(layer, name)
        if signed and int(codes.abs().max()) > max_code:
            max_code, max_where = int(codes.abs().max()), name
        packed_weights.append((layer, _Codes(codes, scale, zp, axis, signed)))
    storage = resolve_storage(weight_storage, max_code, max_where)
    for layer, packed in packed_weights:
        if storage == "uint8" and packed.signed:
            packed = _Codes(packed.codes + 128, packed.scale, packed.zero_point + 128, packed.axis, signed=False)

        def weight_forward(w, packed=packed):
            return _WeightDQ.apply(w, packed)

        layer.weight_quant.forward = weight_forward
    weight_ids = {id(layer.weight_quant) for layer, _ in packed_weights}
    for name, q in model.named_modules():
        if not isinstance(q, UniformQuantizer) or id(q) in weight_ids:
            continue
        if q.mode != "quant":
            if q.mode != "off":
                raise ExportError(f"{name}: quantizer is in mode {q.mode!r}")
            continue  # an uncalibrated / disabled quantizer stays float
        params = _act_params(q, name)

        def act_forward(x, params=params):
            return _ActQDQ.apply(x, *params)

        q.forward = act_forward
    return model
