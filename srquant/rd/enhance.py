"""M2: enhancing bad representative images by blurring them until the clip-free model's response has no outliers.

The seed's algorithm box (with its ``or`` read as ``and``: the loops stop once ON = 0 or after ``max_iter`` steps)::

    GB:   if ON(image) != 0: image <- GB(image)
    LIBB: while ON(image) != 0 and IN < Thr: image <- LIBB(image); IN <- IN + 1
    LIPB: while ON(image) != 0 and IN < Thr: image <- LIPB(image); IN <- IN + 1

Kernel sizes, sigma and Thr are not in the readable text: they are the options below (docs/clipfree.md). GB is a
Gaussian blur of the whole LR image; LIBB replaces a (2 radius + 1)^2 window around every LR pixel under an outlier
by its ``kernel`` x ``kernel`` box mean; LIPB replaces only those pixels. Every step rounds to uint8, so ON is always
measured on the image that is written.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from torch import nn

from .outliers import OutlierConfig, find_outliers

BLURS = ("gb", "libb", "lipb")


@dataclass(frozen=True)
class BlurConfig:
    method: str = "lipb"  # gb | libb | lipb
    sigma: float = 1.0  # gb: Gaussian sigma in LR pixels
    truncate: float = 2.0  # gb: kernel radius = round(truncate * sigma) (5x5 at sigma 1)
    radius: int = 2  # libb: window half-size around each outlier pixel
    kernel: int = 3  # libb, lipb: box-mean size
    max_iter: int = 20  # libb, lipb: Thr

    def __post_init__(self) -> None:
        if self.method not in BLURS:
            raise ValueError(f"blur method must be one of {BLURS}, got {self.method!r}")
        if self.sigma <= 0 or self.truncate <= 0:
            raise ValueError(f"need sigma > 0 and truncate > 0, got sigma={self.sigma}, truncate={self.truncate}")
        if self.radius < 0 or self.kernel < 1 or self.max_iter < 1:
            raise ValueError(f"need radius >= 0, kernel >= 1, max_iter >= 1, "
                             f"got {self.radius}, {self.kernel}, {self.max_iter}")


@dataclass(frozen=True)
class Enhanced:
    image: np.ndarray
    on_before: int
    on_after: int
    iterations: int
    out_range: tuple[float, float]  # the response's min and max after the blur (pixel units)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def global_blur(img: np.ndarray, sigma: float, truncate: float) -> np.ndarray:
    """GB: Gaussian blur of every channel of the whole image."""
    return to_uint8(ndimage.gaussian_filter(img.astype(np.float64), sigma=(sigma, sigma, 0), truncate=truncate))


def box_blur_at(img: np.ndarray, mask: np.ndarray, kernel: int) -> np.ndarray:
    """The pixels under ``mask`` replaced by their ``kernel`` x ``kernel`` box mean; the others unchanged."""
    blurred = to_uint8(ndimage.uniform_filter(img.astype(np.float64), size=(kernel, kernel, 1)))
    return np.where(mask[..., None], blurred, img)


def window_mask(points: np.ndarray, radius: int) -> np.ndarray:
    """The (2 radius + 1)^2 windows around the True pixels of ``points``."""
    return ndimage.maximum_filter(points, size=2 * radius + 1) if radius else points.copy()


def blur_step(img: np.ndarray, lr_map: np.ndarray, config: BlurConfig) -> np.ndarray:
    """One LIBB or LIPB step around the outliers of ``lr_map``."""
    mask = window_mask(lr_map, config.radius) if config.method == "libb" else lr_map
    return box_blur_at(img, mask, config.kernel)


def enhance(model: nn.Module, img: np.ndarray, config: BlurConfig = BlurConfig(),
            outliers: OutlierConfig = OutlierConfig()) -> Enhanced:
    """Blur one RD image (LR uint8 HxWx3) against the float clip-free ``model``'s outliers."""
    found = find_outliers(model, img, outliers)
    before, steps = found.count, 0
    if config.method == "gb":
        if found.count:
            img = global_blur(img, config.sigma, config.truncate)
            found, steps = find_outliers(model, img, outliers), 1
        return Enhanced(img, before, found.count, steps, found.out_range)
    while found.count and steps < config.max_iter:
        img = blur_step(img, found.lr_map, config)
        found, steps = find_outliers(model, img, outliers), steps + 1
    return Enhanced(img, before, found.count, steps, found.out_range)
