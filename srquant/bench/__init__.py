"""Sweeps: expand a config into cells, run them (locally or on Ray) with a per-cell cache, write tables."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..fileio import checked_json, read_checked_json
from ..results import ResultRecord, write_results, write_text_atomic
from .config import Cell, CropEntry, SweepConfig, Variant, expand
from .runner import check_crop, hardware, inline_executor, local_executor, payload_key, ray_executor, run_cell, run_cells
from .tables import PaperTable, paper_table_data, paper_tables, table_markdown, to_csv


def hardware_line(hw: dict) -> str:
    return f"{hw['cpu']}, {hw['cores']} cores, torch {hw['torch']}, {hw['threads']} threads per cell"


@dataclass
class SweepRun:
    """A finished (or resumed) sweep folder: its config, records and the per-cell payloads, in cell order."""

    config: dict
    payloads: list[dict]

    @property
    def records(self) -> list[ResultRecord]:
        return [ResultRecord(**r) for p in self.payloads for r in p.get("records", [])]

    @property
    def labels(self) -> list[str]:
        return [v["label"] for v in self.config["methods"]]

    @property
    def failures(self) -> dict[str, str]:
        return {payload_key(p): p["error"] for p in self.payloads if "error" in p}

    @property
    def hardware(self) -> list[dict]:
        """The distinct machines the cells ran on (a resumed or Ray sweep may span several)."""
        return [json.loads(h) for h in dict.fromkeys(json.dumps(p["hardware"], sort_keys=True) for p in self.payloads)]

    @property
    def cell_seconds(self) -> float:
        return sum(p.get("cell_seconds", 0.0) for p in self.payloads)


def run_sweep(config: SweepConfig, out_dir: str | Path, executor=None, progress: bool = True, retry_failed: bool = False) -> list[ResultRecord]:
    """Run (or resume) ``config`` into ``out_dir``: cells/ cache, results.json, results.csv, tables.md, sweep.json."""
    out_dir = Path(out_dir)
    cells = expand(config)
    check_crop(config)
    payloads = run_cells(cells, out_dir / "cells", executor or local_executor(), progress, retry_failed)
    run = SweepRun(asdict(config), payloads)
    records = run.records
    write_results(out_dir / "results.json", records)
    write_text_atomic(out_dir / "results.csv", to_csv(records))
    machines = "; ".join(hardware_line(h) for h in run.hardware) if payloads else hardware_line(hardware())
    text = f"# {config.name}\n\nHardware: {machines}.\n\n" + paper_tables(records, config.labels)
    if run.failures:
        text += "\n## Failed cells\n\n" + "".join(f"- `{k}`: {e}\n" for k, e in run.failures.items())
    write_text_atomic(out_dir / "tables.md", text)
    summary = {"config": config.name, "sweep": run.config, "cells": [c.key() for c in cells], "failed": run.failures}
    write_text_atomic(out_dir / "sweep.json", checked_json(summary, indent=1))
    return records


def load_run(out_dir: str | Path) -> SweepRun:
    """Read a sweep folder written by :func:`run_sweep` (only the cells of its last config, not stale cache files)."""
    out_dir = Path(out_dir)
    summary_path = out_dir / "sweep.json"
    if not summary_path.exists():
        raise FileNotFoundError(f"{summary_path} not found: not a sweep folder (run `srquant bench CONFIG --out {out_dir}`)")
    summary = read_checked_json(summary_path, "sweep summary")
    payloads = [read_checked_json(out_dir / "cells" / f"{key}.json", "cached cell") for key in summary["cells"]]
    return SweepRun(summary["sweep"], payloads)


__all__ = [
    "Cell", "CropEntry", "PaperTable", "SweepConfig", "SweepRun", "Variant", "expand", "hardware", "hardware_line",
    "inline_executor", "load_run", "local_executor", "paper_table_data", "paper_tables", "ray_executor", "run_cell",
    "run_cells", "run_sweep", "table_markdown", "to_csv",
]
