"""``srquant report``: the HTML report of a sweep folder."""
from __future__ import annotations

from ..report import write_report


def add_commands(sub) -> None:
    """Register ``srquant report RUN_DIR`` (a sweep folder -> one self-contained HTML file)."""
    p = sub.add_parser("report", help="self-contained HTML report (tables, plots, crops) of a sweep folder")
    p.add_argument("run_dir", help="folder written by `srquant bench` (holds sweep.json and cells/)")
    p.add_argument("--out", help="HTML file to write (default RUN_DIR/report.html)")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> None:
    print(f"wrote {write_report(args.run_dir, args.out)}")
