"""PNG figures (matplotlib's Agg canvas, no pyplot state): PSNR against bit width, per-layer sensitivity, activation
distributions per channel and per sample (the DFSQ paper's Fig. 1), and visual comparison grids of crops.

Each ``*_figure`` function returns a :class:`~matplotlib.figure.Figure`; :func:`save_figure` writes it atomically and
:func:`figure_png` returns the PNG bytes (for embedding).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from ..fileio import atomic_path
from ..results import ResultRecord

DPI = 100


def figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically (a temporary file, then a rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(figure_png(fig))
    return path


def _bits_key(r: ResultRecord) -> tuple[int, int]:
    return (r.w_bits, r.a_bits)


def psnr_by_bits(records: Sequence[ResultRecord], model: str, dataset: str | None = None) -> dict[str, dict[tuple[int, int], float]]:
    """method -> (w_bits, a_bits) -> PSNR of ``model`` on ``dataset`` (None: the mean over the datasets);
    the references ("fp32", "bicubic") under the key (0, 0)."""
    values: dict[str, dict[tuple[int, int], list[float]]] = {}
    for r in records:
        if r.model == model and (dataset is None or r.dataset == dataset):
            bits = (0, 0) if r.w_bits is None else _bits_key(r)
            values.setdefault(r.method, {}).setdefault(bits, []).append(r.psnr_y)
    return {m: {b: float(np.mean(v)) for b, v in per.items()} for m, per in values.items()}


def psnr_vs_bits_figure(records: Sequence[ResultRecord], model: str, dataset: str | None = None,
                        method_order: Sequence[str] = ()) -> Figure:
    """One line per method: PSNR (``dataset``, or the mean over datasets) at each bit width; FP32 and bicubic as
    horizontal lines."""
    table = psnr_by_bits(records, model, dataset)
    refs = {m: table.pop(m)[(0, 0)] for m in ("fp32", "bicubic") if m in table}
    bits = sorted({b for per in table.values() for b in per})
    methods = sorted(table, key=lambda m: (list(method_order).index(m) if m in method_order else len(method_order), m))
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for i, method in enumerate(methods):
        xs = [bits.index(b) for b in sorted(table[method])]
        ax.plot(xs, [table[method][b] for b in sorted(table[method])], marker="os^vD<>ph*"[i % 10], label=method)
    for (name, value), style in zip(refs.items(), ("--", ":")):
        ax.axhline(value, color="black", linestyle=style, linewidth=1, label=f"{name} {value:.2f}")
    ax.set_xticks(range(len(bits)), [f"W{w}A{a}" for w, a in bits])
    ax.set_xlabel("bit width")
    ax.set_ylabel(f"PSNR (dB){'' if dataset else ', mean over datasets'}")
    ax.set_title(f"{model}{f' on {dataset}' if dataset else ''}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    return fig


def sensitivity_figure(drops: Mapping[str, float], title: str = "per-layer sensitivity") -> Figure:
    """Horizontal bars: layer -> PSNR drop in dB (in the given order, first at the top)."""
    names, values = list(drops), [float(v) for v in drops.values()]
    fig = Figure(figsize=(7, max(2.5, 0.22 * len(names) + 1.2)))
    ax = fig.add_subplot()
    ax.barh(range(len(names)), values, color="tab:red")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("PSNR drop (dB)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def layer_inputs(model: nn.Module, inputs: torch.Tensor, layer: str, batch_size: int = 4) -> torch.Tensor:
    """The input tensor of module ``layer`` (the activation a quantizer sees) for every sample: N x C x H x W."""
    module = dict(model.named_modules()).get(layer)
    if module is None:
        raise ValueError(f"no module named {layer!r} in {type(model).__name__}")
    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda mod, args, out: seen.append(args[0].detach().clone()))
    try:
        with torch.inference_mode():
            for chunk in inputs.split(batch_size):
                model(chunk)
    finally:
        handle.remove()
    if not seen:
        raise ValueError(f"module {layer!r} was not called in the forward pass")
    return torch.cat(seen)


def activation_distribution_figure(acts: torch.Tensor, sample: int = 0, channel: int = 0, channels: int = 16,
                                   samples: int = 16, title: str = "") -> Figure:
    """DFSQ's Fig. 1: box plots of one sample's activations per channel (left) and of one channel's activations per
    sample (right). Boxes span the interquartile range, whiskers the full range."""
    if acts.dim() != 4:
        raise ValueError(f"acts must be N x C x H x W, got shape {tuple(acts.shape)}")
    n, c = acts.shape[:2]
    if not (0 <= sample < n and 0 <= channel < c):
        raise ValueError(f"sample {sample} / channel {channel} out of range for {n} samples x {c} channels")
    per_channel = [acts[sample, i].flatten().double().numpy() for i in range(min(channels, c))]
    per_sample = [acts[j, channel].flatten().double().numpy() for j in range(min(samples, n))]
    fig = Figure(figsize=(11, 4))
    for ax, data, what, fixed in zip(fig.subplots(1, 2), (per_channel, per_sample), ("channel", "sample"),
                                     (f"sample_{sample}", f"channel_{channel}")):
        ax.boxplot(data, whis=(0, 100), showfliers=False)
        ax.set_xticks(range(1, len(data) + 1), [str(i) for i in range(len(data))], fontsize=7)
        ax.set_xlabel(what)
        ax.set_ylabel("activation")
        ax.set_title(f"{fixed}, per {what}")
        ax.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def crop_grid_figure(crops: Sequence[tuple[str, np.ndarray]], ncols: int = 6, title: str = "") -> Figure:
    """Visual comparison: one panel per (caption, HxW or HxWx3 uint8 crop), shown pixel for pixel (no smoothing)."""
    if not crops:
        raise ValueError("no crops to show")
    ncols = min(ncols, len(crops))
    nrows = -(-len(crops) // ncols)
    fig = Figure(figsize=(2.2 * ncols, 2.5 * nrows + (0.3 if title else 0)))
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax, (caption, img) in zip(axes, crops):
        ax.imshow(img, cmap="gray" if np.ndim(img) == 2 else None, vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(caption, fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
