"""Reconstruction-based PTQ: AdaRound (layer-wise), BRECQ (block-wise) and QDrop (BRECQ + random quantization
dropping). All three run the one loop in :mod:`srquant.quant.tuning`; they differ only in the TuningConfig.

Ranges start from the MSE baseline (:func:`srquant.methods.uniform.mse`) or MinMax (``init="minmax"``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..quant.tuning import TuningConfig, reconstruct
from .base import QuantConfig, register_method
from .uniform import minmax, mse


@dataclass
class ReconstructionConfig(QuantConfig):
    """Fields shared by the reconstruction methods (defaults sized for a 2-core CPU and 32 calibration patches)."""

    init: str = "mse"  # mse | minmax: how the ranges are initialised before tuning
    grid: int = 40  # MSE grid (init="mse")
    iters: int = 200  # optimizer steps per unit
    tune_batch_size: int = 8  # samples per step
    lr_rounding: float = 1e-1  # Adam on the rounding variables (BRECQ: 1e-3 over 20k steps)
    lr_act_range: float = 5e-3  # Adam on activation bounds, relative to the initial range width (cosine decay)
    warmup: float = 0.2
    beta_start: float = 20.0
    beta_end: float = 2.0
    lam: float = 0.01
    blocks: list[str] = field(default_factory=list)  # block name patterns (empty: ModelSpec, then auto-detect)
    keep_best: bool = True  # a unit whose tuned loss is worse than its initial loss keeps the initial state
    progress: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init not in ("mse", "minmax"):
            raise ValueError(f"init must be 'mse' or 'minmax', got {self.init!r}")
        if self.iters < 0 or self.tune_batch_size < 1:
            raise ValueError("iters must be >= 0 and tune_batch_size >= 1")
        if self.grid < 2:
            raise ValueError("grid must be >= 2")

    def tuning(self, **kw) -> TuningConfig:
        base = dict(
            blocks=tuple(self.blocks), iters=self.iters, batch_size=self.tune_batch_size, lr_rounding=self.lr_rounding,
            lr_act_range=self.lr_act_range, warmup=self.warmup, beta=(self.beta_start, self.beta_end), lam=self.lam,
            seed=self.seed, forward_batch=self.batch_size, keep_best=self.keep_best, progress=self.progress,
        )
        return TuningConfig(**{**base, **kw})


def _init_ranges(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: ReconstructionConfig) -> None:
    (mse if config.init == "mse" else minmax)(qmodel, fp_model, calib, config)


@dataclass
class AdaRoundConfig(ReconstructionConfig):
    """AdaRound: layer-wise learned weight rounding on the quantized model's layer inputs; activation ranges from
    the initial calibration stay fixed."""

    method = "adaround"


@register_method(AdaRoundConfig)
def adaround(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: AdaRoundConfig) -> None:
    _init_ranges(qmodel, fp_model, calib, config)
    reconstruct(qmodel, fp_model, calib, config.tuning(unit="layer", learn_rounding=True, learn_act_range=False,
                                                       input_source="quant"))


@dataclass
class BRECQConfig(ReconstructionConfig):
    """BRECQ: block-wise reconstruction of weight rounding (AdaRound) and activation bounds (learned step sizes)."""

    method = "brecq"


@register_method(BRECQConfig)
def brecq(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: BRECQConfig) -> None:
    _init_ranges(qmodel, fp_model, calib, config)
    reconstruct(qmodel, fp_model, calib, config.tuning(unit="block", learn_rounding=True, learn_act_range=True,
                                                       input_source="quant"))


@dataclass
class QDropConfig(ReconstructionConfig):
    """QDrop: BRECQ where, during tuning, each activation element skips quantization with probability
    ``drop_prob`` (block inputs mix quantized-model and float values the same way)."""

    method = "qdrop"
    drop_prob: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.drop_prob <= 1.0:
            raise ValueError(f"drop_prob must be in [0, 1], got {self.drop_prob}")


@register_method(QDropConfig)
def qdrop(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: QDropConfig) -> None:
    _init_ranges(qmodel, fp_model, calib, config)
    reconstruct(qmodel, fp_model, calib, config.tuning(unit="block", learn_rounding=True, learn_act_range=True,
                                                       input_source="qdrop", drop_prob=config.drop_prob))
