"""The DFSQ ablation of the paper's Table 1: channel-wise vs layer-wise points, with and without normalization,
each quantized and evaluated (the four configs come from :func:`srquant.methods.dfsq.ablation_configs`)."""
from __future__ import annotations

import torch
from torch import nn

from ..api import quantize_and_evaluate
from ..methods.dfsq import DFSQConfig, ablation_configs


def run_ablation(model: nn.Module, calib: torch.Tensor, datasets, base: DFSQConfig, model_name: str = "model",
                 progress: bool = False) -> list[dict]:
    """Quantize ``model`` with each Table 1 variant and evaluate it on ``datasets`` (BenchmarkFolder list).

    Returns one dict per (variant, dataset): label, channelwise, normalize, dataset, psnr_y, ssim_y, calib_seconds.
    """
    out = []
    for label, config in ablation_configs(base):
        qmodel, records = quantize_and_evaluate(model, config, calib, datasets, model=model_name, progress=progress)
        for r in records:
            out.append({"label": label, "channelwise": config.a_granularity == "channel", "normalize": config.normalize,
                        "dataset": r.dataset, "psnr_y": r.psnr_y, "ssim_y": r.ssim_y,
                        "calib_seconds": qmodel.calib_seconds})
    return out


def format_ablation(rows: list[dict]) -> str:
    """Table 1 layout: one line per variant, PSNR/SSIM per dataset."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    labels = list(dict.fromkeys((r["channelwise"], r["normalize"]) for r in rows))
    lines = ["| Cha. | Norm. | " + " | ".join(datasets) + " |", "|---|---|" + "---|" * len(datasets)]
    for cha, norm in labels:
        cells = []
        for d in datasets:
            r = next(r for r in rows if r["dataset"] == d and (r["channelwise"], r["normalize"]) == (cha, norm))
            cells.append(f"{r['psnr_y']:.3f}/{r['ssim_y']:.4f}")
        lines.append(f"| {'✓' if cha else '-'} | {'✓' if norm else '-'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
