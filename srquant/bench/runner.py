"""Running sweep cells (each a pure function of its inputs), caching them, and choosing an executor."""
from __future__ import annotations

import json
import os
import platform
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterable

from tqdm.auto import tqdm

from ..results import write_text_atomic
from .config import Cell, CalibEntry, ModelEntry

THREADS = 2


def hardware() -> dict:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "threads": THREADS, "python": platform.python_version()}


def run_cell(cell: Cell) -> dict:
    """Quantize (if the cell has a method) and evaluate on every dataset; returns the cell's cache payload."""
    import torch

    from ..api import quantize
    from ..data.benchmark import BenchmarkFolder
    from ..evaluate import bicubic_predictor, calibration_batch, evaluate, model_predictor
    from ..methods import config_class
    from ..models import create

    torch.set_num_threads(THREADS)
    m = cell.model
    datasets = [BenchmarkFolder(d, m.scale) for d in cell.datasets] or [BenchmarkFolder.demo(m.scale)]
    common = dict(model=m.label, gray=cell.gray, progress=False)
    if cell.method == "bicubic":
        records = evaluate(bicubic_predictor(m.scale), datasets, method="bicubic", backend="numpy", **common)
    else:
        model = create(m.name, m.scale, weights=m.weights, pretrained=m.weights is None, **m.kwargs)
        if cell.method == "fp32":
            records = evaluate(model_predictor(model, model.sr_info), datasets, **common)
        else:
            config = config_class(cell.method)(w_bits=cell.w_bits, a_bits=cell.a_bits, scope=cell.scope, seed=cell.calib.seed, **cell.options)
            c = cell.calib
            calib = calibration_batch(model.sr_info, c.folder, c.n, c.patch, c.seed, c.grayscale)
            qmodel = quantize(model, config, calib)
            records = evaluate(
                model_predictor(qmodel, model.sr_info), datasets, method=cell.method, w_bits=cell.w_bits,
                a_bits=cell.a_bits, scope=cell.scope, calib_seconds=qmodel.calib_seconds, config=config.to_dict(), **common,
            )
    return {"cell": asdict(cell), "records": [r.to_dict() for r in records], "hardware": hardware()}


def cell_from_dict(d: dict) -> Cell:
    return Cell(**{**d, "model": ModelEntry(**d["model"]), "calib": CalibEntry(**d["calib"]), "datasets": tuple(d["datasets"])})


def _run_cell_json(cell_dict: dict) -> dict:
    """Process/Ray entry point: plain dicts in and out."""
    return run_cell(cell_from_dict(cell_dict))


def inline_executor() -> Callable[[list[dict]], Iterable[dict]]:
    """Run cells one by one in this process (debugging, tests)."""
    return lambda cells: (_run_cell_json(c) for c in cells)


def local_executor(workers: int = 1) -> Callable[[list[dict]], Iterable[dict]]:
    """Run cells in ``workers`` spawned local processes (a fresh interpreter per worker, none shared with the caller)."""

    def execute(cells: list[dict]) -> Iterable[dict]:
        # workers inherit this before torch loads: idle OpenMP threads sleep rather than spin (2 busy cores)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            for future in as_completed([pool.submit(_run_cell_json, c) for c in cells]):
                yield future.result()

    return execute


def ray_executor(address: str | None = None) -> Callable[[list[dict]], Iterable[dict]]:
    """Spread cells over a Ray cluster (``address=None`` starts or joins a local instance)."""
    import ray

    def execute(cells: list[dict]) -> Iterable[dict]:
        ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
        remote = ray.remote(num_cpus=THREADS)(_run_cell_json)
        pending = [remote.remote(c) for c in cells]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])

    return execute


def run_cells(cells: list[Cell], cache_dir: Path, executor: Callable[[list[dict]], Iterable[dict]], progress: bool = True) -> list[dict]:
    """Run the cells missing from ``cache_dir`` (one JSON per cell, written atomically) and return all payloads."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    todo = [c for c in cells if not (cache_dir / f"{c.key()}.json").exists()]
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc="cells", disable=not progress)
    for payload in executor([asdict(c) for c in todo]):
        cell = cell_from_dict(payload["cell"])
        write_text_atomic(cache_dir / f"{cell.key()}.json", json.dumps(payload, indent=1) + "\n")
        bar.set_postfix_str(cell.key().rsplit("-", 1)[0])
        bar.update()
    bar.close()
    return [json.loads((cache_dir / f"{c.key()}.json").read_text()) for c in cells]
