"""Sweeps on the embedded ABPN x4 and scikit-image photos: caching, resume after a kill, identical tables."""
import json

import pytest

from srquant.bench import SweepConfig, expand, inline_executor, local_executor, run_sweep
from srquant.bench.runner import _run_cell_json

SWEEP = {
    "name": "t",
    "models": [{"name": "abpn", "scale": 4}],
    "methods": ["minmax", "mse"],
    "bits": [[8, 8], 4],
    "calib": {"n": 2, "patch": 16},
}


@pytest.fixture
def tiny_set(tmp_path):
    """Two 64x64 crops of a scikit-image photo: a fast benchmark folder."""
    import numpy as np
    from PIL import Image

    from srquant.data.benchmark import demo_image_dir
    from srquant.data.images import read_image

    img = read_image(demo_image_dir() / "astronaut.png")
    for i, (y, x) in enumerate([(100, 200), (300, 120)]):
        (tmp_path / "tiny").mkdir(exist_ok=True)
        Image.fromarray(np.ascontiguousarray(img[y : y + 64, x : x + 64])).save(tmp_path / "tiny" / f"{i}.png")
    return str(tmp_path / "tiny")


def _without_times(table: str) -> list[str]:
    return [line.rsplit("|", 2)[0] for line in table.splitlines()]


def test_expand_and_validation():
    cfg = SweepConfig.from_dict(SWEEP)
    cells = expand(cfg)
    assert [c.method for c in cells[:2]] == ["fp32", "bicubic"] and len(cells) == 2 + 2 * 2
    assert cfg.bits == [(8, 8), (4, 4)] and len({c.key() for c in cells}) == len(cells)
    with pytest.raises(ValueError, match="unknown sweep keys"):
        SweepConfig.from_dict({**SWEEP, "bogus": 1})
    with pytest.raises(ValueError, match="needs models"):
        SweepConfig.from_dict({"name": "x", "models": [], "methods": ["minmax"], "bits": [8]})


def test_killed_sweep_resumes_without_losing_cells(tmp_path, tiny_set):
    cfg = SweepConfig.from_dict({**SWEEP, "datasets": [tiny_set]})

    def dies_after_three(cells):
        for i, c in enumerate(cells):
            if i == 3:
                raise KeyboardInterrupt("killed")
            yield _run_cell_json(c)

    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, tmp_path / "a", dies_after_three, progress=False)
    cached = sorted(p.name for p in (tmp_path / "a" / "cells").glob("*.json"))
    assert len(cached) == 3

    ran = []

    def counting(cells):
        ran.extend(cells)
        yield from inline_executor()(cells)

    run_sweep(cfg, tmp_path / "a", counting, progress=False)
    assert len(ran) == len(expand(cfg)) - 3  # finished cells were not redone
    run_sweep(cfg, tmp_path / "b", inline_executor(), progress=False)
    # identical tables apart from the wall-clock calibration time of the cells that ran again
    assert _without_times((tmp_path / "a" / "tables.md").read_text()) == _without_times((tmp_path / "b" / "tables.md").read_text())
    ran.clear()
    run_sweep(cfg, tmp_path / "a", counting, progress=False)
    assert ran == []  # a full cache reruns nothing
    table = (tmp_path / "a" / "tables.md").read_text()
    assert "| W4A4 | minmax |" in table and "| - | bicubic |" in table
    payload = json.loads((tmp_path / "a" / "results.json").read_text())
    assert {r["method"] for r in payload["results"]} == {"fp32", "bicubic", "minmax", "mse"}
    assert (tmp_path / "a" / "results.csv").read_text().startswith("model,scale,method")


def test_local_processes_give_identical_results(tmp_path, tiny_set):
    cfg = SweepConfig.from_dict({**SWEEP, "methods": ["minmax"], "bits": [4], "datasets": [tiny_set]})
    a = run_sweep(cfg, tmp_path / "a", inline_executor(), progress=False)
    b = run_sweep(cfg, tmp_path / "b", local_executor(workers=1), progress=False)
    assert [(r.method, r.psnr_y, r.ssim_y) for r in a] == [(r.method, r.psnr_y, r.ssim_y) for r in b]
