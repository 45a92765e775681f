"""Inserting the planned points: ActPoint modules, and regenerated forwards of the traced modules."""
from __future__ import annotations

import types
import warnings

import torch
import torch.fx as fx
from torch import nn

from ..layers import ActPoint
from ..quantizers import UniformQuantizer
from ..walk import POINTS_ATTR, quant_layers
from .plan import plan_points
from .rewrite import rewrite_graphs
from .trace import GNode, GraphBuilder


def point_key(g: GNode) -> str:
    return (f"{g.path}.{g.node.name}" if g.path else g.node.name).replace(".", "__") if g.node is not None else "input"


def bind_forward(module: nn.Module, graph: fx.Graph, path: str) -> None:
    code = graph.python_code(root_module="self")
    namespace = dict(code.globals)
    exec(compile(code.src, f"<srquant runtime points: {path or 'model'}>", "exec"), namespace)  # noqa: S102
    module.forward = types.MethodType(namespace["forward"], module)


class _Points:
    """Attribute namespace that generated forwards use to reach their points (not an nn.Module child)."""

    def __init__(self):
        self.__dict__["_items"] = {}

    def __getattr__(self, name):
        try:
            return self.__dict__["_items"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self.__dict__["_items"][name] = value


def insert_points(qmodel: nn.Module, config=None, *, example: torch.Tensor | None = None,
                  rewrite_variance: bool = True, bits: int = 8) -> nn.Module:
    """Add runtime quantization points to a prepared model, in place (returns it).

    ``config`` supplies ``a_symmetric`` for the new quantizers; ``example`` (default: a 24x24 input) only drives
    shape discovery. Modules that cannot be traced, or run more than once per forward, are kept as single float
    ops (a warning names them).
    """
    if hasattr(qmodel, POINTS_ATTR):
        raise ValueError("model already has runtime quantization points")
    a_symmetric = bool(getattr(config, "a_symmetric", False))
    for name, layer in quant_layers(qmodel):
        if getattr(layer.input_quant, "axis", None) is not None:
            raise ValueError(f"act_points='runtime' needs per-tensor activation quantizers ({name} is per channel)")
    if example is None:
        example = example_input(qmodel)
    builder = GraphBuilder(qmodel)
    with torch.no_grad():
        builder.run(example)
        while builder.retry:
            builder.reset()
            builder.run(example)
        if rewrite_graphs(builder, rewrite_variance):
            builder.reset()
            builder.run(example)
    plan = plan_points(builder.gnodes, builder.opaque)
    seen_layers: dict[int, GNode] = {}
    for root, convs in plan.readers.items():
        for c in convs:
            layer_id = id(qmodel.get_submodule(f"{c.path}.{c.node.target}" if c.path else str(c.node.target)))
            if seen_layers.setdefault(layer_id, root) is not root:
                raise ValueError(f"runtime points: layer {c.node.target!r} runs on two different tensors (shared weights)")
    for path, why in builder.opaque.items():
        warnings.warn(f"runtime points: {path or 'model'} is {why}; it runs as one float op", stacklevel=2)

    layer_names = {id(m): n for n, m in quant_layers(qmodel)}
    modules = dict(qmodel.named_modules())
    container = nn.ModuleDict()
    namespaces: dict[str, _Points] = {}
    touched: set[str] = set()

    def module_at(path: str) -> nn.Module:
        return modules[path] if path else qmodel

    def owner_for(root: GNode) -> tuple[UniformQuantizer | None, str]:
        convs = plan.readers.get(root, [])
        if not convs:
            return None, ""
        first = module_at(convs[0].path).get_submodule(str(convs[0].node.target))
        owner = first.input_quant
        for c in convs[1:]:
            module_at(c.path).get_submodule(str(c.node.target)).input_quant = owner
        return owner, f"{layer_names[id(first)]}.input_quant"

    def insert(g: GNode, point: ActPoint, key: str) -> None:
        path = g.path
        graph = builder.graphs[path]
        ns = namespaces.setdefault(path, _Points())
        setattr(ns, key, point)
        node = g.node
        if node is None:  # the model input: after the last placeholder of the root graph
            node = [n for n in graph.nodes if n.op == "placeholder"][0]
        anchor = node
        if node.op == "placeholder":
            anchor = [n for n in graph.nodes if n.op == "placeholder"][-1]
        with graph.inserting_after(anchor):
            new = graph.call_module(f"_srquant_points.{key}", (node,))
        node.replace_all_uses_with(new, delete_user_cb=lambda u: u is not new)
        touched.add(path)

    for root in plan.roots:
        key = point_key(root)
        owner, owner_name = owner_for(root)
        if owner is not None:
            point = ActPoint(root.label, True, tied=owner, tied_to=owner_name)
        else:
            point = ActPoint(root.label, True, quant=UniformQuantizer(bits, a_symmetric, None))
        container[key] = point
        insert(root, point, key)
    primary = {r: container[point_key(r)] for r in plan.roots}
    for alias, root in plan.reapply:
        key = point_key(alias)
        src = primary[root]
        point = ActPoint(alias.label, False, tied=src.quantizer, tied_to=f"{POINTS_ATTR}.{point_key(root)}")
        container[key] = point
        insert(alias, point, key)
    for path in touched:
        module = module_at(path)
        object.__setattr__(module, "_srquant_points", namespaces[path])
        bind_forward(module, builder.graphs[path], path)
    qmodel.add_module(POINTS_ATTR, container)
    return qmodel


def example_input(model: nn.Module) -> torch.Tensor:
    info = getattr(model, "sr_info", None)
    layers = [m for _, m in quant_layers(model)]
    if info is not None:
        channels = 1 if info.color == "y" else 3
        scale = info.input_range
    else:
        first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))), None)
        channels = first.in_channels if first is not None else (layers[0].layer.in_channels if layers else 3)
        scale = 1.0
    return torch.rand(1, channels, 24, 24, generator=torch.Generator().manual_seed(0)) * scale
