"""Evaluate an SR model (PyTorch module, ONNX session or any callable) on benchmark folders."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from .data.benchmark import BenchmarkFolder
from .data.images import rgb_to_y
from .data.imresize import imresize
from .metrics import psnr, ssim
from .models import SRInfo
from .results import ResultRecord

Predictor = Callable[[np.ndarray], np.ndarray]  # LR uint8 HxWx3 -> SR uint8 HxWx3 (or float Y HxW)


def prepare_input(lr: np.ndarray, info: SRInfo) -> torch.Tensor:
    """LR uint8 RGB (HxWx3, or NxHxWx3) -> NxCxHxW float tensor in the model's input range and colour mode.

    Models on a pre-upsampled input (VDSR) get the MATLAB-bicubic upsampling computed in float (no uint8 rounding).
    """
    batch = lr if lr.ndim == 4 else lr[None]
    if info.upsample_input:
        batch = np.stack([imresize(x.astype(np.float64), info.scale) for x in batch])
    if info.color == "y":
        x = rgb_to_y(batch)[:, None] / 255.0
    else:
        x = batch.transpose(0, 3, 1, 2) / 255.0
    return torch.from_numpy(np.ascontiguousarray(x)).float() * info.input_range


def calibration_batch(
    info: SRInfo,
    folder: str | Path | None = None,
    n: int = 32,
    patch: int = 48,
    seed: int = 0,
    grayscale: bool = False,
) -> torch.Tensor:
    """N seeded LR patches from ``folder`` (default: scikit-image sample photos), as the model's input tensor."""
    from .data.benchmark import DEMO_CALIB_FILES, demo_image_dir
    from .data.calib import sample_lr_patches

    source = folder if folder is not None else [demo_image_dir() / f for f in DEMO_CALIB_FILES]
    return prepare_input(sample_lr_patches(source, n, patch, info.scale, seed=seed, grayscale=grayscale).patches, info)


def to_image(out: torch.Tensor, info: SRInfo) -> np.ndarray:
    """Model output -> uint8 HxWx3 RGB (clamped, rounded) or, for Y models, float Y clamped to [0, 255].

    Y models are scored unrounded, as pytorch-vdsr's evaluation does (the published VDSR figures need it).
    """
    arr = (out.detach().double().squeeze(0) * (255.0 / info.input_range)).clamp_(0, 255).cpu().numpy()
    if info.color == "y":
        return arr[0]
    return np.floor(arr + 0.5).transpose(1, 2, 0).astype(np.uint8)


def model_predictor(forward: Callable[[torch.Tensor], torch.Tensor], info: SRInfo) -> Predictor:
    """Wrap a tensor-to-tensor forward (an nn.Module, an ONNX runner) as an image predictor."""

    def predict(lr: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return to_image(forward(prepare_input(lr, info)), info)

    return predict


def bicubic_predictor(scale: int) -> Predictor:
    return lambda lr: imresize(lr, scale)


def _luma(img: np.ndarray, native_gray: bool) -> np.ndarray:
    """Y in [0, 255]; for a single-channel source with ``native_gray``, the grey level itself (MATLAB protocol)."""
    y = img.astype(np.float64) if img.ndim == 2 else rgb_to_y(img)
    return (y - 16.0) * (255.0 / 219.0) if native_gray else y


def evaluate(
    predict: Predictor,
    datasets: Iterable[BenchmarkFolder],
    *,
    model: str,
    method: str = "fp32",
    w_bits: int | None = None,
    a_bits: int | None = None,
    channel: str = "y",
    shave: int | None = None,
    gray: str = "rgb2y",
    backend: str = "torch",
    progress: bool = True,
    **extra,
) -> list[ResultRecord]:
    """One :class:`ResultRecord` per dataset with per-image PSNR/SSIM; ``shave`` defaults to the scale.

    ``gray`` says how a single-channel HR image is scored on Y: ``"native"`` takes its grey level as Y (MATLAB
    scripts, the published bicubic tables), ``"rgb2y"`` replicates it to RGB and applies rgb2ycbcr (cv2-based code).
    """
    if gray not in ("native", "rgb2y"):
        raise ValueError(f"gray must be 'native' or 'rgb2y', not {gray!r}")
    records = []
    for ds in datasets:
        border = ds.scale if shave is None else shave
        start, images = time.perf_counter(), []
        for pair in tqdm(ds, desc=f"{model} {method} {ds.name} x{ds.scale}", leave=False, disable=not progress):
            sr = predict(pair.lr)
            hr = pair.hr
            if channel == "y":
                native = pair.gray and gray == "native"
                sr, hr = _luma(sr, native), _luma(hr, native)
            images.append(
                {"name": pair.name, "psnr_y": psnr(sr, hr, border, channel), "ssim_y": ssim(sr, hr, border, channel)}
            )
        records.append(
            ResultRecord(
                model=model, dataset=ds.name, scale=ds.scale, method=method, w_bits=w_bits, a_bits=a_bits,
                psnr_y=float(np.mean([i["psnr_y"] for i in images])), ssim_y=float(np.mean([i["ssim_y"] for i in images])),
                n_images=len(images), seconds=time.perf_counter() - start, backend=backend, channel=channel,
                shave=border, gray=gray, images=images, **extra,
            )
        )
    return records
