"""ONNX Runtime's own static quantization (``quantize_static``) as srquant methods, for comparison.

``ort-minmax``, ``ort-percentile`` and ``ort-entropy`` run ONNX Runtime's calibrators on srquant's calibration
batch: the float model is exported to ONNX (opset 17, dynamic batch/height/width), pre-processed with
``quant_pre_process(skip_symbolic_shape=True)`` (PAN's dynamic Resize defeats symbolic shape inference), then
``quantize_static`` writes a QDQ model with QUInt8 activations and QInt8 weights (per channel unless
``w_granularity="tensor"``), every other option at ONNX Runtime's default.

How they fit :func:`srquant.quantize` (the design choice): the result is not a fake-quantized torch model but an
:class:`OrtQuantizedModel`, an ``nn.Module`` whose ``forward`` runs the quantized ONNX model in an ONNX Runtime
session (CPU, ``threads`` threads). It carries ``onnx_path``, ``srquant_config``, ``sr_info`` and
``calib_seconds`` like any quantized model, so ``evaluate(model_predictor(q, info), ...)``, result records and
speed benchmarks treat both kinds alike. What it cannot do is honest about it: there are no srquant quantizers to
inspect or tune, and :func:`srquant.save` refuses it (the artifact *is* the ONNX file: copy it with
:meth:`OrtQuantizedModel.save_onnx`).

What srquant's config fields mean here: ``scope`` and ``overrides`` "fp" patterns become ``nodes_to_exclude``
(the convs srquant would keep in float); bits must be 8 (``reduce_range`` gives ONNX Runtime's 7-bit weights);
``act_points`` does not apply (ONNX Runtime picks the tensors it quantizes itself).

``reduce_range`` (None = auto): ONNX Runtime's U8S8 kernels on x86 CPUs without VNNI (AVX2 ``vpmaddubsw``) add
pairs of u8 x s8 products in saturating int16, which corrupts results with full-range int8 weights; ONNX Runtime's
documentation recommends ``reduce_range=True`` there. ``None`` turns it on exactly when the CPU lacks
AVX512-VNNI / AVX-VNNI / AMX (read from /proc/cpuinfo); the resolved value is stored on the result.
"""
from __future__ import annotations

import copy
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..export.runtime import DEFAULT_OPT, OPT_LEVELS, cpu_has_vnni
from ..quant.walk import quant_layers
from .base import QuantConfig, register_method


@dataclass
class OrtStaticConfig(QuantConfig):
    """Fields shared by the ONNX Runtime ``quantize_static`` methods (abstract: use a subclass)."""

    calibrate_method: ClassVar[str] = ""
    reduce_range: bool | None = None  # None: True on CPUs without VNNI (see the module docstring)
    opset: int = 17
    threads: int = 2  # ONNX Runtime intra-op threads of the returned model
    optimization: str = DEFAULT_OPT  # session graph optimization level
    workdir: str = ""  # where the ONNX files go (default: a temporary folder removed with the model)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.w_bits != 8 or self.a_bits != 8:
            raise ValueError(f"{self.method} quantizes to 8 bits only (reduce_range=True gives 7-bit weights)")
        if self.w_granularity not in ("channel", "tensor"):
            raise ValueError(f"{self.method}: w_granularity must be 'channel' or 'tensor'")
        if self.a_granularity != "tensor" or self.a_symmetric or not self.w_symmetric:
            raise ValueError(f"{self.method}: ONNX Runtime's QDQ CPU setting is per-tensor asymmetric uint8 "
                             "activations and symmetric int8 weights")
        if self.act_points != "inputs":
            raise ValueError(f"{self.method}: act_points does not apply (ONNX Runtime chooses what it quantizes)")
        if self.optimization not in OPT_LEVELS:
            raise ValueError(f"{self.method}: optimization must be one of {sorted(OPT_LEVELS)}, "
                             f"got {self.optimization!r}")

    def resolved_reduce_range(self) -> bool:
        if self.reduce_range is not None:
            return bool(self.reduce_range)
        return cpu_has_vnni() is False


@dataclass
class OrtMinMaxConfig(OrtStaticConfig):
    """ONNX Runtime quantize_static, MinMax calibration."""

    method = "ort-minmax"
    calibrate_method = "MinMax"


@dataclass
class OrtPercentileConfig(OrtStaticConfig):
    """ONNX Runtime quantize_static, Percentile calibration (``CalibPercentile``, ONNX Runtime's default 99.999)."""

    method = "ort-percentile"
    calibrate_method = "Percentile"
    percentile: float = 99.999

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 50 < self.percentile <= 100:
            raise ValueError(f"percentile must be in (50, 100], got {self.percentile}")


@dataclass
class OrtEntropyConfig(OrtStaticConfig):
    """ONNX Runtime quantize_static, Entropy (KL) calibration with ONNX Runtime's default histogram."""

    method = "ort-entropy"
    calibrate_method = "Entropy"


class OrtQuantizedModel(nn.Module):
    """A quantized ONNX model behind a torch ``forward`` (see the module docstring)."""

    def __init__(self, onnx_path: str | Path, config: OrtStaticConfig, source: nn.Module, workdir=None,
                 reduce_range: bool = False, excluded: list[str] | None = None):
        super().__init__()
        self.onnx_path = Path(onnx_path)
        self.srquant_config = config
        self.reduce_range = reduce_range
        self.excluded_nodes = list(excluded or [])
        for attr in ("sr_info", "srquant_build"):
            if hasattr(source, attr):
                setattr(self, attr, getattr(source, attr))
        self._workdir = workdir  # a TemporaryDirectory shared by copies, or None
        self._runner = None

    @property
    def runner(self):
        if self._runner is None:
            from ..export.runtime import OrtRunner

            cfg = self.srquant_config
            self._runner = OrtRunner(self.onnx_path, threads=cfg.threads, optimization=cfg.optimization)
        return self._runner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.runner(x)

    def save_onnx(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.onnx_path, path)
        return path

    def __deepcopy__(self, memo):
        new = copy.copy(self)
        new.__dict__ = {k: (v if k in ("_workdir",) else copy.deepcopy(v, memo)) for k, v in self.__dict__.items()
                        if k != "_runner"}
        new._runner = None
        return new

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_runner"] = None
        return state

    def extra_repr(self) -> str:
        return f"{self.srquant_config.method}, {self.onnx_path.name}, reduce_range={self.reduce_range}"


class _Reader:
    """onnxruntime CalibrationDataReader over the calibration batch."""

    def __init__(self, input_name: str, calib: torch.Tensor, batch_size: int):
        data = calib.detach().cpu().float().numpy()
        self.batches = [{input_name: np.ascontiguousarray(data[i:i + batch_size])} for i in range(0, len(data), batch_size)]
        self.index = 0

    def get_next(self):
        if self.index >= len(self.batches):
            return None
        self.index += 1
        return self.batches[self.index - 1]

    def rewind(self):
        self.index = 0

    def __iter__(self):
        self.rewind()
        return iter(self.batches)


def _excluded_nodes(onnx_model, qmodel: nn.Module, float_model: nn.Module) -> list[str]:
    """ONNX Conv nodes whose layer srquant's plan keeps in float (scope, "fp" overrides)."""
    quantized = {name for name, _ in quant_layers(qmodel)}
    convs = {n for n, m in float_model.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))}
    excluded = []
    for node in onnx_model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        weight = node.input[1]
        module = weight[: -len(".weight")] if weight.endswith(".weight") else None
        if module in convs and module not in quantized:
            excluded.append(node.name)
    return excluded


def make_workdir(folder: str) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    """``folder`` (created) or a temporary folder that lives as long as the returned handle."""
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return Path(folder), None
    keep = tempfile.TemporaryDirectory(prefix="srquant-ort-")
    return Path(keep.name), keep


def _ort_quantize_static(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: OrtStaticConfig) -> nn.Module:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ..export.onnx_qdq import INPUT_NAME, export_float_onnx

    workdir, keep = make_workdir(config.workdir)
    fp_path = export_float_onnx(fp_model, workdir / "fp32.onnx", example=calib[:1], opset=config.opset)
    pre_path = workdir / "fp32_pre.onnx"
    quant_pre_process(str(fp_path), str(pre_path), skip_symbolic_shape=True)
    excluded = _excluded_nodes(onnx.load(str(pre_path), load_external_data=False), qmodel, fp_model)
    out_path = workdir / f"{config.method}.onnx"
    reduce_range = config.resolved_reduce_range()
    extra = {"CalibPercentile": config.percentile} if isinstance(config, OrtPercentileConfig) else {}
    quantize_static(
        str(pre_path), str(out_path), _Reader(INPUT_NAME, calib, config.batch_size),
        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        per_channel=config.w_granularity == "channel", reduce_range=reduce_range,
        calibrate_method=getattr(CalibrationMethod, config.calibrate_method), nodes_to_exclude=excluded,
        extra_options=extra,
    )
    # a temporary workdir is removed when the last copy of the model is garbage-collected
    return OrtQuantizedModel(out_path, config, fp_model, workdir=keep, reduce_range=reduce_range, excluded=excluded)


@register_method(OrtMinMaxConfig, backend="onnxruntime")
def ort_minmax(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: OrtMinMaxConfig) -> nn.Module:
    return _ort_quantize_static(qmodel, fp_model, calib, config)


@register_method(OrtPercentileConfig, backend="onnxruntime")
def ort_percentile(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: OrtPercentileConfig) -> nn.Module:
    return _ort_quantize_static(qmodel, fp_model, calib, config)


@register_method(OrtEntropyConfig, backend="onnxruntime")
def ort_entropy(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: OrtEntropyConfig) -> nn.Module:
    return _ort_quantize_static(qmodel, fp_model, calib, config)
