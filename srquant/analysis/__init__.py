"""Analysis tools: per-layer quantization sensitivity scan and the activation-outlier (clipping) study."""
from .outliers import clip_abs_top, clipped_inputs, colour_shift, outlier_study, side_by_side, write_outlier_study
from .sensitivity import sensitivity_scan, single_layer_overrides, write_sensitivity

__all__ = [
    "clip_abs_top", "clipped_inputs", "colour_shift", "outlier_study", "sensitivity_scan", "side_by_side",
    "single_layer_overrides", "write_outlier_study", "write_sensitivity",
]
