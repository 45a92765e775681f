"""Clipped / clip-free model variants, the M1 + M2 curation, and calibration on whole RD images."""
from __future__ import annotations

import inspect
from collections import defaultdict
from typing import Iterable

import numpy as np
import torch
from torch import nn

from .. import api
from ..evaluate import prepare_input
from ..methods import QuantConfig
from ..models import create, get_spec, sr_info
from ..quant.walk import quantizers
from .enhance import BlurConfig, enhance
from .outliers import OutlierConfig, Score, score_images, select_good

RANGE_UNION_METHODS = ("minmax", "fullint")  # methods whose range over a set is the hull of the per-image ranges


def model_variant(name: str, scale: int, weights: str | None = None, clip: bool = False) -> nn.Module:
    """``name`` with (``clip``) or without its HR output clamp; ``weights`` None means the embedded default."""
    spec = get_spec(name)
    if "clip_output" not in inspect.signature(spec.builder).parameters:
        raise ValueError(f"{spec.name} has no clip_output option, so it has no clipped / clip-free variants")
    return create(name, scale, weights=weights, pretrained=weights is None, clip_output=clip)


def curate(model: nn.Module, images: dict[str, np.ndarray], k: int | None = None,
           blur: BlurConfig | None = BlurConfig(), outliers: OutlierConfig = OutlierConfig(),
           drop_unrepaired: bool = False) -> tuple[dict[str, np.ndarray], list[Score]]:
    """M1 + M2 with the float clip-free ``model``: every image, or the ``k`` with the fewest outliers, each blurred
    by ``blur`` while its response has outliers (an image without outliers is kept as it is).

    With ``k=None`` the RD is the good images plus the repaired bad ones; ``drop_unrepaired`` leaves out the images
    whose response still has outliers after M2 (e.g. flat saturated areas, which no blur changes). Returns the RD
    and every candidate's ON.
    """
    scores = score_images(model, images, outliers)
    chosen = select_good(scores, k) if k is not None else list(images)
    if blur is None:
        return {name: images[name] for name in chosen}, scores
    fixed = {name: enhance(model, images[name], blur, outliers) for name in chosen}
    return {name: f.image for name, f in fixed.items() if f.on_after == 0 or not drop_unrepaired}, scores


def merge_ranges(target: nn.Module, other: nn.Module) -> nn.Module:
    """Widen every calibrated range of ``target`` to cover ``other``'s (same model and config); returns target."""
    others = dict(quantizers(other))
    for name, q in quantizers(target):
        if q.mode == "quant":
            o = others[name]
            q.set_range(torch.minimum(q.lo, o.lo), torch.maximum(q.hi, o.hi))
    return target


def quantize_rd(model: nn.Module, config: QuantConfig, images: Iterable[np.ndarray]) -> nn.Module:
    """``srquant.quantize`` on whole RD images (LR uint8 HxWx3) of any sizes.

    Images of one size are calibrated together, the size groups one after the other, and the min/max ranges merged:
    the hull of per-group ranges is exactly the range over all images, so this equals one calibration on the set.
    """
    if config.method not in RANGE_UNION_METHODS:
        raise ValueError(f"whole-image RD calibration needs min/max ranges ({', '.join(RANGE_UNION_METHODS)}), "
                         f"not {config.method!r}; use --calib patches for other methods")
    groups: dict[tuple, list[np.ndarray]] = defaultdict(list)
    for img in images:
        groups[img.shape].append(img)
    if not groups:
        raise ValueError("the representative dataset is empty")
    info = sr_info(model)
    qmodel, seconds = None, 0.0
    for shape in sorted(groups):
        q = api.quantize(model, config, prepare_input(np.stack(groups[shape]), info))
        seconds += q.calib_seconds
        qmodel = q if qmodel is None else merge_ranges(qmodel, q)
    qmodel.calib_seconds = seconds
    return qmodel
