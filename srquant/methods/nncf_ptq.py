"""OpenVINO's NNCF post-training quantization (``nncf.quantize``) as a peer method, ``nncf``.

The float model is exported to ONNX (as for the ``ort-*`` peers) and handed to ``nncf.quantize`` with srquant's
calibration batch (one patch per NNCF sample, ``subset_size`` = all of them by default), on NNCF's ONNX backend.
The result is a QDQ ONNX file, run like the ``ort-*`` models by :class:`~srquant.methods.ort.OrtQuantizedModel`
(ONNX Runtime; ``srquant eval --onnx FILE --runtime openvino`` runs the same file in OpenVINO).

NNCF's defaults are ``preset="performance"`` (symmetric activations) and fast bias correction. Its documentation
recommends ``preset="mixed"`` (asymmetric activations) for models with non-ReLU activations, full bias
correction (``fast_bias_correction=False``) for the best accuracy, and an ignored scope for operations that should
stay in float (``ignored_types``, e.g. IMDN's contrast branch ``Pow``, ``Sqrt``). NNCF's default activation ranges
are the *mean over calibration samples* of each sample's min and max; ``range_estimator`` picks another of NNCF's
range estimator sets (``minmax``: the global min and max, as srquant's and ONNX Runtime's MinMax). All are options
here. ``nncf`` is an optional extra (``pip install 'srquant[openvino]'``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..export.runtime import DEFAULT_OPT, OPT_LEVELS
from .base import QuantConfig, register_method
from .ort import OrtQuantizedModel, make_workdir

PRESETS = ("performance", "mixed")
RANGE_ESTIMATORS = ("default", "minmax", "mean_minmax", "median_minmax", "mean_no_outliers_minmax", "mean_quantile",
                    "histogram")  # "default": NNCF's own choice; the others: nncf.RangeEstimatorParametersSet members


@dataclass
class NncfConfig(QuantConfig):
    """``nncf.quantize`` on the float ONNX model (8 bits, every layer NNCF chooses to quantize)."""

    method = "nncf"
    scope: str = "all"
    preset: str = "performance"  # NNCF's default; "mixed": asymmetric activations
    fast_bias_correction: bool = True  # NNCF's default; False: the slower, fuller BiasCorrection
    subset_size: int = 0  # calibration samples NNCF uses (0: every patch of the batch)
    ignored_types: list[str] = field(default_factory=list)  # ONNX op types NNCF leaves in float (nncf.IgnoredScope)
    range_estimator: str = "default"  # activation ranges: one of RANGE_ESTIMATORS
    opset: int = 17
    threads: int = 2  # ONNX Runtime threads of the returned model
    optimization: str = DEFAULT_OPT
    workdir: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.w_bits != 8 or self.a_bits != 8:
            raise ValueError("nncf quantizes to 8 bits only")
        if self.scope != "all":
            raise ValueError("nncf chooses the layers it quantizes itself: scope must be 'all'")
        if self.preset not in PRESETS:
            raise ValueError(f"nncf preset must be one of {PRESETS}, got {self.preset!r}")
        if self.range_estimator not in RANGE_ESTIMATORS:
            raise ValueError(f"nncf range_estimator must be one of {RANGE_ESTIMATORS}, got {self.range_estimator!r}")
        if self.subset_size < 0:
            raise ValueError("subset_size must be >= 0")
        if self.optimization not in OPT_LEVELS:
            raise ValueError(f"optimization must be one of {sorted(OPT_LEVELS)}, got {self.optimization!r}")


@register_method(NncfConfig, backend="onnxruntime")
def nncf_quantize(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: NncfConfig) -> nn.Module:
    try:
        import nncf
    except ImportError:
        raise InputError("the nncf method needs NNCF: pip install 'srquant[openvino]'") from None
    import onnx

    from ..export.onnx_graph import GRAPH_DIGEST_KEY
    from ..export.onnx_qdq import INPUT_NAME, export_float_onnx

    workdir, keep = make_workdir(config.workdir)
    fp_path = export_float_onnx(fp_model, workdir / "fp32.onnx", example=calib[:1], opset=config.opset)
    samples = [{INPUT_NAME: np.ascontiguousarray(x[None].cpu().float().numpy())} for x in calib]
    preset = nncf.QuantizationPreset.MIXED if config.preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE
    advanced = {}
    if config.range_estimator != "default":
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        ranges = getattr(RangeEstimatorParametersSet, config.range_estimator.upper())
        advanced["advanced_parameters"] = AdvancedQuantizationParameters(activations_range_estimator_params=ranges)
    quantized = nncf.quantize(onnx.load(str(fp_path)), nncf.Dataset(samples), preset=preset,
                              target_device=nncf.TargetDevice.CPU, subset_size=config.subset_size or len(samples),
                              fast_bias_correction=config.fast_bias_correction,
                              ignored_scope=nncf.IgnoredScope(types=list(config.ignored_types), validate=False),
                              **advanced)
    kept = [p for p in quantized.metadata_props if p.key != GRAPH_DIGEST_KEY]  # the float graph's digest
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(kept)
    out_path = workdir / f"{config.method}.onnx"
    onnx.save(quantized, str(out_path))
    return OrtQuantizedModel(out_path, config, fp_model, workdir=keep)
