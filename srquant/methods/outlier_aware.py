"""Outlier-aware PTQ for image SR (Wang, Lu, Zhang, Fu; ICCV 2025; arXiv 2511.00682). No official code exists and
the full text was not available: the details below follow ../shared/docs/methods.md section 2, and every
reconstructed one is an option of :class:`OutlierAwareConfig` (see docs/outlier_aware.md).

* **Dual-region activations** (:mod:`srquant.quant.dual_region`): per-tensor quantizer with a dense region
  [-bp, bp] and outlier regions [l_a, -bp) and (bp, u_a]. Initialisation: a forward pass over the calibration set
  in batches of ``batch_size``; bp = EMA (beta ``ema_beta``) of the per-batch ``bp_percentile``-th percentile of
  |x|, l_a / u_a = EMA of the per-batch min / max (``act_init="ema"``) or the overall min / max; ``act_init="mse"``
  (beyond the spec) searches (l_a, u_a, bp) for the least squared error instead. Inputs that are never negative
  get the one-sided grid (``one_sided``).
* **Weights**: symmetric per-output-channel grids with a learnable bound u_w (the quantizer's lo/hi; the scale
  follows max(|lo|, |hi|)), initialised by the per-channel MSE clipping search or min/max (``w_init``).
* **Sensitivity-aware finetuning** (only quantizer parameters train, calibration images only): layer sensitivity
  s_k = softmax over layers of the mean (over calibration samples) standard deviation of layer k's output;
  loss = sum_k s_k / K * || F_q^k / ||F_q^k|| - F_fp^k / ||F_fp^k|| ||_2 + lam * L1(out_q, out_fp); cyclic updates
  (weight bounds, then activation bounds l_a / u_a, then bp), each phase one pass over the calibration set.
  It runs the one reconstruction loop (:func:`srquant.quant.tuning.reconstruct`) on the whole network with
  :func:`sensitivity_loss`; features are tapped by forward hooks on every quantized layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..quant.dual_region import LEVEL_SPLITS, DualRegionQuantizer, EMAObserver, dual_region_mse_range, split_levels
from ..quant.model import quant_layers, run_batches, set_mode
from ..quant.observers import mse_range
from ..quant.tuning import LossContext, OutputTaps, TuningConfig, UnitReport, reconstruct
from .base import QuantConfig, register_method
from .uniform import minmax_weights, mse_weights

CYCLE = ("weight.bounds", "act.bounds", "act.breakpoint")  # the paper's order: u_w, then l_a / u_a, then bp
SENSITIVITIES = ("std-softmax", "uniform", "none")
ONE_SIDED = ("nonnegative", "no-negative-outliers", "never")


@dataclass
class OutlierAwareConfig(QuantConfig):
    """Outlier-aware PTQ. ``dual_region`` and ``finetune`` switch the two parts (the paper's ablation); with
    ``dual_region=False`` activations get a uniform asymmetric quantizer with the same initial [l_a, u_a]."""

    method = "outlier-aware"
    dual_region: bool = True
    level_split: str = "summary"  # summary: 2^(b-1)-1 dense + 2 x (2^(b-2)-1) outlier levels | full: all 2^b codes
    one_sided: str = "nonnegative"  # which inputs get the one-sided grid: nonnegative | no-negative-outliers | never
    act_init: str = "ema"  # ema (spec) | minmax: overall min / max for l_a, u_a | mse: least-squared-error search
    bp_percentile: float = 99.0  # initial bp: this percentile of |x| per calibration batch
    ema_beta: float = 0.9  # EMA over calibration batches
    w_init: str = "mse"  # initial weight bound u_w: mse (per-channel clipping search) | minmax
    finetune: bool = True
    sensitivity: str = "std-softmax"  # std-softmax (SAFT) | uniform (s_k = 1/K) | none (L1 only: vanilla finetuning)
    lam: float = 5.0  # weight of L1(out_q, out_fp)
    iters: int = 96  # optimizer steps in total
    tune_batch_size: int = 4  # calibration samples per step
    cycle: list[str] = field(default_factory=lambda: list(CYCLE))  # range groups trained in turn; []: all at once
    phase_steps: int = 0  # steps per cycle phase; 0: one pass over the calibration set (the paper's epoch)
    lr_act_range: float = 5e-3  # Adam, relative to each activation quantizer's initial width u_a - l_a (cosine)
    lr_weight_range: float = 1e-3  # Adam, relative to each weight quantizer's initial width
    keep_best: bool = True  # if finetuning ends worse on the calibration loss, restore the calibrated state
    progress: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.a_granularity != "tensor":
            raise ValueError("outlier-aware activations are per tensor; a_granularity must be 'tensor'")
        if self.act_points != "inputs":
            raise ValueError("outlier-aware quantizes layer inputs only (act_points='inputs')")
        if self.level_split not in LEVEL_SPLITS:
            raise ValueError(f"level_split must be one of {LEVEL_SPLITS}, got {self.level_split!r}")
        if self.dual_region:
            split_levels(self.a_bits, self.level_split)  # the grid must exist at a_bits
        if self.one_sided not in ONE_SIDED:
            raise ValueError(f"one_sided must be one of {ONE_SIDED}, got {self.one_sided!r}")
        if not 50 < self.bp_percentile < 100:
            raise ValueError(f"bp_percentile must be in (50, 100), got {self.bp_percentile}")
        if not 0.0 <= self.ema_beta < 1.0:
            raise ValueError(f"ema_beta must be in [0, 1), got {self.ema_beta}")
        if self.act_init not in ("ema", "minmax", "mse"):
            raise ValueError(f"act_init must be 'ema', 'minmax' or 'mse', got {self.act_init!r}")
        if self.w_init not in ("mse", "minmax"):
            raise ValueError(f"w_init must be 'mse' or 'minmax', got {self.w_init!r}")
        if self.sensitivity not in SENSITIVITIES:
            raise ValueError(f"sensitivity must be one of {SENSITIVITIES}, got {self.sensitivity!r}")
        if self.lam < 0:
            raise ValueError(f"lam must be >= 0, got {self.lam}")
        if self.iters < 0 or self.tune_batch_size < 1 or self.phase_steps < 0:
            raise ValueError("iters and phase_steps must be >= 0 and tune_batch_size >= 1")
        if self.lr_act_range < 0 or self.lr_weight_range < 0:
            raise ValueError("lr_act_range and lr_weight_range must be >= 0")
        unknown = [g for g in self.cycle if g not in CYCLE]
        if unknown:
            raise ValueError(f"cycle entries must be among {CYCLE}, got {unknown}")
        if not self.dual_region and self.cycle and set(self.cycle) <= {"act.breakpoint"}:
            raise ValueError("cycle trains only bp, which uniform activations (dual_region=False) do not have")

    def tuning(self, n_calib: int) -> TuningConfig:
        """The loop configuration: whole network, range parameters only, the cycle's phases."""
        phase = self.phase_steps or math.ceil(n_calib / self.tune_batch_size)
        return TuningConfig(
            unit="network", learn_rounding=False, learn_act_range=True, learn_weight_range=True,
            cycle=tuple(self.cycle), cycle_steps=phase, iters=self.iters, batch_size=self.tune_batch_size,
            lr_act_range=self.lr_act_range, lr_weight_range=self.lr_weight_range, seed=self.seed,
            forward_batch=self.batch_size, keep_best=self.keep_best, progress=self.progress,
        )

    def rebuild(self, qmodel: nn.Module) -> None:
        """Install the dual-region quantizers on a freshly prepared model (used by :func:`srquant.load`)."""
        if self.dual_region:
            install_dual_region_quantizers(qmodel, self.level_split)


def install_dual_region_quantizers(qmodel: nn.Module, level_split: str = "summary") -> None:
    """Replace every QuantLayer's input quantizer by a :class:`DualRegionQuantizer` (bit width from the plan)."""
    for _, layer in quant_layers(qmodel):
        if not isinstance(layer.input_quant, DualRegionQuantizer):
            layer.input_quant = DualRegionQuantizer(layer.input_quant.bits, level_split)


@torch.no_grad()
def calibrate(qmodel: nn.Module, calib: torch.Tensor, config: OutlierAwareConfig) -> None:
    """Initial weight bounds u_w and activation bounds (and bp) from one pass over ``calib``; a layer the forward
    never reaches keeps a float input."""
    layers = list(quant_layers(qmodel))
    set_mode(qmodel, "off")
    observers = {}
    samples = (1 << 20) if config.act_init == "mse" else 0
    for name, layer in layers:
        observers[name] = EMAObserver(config.ema_beta, config.bp_percentile, samples, config.seed)
        layer.input_quant.observer, layer.input_quant.mode = observers[name], "observe"
    run_batches(qmodel, calib, config.batch_size)
    weight_range = mse_weights if config.w_init == "mse" else minmax_weights
    for name, layer in layers:
        q, obs = layer.input_quant, observers[name]
        q.observer, q.mode = None, "off"
        layer.weight_quant.set_range(*weight_range(layer.weight.detach(), layer.weight_quant))
        if obs.lo is None:
            continue
        lo, hi = (obs.ema["min"], obs.ema["max"]) if config.act_init == "ema" else (obs.lo, obs.hi)
        if not isinstance(q, DualRegionQuantizer):
            q.set_range(*(mse_range(obs.samples(), q.bits, q.symmetric) if config.act_init == "mse" else (lo, hi)))
            continue
        one_sided = {"nonnegative": bool(obs.lo.min() >= 0), "no-negative-outliers": bool(lo >= -obs.ema["bp"]),
                     "never": False}[config.one_sided]
        if config.act_init == "mse":
            q.set_range(*dual_region_mse_range(obs.samples(), q.bits, q.level_split, one_sided), one_sided=one_sided)
        else:
            q.set_range(lo, hi, obs.ema["bp"], one_sided=one_sided)


# --------------------------------------------------------------------------------------------------------------
# Sensitivity-aware finetuning
# --------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def feature_stds(model: nn.Module, names: list[str], calib: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Per named layer: the mean over ``calib`` samples of the standard deviation of its output (over C, H, W)."""
    taps = OutputTaps(model, names)
    sums = torch.zeros(len(names), dtype=torch.float64)
    try:
        for start in range(0, len(calib), batch_size):
            model(calib[start:start + batch_size])
            sums += torch.stack([taps.outputs[n].flatten(1).double().std(dim=1).sum() for n in names])
    finally:
        taps.remove()
    return (sums / len(calib)).float()


def sensitivity_weights(mean_stds: torch.Tensor, kind: str = "std-softmax") -> torch.Tensor:
    """Layer weights s_k: softmax of the mean feature standard deviations, or uniform 1/K."""
    if kind == "std-softmax":
        return torch.softmax(mean_stds.double(), 0).float()
    if kind == "uniform":
        return torch.full_like(mean_stds, 1.0 / len(mean_stds))
    raise ValueError(f"sensitivity must be 'std-softmax' or 'uniform', got {kind!r}")


def normalized_distance(f_q: torch.Tensor, f_fp: torch.Tensor) -> torch.Tensor:
    """Batch mean of || f_q / ||f_q||_2 - f_fp / ||f_fp||_2 ||_2, each feature map normalized per sample."""
    return (F.normalize(f_q.flatten(1), dim=1) - F.normalize(f_fp.flatten(1), dim=1)).norm(dim=1).mean()


def sensitivity_loss(q_taps: OutputTaps | None, fp_taps: OutputTaps | None, fp_model: nn.Module, calib: torch.Tensor,
                     weights: dict[str, float], lam: float):
    """The finetuning loss for :func:`reconstruct` (network unit): sum_k s_k / K * normalized feature distance +
    ``lam`` * L1 between outputs. Quantized features come from ``q_taps`` (filled by the unit's forward), float ones
    from a no-grad float forward of the same calibration samples (``ctx.index``); ``weights={}``: L1 only."""

    def loss(pred: list[torch.Tensor], target: list[torch.Tensor], ctx: LossContext) -> torch.Tensor:
        rec = sum(F.l1_loss(p, t) for p, t in zip(pred, target))
        if not weights:
            return lam * rec
        with torch.no_grad():
            fp_model(calib[ctx.index])
        sen = sum(w * normalized_distance(q_taps.outputs[n], fp_taps.outputs[n]) for n, w in weights.items())
        return sen / len(weights) + lam * rec

    return loss


def sensitivity_aware_finetune(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor,
                               config: OutlierAwareConfig) -> list[UnitReport]:
    """Finetune the quantizer parameters of a calibrated ``qmodel``; stores the layer weights as
    ``qmodel.layer_sensitivity`` and the loop's report as ``qmodel.tuning_report``."""
    names = [name for name, _ in quant_layers(qmodel)]
    weights: dict[str, float] = {}
    if config.sensitivity != "none":
        s = sensitivity_weights(feature_stds(fp_model, names, calib, config.batch_size), config.sensitivity)
        weights = dict(zip(names, s.tolist()))
    q_taps = OutputTaps(qmodel, names) if weights else None
    fp_taps = OutputTaps(fp_model, names) if weights else None
    try:
        loss_fn = sensitivity_loss(q_taps, fp_taps, fp_model, calib, weights, config.lam)
        reports = reconstruct(qmodel, fp_model, calib, config.tuning(len(calib)), loss_fn)
    finally:
        for taps in (q_taps, fp_taps):
            if taps is not None:
                taps.remove()
    qmodel.layer_sensitivity = weights
    return reports


@register_method(OutlierAwareConfig)
def outlier_aware(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: OutlierAwareConfig) -> None:
    if config.dual_region:
        install_dual_region_quantizers(qmodel, config.level_split)
    calibrate(qmodel, calib, config)
    if config.finetune and config.iters > 0:
        sensitivity_aware_finetune(qmodel, fp_model, calib, config)
