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
    "report_html", "save_figure", "sensitivity_figure", "write_benchmarks_md", "write_report", "add_report_commands",
]


def add_report_commands(subparsers) -> None:
    """Register ``srquant report RUN_DIR`` (a sweep folder -> one self-contained HTML file)."""
    p = subparsers.add_parser("report", help="self-contained HTML report (tables, plots, crops) of a sweep folder")
    p.add_argument("run_dir", help="folder written by `srquant bench` (holds sweep.json and cells/)")
    p.add_argument("--out", help="HTML file to write (default RUN_DIR/report.html)")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> None:
    print(f"wrote {write_report(args.run_dir, args.out)}")
