"""Reports of sweeps: PNG plots, a self-contained HTML report, BENCHMARKS.md."""
from __future__ import annotations

from .html import report_html, write_report
from .markdown import write_benchmarks_md
from .plots import (
    activation_distribution_figure, crop_grid_figure, figure_png, layer_inputs, psnr_vs_bits_figure, save_figure,
    sensitivity_figure,
)

__all__ = [
    "activation_distribution_figure", "crop_grid_figure", "figure_png", "layer_inputs", "psnr_vs_bits_figure",
    "report_html", "save_figure", "sensitivity_figure", "write_benchmarks_md", "write_report",
]
