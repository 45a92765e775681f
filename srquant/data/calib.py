"""Calibration data: N seeded random LR patches from a folder of HR images."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, InputError
from .images import ImageError, list_images, read_image, to_grayscale_rgb
from .imresize import imresize


@dataclass
class CalibrationSet:
    """LR patches as uint8 NxPxPx3 RGB plus where they came from (the model input is made by the consumer)."""

    patches: np.ndarray
    sources: list[str] = field(default_factory=list)
    seed: int = 0

    def __len__(self) -> int:
        return len(self.patches)


def sample_lr_patches(
    folder: str | Path | list[Path],
    n: int,
    patch: int,
    scale: int,
    seed: int = 0,
    grayscale: bool = False,
) -> CalibrationSet:
    """Cut ``n`` HR crops of ``patch*scale`` pixels at seeded random places, shrink each with MATLAB bicubic.

    Images are visited round-robin in a seeded order so that every image contributes when n >= number of images.
    """
    if not isinstance(folder, list) and not Path(folder).is_dir():
        raise InputError(f"calibration folder not found: {folder}")
    paths = list_images(folder) if not isinstance(folder, list) else [Path(p) for p in folder]
    if not paths:
        raise InputError(f"no images in calibration folder {folder}")
    if n < 1 or patch < 1:
        raise ConfigError(f"need n >= 1 and patch >= 1, got n={n}, patch={patch}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(paths))
    hr_size = patch * scale
    cache: dict[int, np.ndarray] = {}
    patches, sources = [], []
    for i in range(n):
        k = int(order[i % len(paths)])
        if k not in cache:
            img = read_image(paths[k])
            if min(img.shape[:2]) < hr_size:
                raise ImageError(f"{paths[k]}: {img.shape[1]}x{img.shape[0]} is smaller than a {hr_size}px HR patch")
            cache[k] = to_grayscale_rgb(img) if grayscale else img
        img = cache[k]
        top = int(rng.integers(0, img.shape[0] - hr_size + 1))
        left = int(rng.integers(0, img.shape[1] - hr_size + 1))
        patches.append(imresize(img[top : top + hr_size, left : left + hr_size], 1.0 / scale))
        sources.append(f"{paths[k].name}@{top},{left}")
    return CalibrationSet(np.stack(patches), sources, seed)


def as_tensor(patches: np.ndarray) -> torch.Tensor:
    """uint8 NxHxWx3 -> float NxCxHxW in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(patches.transpose(0, 3, 1, 2))).float().div_(255.0)
