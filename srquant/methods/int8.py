"""``int8``: srquant's recipe for a deployable W8A8 model (every layer integer, every runtime tensor rounded).

The recipe is what measured best on the exported integer graphs (docs/int8.md, "The int8 recipe and what each
part is worth"; the optional parts are off by default because they did not help there):

* every tensor an integer runtime rounds is rounded in the simulation too (``act_points="runtime"``), so the
  simulation is the model ONNX Runtime and OpenVINO run;
* activation ranges at the ``percentile`` of the calibration values (99.999 by default, both tails);
* weights per output channel, symmetric, min/max;
* ``equalization``: scale migration through ReLU / leaky ReLU between convolutions
  (:mod:`srquant.quant.equalize`) with strength ``alpha`` (0: off), before the ranges are calibrated;
* ``tune``: the activation ranges are then learned (LSQ-style, weights and rounding fixed) so that each block's
  output (``"block"``) or the network's output (``"network"``) matches the float model on the calibration batch,
  through the reconstruction loop of :mod:`srquant.quant.tuning` (``"none"``: off);
* ``bias_correction``: each conv's bias absorbs the mean shift that quantization causes in its output channels,
  measured on the calibration batch layer by layer (empirical bias correction).

Use it with more calibration data than the other methods' default: ``srquant int8`` samples 128 patches.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..quant.equalize import equalize
from ..quant.tuning import TuningConfig, reconstruct
from ..quant.units import collect
from ..quant.walk import quant_layers, run_batches
from .base import QuantConfig, register_method
from .uniform import PercentileConfig, percentile


TUNE_UNITS = ("none", "block", "network")


@dataclass
class Int8Config(QuantConfig):
    """W8A8 over every layer with runtime points: percentile ranges, then optional bias correction."""

    method = "int8"
    scope: str = "all"
    act_points: str = "runtime"
    percentile: float = 99.999
    equalization: float = 0.0  # alpha of the scale migration (0: off, 1: equal channel ranges)
    tune: str = "none"  # none | block | network: learn the activation ranges against that unit's float output
    tune_iters: int = 100  # optimizer steps per unit
    tune_lr: float = 5e-3  # Adam on the bounds, relative to each range's width
    bias_correction: bool = True
    correction_batch: int = 16  # calibration patches that measure the output shift
    progress: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.w_bits != 8 or self.a_bits != 8:
            raise ValueError("int8 is the 8-bit deployment recipe: w_bits and a_bits must be 8")
        if self.act_points != "runtime":
            raise ValueError("int8 rounds every tensor the runtime rounds: act_points must be 'runtime'")
        PercentileConfig(percentile=self.percentile)  # validates the percentile
        if not 0 <= self.equalization <= 1:
            raise ValueError(f"equalization (alpha) must be in [0, 1], got {self.equalization}")
        if self.tune not in TUNE_UNITS:
            raise ValueError(f"tune must be one of {TUNE_UNITS}, got {self.tune!r}")
        if self.tune_iters < 0:
            raise ValueError("tune_iters must be >= 0")
        if self.correction_batch < 1:
            raise ValueError("correction_batch must be >= 1")


def _channel_mean(out: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum over batch and space of each output channel, and the number of values summed per channel."""
    dims = (0, 2, 3) if out.dim() == 4 else (0,)
    return out.detach().double().sum(dim=dims), out.numel() // out.shape[1]


def _channel_means(model: nn.Module, names: list[str], x: torch.Tensor,
                   batch_size: int) -> tuple[dict[str, torch.Tensor], set[str]]:
    """Mean over batch and space of each named module's output channels, and the modules called more than once
    per forward (shared weights)."""
    sums: dict[str, list] = {}

    def hook(name):
        def record(module, args, out):
            total, count = _channel_mean(out)
            prev = sums.get(name, [0, 0, 0])
            sums[name] = [prev[0] + total, prev[1] + count, prev[2] + 1]
        return record

    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    try:
        run_batches(model, x, batch_size)
    finally:
        for h in handles:
            h.remove()
    batches = -(-x.shape[0] // batch_size)
    return ({n: (total / count).float() for n, (total, count, _) in sums.items()},
            {n for n, (_, _, calls) in sums.items() if calls > batches})


def correct_biases(qmodel: nn.Module, fp_model: nn.Module, x: torch.Tensor, batch_size: int) -> int:
    """Empirical bias correction, layer by layer in forward order: subtract from each quantized conv's bias the mean
    difference between its output and the float model's (the earlier layers already corrected; each forward of the
    quantized model stops at the layer). A layer run more than once per forward (shared weights, CARN-M) keeps its
    bias: one bias cannot absorb the shifts of several outputs. Returns how many biases changed."""
    layers = [(n, layer) for n, layer in quant_layers(qmodel) if layer.layer.bias is not None]
    float_means, shared = _channel_means(fp_model, [n for n, _ in layers], x, batch_size)
    layers = [(n, layer) for n, layer in layers if n not in shared]
    for name, layer in layers:
        _, (out,) = collect(qmodel, name, x, batch_size, inputs=False)
        total, count = _channel_mean(out)
        layer.layer.bias.data -= (total / count - float_means[name]).to(layer.layer.bias.dtype)
    return len(layers)


@register_method(Int8Config)
def int8(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: Int8Config) -> None:
    if config.equalization > 0:  # the float reference of bias correction is equalized alike
        fp_model = copy.deepcopy(fp_model)
        equalize([fp_model, qmodel], calib, config.equalization, config.batch_size)
    percentile(qmodel, fp_model, calib, config)
    if config.tune != "none":
        reconstruct(qmodel, fp_model, calib, TuningConfig(
            unit=config.tune, learn_rounding=False, learn_act_range=True, iters=config.tune_iters,
            lr_act_range=config.tune_lr, seed=config.seed, forward_batch=config.batch_size, progress=config.progress))
    if config.bias_correction:
        correct_biases(qmodel, fp_model, calib[:config.correction_batch], config.batch_size)
