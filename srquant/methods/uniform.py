"""The uniform calibration baselines: MinMax, Percentile and MSE-optimal clipping."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..quant.model import calibrate_ranges
from ..quant.observers import mse_range, mse_range_weights, percentile_range
from ..quant.primitives import amin_amax
from .base import QuantConfig, register_method


def minmax_weights(w: torch.Tensor, q) -> tuple[torch.Tensor, torch.Tensor]:
    return amin_amax(w, q.axis)


def mse_weights(w: torch.Tensor, q) -> tuple[torch.Tensor, torch.Tensor]:
    return mse_range_weights(w, q.axis, q.bits, q.symmetric)


def _per_tensor_only(obs, q, what: str) -> None:
    if q.axis is not None:
        raise ValueError(f"{what} activation ranges are per tensor; use a_granularity='tensor'")


@dataclass
class MinMaxConfig(QuantConfig):
    """Ranges = observed min/max of weights (per channel) and activations (per tensor)."""

    method = "minmax"


@register_method(MinMaxConfig)
def minmax(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: MinMaxConfig) -> None:
    calibrate_ranges(qmodel, calib, config, lambda obs, q: (obs.lo, obs.hi), minmax_weights, samples=False)


@dataclass
class PercentileConfig(QuantConfig):
    """Activation ranges at the given percentile of the calibration values (both tails); weights min/max."""

    method = "percentile"
    percentile: float = 99.99

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 50 < self.percentile <= 100:
            raise ValueError(f"percentile must be in (50, 100], got {self.percentile}")


@register_method(PercentileConfig)
def percentile(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: PercentileConfig) -> None:
    def act(obs, q):
        _per_tensor_only(obs, q, "percentile")
        return percentile_range(obs.samples(), config.percentile)

    calibrate_ranges(qmodel, calib, config, act, minmax_weights)


@dataclass
class MSEConfig(QuantConfig):
    """Clipping ranges that minimize the squared quantization error (grid search), weights per channel."""

    method = "mse"
    grid: int = 40

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.grid < 2:
            raise ValueError("grid must be >= 2")


@register_method(MSEConfig)
def mse(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: MSEConfig) -> None:
    def act(obs, q):
        _per_tensor_only(obs, q, "MSE")
        return mse_range(obs.samples(), q.bits, q.symmetric, grid=config.grid)

    calibrate_ranges(qmodel, calib, config, act, mse_weights)
