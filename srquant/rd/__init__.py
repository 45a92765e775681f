"""Representative-dataset (RD) curation for clip-free INT8 super-resolution (Kalay et al., BMVC 2023; docs/clipfree.md).

ON(image) scores a candidate calibration image by the outliers of the FP32 clip-free model's response (M1 keeps the
best), the blurs of M2 repair bad images, and :func:`quantize_rd` calibrates on whole RD images.
"""
from .calibrate import curate, merge_ranges, model_variant, quantize_rd
from .enhance import BlurConfig, Enhanced, box_blur_at, enhance, global_blur, window_mask
from .images import load_rd, rd_image, write_rd
from .outliers import (OutlierConfig, Outliers, Score, find_outliers, rank, score_images, select_clean,
                       select_good)

__all__ = [
    "BlurConfig", "Enhanced", "OutlierConfig", "Outliers", "Score", "box_blur_at", "curate",
    "enhance", "find_outliers", "global_blur", "load_rd", "merge_ranges", "model_variant", "quantize_rd", "rank",
    "rd_image", "score_images", "select_clean", "select_good", "window_mask", "write_rd",
]
