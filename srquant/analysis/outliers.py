"""Outlier study: clip the largest ``percent`` % of every layer input of the FP32 model (no quantization) and measure
what it costs: Y-PSNR drop and colour shift (mean RGB and CbCr change of the SR output), with a side-by-side crop."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..data.benchmark import BenchmarkFolder
from ..data.images import write_image
from ..evaluate import Predictor, evaluate, model_predictor
from ..quant.dual_region import abs_percentile
from ..quant.scope import plan
from ..results import write_text_atomic
from .sensitivity import rows_to_csv, rows_to_markdown


def clip_abs_top(x: torch.Tensor, percent: float) -> torch.Tensor:
    """``x`` clamped to [-t, t], t = the (100 - ``percent``)-th percentile of |x| (the top ``percent`` % clipped)."""
    t = abs_percentile(x, 100.0 - percent)
    return x.clamp(-t, t)


@contextmanager
def clipped_inputs(model: nn.Module, layers: Sequence[str], percent: float) -> Iterator[nn.Module]:
    """Within the block, each named layer's input is clipped by :func:`clip_abs_top` at every call (per image)."""
    def hook(module: nn.Module, args: tuple) -> tuple:
        return (clip_abs_top(args[0], percent), *args[1:])

    handles = [model.get_submodule(n).register_forward_pre_hook(hook) for n in layers]
    try:
        yield model
    finally:
        for h in handles:
            h.remove()


def rgb_to_cbcr(img: np.ndarray) -> np.ndarray:
    """Cb and Cr of MATLAB ``rgb2ycbcr`` for [0, 255] RGB, float64 HxWx2."""
    img = img.astype(np.float64)
    cb = 128.0 + (-37.797 * img[..., 0] - 74.203 * img[..., 1] + 112.0 * img[..., 2]) / 255.0
    cr = 128.0 + (112.0 * img[..., 0] - 93.786 * img[..., 1] - 18.214 * img[..., 2]) / 255.0
    return np.stack([cb, cr], axis=-1)


def colour_shift(clipped: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Mean change of R, G, B, Cb, Cr (clipped - reference, [0, 255] units) and the mean chroma error magnitude."""
    d_rgb = clipped.astype(np.float64) - reference.astype(np.float64)
    d_cbcr = rgb_to_cbcr(clipped) - rgb_to_cbcr(reference)
    means = dict(zip(("dR", "dG", "dB"), d_rgb.reshape(-1, 3).mean(0)))
    means.update(zip(("dCb", "dCr"), d_cbcr.reshape(-1, 2).mean(0)))
    means["chroma_err"] = np.sqrt((d_cbcr**2).sum(-1)).mean()
    return {k: float(v) for k, v in means.items()}


def _recording(predict: Predictor, store: list[np.ndarray]) -> Predictor:
    def run(lr: np.ndarray) -> np.ndarray:
        out = predict(lr)
        store.append(out)
        return out

    return run


def worst_window(diff: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size`` x ``size`` window (stride size // 2) with the largest mean of ``diff``."""
    h, w = diff.shape
    size = min(size, h, w)
    stride = max(1, size // 2)
    corners = [(t, l) for t in range(0, h - size + 1, stride) for l in range(0, w - size + 1, stride)]
    return max(corners, key=lambda c: float(diff[c[0]:c[0] + size, c[1]:c[1] + size].mean()))


def side_by_side(fp: np.ndarray, clipped: np.ndarray, crop: int = 128, gap: int = 4) -> np.ndarray:
    """The ``crop``-pixel window where the two images differ most, FP32 left and clipped right, white gap between."""
    top, left = worst_window(np.abs(clipped.astype(np.float64) - fp.astype(np.float64)).sum(-1), crop)
    size = min(crop, *fp.shape[:2])
    a, b = (img[top:top + size, left:left + size] for img in (fp, clipped))
    return np.concatenate([a, np.full((size, gap, 3), 255, np.uint8), b], axis=1)


def outlier_study(model: nn.Module, datasets: Sequence[BenchmarkFolder], percent: float = 1.0, scope: str = "body",
                  progress: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows per dataset (Y-PSNR of FP32 and clipped, drop, mean colour shifts over images) and the example with
    the largest PSNR drop (``name``, ``fp``, ``clipped`` SR images). The clipped layers are the quantizable layers
    of ``scope`` (the quantization scopes' convention)."""
    info = model.sr_info
    if info.color != "rgb":
        raise ValueError(f"the colour study needs an RGB model; {info.name} works on {info.color}")
    if not 0 < percent < 50:
        raise ValueError(f"percent must be in (0, 50), got {percent}")
    layers = list(plan(model, scope, 8, 8))
    fp_out: list[np.ndarray] = []
    clip_out: list[np.ndarray] = []
    kw = dict(model=info.name, progress=progress)
    fp_records = evaluate(_recording(model_predictor(model, info), fp_out), datasets, **kw)
    with clipped_inputs(model, layers, percent):
        clip_records = evaluate(_recording(model_predictor(model, info), clip_out), datasets,
                                method=f"clip top {percent:g}%", **kw)
    rows, pos, worst = [], 0, (-np.inf, None)
    for rf, rc in zip(fp_records, clip_records):
        shifts = []
        for image_fp, image_clip in zip(rf.images, rc.images):
            shifts.append(colour_shift(clip_out[pos], fp_out[pos]))
            drop = image_fp["psnr_y"] - image_clip["psnr_y"]
            if drop > worst[0]:
                worst = (drop, {"name": f"{rf.dataset}/{image_fp['name']}", "fp": fp_out[pos], "clipped": clip_out[pos],
                                "drop": drop})
            pos += 1
        row = {"dataset": rf.dataset, "images": rf.n_images, "layers clipped": len(layers), "fp32": rf.psnr_y,
               "clipped": rc.psnr_y, "drop": rf.psnr_y - rc.psnr_y}
        row.update({k: float(np.mean([s[k] for s in shifts])) for k in shifts[0]})
        rows.append(row)
    return rows, worst[1]


def write_outlier_study(rows: list[dict[str, Any]], example: dict[str, Any], out: str | Path, crop: int = 128,
                        title: str = "") -> list[Path]:
    """``outliers.csv``, ``outliers.md`` and ``outliers.png`` (FP32 | clipped crop of the worst image)."""
    out = Path(out)
    paths = [out / "outliers.csv", out / "outliers.md", out / "outliers.png"]
    write_text_atomic(paths[0], rows_to_csv(rows))
    note = f"side-by-side ({paths[2].name}): {example['name']}, FP32 left, clipped right, drop {example['drop']:.3f} dB"
    write_text_atomic(paths[1], rows_to_markdown(rows, title) + f"\n{note}\n")
    write_image(paths[2], side_by_side(example["fp"], example["clipped"], crop))
    return paths
