"""``best``: srquant's strongest low-bit recipe, built from the parts that measure best on its models
(docs/best.md has the held-out selection and the ablation that chose them).

1. **Mixed precision** (optional, ``avg_bits``): the weights and the input of each in-scope layer each get 3, 4, 6
   or 8 bits from their measured output sensitivity on the calibration patches (step 2's grids, one layer's
   weights or input quantized at a time), so that the size-weighted average weight and input bits meet their
   budgets (:mod:`srquant.quant.mixed_precision`).
2. **Initial grids**: weights per channel with squared-error ranges. Layer inputs (``activations``): ``subset``
   (default), DFSQ's per-channel point sets on a per-sample normalization (float statistics at run time, so a
   simulation recipe, not an integer scheme); ``uniform``, per-tensor squared-error ranges (what integer runtimes
   run); ``dual-region``, the outlier-aware grid spending all 2^b codes (``level_split="full"``).
3. **Block reconstruction with QDrop**: per block, learned weight rounding (AdaRound) and, for uniform and
   dual-region inputs, learned input bounds (LSQ-style); inputs and activations randomly dropped to float (QDrop).
   ``learn_weight_range`` also learns the weight bounds.
4. **Network distillation** (optional, ``network_iters``): the input bounds of the whole network are then fitted
   to the float model's output (rounding and weight ranges fixed), as 2DQuant's distillation step.

``budget`` picks the reconstruction steps per block: ``full`` (default, 120) or ``fast`` (30); ``iters``
overrides it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from ..quant.dual_region import DualRegionQuantizer, dual_region_mse_range
from ..quant.mixed_precision import CANDIDATE_BITS, allocate_split, bit_overrides, layer_costs, layer_sensitivities
from ..quant.model import calibrate_ranges, prepare
from ..quant.observers import mse_range
from ..quant.subset import SubsetQuantizer
from ..quant.tuning import reconstruct
from ..quant.walk import quant_layers
from .base import register_method
from .dfsq import DFSQConfig, dfsq, install_subset_quantizers
from .reconstruction import QDropConfig
from .uniform import minmax_weights, mse_weights

BUDGETS = {"full": 120, "fast": 30}  # reconstruction steps per block
ACTIVATIONS = ("subset", "uniform", "dual-region")


@dataclass
class BestConfig(QDropConfig):
    """The best recipe: MSE init, QDrop block reconstruction with learned bounds, network distillation, and
    optionally mixed precision under an average-bits budget (``avg_bits``, or ``w_avg_bits`` / ``a_avg_bits``)."""

    method = "best"
    budget: str = "full"  # full | fast: the reconstruction steps per block when iters is None
    iters: int | None = None  # reconstruction steps per block
    network_iters: int = 0  # distillation steps on the whole network (0: skip)
    activations: str = "subset"  # layer-input grids: subset (DFSQ's) | uniform (per tensor) | dual-region
    static_clamp: bool = False  # subset: clamp each input channel to its calibration range first (PAN-like models)
    learn_weight_range: bool = False  # also learn weight bounds in the block reconstruction
    lr_weight_range: float = 1e-3  # relative to each weight quantizer's range width
    lr_network: float = 1e-3  # distillation: Adam on all bounds, relative to each range width
    avg_bits: float | None = None  # mixed precision: budget for the average weight and activation bits
    w_avg_bits: float | None = None  # separate weight budget (default avg_bits)
    a_avg_bits: float | None = None  # separate activation budget (default avg_bits)

    def __post_init__(self) -> None:
        if self.budget not in BUDGETS:
            raise ValueError(f"budget must be one of {sorted(BUDGETS)}, got {self.budget!r}")
        if self.iters is None:
            self.iters = BUDGETS[self.budget]
        super().__post_init__()
        if self.network_iters < 0:
            raise ValueError("network_iters must be >= 0")
        for name in ("avg_bits", "w_avg_bits", "a_avg_bits"):
            value = getattr(self, name)
            if value is not None and not min(CANDIDATE_BITS) <= value <= max(CANDIDATE_BITS):
                raise ValueError(f"{name} must be within {min(CANDIDATE_BITS)}..{max(CANDIDATE_BITS)}, got {value}")
        if self.avg_bits is None and (self.w_avg_bits is None) != (self.a_avg_bits is None):
            raise ValueError("give both w_avg_bits and a_avg_bits, or avg_bits")
        if self.activations not in ACTIVATIONS:
            raise ValueError(f"activations must be one of {ACTIVATIONS}, got {self.activations!r}")
        if self.network_iters and self.activations == "subset":
            raise ValueError("network_iters tunes input bounds, which subset grids do not have; use "
                             "activations='uniform' or 'dual-region'")

    @property
    def mixed(self) -> bool:
        return self.avg_bits is not None or self.w_avg_bits is not None

    def budgets(self) -> tuple[float, float]:
        w = self.w_avg_bits if self.w_avg_bits is not None else self.avg_bits
        a = self.a_avg_bits if self.a_avg_bits is not None else self.avg_bits
        return float(w), float(a)


def allocate(fp_model: nn.Module, calib: torch.Tensor, config: BestConfig) -> dict[str, tuple[int, int]]:
    """Per-layer (weight, input) widths for the budgets, from the output MSE of each layer's weights, then its input,
    quantized alone at each candidate width on best's own initial grids (before reconstruction)."""
    quantized = {}
    for b in CANDIDATE_BITS:
        config_b = replace(config, w_bits=b, a_bits=b, avg_bits=None, w_avg_bits=None, a_avg_bits=None)
        quantized[b] = prepare(fp_model, config_b)
        install(quantized[b], config_b)
        initial_grids(quantized[b], fp_model, calib, config_b)
    with torch.no_grad():
        reference = fp_model(calib)

    def output_mse(model: nn.Module) -> float:
        with torch.no_grad():
            return float((model(calib) - reference).pow(2).mean())

    names = [name for name, _ in quant_layers(quantized[CANDIDATE_BITS[0]])]
    w_sensitivity = layer_sensitivities(quantized, names, output_mse, part="weights", progress=config.progress)
    a_sensitivity = layer_sensitivities(quantized, names, output_mse, part="inputs", progress=config.progress)
    costs = layer_costs(fp_model, calib[:1], names)
    return allocate_split(w_sensitivity, a_sensitivity, costs, *config.budgets())


def initial_grids(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: BestConfig) -> None:
    """Step 2: DFSQ's point selection for subset inputs (weights by squared error), else :func:`init_ranges`."""
    if config.activations == "subset":
        dfsq(qmodel, fp_model, calib, subset_config(config))
    else:
        init_ranges(qmodel, calib, config)


def init_ranges(qmodel: nn.Module, calib: torch.Tensor, config: BestConfig) -> None:
    """Squared-error ranges (or MinMax weights with ``init="minmax"``); dual-region inputs get their three bounds
    by squared error on the same samples (one-sided when the input is never negative)."""
    def act(obs, q):
        if isinstance(q, DualRegionQuantizer):
            one_sided = bool(obs.lo.min() >= 0)
            return (*dual_region_mse_range(obs.samples(), q.bits, q.level_split, one_sided), one_sided)
        return mse_range(obs.samples(), q.bits, q.symmetric, grid=config.grid)

    calibrate_ranges(qmodel, calib, config, act, mse_weights if config.init == "mse" else minmax_weights)


def subset_config(config: BestConfig) -> DFSQConfig:
    """The DFSQ settings of ``activations="subset"``: DFSQ's defaults for the activations, best's weight settings."""
    return DFSQConfig(w_bits=config.w_bits, a_bits=config.a_bits, scope=config.scope, overrides=config.overrides,
                      w_granularity=config.w_granularity, w_symmetric=config.w_symmetric, weight_range="mse",
                      static_clamp=config.static_clamp, seed=config.seed, batch_size=config.batch_size)


def install(qmodel: nn.Module, config: BestConfig) -> None:
    """DFSQ subset or dual-region input quantizers, as ``activations`` says."""
    if config.activations == "subset":
        install_subset_quantizers(qmodel, subset_config(config))
    if config.activations == "dual-region":
        for _, layer in quant_layers(qmodel):
            if not isinstance(layer.input_quant, DualRegionQuantizer):
                layer.input_quant = DualRegionQuantizer(layer.input_quant.bits, "full")


def set_bits(qmodel: nn.Module, bits: dict[str, tuple[int, int]]) -> None:
    """Give each named quantized layer its (weight, input) widths (before calibration)."""
    layers = dict(quant_layers(qmodel))
    for name, (w_bits, a_bits) in bits.items():
        layer = layers[name]
        layer.weight_quant.bits = w_bits
        if isinstance(layer.input_quant, SubsetQuantizer):  # its point table has 2^b rows: a new one
            old = layer.input_quant
            layer.input_quant = SubsetQuantizer(a_bits, old.channels, channelwise=old.channelwise,
                                                normalize=old.normalize)
        else:
            layer.input_quant.bits = a_bits


@register_method(BestConfig, install=install)
def best(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: BestConfig) -> None:
    if config.mixed:
        bits = allocate(fp_model, calib, config)
        set_bits(qmodel, bits)
        overrides = {**config.overrides, **bit_overrides(bits)}
        qmodel.srquant_config = replace(config, overrides=overrides)  # a saved model reloads with these widths
    initial_grids(qmodel, fp_model, calib, config)
    reconstruct(qmodel, fp_model, calib, config.tuning(
        unit="block", learn_rounding=True, learn_act_range=True, learn_weight_range=config.learn_weight_range,
        lr_weight_range=config.lr_weight_range, input_source="qdrop" if config.drop_prob > 0 else "quant",
        drop_prob=config.drop_prob))
    if config.network_iters > 0:
        reconstruct(qmodel, fp_model, calib, config.tuning(
            unit="network", learn_rounding=False, learn_act_range=True, learn_weight_range=False,
            lr_act_range=config.lr_network, lr_weight_range=config.lr_network, iters=config.network_iters,
            input_source="quant"))
