"""Op classification: which ops an INT8 runtime runs on integers (see :mod:`srquant.quant.points`)."""
from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..layers import QuantLayer

_BINARY_INT = {operator.add, operator.iadd, torch.add, operator.mul, operator.imul, torch.mul}
_INT_FUNCS = {torch.cat, torch.concat, torch.sigmoid, F.sigmoid, F.leaky_relu, F.avg_pool2d}
_RELU_FUNCS = {F.relu, torch.relu, torch.relu_, F.relu_}
_SAME_FUNCS = {
    torch.split, torch.chunk, operator.getitem, torch.flatten, torch.reshape, F.pixel_shuffle, F.pixel_unshuffle,
    torch.pixel_shuffle, torch.pixel_unshuffle, torch.repeat_interleave, F.max_pool2d, torch.max_pool2d,
    torch.permute, torch.transpose, torch.squeeze, torch.unsqueeze, torch.narrow, F.dropout,
}
_SAME_METHODS = {
    "split", "chunk", "view", "reshape", "permute", "flatten", "contiguous", "repeat_interleave", "transpose",
    "squeeze", "unsqueeze", "narrow", "__getitem__",
}
_INT_MODULES = (nn.LeakyReLU, nn.Sigmoid, nn.AvgPool2d)
_SAME_MODULES = (nn.PixelShuffle, nn.PixelUnshuffle, nn.MaxPool2d, nn.Identity, nn.Flatten, nn.Dropout)


def is_tensor(v: Any) -> bool:
    return isinstance(v, torch.Tensor)


def node_arg(node: fx.Node, index: int, name: str, default=None):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def is_spatial_mean(node: fx.Node, value: Any, inp: Any) -> bool:
    """``x.mean(dim=(2, 3), keepdim=True)`` (or (-2, -1)) on a 4-D tensor."""
    is_mean = (node.op == "call_method" and node.target == "mean") or (node.op == "call_function" and node.target is torch.mean)
    if not is_mean or not is_tensor(inp) or inp.dim() != 4:
        return False
    dims, keep = node_arg(node, 1, "dim"), node_arg(node, 2, "keepdim", False)
    if not keep or not isinstance(dims, (tuple, list)):
        return False
    return sorted(int(d) % 4 for d in dims) == [2, 3]


def is_global_avg_pool(node: fx.Node) -> bool:
    return node.op == "call_function" and node.target is F.adaptive_avg_pool2d and node_arg(node, 1, "output_size") in (1, (1, 1), [1, 1])


def op_kind(node: fx.Node, module: nn.Module | None, value: Any, args: list[Any]) -> str:
    """conv | int | relu | same | float (see the module docstring)."""
    tensor_args = [a for a in args if is_tensor(a)]
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
            return "int" if is_global_avg_pool(node) else "float"
        if f in _INT_FUNCS:
            return "int"
        if f in _RELU_FUNCS:
            return "relu"
        if f is operator.getitem:
            return "same" if is_tensor(value) and (is_tensor(args[0]) or isinstance(args[0], (tuple, list))) else "float"
        if f is F.interpolate:
            return "same" if node_arg(node, 3, "mode", "nearest") == "nearest" else "float"
        if f in _SAME_FUNCS:
            return "same" if tensor_args and (is_tensor(value) or isinstance(value, (tuple, list))) else "float"
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
