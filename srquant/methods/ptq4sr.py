"""PTQ4SR (Tu et al., CVPR 2023; code huawei-noah/Efficient-Computing, Quantization/PTQ4SR).

* **DBDC** (density-based dual clipping, ``method="dbdc"``): each activation tensor's range comes from a histogram
  of its calibration values (``bins`` bins over [min, max]): the emptier of the two end bins is dropped until the
  kept mass is at most ``1 - p`` of the values (:func:`density_clip_range`). The bounds are computed per
  calibration batch (``batch_size`` samples) and averaged over the batches. Weights: per-output-channel min/max.
* **PaC** (pixel-aware calibration, ``method="ptq4sr"`` = DBDC + PaC): only the clipping bounds are fine-tuned
  against the float model, without HR images: first every activation quantizer's ``lo``/``hi``, then every weight
  quantizer's, each stage with Adam and a cosine schedule, on the loss
  ``L1(out_q, out_fp) + feature_weight * mean over blocks of attention_loss(block_q, block_fp)``
  (:func:`attention_loss`). It runs the one reconstruction loop (:func:`srquant.quant.tuning.reconstruct`, whole
  network as the unit) with :func:`pac_loss` as its loss.

Where srquant differs from the released code (see docs/ptq4sr.md): the clip bounds are the kept bins' outer edges
(the release puts the lower bound one bin higher, so p = 0 still clips a bin); learning rates are relative to each
quantizer's initial range width and decay to 0 (the loop's convention; the release uses absolute rates decaying to
0.4x); the release's hooks detach the quantized block outputs, so its feature term has no gradient, whereas here it
trains the bounds as the paper describes (``feature_weight=0`` gives the release's effective loss).

``variant="official"`` runs the release's choices instead (docs/fidelity.md): p = 1e-4 at every width but 8
(1e-5), the release's lower clip edge, asymmetric per-channel min/max weights, calibration batches of 16, first and
last conv at W8A8 with every other conv at the widths, and PaC with L1 only (its feature term is detached), absolute
learning rates with a cosine to 0.4x, no keep-best.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..quant.model import calibrate_ranges, observe_inputs
from ..quant.observers import histogram
from ..quant.tuning import LossContext, OutputTaps, TuningConfig, reconstruct
from ..quant.units import find_units
from ..quant.walk import graph_quantizers, quant_layers, quantizers
from .base import QuantConfig, register_method
from .official import (
    LAYER_RULES, apply_official, check_variant, cosine_lr, epoch_batches, layer_rule_prepare, pixel_lr, train_groups,
)
from .uniform import minmax_weights

PAPER_CLIP_MASS = {4: 5e-4, 6: 1e-4, 8: 1e-5}  # p of the official configs (W4A4, W6A6, W8A8)
# huawei-noah/Efficient-Computing Quantization/PTQ4SR basicsr/quant/quant.py: Quantization(percentile=1e-4) is never
# given the configured value by layers.py, and 8-bit quantizers switch to 1e-5
RELEASE_CLIP_MASS, RELEASE_CLIP_MASS_8 = 1e-4, 1e-5
DBDC_OFFICIAL = dict(p_source="release", lower_edge="release", w_symmetric=False, batch_size=16, layer_rule="first-last8")
PTQ4SR_OFFICIAL = dict(DBDC_OFFICIAL, feature_weight=0.0, lr_mode="absolute", lr_floor=0.4, keep_best=False)


def release_clip_mass(bits: int) -> float:
    """The clipped mass the release really uses: 1e-4, and 1e-5 for 8-bit quantizers."""
    return RELEASE_CLIP_MASS_8 if bits == 8 else RELEASE_CLIP_MASS


def default_clip_mass(bits: int) -> float:
    """DBDC's clipped mass p at ``bits``: the paper's value at 4, 6 and 8 bits, geometric interpolation between
    them at 5 and 7, and the 4-to-6-bit trend continued below 4 bits (3: 1.12e-3, 2: 2.5e-3)."""
    if bits in PAPER_CLIP_MASS:
        return PAPER_CLIP_MASS[bits]
    b0, b1 = (4, 6) if bits < 6 else (6, 8)
    t = (bits - b0) / (b1 - b0)
    return PAPER_CLIP_MASS[b0] ** (1 - t) * PAPER_CLIP_MASS[b1] ** t


def density_clip_range(hist: torch.Tensor, edges: torch.Tensor, p: float, lower_edge: str = "outer") -> tuple[float, float]:
    """Clip range of a histogram (counts ``hist``, ``len(hist) + 1`` bin ``edges``): while the kept bins hold more
    than ``(1 - p)`` of the total count, drop the end bin with the lower count (the upper one on a tie). Returns the
    outer edges of the kept bins (``p = 0`` keeps the whole range); ``lower_edge="release"``: the lower bound is the
    first kept bin's upper edge, as the release's ``min + interval * (lower_idx + 1)``."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"clipped mass p must be in [0, 1), got {p}")
    counts = hist.double().tolist()
    if len(edges) != len(counts) + 1:
        raise ValueError(f"{len(counts)} bins need {len(counts) + 1} edges, got {len(edges)}")
    keep = (1.0 - p) * sum(counts)
    kept, lo, hi = sum(counts), 0, len(counts) - 1
    while kept > keep and lo < hi:
        if counts[lo] < counts[hi]:
            kept -= counts[lo]
            lo += 1
        else:
            kept -= counts[hi]
            hi -= 1
    return float(edges[lo + (lower_edge == "release")]), float(edges[hi + 1])


def dbdc_range(values: torch.Tensor, p: float, bins: int = 2048, lower_edge: str = "outer") -> tuple[float, float]:
    """DBDC range of a set of values: :func:`density_clip_range` on a ``bins``-bin histogram over [min, max]."""
    counts, _, lo, hi = histogram(values.detach().flatten(), bins)
    return density_clip_range(counts, torch.linspace(lo, hi, bins + 1), p, lower_edge)


@dataclass
class DBDCConfig(QuantConfig):
    """DBDC: density-based dual clipping of activations (per tensor, bounds averaged over calibration batches of
    ``batch_size``), per-channel min/max weights. ``p`` = clipped mass for every quantizer (None: per bit width,
    :func:`default_clip_mass`, so 8-bit ends of ``all-ends8`` get the 8-bit value)."""

    method = "dbdc"
    p: float | None = None
    bins: int = 2048
    variant: str = "spec"  # spec: the paper as specified | official: the released code's choices (DBDC_OFFICIAL)
    p_source: str = "paper"  # p=None: paper (default_clip_mass) | release (release_clip_mass: 1e-4, 1e-5 at 8 bits)
    lower_edge: str = "outer"  # outer: kept bins' outer edge | release: one bin higher (the release's formula)
    layer_rule: str = ""  # "": the scope decides | first-last8: every conv, the first and the last at W8A8

    OFFICIAL = DBDC_OFFICIAL

    def __post_init__(self) -> None:
        check_variant(self.variant)
        if self.variant == "official":
            apply_official(self, self.OFFICIAL)
        super().__post_init__()
        if self.p_source not in ("paper", "release") or self.lower_edge not in ("outer", "release"):
            raise ValueError(f"p_source must be paper or release, lower_edge outer or release; got {self.p_source!r}, "
                             f"{self.lower_edge!r}")
        if self.layer_rule not in ("", *LAYER_RULES):
            raise ValueError(f"layer_rule must be '' or one of {LAYER_RULES}, got {self.layer_rule!r}")
        if self.variant == "official" and self.act_points != "inputs":
            raise ValueError("variant='official' quantizes layer inputs and weights only (act_points='inputs')")
        if self.p is not None and not (isinstance(self.p, (int, float)) and 0.0 <= self.p < 1.0):
            raise ValueError(f"p (clipped mass) must be a number in [0, 1) or None, got {self.p!r}")
        if not isinstance(self.bins, int) or self.bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {self.bins!r}")
        if self.a_granularity != "tensor":
            raise ValueError(f"{self.method} clips per-tensor activation histograms; a_granularity must be 'tensor'")

    def clip_mass(self, bits: int) -> float:
        if self.p is not None:
            return self.p
        return release_clip_mass(bits) if self.p_source == "release" else default_clip_mass(bits)


def _activation_quantizers(qmodel: nn.Module) -> dict[str, nn.Module]:
    """Observer name (as :func:`observe_inputs` keys them) -> the activation quantizer it calibrates."""
    return {**{name: layer.input_quant for name, layer in quant_layers(qmodel)}, **dict(graph_quantizers(qmodel))}


def dbdc_calibrate(qmodel: nn.Module, calib: torch.Tensor, config: DBDCConfig) -> None:
    """Set activation ranges to DBDC bounds averaged over calibration batches, weights to per-channel min/max."""
    targets = _activation_quantizers(qmodel)
    per_batch: dict[int, list[tuple[float, float]]] = {}
    for start in range(0, len(calib), config.batch_size):
        observers = observe_inputs(qmodel, calib[start:start + config.batch_size], config.batch_size, config.seed)
        done: set[int] = set()  # layers reading one tensor share one quantizer (runtime points)
        for name, obs in observers.items():
            q = targets[name]
            if id(q) not in done:
                done.add(id(q))
                per_batch.setdefault(id(q), []).append(
                    dbdc_range(obs.samples(), config.clip_mass(q.bits), config.bins, config.lower_edge))
    means = {key: torch.tensor(bounds, dtype=torch.float64).mean(0).float() for key, bounds in per_batch.items()}
    calibrate_ranges(qmodel, calib, config, lambda obs, q: (means[id(q)][0], means[id(q)][1]), minmax_weights,
                     samples=False)


@register_method(DBDCConfig, prepare=layer_rule_prepare)
def dbdc(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: DBDCConfig) -> None:
    dbdc_calibrate(qmodel, calib, config)


# --------------------------------------------------------------------------------------------------------------
# PaC
# --------------------------------------------------------------------------------------------------------------
def attention_map(feature: torch.Tensor) -> torch.Tensor:
    """Spatial attention of an NxCxHxW feature: channel mean of the squares, L2-normalized per sample (N x HW)."""
    return F.normalize(feature.pow(2).mean(1).flatten(1), dim=1)


def attention_loss(feature_q: torch.Tensor, attention_fp: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between the attention map of ``feature_q`` and a float model's ``attention_fp``."""
    return (attention_map(feature_q) - attention_fp).pow(2).mean()


@torch.no_grad()
def float_attention(fp_model: nn.Module, names: list[str], calib: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
    """Attention maps of the float model's block outputs over ``calib`` (one N x HW tensor per block)."""
    if not names:
        return {}
    taps = OutputTaps(fp_model, names)
    parts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    try:
        for start in range(0, len(calib), batch_size):
            fp_model(calib[start:start + batch_size])
            for n in names:
                parts[n].append(attention_map(taps.outputs[n]))
    finally:
        taps.remove()
    return {n: torch.cat(p) for n, p in parts.items()}


def pac_loss(taps: OutputTaps, attention_fp: dict[str, torch.Tensor], feature_weight: float):
    """PaC's loss for :func:`reconstruct`: L1 between outputs plus ``feature_weight`` times the mean attention loss
    over the blocks (quantized block outputs from ``taps``, float attention maps indexed by the batch samples)."""

    def loss(pred: list[torch.Tensor], target: list[torch.Tensor], ctx: LossContext) -> torch.Tensor:
        out = sum(F.l1_loss(p, t) for p, t in zip(pred, target))
        if not attention_fp:
            return out
        feat = sum(attention_loss(taps.outputs[n], a[ctx.index]) for n, a in attention_fp.items())
        return out + feature_weight * feat / len(attention_fp)

    return loss


def block_names(qmodel: nn.Module, patterns: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The blocks whose outputs PaC compares: ``patterns``, else the ModelSpec's blocks, else auto-detected."""
    return [u.name for u in find_units(qmodel, "block", patterns) if u.kind == "block"]


@dataclass
class PTQ4SRConfig(DBDCConfig):
    """PTQ4SR = DBDC + PaC. Defaults are the official W4A4 configuration: 250 steps on activation bounds (Adam,
    lr 5e-3), then 250 on weight bounds (lr 5e-6), cosine decay, 2 patches per step, feature weight 5. Learning
    rates are relative to each quantizer's initial range width."""

    method = "ptq4sr"
    iters_act: int = 250
    iters_weight: int = 250
    tune_batch_size: int = 2
    lr_act: float = 5e-3
    lr_weight: float = 5e-6
    feature_weight: float = 5.0
    blocks: list[str] = field(default_factory=list)  # block name patterns (empty: ModelSpec, then auto-detect)
    keep_best: bool = True  # a stage that ends worse on the calibration loss restores the bounds it started from
    progress: bool = True
    lr_mode: str = "relative"  # relative: x each quantizer's initial width, cosine to 0 (srquant's loop) | absolute:
    # the release's loop (release_pac): lr_act on the 0-255 pixel scale, lr_weight as is, cosine to lr_floor x start
    lr_floor: float = 0.0  # lr_mode="absolute": the cosine ends at this fraction of the start (release: 0.4)

    OFFICIAL = PTQ4SR_OFFICIAL

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lr_mode not in ("relative", "absolute") or not 0 <= self.lr_floor <= 1:
            raise ValueError(f"lr_mode must be relative or absolute and lr_floor in [0, 1], got {self.lr_mode!r}, "
                             f"{self.lr_floor}")
        if self.lr_mode == "absolute" and self.feature_weight > 0:
            raise ValueError("lr_mode='absolute' runs the release's PaC loop, whose loss is L1 only (feature_weight=0)")
        if self.iters_act < 0 or self.iters_weight < 0:
            raise ValueError(f"iters_act and iters_weight must be >= 0, got {self.iters_act}, {self.iters_weight}")
        if self.tune_batch_size < 1:
            raise ValueError(f"tune_batch_size must be >= 1, got {self.tune_batch_size}")
        values = (self.lr_act, self.lr_weight, self.feature_weight)
        if not all(isinstance(v, (int, float)) and v >= 0 for v in values):
            raise ValueError(f"lr_act, lr_weight and feature_weight must be numbers >= 0, got {values}")

    def tuning(self, stage: str) -> TuningConfig:
        """The loop configuration of PaC's ``"act"`` or ``"weight"`` stage."""
        act = stage == "act"
        return TuningConfig(
            unit="network", learn_rounding=False, learn_act_range=act, learn_weight_range=not act,
            iters=self.iters_act if act else self.iters_weight, batch_size=self.tune_batch_size,
            lr_act_range=self.lr_act, lr_weight_range=self.lr_weight, seed=self.seed, forward_batch=self.batch_size,
            keep_best=self.keep_best, progress=self.progress,
        )


def _check_finite(qmodel: nn.Module, stage: str) -> None:
    bad = [name for name, q in quantizers(qmodel) if not bool(torch.isfinite(q.lo).all() and torch.isfinite(q.hi).all())]
    if bad:
        raise RuntimeError(f"PaC's {stage} stage left non-finite clipping bounds in {len(bad)} quantizers ({bad[0]}, ...): "
                           "the quantized model has NaN gradients (e.g. a square root at 0)")


def pixel_aware_calibration(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: PTQ4SRConfig) -> list:
    """PaC on a calibrated model: activation bounds, then weight bounds; returns the loop's reports."""
    names = block_names(qmodel, config.blocks) if config.feature_weight > 0 else []
    attention_fp = float_attention(fp_model, names, calib, config.batch_size)
    taps = OutputTaps(qmodel, names)
    loss_fn = pac_loss(taps, attention_fp, config.feature_weight)
    reports = []
    try:
        for stage in ("act", "weight"):  # activation bounds first, then weight bounds
            with torch.enable_grad():  # also when quantize() is called under no_grad
                reports += reconstruct(qmodel, fp_model, calib, config.tuning(stage), loss_fn)
            _check_finite(qmodel, stage)
    finally:
        taps.remove()
    qmodel.tuning_report = reports
    return reports


def release_pac(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: PTQ4SRConfig) -> list[float]:
    """The release's PaC (``basicsr/ptq4sr.py``): ``iters_act`` steps on the activation bounds, then ``iters_weight``
    on the weight bounds, Adam at absolute rates with a cosine to ``lr_floor`` x start, loss L1(out_q, out_fp) (the
    release's feature term is computed on detached outputs and adds no gradient); returns the step losses."""
    input_range = getattr(getattr(fp_model, "sr_info", None), "input_range", 1.0)
    layers = [layer for _, layer in quant_layers(qmodel)]
    groups = {"act": [p for l in layers for p in l.input_quant.range_params()["bounds"]],
              "weight": [p for l in layers for p in l.weight_quant.range_params()["bounds"]]}
    act_lr = pixel_lr(config.lr_act, input_range)
    schedule = [("act", lr) for lr in cosine_lr(act_lr, act_lr * config.lr_floor, config.iters_act)]
    schedule += [("weight", lr) for lr in cosine_lr(config.lr_weight, config.lr_weight * config.lr_floor, config.iters_weight)]
    batches = epoch_batches(len(calib), config.tune_batch_size, len(schedule), torch.Generator().manual_seed(config.seed))

    def loss_at(step: int) -> torch.Tensor:
        x = calib[batches[step]]
        with torch.no_grad():
            out_fp = fp_model(x)
        return F.l1_loss(qmodel(x), out_fp)

    losses = train_groups(groups, schedule, loss_at)
    _check_finite(qmodel, "release PaC")
    qmodel.tuning_losses = losses
    return losses


@register_method(PTQ4SRConfig, prepare=layer_rule_prepare)
def ptq4sr(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: PTQ4SRConfig) -> None:
    dbdc_calibrate(qmodel, calib, config)
    (release_pac if config.lr_mode == "absolute" else pixel_aware_calibration)(qmodel, fp_model, calib, config)
