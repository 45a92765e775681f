"""Public checkpoints srquant is verified against (files in ../shared/weights) and their reference Y-PSNR.

The values are those of ../shared/weights/MANIFEST.md (measured by the MANIFEST's authors under the reference
protocol); tests and ``srquant models --verify`` check that srquant reproduces each within 0.01 dB.
"""
from __future__ import annotations

from typing import NamedTuple


class Release(NamedTuple):
    model: str
    scale: int
    file: str
    dataset: str
    psnr_y: float


RELEASES: tuple[Release, ...] = (
    Release("imdn", 2, "imdn_x2.pth", "Set5", 37.996), Release("imdn", 3, "imdn_x3.pth", "Set5", 34.360),
    Release("imdn", 4, "imdn_x4.pth", "Set5", 32.210), Release("imdn_rtc", 2, "imdn_rtc_x2.pth", "Set5", 37.311),
    Release("rfdn", 4, "rfdn_aim_x4.pth", "Set5", 32.159), Release("pan", 2, "pan_x2.pth", "Set5", 38.001),
    Release("pan", 3, "pan_x3.pth", "Set5", 34.400), Release("pan", 4, "pan_x4.pth", "Set5", 32.131),
    Release("carn_m", 2, "carn_m_x234.pth", "Set5", 37.678), Release("carn_m", 3, "carn_m_x234.pth", "Set5", 34.058),
    Release("carn_m", 4, "carn_m_x234.pth", "Set5", 31.883),
    Release("imdn_kair", 4, "imdn_ntire22_baseline_x4.pth", "Set5", 32.247),
    Release("rlfn", 4, "rlfn_ntire22_x4.pth", "Set5", 32.097), Release("bsrn", 4, "bsrn_ntire22_x4.pth", "Set5", 32.010),
    Release("vdsr", 2, "vdsr_x234.pth", "Set5", 37.613), Release("vdsr", 3, "vdsr_x234.pth", "Set5", 33.757),
    Release("vdsr", 4, "vdsr_x234.pth", "Set5", 31.440),
    Release("imdn", 2, "imdn_x2.pth", "Set14", 33.627), Release("imdn", 3, "imdn_x3.pth", "Set14", 30.322),
    Release("imdn", 4, "imdn_x4.pth", "Set14", 28.582), Release("imdn", 2, "imdn_x2.pth", "B100", 32.189),
    Release("imdn", 3, "imdn_x3.pth", "B100", 29.094), Release("imdn", 4, "imdn_x4.pth", "B100", 27.560),
)

# Published bicubic Y-PSNR (MATLAB-era tables, e.g. VDSR/EDSR; a single-channel HR image is scored on its own grey
# level, i.e. ``gray="native"``): (dataset, scale) -> dB.
BICUBIC_PSNR: dict[tuple[str, int], float] = {
    ("Set5", 2): 33.66, ("Set5", 3): 30.39, ("Set5", 4): 28.42, ("Set14", 2): 30.24, ("Set14", 4): 26.00,
    ("B100", 2): 29.56, ("B100", 4): 25.96,
}
