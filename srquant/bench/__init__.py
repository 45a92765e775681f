"""Sweeps: expand a config into cells, run them (locally or on Ray) with a per-cell cache, write tables."""
from __future__ import annotations

import json
from pathlib import Path

from ..results import ResultRecord, write_results, write_text_atomic
from .config import Cell, SweepConfig, expand
from .runner import hardware, inline_executor, local_executor, ray_executor, run_cell, run_cells
from .tables import paper_tables, to_csv


def run_sweep(config: SweepConfig, out_dir: str | Path, executor=None, progress: bool = True) -> list[ResultRecord]:
    """Run (or resume) ``config`` into ``out_dir``: cells/ cache, results.json, results.csv, tables.md."""
    out_dir = Path(out_dir)
    payloads = run_cells(expand(config), out_dir / "cells", executor or local_executor(), progress)
    records = [ResultRecord(**r) for p in payloads for r in p["records"]]
    write_results(out_dir / "results.json", records)
    write_text_atomic(out_dir / "results.csv", to_csv(records))
    hw = payloads[0]["hardware"] if payloads else hardware()
    header = f"# {config.name}\n\nHardware: {hw['cpu']}, {hw['cores']} cores, torch {hw['torch']}, {hw['threads']} threads.\n\n"
    write_text_atomic(out_dir / "tables.md", header + paper_tables(records, config.methods))
    write_text_atomic(out_dir / "sweep.json", json.dumps({"config": config.name, "cells": len(payloads)}) + "\n")
    return records


__all__ = ["Cell", "SweepConfig", "expand", "hardware", "inline_executor", "local_executor", "paper_tables", "ray_executor", "run_cell", "run_cells", "run_sweep", "to_csv"]
