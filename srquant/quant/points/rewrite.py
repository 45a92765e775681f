"""Graph rewrites that make the traced graphs integer-friendly (global average pooling, the variance pattern)."""
from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn.functional as F

from .ops import is_global_avg_pool, is_spatial_mean, node_arg
from .trace import GraphBuilder


def rewrite_graphs(builder: GraphBuilder, rewrite_variance: bool) -> bool:
    """Spatial means -> adaptive_avg_pool2d(x, 1); optionally the variance pattern. True if a graph changed."""
    changed = False
    for g in builder.gnodes:
        if g.node is None or not g.inputs:
            continue
        node = g.node
        if is_spatial_mean(node, g.value, g.inputs[0].value):
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
                if not (is_global_avg_pool(v) and isinstance(v.args[0], fx.Node)):
                    continue
                p = v.args[0]
                is_square = (p.op == "call_method" and p.target == "pow" and node_arg(p, 1, "exponent") == 2) or (
                    p.op == "call_function" and p.target in (operator.pow, torch.pow) and p.args[1] == 2)
                if not is_square or len(p.users) != 1 or not isinstance(p.args[0], fx.Node):
                    continue
                d = p.args[0]
                is_sub = (d.op == "call_function" and d.target in (operator.sub, torch.sub) and len(d.args) == 2) or (
                    d.op == "call_method" and d.target == "sub" and len(d.args) == 2)
                if not is_sub or len(d.users) != 1:
                    continue
                x, m = d.args
                if not (isinstance(m, fx.Node) and is_global_avg_pool(m) and m.args[0] is x):
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
