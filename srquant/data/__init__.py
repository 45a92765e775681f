"""Images, MATLAB bicubic, benchmark folders and calibration patches."""
from .benchmark import BenchmarkFolder, SRPair
from .calib import CalibrationSet, sample_lr_patches
from .images import ImageError, mod_crop, read_image, rgb_to_y, to_grayscale_rgb, write_image
from .imresize import imresize

__all__ = [
    "BenchmarkFolder", "CalibrationSet", "ImageError", "SRPair", "imresize", "mod_crop", "read_image", "rgb_to_y",
    "sample_lr_patches", "to_grayscale_rgb", "write_image",
]
