"""One-level FX tracing of every module, stitched into one logical graph evaluated on an example input."""
from __future__ import annotations

import inspect
import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from ..layers import ActPoint, QuantLayer
from ..quantizers import UniformQuantizer
from .ops import is_tensor, op_kind


class _OneLevel(fx.Tracer):
    """Traces a module's own forward; every submodule call stays a call_module node."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return True


@dataclass(eq=False)
class GNode:
    """One op of the logical (whole-model) graph."""

    path: str  # module whose forward runs the op ("" = root)
    node: fx.Node  # the node in that module's one-level graph
    kind: str
    inputs: list["GNode"]
    value: Any
    users: list["GNode"] = field(default_factory=list)
    to_output: bool = False  # returned by the model
    exec_int: bool = False
    force_int: bool = False

    @property
    def label(self) -> str:
        if self.node is None:
            return "input"
        return f"{self.path}:{self.node.name}" if self.path else self.node.name

    @property
    def is_tensor(self) -> bool:
        return is_tensor(self.value)


def flatten_gnodes(obj: Any) -> list[GNode]:
    out: list[GNode] = []

    def visit(o):
        if isinstance(o, GNode):
            out.append(o)
        elif isinstance(o, (list, tuple)):
            for x in o:
                visit(x)
        elif isinstance(o, dict):
            for x in o.values():
                visit(x)

    visit(obj)
    return out


class GraphBuilder:
    """Traces modules one level deep (cached), then evaluates the stitched graph on an example input."""

    def __init__(self, root: nn.Module):
        self.root = root
        self.graphs: dict[str, fx.Graph] = {}
        self.opaque: dict[str, str] = {}  # path -> reason it is treated as one float op
        self.gnodes: list[GNode] = []
        self.call_counts: dict[int, int] = {}
        self.shared: set[int] = set()  # non-leaf modules called more than once: opaque on the next run
        self.retry = False

    def reset(self) -> None:
        self.gnodes, self.call_counts, self.retry = [], {}, False
        self.opaque = {k: v for k, v in self.opaque.items() if v.startswith("not traceable")}

    def graph(self, path: str, module: nn.Module, concrete: dict[str, Any]) -> fx.Graph | None:
        if path in self.graphs:
            return self.graphs[path]
        if path in self.opaque:
            return None
        try:
            graph = _OneLevel().trace(module, concrete_args=concrete or None)
        except Exception as err:  # data-dependent control flow, unsupported constructs
            self.opaque[path] = f"not traceable ({type(err).__name__}: {err})"
            return None
        self.graphs[path] = graph
        return graph

    @staticmethod
    def _is_leaf(module: nn.Module) -> bool:
        if isinstance(module, (QuantLayer, UniformQuantizer, ActPoint)):
            return True
        if isinstance(module, nn.Sequential):
            return False
        mod = type(module).__module__
        return mod.startswith("torch.nn") or mod.startswith("torch.ao.nn")

    def run(self, example: torch.Tensor) -> Any:
        sig = inspect.signature(type(self.root).forward)
        params = list(sig.parameters.values())[1:]
        concrete = {p.name: p.default for p in params[1:] if p.default is not inspect.Parameter.empty}
        root_in = GNode("", None, "input", [], example)  # type: ignore[arg-type]
        self.gnodes.append(root_in)
        out = self._run_module("", self.root, [(root_in, example)], {}, concrete)
        if out is None:
            raise ValueError(f"cannot trace the model's forward: {self.opaque.get('')}")
        for g in flatten_gnodes(out[0]):
            g.to_output = True
        return out

    def _run_module(self, path: str, module: nn.Module, args: list[tuple[Any, Any]], kwargs: dict[str, tuple[Any, Any]],
                    concrete: dict[str, Any]):
        graph = self.graph(path, module, concrete)
        if graph is None:
            return None
        placeholders = [n for n in graph.nodes if n.op == "placeholder"]
        gen: dict[fx.Node, Any] = {}
        ven: dict[fx.Node, Any] = {}
        positional = list(args)
        # FX renames a specialized concrete argument (scale -> scale_1): name placeholders by the forward's signature
        param_names = [p.name for p in inspect.signature(type(module).forward).parameters.values()][1:]
        for i, ph in enumerate(placeholders):
            name = param_names[i] if i < len(param_names) else str(ph.target)
            if positional:
                g, v = positional.pop(0)
            elif name in kwargs:
                g, v = kwargs[name]
            elif name in concrete:
                g, v = None, concrete[name]
            elif ph.args:  # default value
                g, v = None, ph.args[0]
            else:
                raise ValueError(f"{path or 'model'}: no value for argument {name!r}")
            gen[ph], ven[ph] = g, v
        for node in graph.nodes:
            if node.op == "placeholder":
                continue
            if node.op == "output":
                return fx.node.map_arg(node.args[0], lambda n: gen[n]), fx.node.map_arg(node.args[0], lambda n: ven[n])
            vargs = fx.node.map_arg(node.args, lambda n: ven[n])
            vkwargs = fx.node.map_arg(node.kwargs, lambda n: ven[n])
            gargs = fx.node.map_arg(node.args, lambda n: gen[n])
            gkwargs = fx.node.map_arg(node.kwargs, lambda n: gen[n])
            if node.op == "get_attr":
                value = module
                for part in str(node.target).split("."):
                    value = getattr(value, part)
                gen[node], ven[node] = None, value
                continue
            if node.op == "call_module":
                child = module.get_submodule(str(node.target))
                child_path = f"{path}.{node.target}" if path else str(node.target)
                self.call_counts[id(child)] = self.call_counts.get(id(child), 0) + 1
                if not self._is_leaf(child):
                    if self.call_counts[id(child)] > 1 or id(child) in self.shared:
                        self.opaque[child_path] = "called more than once per forward"
                        if id(child) not in self.shared:
                            self.shared.add(id(child))
                            self.retry = True
                    else:
                        pair_args = [(gargs[i], vargs[i]) for i in range(len(vargs))]
                        pair_kwargs = {k: (gkwargs[k], vkwargs[k]) for k in vkwargs}
                        child_concrete = self._child_concrete(child, pair_args, pair_kwargs)
                        res = self._run_module(child_path, child, [p for p in pair_args if is_tensor(p[1]) or isinstance(p[0], GNode)],
                                               {k: p for k, p in pair_kwargs.items() if k not in child_concrete}, child_concrete)
                        if res is not None:
                            gen[node], ven[node] = res
                            continue
                value = child(*vargs, **vkwargs)
                gnode = GNode(path, node, op_kind(node, child, value, list(vargs)), flatten_gnodes((gargs, gkwargs)), value)
            elif node.op == "call_function":
                if node.target is operator.getitem and isinstance(gargs[0], (tuple, list)):  # tuple from a traced child
                    gen[node], ven[node] = gargs[0][gargs[1]], vargs[0][vargs[1]]
                    continue
                value = node.target(*vargs, **vkwargs)
                gnode = GNode(path, node, op_kind(node, None, value, list(vargs)), flatten_gnodes((gargs, gkwargs)), value)
            elif node.op == "call_method":
                value = getattr(vargs[0], str(node.target))(*vargs[1:], **vkwargs)
                gnode = GNode(path, node, op_kind(node, None, value, list(vargs)), flatten_gnodes((gargs, gkwargs)), value)
            else:
                raise ValueError(f"unexpected node {node.op}")
            gnode.force_int = bool(node.meta.get("srquant_force_int"))
            self.gnodes.append(gnode)
            gen[node], ven[node] = gnode, value
        raise ValueError(f"{path}: graph has no output")

    @staticmethod
    def _child_concrete(child: nn.Module, args: list[tuple[Any, Any]], kwargs: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
        """Non-tensor arguments of a child call become constants of the child's trace."""
        params = list(inspect.signature(type(child).forward).parameters.values())[1:]
        concrete: dict[str, Any] = {}
        for i, p in enumerate(params):
            if i < len(args):
                g, v = args[i]
            elif p.name in kwargs:
                g, v = kwargs[p.name]
            elif p.default is not inspect.Parameter.empty:
                g, v = None, p.default
            else:
                continue
            if not isinstance(g, GNode) and not is_tensor(v):
                concrete[p.name] = v
        return concrete
