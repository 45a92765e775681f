"""Running sweep cells (each a pure function of its inputs), caching them, and choosing an executor."""
from __future__ import annotations

import base64
import io
import os
import platform
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterable

from tqdm.auto import tqdm

from ..errors import ArtifactError
from ..fileio import checked_json, read_checked_json
from ..results import write_text_atomic
from .config import CalibEntry, Cell, CropEntry, ModelEntry, SweepConfig

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


def _png_b64(img) -> str:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.clip(np.floor(np.asarray(img, dtype=np.float64) + 0.5), 0, 255).astype(np.uint8)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def crop_source(datasets: list, crop: CropEntry) -> Path:
    """The HR file ``crop`` points at, after checking that the box fits in it (mod-cropped to the scale)."""
    from PIL import Image

    folder = next(d for d in datasets if d.name == crop.dataset)
    path = next((p for p in folder.paths if p.stem == crop.image), None)
    if path is None:
        raise ValueError(f"crop image {crop.image!r} is not in {folder.hr_dir}")
    width, height = (v - v % folder.scale for v in Image.open(path).size)
    top, left, h, w = crop.box
    if top + h > height or left + w > width:
        raise ValueError(f"crop box {list(crop.box)} exceeds {path.name} at x{folder.scale} ({width}x{height})")
    return path


def check_crop(sweep: SweepConfig) -> None:
    """Fail before any cell runs if the sweep's crop names a missing image or a box that does not fit."""
    from ..data.benchmark import BenchmarkFolder

    if sweep.crop is not None:
        for scale in {m.scale for m in sweep.models}:
            crop_source([BenchmarkFolder(d, scale) for d in sweep.datasets] or [BenchmarkFolder.demo(scale)], sweep.crop)


def crop_payload(predict, datasets: list, crop: CropEntry, with_hr: bool) -> dict:
    """The cell's output on ``crop``'s region (and the HR region when ``with_hr``), as base64 PNG."""
    folder = next(d for d in datasets if d.name == crop.dataset)
    pair = folder.load(crop_source(datasets, crop))
    top, left, h, w = crop.box
    region = (slice(top, top + h), slice(left, left + w))
    out = {"dataset": crop.dataset, "image": crop.image, "box": list(crop.box), "sr": _png_b64(predict(pair.lr)[region])}
    if with_hr:
        out["hr"] = _png_b64(pair.hr[region])
    return out


def run_cell(cell: Cell) -> dict:
    """Quantize (if the cell has a method) and evaluate on every dataset; returns the cell's cache payload."""
    import torch

    from ..api import quantize_and_evaluate
    from ..data.benchmark import BenchmarkFolder
    from ..evaluate import bicubic_predictor, calibration_batch, evaluate, model_predictor
    from ..methods import config_class
    from ..models import create

    torch.set_num_threads(THREADS)
    m = cell.model
    datasets = [BenchmarkFolder(d, m.scale) for d in cell.datasets] or [BenchmarkFolder.demo(m.scale)]
    options = dict(model=m.label, gray=cell.gray, progress=False)
    if cell.method == "bicubic":
        predict = bicubic_predictor(m.scale)
        records = evaluate(predict, datasets, method="bicubic", backend="numpy", **options)
    else:
        model = create(m.name, m.scale, weights=m.weights, pretrained=m.weights is None, **m.kwargs)
        if cell.method == "fp32":
            predict = model_predictor(model, model.sr_info)
            records = evaluate(predict, datasets, **options)
        else:
            config = config_class(cell.method)(w_bits=cell.w_bits, a_bits=cell.a_bits, scope=cell.scope, seed=cell.calib.seed, **cell.options)
            c = cell.calib
            calib = calibration_batch(model.sr_info, c.folder, c.n, c.patch, c.seed, c.grayscale)
            qmodel, records = quantize_and_evaluate(model, config, calib, datasets, label=cell.name, **options)
            predict = model_predictor(qmodel, model.sr_info)
    payload = {"cell": asdict(cell), "records": [r.to_dict() for r in records], "hardware": hardware()}
    if cell.crop is not None:
        payload["crop"] = crop_payload(predict, datasets, cell.crop, with_hr=cell.method == "fp32")
    return payload


def cell_from_dict(d: dict) -> Cell:
    crop = d.get("crop") and CropEntry(**{**d["crop"], "box": tuple(d["crop"]["box"])})
    return Cell(**{**d, "model": ModelEntry(**d["model"]), "calib": CalibEntry(**d["calib"]), "datasets": tuple(d["datasets"]),
                   "crop": crop or None})


def _run_cell_json(cell_dict: dict) -> dict:
    """Process/Ray entry point: plain dicts in and out. A cell that raises becomes an error payload (cached like a
    result, retried with ``retry_failed``) so one broken method does not stop a long sweep."""
    start = time.perf_counter()
    try:
        payload = run_cell(cell_from_dict(cell_dict))
    except Exception as err:  # noqa: BLE001 - the sweep boundary: record any failure of a cell
        payload = {"cell": cell_dict, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(), "hardware": hardware()}
    return {**payload, "cell_seconds": time.perf_counter() - start}


def payload_key(payload: dict) -> str:
    """The cache key of the cell a payload belongs to."""
    return cell_from_dict(payload["cell"]).key()


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
        cpus = max(1, min(THREADS, int(ray.cluster_resources().get("CPU", 1))))  # a 1-CPU instance still runs cells
        remote = ray.remote(num_cpus=cpus)(_run_cell_json)
        pending = [remote.remote(c) for c in cells]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])

    return execute


def pending(cells: list[Cell], cache_dir: Path, retry_failed: bool = False) -> list[Cell]:
    """The cells ``cache_dir`` holds no result for (and, with ``retry_failed``, those cached as failed)."""

    def cached(cell: Cell) -> bool:
        path = cache_dir / f"{cell.key()}.json"
        if not path.exists():
            return False
        try:
            payload = read_checked_json(path, "cached cell")
        except ArtifactError as err:
            print(f"srquant: {err}; running the cell again", file=sys.stderr)
            return False
        return not (retry_failed and "error" in payload)

    return [c for c in cells if not cached(c)]


def run_cells(cells: list[Cell], cache_dir: Path, executor: Callable[[list[dict]], Iterable[dict]], progress: bool = True,
              retry_failed: bool = False) -> list[dict]:
    """Run the cells missing from ``cache_dir`` (one JSON per cell, written atomically as each finishes) and return
    all payloads in cell order. Failed cells are cached too (with their error); ``retry_failed`` runs them again."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    todo = pending(cells, cache_dir, retry_failed)
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc="cells", disable=not progress)
    for payload in executor([asdict(c) for c in todo]):
        key = payload_key(payload)
        write_text_atomic(cache_dir / f"{key}.json", checked_json(payload, indent=1))
        bar.set_postfix_str(("FAILED " if "error" in payload else "") + key.rsplit("-", 1)[0])
        bar.update()
    bar.close()
    return [read_checked_json(cache_dir / f"{c.key()}.json", "cached cell") for c in cells]
