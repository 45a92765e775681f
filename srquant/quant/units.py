"""Units of reconstruction (a layer, a block, the whole network), their forward order, and collecting a unit's
inputs and outputs over the calibration set with forward hooks (see :mod:`srquant.quant.tuning`)."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from ..models import get_spec
from .layers import QuantLayer

UNITS = ("layer", "block", "network")
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass
class Unit:
    """A piece of the quantized model reconstructed as a whole: its module name ("" = whole model)."""

    name: str
    module: nn.Module
    layers: list[tuple[str, QuantLayer]] = field(default_factory=list)
    act_quants: list[nn.Module] = field(default_factory=list)  # activation quantizers its forward applies (if known)

    @property
    def kind(self) -> str:
        if self.name == "":
            return "network"
        return "layer" if isinstance(self.module, QuantLayer) else "block"


def quant_layers_in(module: nn.Module, prefix: str) -> list[tuple[str, QuantLayer]]:
    """The QuantLayers of ``module`` (itself included), named under ``prefix``."""
    if isinstance(module, QuantLayer):
        return [(prefix, module)]
    return [(f"{prefix}.{n}" if prefix else n, m) for n, m in module.named_modules() if isinstance(m, QuantLayer)]


def spec_block_patterns(model: nn.Module) -> tuple[str, ...]:
    """Block patterns declared by the model's :class:`~srquant.models.ModelSpec` (empty if none / foreign model)."""
    info = getattr(model, "sr_info", None)
    if info is None:
        return ()
    try:
        return tuple(getattr(get_spec(info.name), "blocks", ()) or ())
    except KeyError:
        return ()


def auto_blocks(model: nn.Module) -> list[str]:
    """Direct children of the model (descending into Sequential/ModuleList/ModuleDict) that hold a QuantLayer
    and are not QuantLayers themselves."""
    found: list[str] = []

    def visit(module: nn.Module, prefix: str) -> None:
        for child_name, child in module.named_children():
            name = f"{prefix}.{child_name}" if prefix else child_name
            if isinstance(child, QuantLayer) or not quant_layers_in(child, name):
                continue
            if isinstance(child, CONTAINERS):
                visit(child, name)
            else:
                found.append(name)

    visit(model, "")
    return found


def find_units(qmodel: nn.Module, unit: str = "block", patterns: Sequence[str] = ()) -> list[Unit]:
    """The units of ``qmodel`` in module order (see :func:`execution_order` for forward order).

    ``block``: modules matching ``patterns`` (fnmatch on module names; the outermost match wins), or the
    ModelSpec's patterns, or :func:`auto_blocks`; quantized layers outside every block become units of their own.
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    layers = quant_layers_in(qmodel, "")
    if not layers:
        return []
    if unit == "network":
        return [Unit("", qmodel, layers)]
    if unit == "layer":
        return [Unit(n, m, [(n, m)]) for n, m in layers]
    patterns = tuple(patterns) or spec_block_patterns(qmodel)
    if patterns:
        names: list[str] = []
        for name, module in qmodel.named_modules():
            if not name or any(name.startswith(b + ".") for b in names):
                continue
            if any(fnmatch.fnmatch(name, p) for p in patterns) and quant_layers_in(module, name):
                names.append(name)
        if not names:
            raise ValueError(f"block patterns {list(patterns)} match no module holding a quantized layer")
    else:
        names = auto_blocks(qmodel)
    units = [Unit(n, qmodel.get_submodule(n), quant_layers_in(qmodel.get_submodule(n), n)) for n in names]
    covered = {ln for u in units for ln, _ in u.layers}
    units += [Unit(n, m, [(n, m)]) for n, m in layers if n not in covered]
    return units


class _StopForward(Exception):
    pass


def execution_order(qmodel: nn.Module, units: list[Unit], example: torch.Tensor) -> list[Unit]:
    """Sort ``units`` by their first call in a forward pass on ``example``; every unit must run exactly once."""
    if len(units) <= 1:
        return units
    calls: list[str] = []
    handles = [u.module.register_forward_pre_hook(lambda m, a, n=u.name: calls.append(n)) for u in units]
    try:
        with torch.no_grad():
            qmodel(example)
    finally:
        for h in handles:
            h.remove()
    by_name = {u.name: u for u in units}
    for name in by_name:
        count = calls.count(name)
        if count != 1:
            raise ValueError(f"unit {name!r} runs {count} times per forward; reconstruction needs exactly one call "
                             "(name blocks explicitly with TuningConfig.blocks)")
    return [by_name[n] for n in calls]


def as_tensors(x) -> list[torch.Tensor]:
    """A module's output as a list of tensors (a tensor, or the tensors of a tuple / list)."""
    return [x] if isinstance(x, torch.Tensor) else [t for t in x if isinstance(t, torch.Tensor)]


@torch.no_grad()
def collect(model: nn.Module, module_name: str, calib: torch.Tensor, batch_size: int,
            inputs: bool = True, outputs: bool = True) -> tuple[list[torch.Tensor] | None, list[torch.Tensor] | None]:
    """Positional tensor inputs and tensor outputs of ``model``'s submodule ``module_name`` over ``calib``
    (concatenated along the batch); the forward stops as soon as the submodule has run."""
    if module_name == "":
        ins = [calib] if inputs else None
        outs = None
        if outputs:
            outs = [torch.cat(parts) for parts in zip(*[as_tensors(model(calib[s:s + batch_size]))
                                                       for s in range(0, len(calib), batch_size)])]
        return ins, outs
    module = model.get_submodule(module_name)
    got_in: list[list[torch.Tensor]] = []
    got_out: list[list[torch.Tensor]] = []

    if outputs:
        def hook(m, args, out):
            got_in.append([a.detach() for a in args if isinstance(a, torch.Tensor)])
            got_out.append([o.detach() for o in as_tensors(out)])
            raise _StopForward
        handle = module.register_forward_hook(hook)
    else:
        def pre_hook(m, args):
            got_in.append([a.detach() for a in args if isinstance(a, torch.Tensor)])
            raise _StopForward
        handle = module.register_forward_pre_hook(pre_hook)
    try:
        for start in range(0, len(calib), batch_size):
            try:
                model(calib[start:start + batch_size])
            except _StopForward:
                pass
    finally:
        handle.remove()
    ins = [torch.cat(parts) for parts in zip(*got_in)] if inputs else None
    outs = [torch.cat(parts) for parts in zip(*got_out)] if outputs else None
    return ins, outs


@torch.no_grad()
def applied_act_quantizers(qmodel: nn.Module, unit: Unit, inputs: list[torch.Tensor]) -> list[nn.Module]:
    """The activation quantizers (layer inputs and runtime points, owned or tied) that ``unit``'s forward applies,
    found by running it once on the first sample of ``inputs``."""
    weight_ids = {id(layer.weight_quant) for _, layer in quant_layers_in(qmodel, "")}
    called: dict[int, nn.Module] = {}

    def record(module: nn.Module, args, out) -> None:
        called.setdefault(id(module), module)

    handles = [m.register_forward_hook(record) for m in qmodel.modules()
               if hasattr(m, "range_params") and id(m) not in weight_ids]
    try:
        unit.module(*[x[:1] for x in inputs])
    finally:
        for h in handles:
            h.remove()
    return list(called.values())
