"""SR metrics under the reference protocol: PSNR and SSIM on MATLAB Y (or RGB), border shave = scale."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d

from .data.images import rgb_to_y


def _prepare(sr: np.ndarray, hr: np.ndarray, shave: int, channel: str) -> tuple[np.ndarray, np.ndarray]:
    """Bring both images to float64 [0, 255] on the requested channel(s) and cut ``shave`` pixels at each border."""
    if channel not in ("y", "rgb"):
        raise ValueError(f"channel must be 'y' or 'rgb', not {channel!r}")
    if channel == "y":
        sr = sr.astype(np.float64) if sr.ndim == 2 else rgb_to_y(sr)
        hr = hr.astype(np.float64) if hr.ndim == 2 else rgb_to_y(hr)
    else:
        if sr.ndim != 3:
            raise ValueError("RGB metrics need 3-channel images")
        sr, hr = sr.astype(np.float64), hr.astype(np.float64)
    if sr.shape[:2] != hr.shape[:2]:
        raise ValueError(f"SR {sr.shape[:2]} and HR {hr.shape[:2]} differ in size")
    if shave:
        sr, hr = sr[shave:-shave, shave:-shave], hr[shave:-shave, shave:-shave]
    return sr, hr


def psnr(sr: np.ndarray, hr: np.ndarray, shave: int = 0, channel: str = "y") -> float:
    """PSNR in dB of uint8 RGB images (or 2-D Y arrays in [0, 255]); ``inf`` for identical images."""
    sr, hr = _prepare(sr, hr, shave, channel)
    mse = np.mean((sr - hr) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _ssim_2d(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of Wang et al. (11x11 Gaussian, sigma 1.5, K = 0.01/0.03, L = 255), 'valid' filtering as in MATLAB."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = _gaussian_window()

    def blur(x: np.ndarray) -> np.ndarray:
        return correlate1d(correlate1d(x, g, axis=0, mode="constant"), g, axis=1, mode="constant")[5:-5, 5:-5]

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def ssim(sr: np.ndarray, hr: np.ndarray, shave: int = 0, channel: str = "y") -> float:
    """SSIM of uint8 RGB images (or 2-D Y arrays); RGB is the mean over channels."""
    sr, hr = _prepare(sr, hr, shave, channel)
    if sr.ndim == 2:
        return _ssim_2d(sr, hr)
    return float(np.mean([_ssim_2d(sr[..., c], hr[..., c]) for c in range(sr.shape[2])]))
