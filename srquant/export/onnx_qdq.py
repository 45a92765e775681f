"""Export a calibrated srquant model to ONNX QDQ for real INT8 inference (ONNX Runtime QLinearConv & co).

Route: the quantized model itself is traced by ``torch.onnx.export(dynamo=False)`` with every srquant quantizer
swapped for an export twin whose ONNX symbolic is an explicit ``QuantizeLinear -> DequantizeLinear`` pair with
srquant's own scale and zero point (activations: uint8 per tensor) or, for weights, a ``DequantizeLinear`` of the
int8 codes srquant chose (per output channel, zero point 0; learned AdaRound rounding is kept exactly; on CPUs
without VNNI, 8-bit codes are stored as uint8 with zero point 128 so that ONNX Runtime's kernels do not saturate). So the QDQ
nodes sit exactly where the simulation rounds; with ``act_points="runtime"`` (see
:mod:`srquant.quant.points`) that is everywhere ONNX Runtime needs them to fuse every conv, add, mul,
concat, sigmoid, leaky ReLU and global average pool into integer kernels. The traced graph then goes through the
clean-up pass of :mod:`srquant.export.onnx_graph`.

Only 8-bit activations can be exported (ONNX Runtime has no integer kernels below 8 bits); weights may use
fewer bits (their codes are stored in int8). Per-(out, in)-kernel weight ranges have no ONNX equivalent.
"""
from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from ..errors import ExportError
from ..fileio import atomic_path
from ..quant.walk import has_points, quant_layers
from .metadata import write_metadata
from .onnx_graph import GRAPH_DIGEST_KEY, clean_qdq, graph_digest
from .twins import export_copy

INPUT_NAME, OUTPUT_NAME = "lr", "sr"
DEFAULT_OPSET = 17


def _example(model: nn.Module, example: torch.Tensor | None) -> torch.Tensor:
    if example is not None:
        return example
    info = getattr(model, "sr_info", None)
    channels = 1 if info is not None and info.color == "y" else 3
    rng = info.input_range if info is not None else 1.0
    return torch.rand(1, channels, 32, 32, generator=torch.Generator().manual_seed(0)) * rng


def _trace_to_onnx(model: nn.Module, example: torch.Tensor, opset: int, dynamic: bool) -> onnx.ModelProto:
    buf = io.BytesIO()
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}, OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript-exporter deprecation and tracer warnings
        torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes=axes if dynamic else None, do_constant_folding=True,
                          autograd_inlining=False)
    return onnx.load_from_string(buf.getvalue())


def _save_atomic(model: onnx.ModelProto, path: str | Path) -> Path:
    path = Path(path)
    model.metadata_props.append(onnx.StringStringEntryProto(key=GRAPH_DIGEST_KEY, value=graph_digest(model)))
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return path


def export_float_onnx(model: nn.Module, path: str | Path, *, example: torch.Tensor | None = None,
                      opset: int = DEFAULT_OPSET, dynamic: bool = True) -> Path:
    """The float model as ONNX (input ``lr``, output ``sr``, dynamic batch/height/width)."""
    onnx_model = _trace_to_onnx(copy.deepcopy(model).eval(), _example(model, example), opset, dynamic)
    write_metadata(onnx_model, model, "fp32")
    return _save_atomic(onnx_model, path)


def export_onnx(qmodel: nn.Module, path: str | Path, *, example: torch.Tensor | None = None,
                opset: int = DEFAULT_OPSET, dynamic: bool = True, check: bool = True,
                weight_storage: str = "auto", pad_out_channels: int = 16) -> Path:
    """Write the calibrated srquant model ``qmodel`` as an ONNX QDQ model (input ``lr``, output ``sr``).

    For an all-integer graph quantize with ``act_points="runtime"``; a model with layer-input quantizers only
    exports too, but ONNX Runtime then keeps every conv whose output is not quantized in float (a warning says so).
    ``weight_storage`` (auto | int8 | uint8) picks the weight code type, see :func:`srquant.export.twins.resolve_storage`.
    ``pad_out_channels`` pads narrower convs with zero filters for ONNX Runtime's fast kernels (0: off).
    """
    if pad_out_channels < 0:
        raise ValueError(f"pad_out_channels must be >= 0, got {pad_out_channels}")
    if not any(True for _ in quant_layers(qmodel)):
        raise ExportError("the model has no quantized layers (use export_float_onnx for a float model)")
    if not has_points(qmodel):
        warnings.warn("exporting a model without runtime points (act_points='inputs'): conv outputs are not "
                      "quantized, so ONNX Runtime cannot fuse convs into QLinearConv; quantize with "
                      "act_points='runtime' for real INT8", stacklevel=2)
    model = export_copy(qmodel, weight_storage)
    onnx_model = clean_qdq(_trace_to_onnx(model, _example(qmodel, example), opset, dynamic), pad_out_channels)
    write_metadata(onnx_model, qmodel, "int8-qdq")
    if check:
        onnx.checker.check_model(onnx_model)
    return _save_atomic(onnx_model, path)
