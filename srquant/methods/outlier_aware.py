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

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..quant.dual_region import (
    LEVEL_SPLITS, DualRegionQuantizer, EMAObserver, ReleaseDualRegionQuantizer, dual_region_mse_range, split_levels,
)
from ..quant.observers import mse_range
from ..quant.tuning import LossContext, OutputTaps, TuningConfig, UnitReport, reconstruct
from ..quant.units import find_units
from ..quant.walk import observing, quant_layers, run_batches
from .base import QuantConfig, register_method
from .official import (
    LAYER_RULES, RELEASE_PIXEL_RANGE, apply_official, check_variant, epoch_batches, layer_rule_prepare, pixel_lr,
    train_groups,
)
from .uniform import minmax_weights, mse_weights

CYCLE = ("weight.bounds", "act.bounds", "act.breakpoint")  # the paper's order: u_w, then l_a / u_a, then bp
SENSITIVITIES = ("std-softmax", "uniform", "none")
ONE_SIDED = ("nonnegative", "no-negative-outliers", "never")
GRIDS = ("spec", "release", "release-fair")  # release-fair: the release's grid one bit narrower (2^b codes)
RELEASE_GROUPS = ("weight", "act", "bp")  # the release's epoch cycle: u_w, then l_a / u_a, then bp
# haiiling/OAQ-SR scripts/run.sh (edsr) and src/trainer.py; docs/fidelity.md lists each with its file
OFFICIAL = dict(
    grid="release", act_init="release", w_init="omse", w_granularity="tensor", loop="release",
    sen_weight=10.0, batch_size=16, tune_batch_size=2, keep_best=False, layer_rule="ends8",
)


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
    variant: str = "spec"  # spec: the paper as specified | official: the released code's choices (OFFICIAL)
    grid: str = "spec"  # spec: level_split grid | release: the release's 2^(b+1)-code grid | release-fair: 2^b codes
    sen_weight: float = 1.0  # factor on the sensitivity term (the release's w_sktloss = 10)
    loop: str = "spec"  # spec: reconstruct + sensitivity_loss | release: release_finetune (+ release_loss)
    epochs: int = 9  # loop="release": training epochs (the release's 10 epochs minus the calibration epoch)
    lr_abs: float = 1e-3  # loop="release": Adam lr of every group (activation groups on the 0-255 pixel scale)
    lr_gamma: float = 0.9  # loop="release": StepLR factor per epoch of a group
    layer_rule: str = ""  # "": the scope decides | ends8: head and tail at W8A8, everything else at the widths

    def __post_init__(self) -> None:
        check_variant(self.variant)
        if self.variant == "official":
            apply_official(self, OFFICIAL)
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
        if self.act_init not in ("ema", "minmax", "mse", "release"):
            raise ValueError(f"act_init must be 'ema', 'minmax', 'mse' or 'release', got {self.act_init!r}")
        if self.w_init not in ("mse", "minmax", "omse"):
            raise ValueError(f"w_init must be 'mse', 'minmax' or 'omse', got {self.w_init!r}")
        if self.w_init == "omse" and (self.w_granularity != "tensor" or not self.w_symmetric):
            raise ValueError("w_init='omse' (the release's bound search) is per tensor and symmetric")
        if self.grid not in GRIDS:
            raise ValueError(f"grid must be one of {GRIDS}, got {self.grid!r}")
        if self.grid != "spec" and not self.dual_region:
            raise ValueError(f"grid={self.grid!r} is a dual-region grid; it needs dual_region=True")
        if self.grid == "release-fair" and self.a_bits < 3:
            raise ValueError("grid='release-fair' needs a_bits >= 3 (a dense region of >= 2 bits)")
        if self.loop not in ("spec", "release"):
            raise ValueError(f"loop must be 'spec' or 'release', got {self.loop!r}")
        if self.loop == "release" and self.act_init != "release":
            raise ValueError("loop='release' weighs blocks by the input statistics of act_init='release'")
        if self.sen_weight < 0 or self.epochs < 0 or self.lr_abs < 0 or not 0 < self.lr_gamma <= 1:
            raise ValueError("sen_weight, epochs and lr_abs must be >= 0 and lr_gamma in (0, 1]")
        if self.layer_rule not in ("", *LAYER_RULES):
            raise ValueError(f"layer_rule must be '' or one of {LAYER_RULES}, got {self.layer_rule!r}")
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


def install(qmodel: nn.Module, config: OutlierAwareConfig) -> None:
    """The method's install step: dual-region input quantizers unless ``dual_region=False``."""
    if config.dual_region:
        install_dual_region_quantizers(qmodel, config.level_split, config.grid)


def install_dual_region_quantizers(qmodel: nn.Module, level_split: str = "summary", grid: str = "spec") -> None:
    """Replace every QuantLayer's input quantizer by a :class:`DualRegionQuantizer` (``grid="spec"``) or the
    release's :class:`ReleaseDualRegionQuantizer` (bit width from the plan)."""
    for _, layer in quant_layers(qmodel):
        if not isinstance(layer.input_quant, DualRegionQuantizer):
            bits = layer.input_quant.bits
            layer.input_quant = (DualRegionQuantizer(bits, level_split) if grid == "spec"
                                 else ReleaseDualRegionQuantizer(bits, fair=grid == "release-fair"))


class ReleaseObserver(EMAObserver):
    """The release's calibration statistics: EMA min / max as :class:`EMAObserver`; bp = the signed ``quantile``
    of the latest batch (the release's bp EMA line mixes bp with itself, so the last batch wins); the per-batch mean
    over samples of the per-sample standard deviation (its sensitivity statistic)."""

    def __init__(self, beta: float, quantile: float):
        super().__init__(beta, 100 * quantile)
        self.quantile, self.bp, self.stds = quantile, None, []

    def update(self, x: torch.Tensor) -> None:
        super().update(x)
        flat = x.detach().double().reshape(-1).numpy()
        self.bp = torch.tensor(float(np.quantile(flat, self.quantile)))  # numpy's linear interpolation, as released
        self.stds.append(float(x.detach().flatten(1).std(dim=1).mean()))


def omse_bound(w: torch.Tensor, bits: int, fractions: int = 90) -> torch.Tensor:
    """The release's weight bound u_w (``init_qparams_w``, quantizer_w='omse'): shrink [min, max] by 1, 0.99, ...
    (``fractions`` steps), keep the pair with the least squared error of a 2^b-level grid on it; u_w = its upper
    end (the symmetric grid [-u_w, u_w] is then used)."""
    flat = w.detach().reshape(1, -1)
    keep = 1.0 - 0.01 * torch.arange(fractions, dtype=flat.dtype).reshape(-1, 1)
    lo, hi = flat.min() * keep, flat.max() * keep
    steps = 2**bits - 1
    span = (hi - lo).clamp_min(1e-12)
    wq = torch.round((torch.minimum(torch.maximum(flat, lo), hi) - hi) / span * steps) / steps * span + hi
    return hi[int(((flat - wq) ** 2).mean(1).argmin()), 0]


@torch.no_grad()
def calibrate(qmodel: nn.Module, calib: torch.Tensor, config: OutlierAwareConfig) -> None:
    """Initial weight bounds u_w and activation bounds (and bp) from one pass over ``calib``; a layer the forward
    never reaches keeps a float input."""
    layers = list(quant_layers(qmodel))
    samples = (1 << 20) if config.act_init == "mse" else 0
    observers = {name: ReleaseObserver(config.ema_beta, config.bp_percentile / 100) if config.act_init == "release"
                 else EMAObserver(config.ema_beta, config.bp_percentile, samples, config.seed) for name, _ in layers}
    with observing(qmodel, {layer.input_quant: observers[name] for name, layer in layers}):
        run_batches(qmodel, calib, config.batch_size)
    weight_range = {"mse": mse_weights, "minmax": minmax_weights, "omse": _omse_weights}[config.w_init]
    for name, layer in layers:
        q, obs = layer.input_quant, observers[name]
        layer.weight_quant.set_range(*weight_range(layer.weight.detach(), layer.weight_quant))
        if obs.lo is None:
            continue
        if config.act_init == "release":
            q.set_range(obs.ema["min"], obs.ema["max"], obs.bp)
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
    qmodel.input_stds = {name: sum(obs.stds) / len(obs.stds) for name, obs in observers.items()
                         if getattr(obs, "stds", None)}


def _omse_weights(w: torch.Tensor, q) -> tuple[torch.Tensor, torch.Tensor]:
    bound = omse_bound(w, q.bits)
    return -bound, bound


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


# --------------------------------------------------------------------------------------------------------------
# The release's finetuning (haiiling/OAQ-SR src/trainer.py)
# --------------------------------------------------------------------------------------------------------------
def release_block_names(qmodel: nn.Module) -> list[str]:
    """The blocks whose outputs the release's loss compares (EDSR's ResBlocks there): multi-layer blocks."""
    return [u.name for u in find_units(qmodel, "block") if u.kind == "block" and len(u.layers) > 1]


def release_sensitivities(qmodel: nn.Module, input_range: float) -> torch.Tensor:
    """s = softmax over the quantized layers (module order) of the mean input standard deviation, on the release's
    0-255 pixel scale (``trainer.py``: exp / sum over every QConv2d)."""
    stds = torch.tensor([qmodel.input_stds[n] for n, _ in quant_layers(qmodel)], dtype=torch.float64)
    return torch.softmax(stds * RELEASE_PIXEL_RANGE / input_range, 0).float()


def release_loss(out_q: torch.Tensor, out_fp: torch.Tensor, feats_q: list[torch.Tensor], feats_fp: list[torch.Tensor],
                 weights: torch.Tensor, sen_weight: float, lam: float) -> torch.Tensor:
    """The release's objective (``trainer.py``; ``common.py`` ResBlock collects the features): lam * L1(out) +
    sen_weight * sum_r weights[r] * || u_fp[r] - u_q[r] || / N / (N K), over the N K rows (block k, sample n) in
    block-major order (r = k N + n), each row a per-sample L2-normalized block output. The release indexes its
    per-layer sensitivities by that row number, so row r takes the r-th layer's weight."""
    n, k = len(out_q), len(feats_q)
    if len(weights) < n * k:
        raise ValueError(f"the release pairs {n * k} feature rows with layer weights, but there are {len(weights)}")
    sen = out_q.new_zeros(())
    for i, (q, fp) in enumerate(zip(feats_q, feats_fp)):
        dist = (F.normalize(fp.flatten(1), dim=1) - F.normalize(q.flatten(1), dim=1)).norm(dim=1)
        sen = sen + (weights[i * n:(i + 1) * n].to(dist) * dist).sum()
    return sen_weight * sen / n / (n * k) + lam * F.l1_loss(out_q, out_fp)


def release_schedule(config: OutlierAwareConfig, n_calib: int, input_range: float) -> list[tuple[str, float]]:
    """(group, lr) per step: ``epochs`` epochs of ``n_calib // tune_batch_size`` steps cycling weight, act, bp;
    each group's lr starts at ``lr_abs`` (activation groups on the pixel scale) and decays by ``lr_gamma`` after
    each of its epochs (one StepLR per group)."""
    per_epoch = max(1, n_calib // config.tune_batch_size)
    base = {"weight": config.lr_abs, "act": pixel_lr(config.lr_abs, input_range), "bp": pixel_lr(config.lr_abs, input_range)}
    schedule = []
    for epoch in range(config.epochs):
        group = RELEASE_GROUPS[epoch % len(RELEASE_GROUPS)]
        schedule += [(group, base[group] * config.lr_gamma ** (epoch // len(RELEASE_GROUPS)))] * per_epoch
    return schedule


def release_finetune(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: OutlierAwareConfig) -> list[float]:
    """The release's finetuning of u_w, (l_a, u_a) and bp against the float model; returns the step losses."""
    input_range = getattr(getattr(fp_model, "sr_info", None), "input_range", 1.0)
    layers = [layer for _, layer in quant_layers(qmodel)]
    groups = {"weight": [p for l in layers for p in l.weight_quant.range_params()["bounds"]],
              "act": [p for l in layers for p in l.input_quant.range_params()["bounds"]],
              "bp": [p for l in layers for p in l.input_quant.range_params().get("breakpoint", [])]}
    names = release_block_names(qmodel)
    weights = release_sensitivities(qmodel, input_range)
    if config.sensitivity == "uniform":
        weights = torch.ones_like(weights)
    q_taps, fp_taps = OutputTaps(qmodel, names), OutputTaps(fp_model, names)
    schedule = release_schedule(config, len(calib), input_range)
    batches = epoch_batches(len(calib), config.tune_batch_size, len(schedule), torch.Generator().manual_seed(config.seed))

    def loss_at(step: int) -> torch.Tensor:
        x = calib[batches[step]]
        with torch.no_grad():
            out_fp = fp_model(x)
        out_q = qmodel(x)
        feats = ([q_taps.outputs[n] for n in names], [fp_taps.outputs[n] for n in names])
        sen = 0.0 if config.sensitivity == "none" else config.sen_weight
        return release_loss(out_q, out_fp, *feats, weights, sen, config.lam)

    try:
        losses = train_groups(groups, schedule, loss_at)
    finally:
        q_taps.remove()
        fp_taps.remove()
    qmodel.tuning_losses = losses
    return losses


@register_method(OutlierAwareConfig, install=install, prepare=layer_rule_prepare)
def outlier_aware(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: OutlierAwareConfig) -> None:
    calibrate(qmodel, calib, config)
    if config.finetune and config.loop == "release" and config.epochs > 0:
        release_finetune(qmodel, fp_model, calib, config)
    elif config.finetune and config.loop == "spec" and config.iters > 0:
        sensitivity_aware_finetune(qmodel, fp_model, calib, config)
