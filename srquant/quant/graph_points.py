"""Runtime quantization points: simulate every tensor an INT8 runtime quantizes, not only the layer inputs.

srquant's default simulation (``act_points="inputs"``) quantizes weights and the input of each quantized layer.
An integer runtime (ONNX Runtime QDQ with QLinearConv, QLinearAdd, QLinearMul, QLinearConcat, QLinearSigmoid,
QLinearLeakyRelu, QLinearGlobalAveragePool) also rounds conv outputs, residual sums, concatenations and
attention products to 8 bits. With ``act_points="runtime"`` :func:`insert_points` adds those roundings to the
simulation so that the simulated model and the exported INT8 model compute the same thing.

How it works, on the prepared model (QuantLayers in place):

* Each non-leaf module is FX-traced one level deep (its children are leaves), and the per-module graphs are
  stitched into one logical graph evaluated on a small example, so that every op knows its users across module
  boundaries.
* Ops are classified: ``conv`` (a QuantLayer), ``int`` (tensor+tensor add/mul, cat, sigmoid, leaky ReLU,
  global/avg pooling: ONNX Runtime has integer kernels for them), ``relu`` (folded into the producer's output
  range when it is the producer's only user), ``same`` (split, slices, reshapes, pixel shuffle, nearest resize,
  max pooling: the output stays on its input's grid) and ``float`` (everything else: sub, pow, sqrt, bilinear
  resize, ... run in float between a dequantize and a quantize).
* Every QuantLayer's output and every integer op's output gets a quantizer, and so does every tensor an integer
  op or a QuantLayer reads (the model input, a bilinear resize feeding an add, ...). Integer ops whose result
  reaches only float ops or the model output stay float (PAN's and ABPN's final ``+ base``): that is both
  cheaper and more accurate.
* One quantizer per tensor: the QuantLayers that read a tensor share one input quantizer (the first reader's
  ``input_quant`` is *tied* into the others), and tensors no QuantLayer reads get an 8-bit per-tensor
  :class:`UniformQuantizer` of their own. The quantizers are applied by :class:`ActPoint` modules that live in
  the root's ``act_points`` ModuleDict; each traced module whose graph gained a point gets a regenerated
  ``forward`` (bound to the instance: classes, names, parameters and the module tree are unchanged, so block
  reconstruction and save/load keep working).
* Rewrites that make the graph integer-friendly: a spatial ``mean(dim=(2, 3), keepdim=True)`` becomes
  ``adaptive_avg_pool2d(x, 1)`` (ONNX GlobalAveragePool, which has an integer kernel; ReduceMean has none) and,
  with ``rewrite_variance``, IMDN's contrast ``mean((x - m)^2)`` becomes ``relu(gap(x * x) - m * m)`` so that the
  full-resolution work runs as QLinearMul + QLinearGlobalAveragePool instead of float Sub/Pow/ReduceMean.

Calibration observes each tensor once (at its primary point) with the same observer and range function as the
layer inputs (see :func:`observe_points`, used by :func:`srquant.quant.model.observe_inputs`).
"""
from __future__ import annotations

import inspect
import operator
import types
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .layers import QuantLayer
from .observers import RangeObserver
from .quantizers import UniformQuantizer

ACT_POINTS = ("inputs", "runtime")
POINTS_ATTR = "act_points"


class ActPoint(nn.Module):
    """Applies one activation quantizer at one graph tensor.

    The quantizer is either owned (``self.quant``: tensors no QuantLayer reads) or tied to a QuantLayer's
    ``input_quant`` (kept as a plain reference, so its state lives once, under the layer). A ``primary`` point
    sits right after the op that produces the tensor and observes it during calibration; secondary points re-apply
    the same quantizer after split/reshape-like ops (a no-op on values already on the grid; it gives an integer
    runtime the quantize/dequantize pair it needs in front of an integer op).
    """

    def __init__(self, tensor: str, primary: bool, quant: UniformQuantizer | None = None,
                 tied: UniformQuantizer | None = None, tied_to: str = ""):
        super().__init__()
        if (quant is None) == (tied is None):
            raise ValueError("an ActPoint needs exactly one of quant / tied")
        self.tensor, self.primary, self.tied_to = tensor, primary, tied_to
        self.quant = quant
        object.__setattr__(self, "_tied", tied)  # a reference, not a child: state stays under the owning layer
        self.observer: RangeObserver | None = None

    @property
    def quantizer(self) -> UniformQuantizer:
        return self.quant if self.quant is not None else self._tied

    def tie(self, quantizer: UniformQuantizer) -> None:
        object.__setattr__(self, "_tied", quantizer)

    def extra_repr(self) -> str:
        owner = f"tied to {self.tied_to}" if self.quant is None else "own quantizer"
        return f"{self.tensor}, {'primary' if self.primary else 're-apply'}, {owner}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.quantizer
        if q.mode == "quant":
            return q(x)
        if self.observer is not None:
            self.observer.update(x.detach().clone())
        return x


# --------------------------------------------------------------------------------------------------------------
# Op classification
# --------------------------------------------------------------------------------------------------------------
_BINARY_INT = {operator.add, operator.iadd, torch.add, operator.mul, operator.imul, torch.mul}
_INT_FUNCS = {torch.cat, torch.concat, torch.sigmoid, F.sigmoid, F.leaky_relu, F.avg_pool2d}
_RELU_FUNCS = {F.relu, torch.relu, torch.relu_, F.relu_}
_SAME_FUNCS = {
    torch.split, torch.chunk, operator.getitem, torch.flatten, torch.reshape, F.pixel_shuffle, F.pixel_unshuffle,
    torch.pixel_shuffle, torch.pixel_unshuffle, torch.repeat_interleave, F.max_pool2d, torch.max_pool2d,
    torch.permute, torch.transpose, torch.squeeze, torch.unsqueeze, torch.narrow, F.dropout,
}
_INT_METHODS = {"add", "mul", "sigmoid"}
_SAME_METHODS = {
    "split", "chunk", "view", "reshape", "permute", "flatten", "contiguous", "repeat_interleave", "transpose",
    "squeeze", "unsqueeze", "narrow", "__getitem__",
}
_INT_MODULES = (nn.LeakyReLU, nn.Sigmoid, nn.AvgPool2d)
_SAME_MODULES = (nn.PixelShuffle, nn.PixelUnshuffle, nn.MaxPool2d, nn.Identity, nn.Flatten, nn.Dropout)


def _is_tensor(v: Any) -> bool:
    return isinstance(v, torch.Tensor)


def _arg(node: fx.Node, index: int, name: str, default=None):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _is_spatial_mean(node: fx.Node, value: Any, inp: Any) -> bool:
    """``x.mean(dim=(2, 3), keepdim=True)`` (or (-2, -1)) on a 4-D tensor."""
    is_mean = (node.op == "call_method" and node.target == "mean") or (node.op == "call_function" and node.target is torch.mean)
    if not is_mean or not _is_tensor(inp) or inp.dim() != 4:
        return False
    dims, keep = _arg(node, 1, "dim"), _arg(node, 2, "keepdim", False)
    if not keep or not isinstance(dims, (tuple, list)):
        return False
    return sorted(int(d) % 4 for d in dims) == [2, 3]


def _is_gap(node: fx.Node) -> bool:
    return node.op == "call_function" and node.target is F.adaptive_avg_pool2d and _arg(node, 1, "output_size") in (1, (1, 1), [1, 1])


def _kind(node: fx.Node, module: nn.Module | None, value: Any, args: list[Any]) -> str:
    """conv | int | relu | same | float (see the module docstring)."""
    tensor_args = [a for a in args if _is_tensor(a)]
    if node.op == "call_module":
        if isinstance(module, QuantLayer):
            return "conv"
        if isinstance(module, nn.ReLU):
            return "relu"
        if isinstance(module, _INT_MODULES):
            return "int"
        if isinstance(module, nn.AdaptiveAvgPool2d):
            return "int" if module.output_size in (1, (1, 1)) else "float"
        if isinstance(module, nn.Upsample):
            return "same" if module.mode == "nearest" else "float"
        if isinstance(module, _SAME_MODULES):
            return "same"
        return "float"
    if node.op == "call_function":
        f = node.target
        if f in _BINARY_INT:
            plain = f in (torch.add, torch.mul) and ("alpha" in node.kwargs or len(node.args) > 2)
            return "int" if len(tensor_args) == 2 and not plain else "float"
        if f is F.adaptive_avg_pool2d:
            return "int" if _is_gap(node) else "float"
        if f in _INT_FUNCS:
            return "int"
        if f in _RELU_FUNCS:
            return "relu"
        if f is operator.getitem:
            return "same" if _is_tensor(value) and (_is_tensor(args[0]) or isinstance(args[0], (tuple, list))) else "float"
        if f is F.interpolate:
            return "same" if _arg(node, 3, "mode", "nearest") == "nearest" else "float"
        if f in _SAME_FUNCS:
            return "same" if tensor_args and (_is_tensor(value) or isinstance(value, (tuple, list))) else "float"
        return "float"
    if node.op == "call_method":
        name = str(node.target)
        if name in ("add", "mul"):
            return "int" if len(tensor_args) == 2 and len(node.args) == 2 and not node.kwargs else "float"
        if name == "sigmoid":
            return "int"
        if name == "relu":
            return "relu"
        if name in _SAME_METHODS:
            return "same"
    return "float"


# --------------------------------------------------------------------------------------------------------------
# One-level tracing and the stitched logical graph
# --------------------------------------------------------------------------------------------------------------
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
        return _is_tensor(self.value)


def _flatten_gnodes(obj: Any) -> list[GNode]:
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


class _Builder:
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
        for g in _flatten_gnodes(out[0]):
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
                        res = self._run_module(child_path, child, [p for p in pair_args if _is_tensor(p[1]) or isinstance(p[0], GNode)],
                                               {k: p for k, p in pair_kwargs.items() if k not in child_concrete}, child_concrete)
                        if res is not None:
                            gen[node], ven[node] = res
                            continue
                value = child(*vargs, **vkwargs)
                gnode = GNode(path, node, _kind(node, child, value, list(vargs)), _flatten_gnodes((gargs, gkwargs)), value)
            elif node.op == "call_function":
                if node.target is operator.getitem and isinstance(gargs[0], (tuple, list)):  # tuple from a traced child
                    gen[node], ven[node] = gargs[0][gargs[1]], vargs[0][vargs[1]]
                    continue
                value = node.target(*vargs, **vkwargs)
                gnode = GNode(path, node, _kind(node, None, value, list(vargs)), _flatten_gnodes((gargs, gkwargs)), value)
            elif node.op == "call_method":
                value = getattr(vargs[0], str(node.target))(*vargs[1:], **vkwargs)
                gnode = GNode(path, node, _kind(node, None, value, list(vargs)), _flatten_gnodes((gargs, gkwargs)), value)
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
            if not isinstance(g, GNode) and not _is_tensor(v):
                concrete[p.name] = v
        return concrete


# --------------------------------------------------------------------------------------------------------------
# Graph rewrites
# --------------------------------------------------------------------------------------------------------------
def _rewrite(builder: _Builder, rewrite_variance: bool) -> bool:
    """Spatial means -> adaptive_avg_pool2d(x, 1); optionally the variance pattern. True if a graph changed."""
    changed = False
    for g in builder.gnodes:
        if g.node is None or not g.inputs:
            continue
        node = g.node
        if _is_spatial_mean(node, g.value, g.inputs[0].value):
            graph = builder.graphs[g.path]
            with graph.inserting_after(node):
                gap = graph.call_function(F.adaptive_avg_pool2d, (node.args[0], 1))
            node.replace_all_uses_with(gap)
            graph.erase_node(node)
            g.node = gap
            changed = True
    if rewrite_variance:
        for path, graph in builder.graphs.items():
            for v in list(graph.nodes):
                if not (_is_gap(v) and isinstance(v.args[0], fx.Node)):
                    continue
                p = v.args[0]
                is_square = (p.op == "call_method" and p.target == "pow" and _arg(p, 1, "exponent") == 2) or (
                    p.op == "call_function" and p.target in (operator.pow, torch.pow) and p.args[1] == 2)
                if not is_square or len(p.users) != 1 or not isinstance(p.args[0], fx.Node):
                    continue
                d = p.args[0]
                is_sub = (d.op == "call_function" and d.target in (operator.sub, torch.sub) and len(d.args) == 2) or (
                    d.op == "call_method" and d.target == "sub" and len(d.args) == 2)
                if not is_sub or len(d.users) != 1:
                    continue
                x, m = d.args
                if not (isinstance(m, fx.Node) and _is_gap(m) and m.args[0] is x):
                    continue
                with graph.inserting_before(v):
                    xx = graph.call_function(operator.mul, (x, x))
                    ex2 = graph.call_function(F.adaptive_avg_pool2d, (xx, 1))
                    ex2.meta["srquant_force_int"] = True
                    mm = graph.call_function(operator.mul, (m, m))
                    diff = graph.call_function(operator.sub, (ex2, mm))
                    var = graph.call_function(torch.clamp_min, (diff, 0.0))
                v.replace_all_uses_with(var)
                for dead in (v, p, d):
                    graph.erase_node(dead)
                changed = True
    return changed


# --------------------------------------------------------------------------------------------------------------
# Point placement
# --------------------------------------------------------------------------------------------------------------
@dataclass
class PointPlan:
    """Where quantizers go: ``roots`` get a primary point, ``reapply`` a secondary one; ``owner`` maps a root to
    the QuantLayers reading it."""

    roots: list[GNode]
    reapply: list[tuple[GNode, GNode]]  # (alias tensor, its root)
    readers: dict[GNode, list[GNode]]  # root -> conv GNodes reading it
    opaque: dict[str, str]


def _alias_root(g: GNode, fused: set[GNode]) -> GNode:
    while g.kind in ("same", "relu") and g not in fused and g.inputs:
        g = g.inputs[0]
    return g


def plan_points(gnodes: list[GNode], opaque: dict[str, str]) -> PointPlan:
    for g in gnodes:
        g.users = []
    for g in gnodes:
        for i in g.inputs:
            if g not in i.users:
                i.users.append(g)

    def fusable_relu(g: GNode) -> GNode | None:
        if len(g.users) == 1 and g.users[0].kind == "relu" and not g.to_output and g.users[0].inputs[0] is g:
            return g.users[0]
        return None

    # which integer ops run as integer ops: those whose output some integer consumer needs quantized
    needs: dict[GNode, bool] = {}
    for g in reversed(gnodes):
        need = False
        for u in g.users:
            if u.kind == "conv" and u.inputs and u.inputs[0] is g:
                need = True
            elif u.kind == "int" and u.exec_int:
                need = True
            elif u.kind in ("same", "relu") and u.inputs and u.inputs[0] is g and needs.get(u, False):
                need = True
        needs[g] = need
        if g.kind == "int":
            g.exec_int = g.is_tensor and (need or g.force_int)

    fused: set[GNode] = set()
    roots: list[GNode] = []
    root_set: set[GNode] = set()

    def add_root(g: GNode) -> None:
        if g not in root_set and g.is_tensor:
            root_set.add(g)
            roots.append(g)

    def require(g: GNode) -> None:
        add_root(_alias_root(g, fused))

    for g in gnodes:
        if g.kind == "conv" or (g.kind == "int" and g.exec_int):
            relu = fusable_relu(g)
            if relu is not None:
                fused.add(relu)
                add_root(relu)
            else:
                add_root(g)
            ins = g.inputs[:1] if g.kind == "conv" else [i for i in g.inputs if i.is_tensor]
            for i in ins:
                require(i)
    roots.sort(key=gnodes.index)
    readers: dict[GNode, list[GNode]] = {r: [] for r in roots}
    for g in gnodes:
        if g.kind == "conv" and g.inputs:
            readers[_alias_root(g.inputs[0], fused)].append(g)
    reapply: list[tuple[GNode, GNode]] = []
    for g in gnodes:
        if g in root_set or not g.is_tensor or g.kind not in ("same", "relu"):
            continue
        root = _alias_root(g, fused)
        if root in root_set and any(u.kind == "int" and u.exec_int for u in g.users):
            reapply.append((g, root))
    return PointPlan(roots, reapply, readers, opaque)


# --------------------------------------------------------------------------------------------------------------
# Insertion
# --------------------------------------------------------------------------------------------------------------
def _point_key(g: GNode) -> str:
    return (f"{g.path}.{g.node.name}" if g.path else g.node.name).replace(".", "__") if g.node is not None else "input"


def _bind_forward(module: nn.Module, graph: fx.Graph, path: str) -> None:
    code = graph.python_code(root_module="self")
    namespace = dict(code.globals)
    exec(compile(code.src, f"<srquant runtime points: {path or 'model'}>", "exec"), namespace)  # noqa: S102
    module.forward = types.MethodType(namespace["forward"], module)
    object.__setattr__(module, "_srquant_points_code", code.src)


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
    for name, layer in _quant_layers(qmodel):
        if getattr(layer.input_quant, "axis", None) is not None:
            raise ValueError(f"act_points='runtime' needs per-tensor activation quantizers ({name} is per channel)")
    if example is None:
        example = _example_input(qmodel)
    builder = _Builder(qmodel)
    with torch.no_grad():
        builder.run(example)
        while builder.retry:
            builder.reset()
            builder.run(example)
        if _rewrite(builder, rewrite_variance):
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

    layer_names = {id(m): n for n, m in _quant_layers(qmodel)}
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
        key = _point_key(root)
        owner, owner_name = owner_for(root)
        if owner is not None:
            point = ActPoint(root.label, True, tied=owner, tied_to=owner_name)
        else:
            point = ActPoint(root.label, True, quant=UniformQuantizer(bits, a_symmetric, None))
        container[key] = point
        insert(root if root.node is not None else root, point, key)
    primary = {r: container[_point_key(r)] for r in plan.roots}
    for alias, root in plan.reapply:
        key = _point_key(alias)
        src = primary[root]
        point = ActPoint(alias.label, False, tied=src.quantizer, tied_to=f"{POINTS_ATTR}.{_point_key(root)}")
        container[key] = point
        insert(alias, point, key)
    for path in touched:
        module = module_at(path)
        object.__setattr__(module, "_srquant_points", namespaces[path])
        _bind_forward(module, builder.graphs[path], path)
    qmodel.add_module(POINTS_ATTR, container)
    object.__setattr__(qmodel, "_srquant_point_plan", {
        "points": len(plan.roots), "reapply": len(plan.reapply), "opaque": dict(plan.opaque),
        "float_ops": sorted({g.label for g in builder.gnodes if g.kind == "float" and g.is_tensor}),
    })
    return qmodel


def _quant_layers(model: nn.Module) -> Iterator[tuple[str, QuantLayer]]:
    for name, m in model.named_modules():
        if isinstance(m, QuantLayer):
            yield name, m


def _example_input(model: nn.Module) -> torch.Tensor:
    info = getattr(model, "sr_info", None)
    layers = [m for _, m in _quant_layers(model)]
    if info is not None:
        channels = 1 if info.color == "y" else 3
        scale = info.input_range
    else:
        first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))), None)
        channels = first.in_channels if first is not None else (layers[0].layer.in_channels if layers else 3)
        scale = 1.0
    return torch.rand(1, channels, 24, 24, generator=torch.Generator().manual_seed(0)) * scale


# --------------------------------------------------------------------------------------------------------------
# Queries and calibration
# --------------------------------------------------------------------------------------------------------------
def has_points(model: nn.Module) -> bool:
    return isinstance(getattr(model, POINTS_ATTR, None), nn.ModuleDict)


def act_points(model: nn.Module) -> list[tuple[str, ActPoint]]:
    if not has_points(model):
        return []
    return [(f"{POINTS_ATTR}.{k}", p) for k, p in getattr(model, POINTS_ATTR).items()]


def graph_quantizers(model: nn.Module) -> list[tuple[str, UniformQuantizer]]:
    """Quantizers owned by points (tensors no QuantLayer reads), by module name."""
    return [(f"{name}.quant", p.quant) for name, p in act_points(model) if p.quant is not None]


def observe_points(qmodel: nn.Module, calib: torch.Tensor, batch_size: int, seed: int = 0,
                   samples: bool = True) -> dict[str, RangeObserver]:
    """Run ``calib`` through the float path, observing each quantized tensor once (at its primary point).

    Returns observers keyed by QuantLayer name (the observer of the tensor the layer reads) and by the name of
    each point-owned quantizer; layers no point covers (inside opaque modules) observe their own input.
    """
    from .model import quant_layers, run_batches, set_mode

    set_mode(qmodel, "off")
    for _, q in graph_quantizers(qmodel):
        q.mode = "off"
    by_quant: dict[int, RangeObserver] = {}
    observers: dict[str, RangeObserver] = {}
    max_samples = (1 << 21) if samples else 0
    for name, point in act_points(qmodel):
        if point.primary:
            point.observer = RangeObserver(None, max_samples=max_samples, seed=seed)
            by_quant[id(point.quantizer)] = point.observer
            if point.quant is not None:
                observers[f"{name}.quant"] = point.observer
    direct = []
    for name, layer in quant_layers(qmodel):
        obs = by_quant.get(id(layer.input_quant))
        if obs is None:  # not covered by a point: observe inside the layer as usual
            obs = RangeObserver(layer.input_quant.axis, max_samples=max_samples, seed=seed)
            layer.input_quant.observer = obs
            layer.input_quant.mode = "observe"
            direct.append(layer)
        observers[name] = obs
    try:
        run_batches(qmodel, calib, batch_size)
    finally:
        for _, point in act_points(qmodel):
            point.observer = None
        for layer in direct:
            layer.input_quant.observer = None
            layer.input_quant.mode = "off"
    return observers


def describe(model: nn.Module) -> str:
    """A short text listing of the points (tensor, owner)."""
    lines = []
    for name, p in act_points(model):
        q = p.quantizer
        rng = f"[{float(q.lo):.4g}, {float(q.hi):.4g}]" if q.mode == "quant" and q.lo.numel() == 1 else q.mode
        lines.append(f"{name:40s} {p.tensor:40s} {'primary' if p.primary else 'reapply':8s} {p.tied_to or 'own':36s} {rng}")
    return "\n".join(lines)
