"""One reconstruction loop for every tuning-based PTQ method (AdaRound, BRECQ, QDrop, and later ones).

The loop walks the quantized model unit by unit in execution order and fits the unit's quantization parameters so
that its output matches the float model's output of the same unit. Four things vary, all set by :class:`TuningConfig`:

* the **unit** reconstructed: one quantized layer, one block (residual/distillation block), or the whole network;
* **which parameters train**: AdaRound rounding variables, activation range parameters (LSQ-style step learning),
  weight range parameters. Quantizers expose their range parameters in named groups (``range_params()``: a
  UniformQuantizer's ``bounds`` [lo, hi], a dual-region quantizer's ``bounds`` and ``breakpoint``); the groups train
  together, or in turn (``cycle``: e.g. weight bounds, then activation bounds, then breakpoints);
* the **loss**: by default the output MSE of the unit (summed over channels, averaged over the rest, as BRECQ) plus
  lambda times the AdaRound regularizer with beta annealed after a warm-up; a method may pass its own ``loss_fn``;
* the **input source**: the input the quantized model gives the unit (BRECQ), the float model's input, or QDrop's
  per-element random mix (drop probability ``p`` = chance an element comes from the float model). With
  ``input_source="qdrop"`` every activation quantizer inside the unit is also dropped per element with probability
  ``p`` during tuning (never afterwards).

Unit inputs and outputs are collected in memory with forward hooks (eval mode, no gradient), the batch order and
the QDrop masks come from generators seeded with ``config.seed``, so two runs give identical models.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from .layers import QuantLayer
from .quantizers import UniformQuantizer
from .units import UNITS, Unit, applied_act_quantizers, as_tensors, collect, execution_order, find_units

INPUT_SOURCES = ("quant", "float", "qdrop")


@dataclass
class TuningConfig:
    """Everything the reconstruction loop needs; methods build one from their own (serializable) config."""

    unit: str = "block"  # layer | block | network
    blocks: Sequence[str] = ()  # fnmatch patterns naming blocks; empty: the model's ModelSpec, else auto-detect
    learn_rounding: bool = True  # AdaRound rounding variables of the weights
    learn_act_range: bool = False  # input-activation lo/hi (LSQ-style step-size learning)
    learn_weight_range: bool = False  # weight lo/hi
    cycle: Sequence[str] = ()  # only these range groups train, in turn ("weight.bounds", ...); empty: all at once
    cycle_steps: int = 1  # optimizer steps per phase of the cycle
    input_source: str = "quant"  # quant (BRECQ) | float | qdrop
    drop_prob: float = 0.5  # QDrop: probability an activation element skips quantization / comes from float
    iters: int = 200  # optimizer steps per unit
    batch_size: int = 8  # samples per step (drawn from the calibration set)
    lr_rounding: float = 1e-1  # Adam on the rounding variables (high: short schedules must still decide them)
    lr_act_range: float = 5e-3  # Adam on activation bounds, relative to each quantizer's initial range width
    lr_weight_range: float = 1e-4  # Adam on weight bounds, relative to each quantizer's initial range width
    warmup: float = 0.2  # fraction of iterations without the rounding regularizer
    beta: tuple[float, float] = (20.0, 2.0)  # regularizer exponent, annealed linearly after warm-up
    lam: float = 0.01  # weight of the rounding regularizer
    seed: int = 0
    forward_batch: int = 8  # batch size of the no-grad collection passes
    keep_best: bool = True  # if tuning ends worse than the initial state on the unit's loss, restore that state
    progress: bool = True

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {self.unit!r}")
        if self.input_source not in INPUT_SOURCES:
            raise ValueError(f"input_source must be one of {INPUT_SOURCES}, got {self.input_source!r}")
        if not 0.0 <= self.drop_prob <= 1.0:
            raise ValueError(f"drop_prob must be in [0, 1], got {self.drop_prob}")
        if self.iters < 0 or self.batch_size < 1 or self.forward_batch < 1:
            raise ValueError("iters must be >= 0 and batch sizes >= 1")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"warmup must be in [0, 1), got {self.warmup}")
        bad = [g for g in self.cycle if g.partition(".")[0] not in ("weight", "act") or not g.partition(".")[2]]
        if bad:
            raise ValueError(f"cycle entries must be 'weight.<group>' or 'act.<group>', got {bad}")
        if self.cycle_steps < 1:
            raise ValueError(f"cycle_steps must be >= 1, got {self.cycle_steps}")


# --------------------------------------------------------------------------------------------------------------
# QDrop
# --------------------------------------------------------------------------------------------------------------
def mix_inputs(x_quant: torch.Tensor, x_float: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """QDrop input: each element comes from the float model with probability ``p``, else from the quantized model
    (``p=0``: BRECQ's quantized input, ``p=1``: the float input)."""
    if p <= 0.0:
        return x_quant
    if p >= 1.0:
        return x_float
    mask = torch.rand(x_quant.shape, generator=generator) < p
    return torch.where(mask, x_float, x_quant)


class DropQuant(nn.Module):
    """Wraps an activation quantizer during QDrop tuning: each element skips quantization with probability ``p``."""

    def __init__(self, quantizer: nn.Module, p: float, generator: torch.Generator):
        super().__init__()
        self.quantizer, self.p, self.generator = quantizer, p, generator
        self.active = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xq = self.quantizer(x)
        if not self.active or self.p <= 0.0:
            return xq
        return mix_inputs(xq, x, self.p, self.generator)


# --------------------------------------------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------------------------------------------
@dataclass
class LossContext:
    """What a custom loss sees besides prediction and target: the unit, the sample indices of this batch (into the
    calibration set) and the step (-1 outside training)."""

    unit: Unit
    index: torch.Tensor
    step: int
    iters: int


LossFn = Callable[[list[torch.Tensor], list[torch.Tensor], LossContext], torch.Tensor]


def output_mse(pred: list[torch.Tensor], target: list[torch.Tensor], ctx: LossContext | None = None) -> torch.Tensor:
    """BRECQ's reconstruction loss: squared error summed over channels, averaged over batch and positions."""
    return sum(((p - t) ** 2).sum(1).mean() if p.dim() > 1 else ((p - t) ** 2).mean() for p, t in zip(pred, target))


class OutputTaps:
    """Forward hooks keeping the latest output of each named submodule of ``model`` (features for a custom loss).

    Outputs are cloned, so a following in-place op (``ReLU(inplace=True)``) does not change what was tapped."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        self.outputs: dict[str, torch.Tensor] = {}
        self.handles = [model.get_submodule(n).register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name: str):
        def store(module, args, out):
            self.outputs[name] = as_tensors(out)[0].clone()
        return store

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def beta_at(step: int, config: TuningConfig) -> float | None:
    """Regularizer exponent at ``step``: None during warm-up, then linear from beta[0] to beta[1]."""
    start = int(config.warmup * config.iters)
    if step < start:
        return None
    rel = (step - start) / max(1, config.iters - start)
    return config.beta[1] + (config.beta[0] - config.beta[1]) * max(0.0, 1.0 - rel)


# --------------------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------------------
@dataclass
class UnitReport:
    name: str
    kind: str
    n_layers: int
    loss_before: float
    loss_after: float
    undecided: float  # fraction of rounding variables whose soft value was still in (0.1, 0.9) at the end
    seconds: float
    reverted: bool = False  # keep_best restored the initial state (loss_after is then the initial loss)


def _range_width(q: nn.Module) -> float:
    lo, hi = q.range_params()["bounds"]
    return float((hi.detach() - lo.detach()).abs().mean().clamp_min(1e-8))


def range_groups(unit: Unit, config: TuningConfig) -> list[dict]:
    """Adam parameter groups of the unit's learnable range parameters, named ``"weight.<group>"`` / ``"act.<group>"``
    (a quantizer shared by several layers appears once); learning rates are relative to the quantizer's range width."""
    groups, seen = [], set()
    act_quants = unit.act_quants or [layer.input_quant for _, layer in unit.layers]
    candidates = [("weight", layer.weight_quant, config.learn_weight_range, config.lr_weight_range)
                  for _, layer in unit.layers]
    candidates += [("act", q, config.learn_act_range, config.lr_act_range) for q in act_quants]
    for role, q, learn, lr in candidates:
        if not learn or not hasattr(q, "range_params") or q.mode != "quant" or id(q) in seen:
            continue
        seen.add(id(q))
        width = _range_width(q)
        groups += [{"params": params, "lr": lr * width, "name": f"{role}.{kind}"}
                   for kind, params in q.range_params().items()]
    return groups


@torch.no_grad()
def _eval_loss(unit: Unit, inputs: list[torch.Tensor], target: list[torch.Tensor], loss_fn: LossFn, batch: int) -> float:
    total, n = 0.0, len(inputs[0])
    for s in range(0, n, batch):
        idx = torch.arange(s, min(n, s + batch))
        pred = as_tensors(unit.module(*[x[idx] for x in inputs]))
        total += float(loss_fn(pred, [t[idx] for t in target], LossContext(unit, idx, -1, 0))) * len(idx)
    return total / n


@dataclass
class _Trainables:
    """What one unit trains: AdaRound rounding variables and range parameter groups (``phases``: the cycle's
    groups that exist, trained in turn), with the groups' values before tuning (for ``keep_best``)."""

    rounding: list[UniformQuantizer]
    groups: list[dict]
    phases: list[str]
    initial: list[tuple[nn.Parameter, torch.Tensor]]
    params: list[nn.Parameter]  # every trained tensor: rounding variables first, then the groups' parameters


def _trainables(unit: Unit, config: TuningConfig) -> _Trainables:
    """Start learned rounding where configured, collect the range groups, and switch gradients on."""
    rounding: list[UniformQuantizer] = []
    for _, layer in unit.layers:
        wq = layer.weight_quant
        if config.learn_rounding and isinstance(wq, UniformQuantizer) and wq.mode == "quant":
            wq.init_learned_rounding(layer.weight.detach())
            rounding.append(wq)
    groups = range_groups(unit, config)
    if config.cycle:  # only the cycle's groups train, one phase at a time
        groups = [g for g in groups if g["name"] in config.cycle]
    phases = [name for name in config.cycle if any(g["name"] == name for g in groups)]
    initial = [(p, p.detach().clone()) for g in groups for p in g["params"]]
    params = [q.alpha for q in rounding] + [p for g in groups for p in g["params"]]
    for p in params:
        p.requires_grad_(True)
    return _Trainables(rounding, groups, phases, initial, params)


def _wrap_drops(unit: Unit, config: TuningConfig, gen: torch.Generator) -> list[tuple[QuantLayer, DropQuant]]:
    """QDrop: wrap the unit's active input quantizers in :class:`DropQuant` for the tuning."""
    wrapped: list[tuple[QuantLayer, DropQuant]] = []
    if config.input_source == "qdrop" and config.drop_prob > 0:
        for _, layer in unit.layers:
            if getattr(layer.input_quant, "mode", "quant") == "quant":
                drop = DropQuant(layer.input_quant, config.drop_prob, gen)
                layer.input_quant = drop
                wrapped.append((layer, drop))
    return wrapped


def _optimizers(train: _Trainables, config: TuningConfig) -> tuple[list[torch.optim.Optimizer], list]:
    """Adam on the rounding variables; Adam with a cosine schedule on the range groups."""
    optimizers, schedulers = [], []
    if train.rounding:
        optimizers.append(torch.optim.Adam([q.alpha for q in train.rounding], lr=config.lr_rounding))
    if train.groups:
        opt = torch.optim.Adam(train.groups)
        optimizers.append(opt)
        schedulers.append(torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, config.iters), eta_min=0.0))
    return optimizers, schedulers


def _batch_inputs(idx: torch.Tensor, inputs_q: list[torch.Tensor], inputs_fp: list[torch.Tensor], config: TuningConfig,
                  gen: torch.Generator) -> list[torch.Tensor]:
    """The unit's inputs for one step: quantized-model, float, or QDrop's per-element mix of both."""
    if config.input_source == "quant":
        return [t[idx] for t in inputs_q]
    if config.input_source == "float":
        return [t[idx] for t in inputs_fp]
    return [mix_inputs(q[idx], f[idx], config.drop_prob, gen) for q, f in zip(inputs_q, inputs_fp)]


def _train(unit: Unit, train: _Trainables, inputs_q: list[torch.Tensor], inputs_fp: list[torch.Tensor],
           target: list[torch.Tensor], config: TuningConfig, loss_fn: LossFn, gen: torch.Generator) -> None:
    """``config.iters`` optimizer steps on seeded mini-batches (a fresh permutation per pass over the samples)."""
    optimizers, schedulers = _optimizers(train, config)
    if not optimizers:
        return
    n = len(target[0])
    bs = min(config.batch_size, n)
    perm, pos = torch.randperm(n, generator=gen), 0
    for step in range(config.iters):
        if pos + bs > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx, pos = perm[pos:pos + bs], pos + bs
        x = _batch_inputs(idx, inputs_q, inputs_fp, config, gen)
        pred = as_tensors(unit.module(*x))
        loss = loss_fn(pred, [t[idx] for t in target], LossContext(unit, idx, step, config.iters))
        beta = beta_at(step, config)
        if train.rounding and beta is not None and config.lam > 0:
            loss = loss + config.lam * sum(q.rounding_regularizer(beta) for q in train.rounding)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for p in train.params:  # e.g. sqrt'(0) = inf behind a quantized variance: skip that element's step
            if p.grad is not None:
                p.grad.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
        if train.phases:  # cyclic updates: only the current phase's range groups step (Adam skips absent grads)
            active = train.phases[(step // config.cycle_steps) % len(train.phases)]
            for g in train.groups:
                if g["name"] != active:
                    for p in g["params"]:
                        p.grad = None
        for opt in optimizers:
            opt.step()
        for sched in schedulers:
            sched.step()
        with torch.no_grad():  # keep bounds ordered
            for g in train.groups:
                if g["name"].endswith(".bounds"):
                    lo, hi = g["params"]
                    hi.copy_(torch.maximum(hi, lo + 1e-8))


def _freeze(train: _Trainables, wrapped: list[tuple[QuantLayer, DropQuant]]) -> float:
    """Unwrap QDrop, make the rounding hard and switch gradients off; returns the fraction of rounding variables
    whose soft value was still undecided (in (0.1, 0.9))."""
    for layer, drop in wrapped:
        layer.input_quant = drop.quantizer
    undecided_n = total_n = 0
    for q in train.rounding:
        with torch.no_grad():
            h = q.soft_rounding()
            undecided_n += int(((h > 0.1) & (h < 0.9)).sum())
            total_n += h.numel()
        q.hard_rounding = True
    for p in train.params:
        p.requires_grad_(False)
    return undecided_n / total_n if total_n else 0.0


def _restore(train: _Trainables) -> None:
    """Back to the state before tuning: initial range values, rounding to nearest."""
    with torch.no_grad():
        for p, p0 in train.initial:
            p.copy_(p0)
    for q in train.rounding:
        q.alpha, q.hard_rounding = None, True


def tune_unit(unit: Unit, inputs_q: list[torch.Tensor] | None, inputs_fp: list[torch.Tensor],
              target: list[torch.Tensor], config: TuningConfig, loss_fn: LossFn | None = None,
              generator: torch.Generator | None = None) -> UnitReport:
    """Reconstruct one unit from collected inputs (quantized-model and float) and float targets."""
    start_time = time.perf_counter()
    loss_fn = loss_fn or output_mse
    gen = generator or torch.Generator().manual_seed(config.seed)
    if inputs_q is None:
        inputs_q = inputs_fp
    eval_inputs = inputs_fp if config.input_source == "float" else inputs_q
    loss_before = _eval_loss(unit, eval_inputs, target, loss_fn, config.forward_batch)
    train = _trainables(unit, config)
    wrapped = _wrap_drops(unit, config, gen)
    try:
        _train(unit, train, inputs_q, inputs_fp, target, config, loss_fn, gen)
    finally:
        undecided = _freeze(train, wrapped)
    loss_after = _eval_loss(unit, eval_inputs, target, loss_fn, config.forward_batch)
    reverted = config.keep_best and not loss_after <= loss_before  # also when tuning ended in NaN
    if reverted:
        _restore(train)
        loss_after = _eval_loss(unit, eval_inputs, target, loss_fn, config.forward_batch)
    return UnitReport(unit.name, unit.kind, len(unit.layers), loss_before, loss_after, undecided,
                      time.perf_counter() - start_time, reverted)


def reconstruct(qmodel: nn.Module, fp_model: nn.Module, calib: torch.Tensor, config: TuningConfig,
                loss_fn: LossFn | None = None) -> list[UnitReport]:
    """Tune ``qmodel`` (already calibrated: every quantizer has a range) unit by unit against ``fp_model``.

    Units run in forward order; the quantized input of a unit is taken after all earlier units are tuned.
    Returns one :class:`UnitReport` per unit and stores the list as ``qmodel.tuning_report``.
    """
    qmodel.eval()
    fp_model.eval()
    units = find_units(qmodel, config.unit, config.blocks)
    units = execution_order(qmodel, units, calib[:1])
    reports: list[UnitReport] = []
    bar = tqdm(units, desc=f"reconstruct ({config.unit})", disable=not config.progress, leave=False)
    for i, unit in enumerate(bar):
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + i)
        inputs_fp, target = collect(fp_model, unit.name, calib, config.forward_batch)
        inputs_q = None
        if config.input_source != "float" and unit.name != "":
            inputs_q, _ = collect(qmodel, unit.name, calib, config.forward_batch, outputs=False)
        if config.learn_act_range:
            unit.act_quants = applied_act_quantizers(qmodel, unit, inputs_q or inputs_fp)
        report = tune_unit(unit, inputs_q, inputs_fp, target, config, loss_fn, gen)
        reports.append(report)
        bar.set_postfix_str(f"{unit.name or 'network'} {report.loss_before:.3g}->{report.loss_after:.3g}")
    qmodel.tuning_report = reports
    return reports
