"""Point placement: which tensors of the logical graph get a quantizer, and which readers share it."""
from __future__ import annotations

from dataclasses import dataclass

from .trace import GNode


@dataclass
class PointPlan:
    """Where quantizers go: ``roots`` get a primary point, ``reapply`` a secondary one; ``owner`` maps a root to
    the QuantLayers reading it."""

    roots: list[GNode]
    reapply: list[tuple[GNode, GNode]]  # (alias tensor, its root)
    readers: dict[GNode, list[GNode]]  # root -> conv GNodes reading it
    opaque: dict[str, str]


def alias_root(g: GNode, fused: set[GNode]) -> GNode:
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
        add_root(alias_root(g, fused))

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
            readers[alias_root(g.inputs[0], fused)].append(g)
    reapply: list[tuple[GNode, GNode]] = []
    for g in gnodes:
        if g in root_set or not g.is_tensor or g.kind not in ("same", "relu"):
            continue
        root = alias_root(g, fused)
        if root in root_set and any(u.kind == "int" and u.exec_int for u in g.users):
            reapply.append((g, root))
    return PointPlan(roots, reapply, readers, opaque)
