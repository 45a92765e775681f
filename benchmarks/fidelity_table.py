"""The fair-bits table of docs/fidelity.md from a finished (or partly finished) fidelity sweep.

    srquant bench benchmarks/configs/fidelity.yaml --out runs/bench/fidelity
    python benchmarks/fidelity_table.py benchmarks/configs/fidelity.yaml runs/bench/fidelity

One table per model: a row per method variant, a column per (weight bits, effective activation bits), each cell the
three-set average Y-PSNR (Set5 / Set14 / B100; Set5 in brackets), read from the sweep's cell cache, so a sweep that
was interrupted gives the cells it finished (the missing ones are listed). The effective activation width is the number of
bits the quantizer's codes need (benchmarks/fidelity_codes.py): the release grid of the official outlier-aware
method (``grid="release"``) holds 2^(b+1) codes at a nominal b, every other quantizer of the sweep at most 2^b.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from srquant.bench import SweepConfig, expand
from srquant.results import ResultRecord


def effective_a_bits(r: ResultRecord) -> int:
    """Activation bits the cell's codes really need."""
    return r.a_bits + 1 if (r.config or {}).get("grid") == "release" else r.a_bits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="the sweep config")
    parser.add_argument("run", help="its output folder (srquant bench --out)")
    args = parser.parse_args()
    sweep = SweepConfig.from_file(args.config)
    records, missing, failed = [], [], []
    for cell in expand(sweep):
        path = Path(args.run) / "cells" / f"{cell.key()}.json"
        payload = json.loads(path.read_text()) if path.exists() else None
        if payload is None or "error" in payload:
            (missing if payload is None else failed).append(cell.key().rsplit("-", 1)[0])
            continue
        records += [ResultRecord(**r) for r in payload["records"] if r["w_bits"] is not None]
    for model in dict.fromkeys(r.model for r in records):
        cells: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        for r in records:
            if r.model == model:
                column = f"W{r.w_bits} A{effective_a_bits(r)}"
                cells[r.method, column][r.dataset] = r.psnr_y
        columns = sorted({c for _, c in cells}, key=lambda c: (-int(c[1]), int(c.split("A")[1])))
        methods = [m for m in sweep.labels if any((m, c) in cells for c in columns)]
        print(f"#### {model}: three-set average Y-PSNR (Set5 in brackets), by weight bits and effective activation bits\n")
        print("| method | " + " | ".join(columns) + " |")
        print("|---|" + "---|" * len(columns))
        for m in methods:
            row = []
            for c in columns:
                got = cells.get((m, c), {})
                row.append(f"{sum(got.values()) / len(got):.3f} ({got['Set5']:.2f})" if got else "")
            print(f"| {m} | " + " | ".join(row) + " |")
        print()
    for what, cells_ in (("Not run yet", missing), ("Failed", failed)):
        if cells_:
            print(f"{what} ({len(cells_)} cells): " + ", ".join(cells_))


if __name__ == "__main__":
    main()
