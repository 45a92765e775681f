"""DFSQ: Distribution-Flexible Subset Quantization (Zhong et al., arXiv 2305.05888; code zysxmu/DFSQ).

Activations: each in-scope layer input is normalized per sample and channel at run time (mean-subtracted unless it
follows a ReLU, divided by its max |x|), snapped to the nearest of the channel's 2^a_bits points, de-normalized.
The points are chosen once per input channel from a universal set of additive power-of-two values by k-means on
the normalized calibration activations (fast selection), see :mod:`srquant.quant.subset_select`.
Weights: per-output-filter ("kernel-wise" in the paper) asymmetric min/max, no clipping search, no fine-tuning
(``weight_range="mse"``, beyond the spec, clips each filter's range by squared error instead).

Caveat for comparisons: the normalization statistics (mean, max) are computed in floating point per image at run
time, so DFSQ is not an integer-only scheme like per-tensor uniform PTQ (the paper's §5 acknowledges the overhead).
The defaults follow the official code (377-value universal set, 5 restarts with a centroid pinned at 0, restart kept
by quantization loss); :data:`PAPER_SETTINGS` gives the paper's variant (reconstructed 107-value set, 3 restarts,
kept by k-means SSE).

``variant="official"`` also quantizes only the layers zysxmu/DFSQ quantizes (docs/fidelity.md): EDSR's ResBlock
convs there, so on any model only the layers inside multi-layer blocks (IMDN's ``c.0`` and ``LR_conv`` stay float).
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import nn

from ..quant.layers import QuantLayer
from ..quant.subset import WORD_SETS, SubsetQuantizer, normalize, universal_set
from ..quant.subset_select import SortedRows, select_exhaustive, select_kmeans, select_optimal
from ..quant.observers import TensorList
from ..quant.walk import observing, quant_layers, run_batches, set_mode
from .base import QuantConfig, register_method
from .official import LAYER_RULES, apply_official, check_variant, layer_rule_prepare
from .uniform import minmax_weights, mse_weights

PAPER_SETTINGS = dict(universal_set="paper107", restarts=3, pin_zero=False, restart_criterion="sse")
# zysxmu/DFSQ model/setq/edsr_setq.py: quantized convs only inside the ResBlocks
OFFICIAL = dict(layer_rule="blocks")


@dataclass
class DFSQConfig(QuantConfig):
    """DFSQ. ``a_granularity`` chooses channel-wise points ("channel", the method) or one point set per layer
    ("tensor", Table 1's ablation); normalization is per sample and channel either way (``normalize=False``: raw
    values are snapped to points in [-1, 1], the collapsing ablation row)."""

    method = "dfsq"
    w_granularity: str = "channel"  # one asymmetric min/max range per output filter
    w_symmetric: bool = False
    weight_range: str = "minmax"  # minmax (the method) | mse (beyond the spec: per-filter squared-error clipping)
    a_granularity: str = "channel"  # channel: points per input channel | tensor: one point set per layer
    universal_set: str = "code"  # preset: code (377 values) | paper107 (reconstructed)
    word_sets: list | None = None  # custom word sets (overrides universal_set)
    normalize: bool = True
    post_relu: str = "auto"  # auto (calibration input min >= 0) | always | never: skip the mean subtraction
    selection: str = "kmeans"  # kmeans (fast selection) | optimal (exact DP) | exhaustive (tiny universal sets)
    restarts: int = 5  # paper: 3
    pin_zero: bool = True  # official code: one k-means centroid fixed at 0
    restart_criterion: str = "quant_loss"  # quant_loss (code, after snapping) | sse (paper, k-means SSE)
    kmeans_init: str = "kmeans++"  # kmeans++ | random
    kmeans_iters: int = 100
    kmeans_tol: float = 1e-4
    max_samples: int = 0  # values per point set used for selection (seeded subsample); 0 = all
    calib_norm_group: int = 1  # pool normalization statistics over this many calibration samples (see subset.normalize)
    static_clamp: bool = False  # clamp each input channel to its calibration range first (PAN-like models)
    memory_mb: int = 1024  # budget for the calibration activations held at once (more layers -> more forward passes)
    workers: int = 2  # layers selected concurrently (threads, one torch thread each; small ops scale badly with OpenMP)
    variant: str = "spec"  # spec: the scope decides the layers | official: the release's layers (OFFICIAL)
    layer_rule: str = ""  # "": the scope decides | blocks: only layers inside multi-layer blocks

    def __post_init__(self) -> None:
        check_variant(self.variant)
        if self.variant == "official":
            apply_official(self, OFFICIAL)
        super().__post_init__()
        if self.layer_rule not in ("", *LAYER_RULES):
            raise ValueError(f"layer_rule must be '' or one of {LAYER_RULES}, got {self.layer_rule!r}")
        if self.act_points != "inputs":
            raise ValueError("DFSQ quantizes layer inputs only (act_points='inputs')")
        if self.word_sets is None and self.universal_set not in WORD_SETS:
            raise ValueError(f"universal_set must be one of {sorted(WORD_SETS)}, got {self.universal_set!r}")
        if self.word_sets is not None:
            if not self.word_sets or not all(len(s) > 0 for s in self.word_sets):
                raise ValueError("word_sets must be a non-empty list of non-empty lists")
            self.word_sets = [[float(v) for v in s] for s in self.word_sets]
        if self.weight_range not in ("minmax", "mse"):
            raise ValueError(f"weight_range must be minmax or mse, got {self.weight_range!r}")
        if self.post_relu not in ("auto", "always", "never"):
            raise ValueError(f"post_relu must be auto, always or never, got {self.post_relu!r}")
        if self.selection not in ("kmeans", "optimal", "exhaustive"):
            raise ValueError(f"selection must be kmeans, optimal or exhaustive, got {self.selection!r}")
        if self.restart_criterion not in ("quant_loss", "sse"):
            raise ValueError(f"restart_criterion must be quant_loss or sse, got {self.restart_criterion!r}")
        if self.kmeans_init not in ("kmeans++", "random"):
            raise ValueError(f"kmeans_init must be kmeans++ or random, got {self.kmeans_init!r}")
        for name in ("restarts", "kmeans_iters", "calib_norm_group", "memory_mb", "workers"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.max_samples < 0 or self.kmeans_tol < 0:
            raise ValueError("max_samples and kmeans_tol must be >= 0")
        if len(self.universal()) < 2**self.a_bits:
            raise ValueError(f"the universal set has {len(self.universal())} values, fewer than 2^{self.a_bits}")

    def universal(self) -> torch.Tensor:
        return universal_set(self.word_sets if self.word_sets is not None else self.universal_set)


def _in_channels(layer: nn.Module) -> int:
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels


def install_subset_quantizers(qmodel: nn.Module, config: DFSQConfig) -> None:
    """Replace every QuantLayer's input quantizer by a :class:`SubsetQuantizer` (bit width kept from the plan)."""
    for _, layer in quant_layers(qmodel):
        if not isinstance(layer.input_quant, SubsetQuantizer):
            layer.input_quant = SubsetQuantizer(layer.input_quant.bits, _in_channels(layer.layer),
                                                channelwise=config.a_granularity == "channel", normalize=config.normalize)


def _select(rows: SortedRows, universal: torch.Tensor, bits: int, config: DFSQConfig, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if config.selection == "kmeans":
        return select_kmeans(rows, universal, bits, config.restarts, config.pin_zero, config.restart_criterion,
                             config.kmeans_iters, config.kmeans_tol, config.kmeans_init, seed)
    if config.selection == "optimal":
        return select_optimal(rows, universal, bits)
    parts = [select_exhaustive(rows.x[r], universal, bits) for r in range(rows.rows)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@torch.no_grad()
def calibrate_layer(quant: SubsetQuantizer, raw: torch.Tensor, universal: torch.Tensor, config: DFSQConfig,
                    seed: int) -> dict:
    """Set ``quant``'s post-ReLU flags, clamp range and points from the layer's float inputs ``raw`` (B, C, ...)."""
    if raw.dim() < 3:
        raw = raw.reshape(*raw.shape, 1)
    channels = raw.shape[1]
    reduce = (0, *range(2, raw.dim()))
    flag = {"auto": bool(raw.min() >= 0), "always": True, "never": False}[config.post_relu]
    quant.post_relu.fill_(flag)
    if config.static_clamp:
        quant.clamp_lo.copy_(raw.amin(reduce))
        quant.clamp_hi.copy_(raw.amax(reduce))
        raw = quant.clamp(raw)
    values = normalize(raw, flag, config.calib_norm_group)[0] if config.normalize else raw
    values = values.transpose(0, 1).reshape(channels, -1)
    if not quant.channelwise:
        values = values.reshape(1, -1)
    gen = torch.Generator().manual_seed(seed)
    if config.max_samples and values.shape[1] > config.max_samples:
        values = values[:, torch.randperm(values.shape[1], generator=gen)[: config.max_samples]]
    rows = SortedRows(values)
    points, loss = _select(rows, universal, quant.bits, config, seed)
    quant.set_points(points)
    distinct = torch.tensor([len(p.unique()) for p in points], dtype=torch.float32)
    return {"post_relu": flag, "mse": float(loss.sum() / values.numel()), "distinct_points": float(distinct.mean()),
            "values_per_set": int(values.shape[1])}


@contextlib.contextmanager
def _torch_threads(n: int):
    """Run with ``n`` intra-op threads: the selection is many small ops, which lose time in OpenMP barriers
    (markedly on a loaded machine); parallelism comes from the layer threads instead."""
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _activation_bytes(qmodel: nn.Module, sample: torch.Tensor) -> dict[str, int]:
    """Bytes of each quantized layer's input per calibration sample (one probe forward of one sample)."""
    seen = {name: TensorList() for name, _ in quant_layers(qmodel)}
    with observing(qmodel, {layer.input_quant: seen[name] for name, layer in quant_layers(qmodel)}):
        run_batches(qmodel, sample, 1)
    return {name: sum(x[0].numel() * 4 for x in obs.tensors) for name, obs in seen.items() if obs.tensors}


@register_method(DFSQConfig, install=install_subset_quantizers, prepare=layer_rule_prepare)
def dfsq(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: DFSQConfig) -> None:
    layers = list(quant_layers(qmodel))
    weight_range = mse_weights if config.weight_range == "mse" else minmax_weights
    for _, layer in layers:  # per-filter asymmetric min/max (or squared-error clipping)
        layer.weight_quant.set_range(*weight_range(layer.weight.detach(), layer.weight_quant))
    set_mode(qmodel, "off")
    universal = config.universal()
    sizes = _activation_bytes(qmodel, calib[:1])
    budget = config.memory_mb * (1 << 20)
    chunks: list[list[tuple[str, QuantLayer]]] = [[]]
    used = 0
    for name, layer in layers:  # layers whose inputs are gathered in one forward pass
        need = sizes.get(name, 0) * len(calib)
        if chunks[-1] and used + need > budget:
            chunks.append([])
            used = 0
        chunks[-1].append((name, layer))
        used += need
    report: dict[str, dict] = {}
    index = {name: i for i, (name, _) in enumerate(layers)}
    start = time.perf_counter()
    for chunk in chunks:
        store = {name: TensorList() for name, _ in chunk}
        with observing(qmodel, {layer.input_quant: store[name] for name, layer in chunk}):
            run_batches(qmodel, calib, config.batch_size)
        jobs = [(name, layer, torch.cat(store.pop(name).tensors)) for name, layer in chunk if store[name].tensors]
        del store

        def work(job):
            name, layer, raw = job
            return name, calibrate_layer(layer.input_quant, raw, universal, config, config.seed + index[name])

        with _torch_threads(1), ThreadPoolExecutor(max_workers=config.workers) as pool:
            for name, info in pool.map(work, jobs):
                report[name] = info
        del jobs
    set_mode(qmodel, "quant")
    qmodel.dfsq_report = report
    qmodel.dfsq_seconds = {"selection_and_collection": time.perf_counter() - start, "passes": len(chunks)}


# ------------------------------------------------------------------------------------------------------------------
# Table 1 of the paper: channel-wise vs layer-wise points, with and without normalization
# ------------------------------------------------------------------------------------------------------------------
TABLE1_ROWS = (("tensor", False), ("channel", False), ("tensor", True), ("channel", True))


def ablation_configs(base: DFSQConfig) -> list[tuple[str, DFSQConfig]]:
    """The four rows of the paper's Table 1 (Cha. x Norm.) derived from ``base``."""
    rows = []
    for gran, norm in TABLE1_ROWS:
        label = f"{'channel' if gran == 'channel' else 'layer'}-wise points, {'normalized' if norm else 'no normalization'}"
        rows.append((label, dataclasses.replace(base, a_granularity=gran, normalize=norm)))
    return rows
