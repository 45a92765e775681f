"""A self-contained HTML report of a sweep folder: tables, plots and crops embedded as base64 PNG (no external
files, scripts or fonts), rendered from the ``templates/report.html.j2`` jinja2 template."""
from __future__ import annotations

import base64
from pathlib import Path

from .._version import __version__
from ..bench import hardware_line, load_run, paper_table_data
from ..results import write_text_atomic
from .crops import crop_sets
from .plots import figure_png, psnr_vs_bits_figure


def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("srquant.report", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)


def report_html(run_dir: str | Path) -> str:
    """The HTML text of the report of the sweep in ``run_dir`` (written by ``srquant bench``)."""
    run = load_run(run_dir)
    records = run.records
    crops = crop_sets(run)
    sections = []
    for table in paper_table_data(records, run.labels):
        quantized = any(r.bits != "-" for r in table.rows)
        plot = figure_png(psnr_vs_bits_figure(records, table.model, method_order=run.labels)) if quantized else None
        sections.append({
            "table": table,
            "plot": base64.b64encode(plot).decode() if plot else None,
            "crops": crops.get(table.model, {}),
        })
    config = run.config
    return _environment().get_template("report.html.j2").render(
        name=config["name"], version=__version__, sections=sections, failures=run.failures,
        hardware=[hardware_line(h) for h in run.hardware], config=config, cell_minutes=run.cell_seconds / 60,
    )


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report (default ``run_dir/report.html``) atomically; returns its path."""
    out = Path(out) if out else Path(run_dir) / "report.html"
    write_text_atomic(out, report_html(run_dir))
    return out
