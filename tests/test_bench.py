"""Sweeps on the embedded ABPN x4 and scikit-image photos: caching, resume after a kill, identical tables."""
import dataclasses
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


def write_tiny_set(folder) -> str:
    """Two 64x64 crops of a scikit-image photo (0.png, 1.png): a fast benchmark folder."""
    import numpy as np
    from PIL import Image

    from srquant.data.benchmark import demo_image_dir
    from srquant.data.images import read_image

    img = read_image(demo_image_dir() / "astronaut.png")
    folder.mkdir(parents=True, exist_ok=True)
    for i, (y, x) in enumerate([(100, 200), (300, 120)]):
        Image.fromarray(np.ascontiguousarray(img[y : y + 64, x : x + 64])).save(folder / f"{i}.png")
    return str(folder)


@pytest.fixture
def tiny_set(tmp_path):
    return write_tiny_set(tmp_path / "tiny")


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


def test_variants_labels_options_bits_and_keys():
    cfg = SweepConfig.from_dict({**SWEEP, "options": {"mse": {"grid": 20}}, "methods": [
        "mse",
        {"label": "mse-g10", "method": "mse", "options": {"grid": 10}},
        {"label": "mse-8bit", "method": "mse", "bits": [8], "scope": "all"},
    ]})
    assert cfg.labels == ["mse", "mse-g10", "mse-8bit"]
    cells = expand(cfg)
    # a variant's options override options[method]; its own bits replace the sweep's
    assert [(c.name, c.w_bits, c.options) for c in cells[2:]] == [
        ("mse", 8, {"grid": 20}), ("mse", 4, {"grid": 20}), ("mse-g10", 8, {"grid": 10}), ("mse-g10", 4, {"grid": 10}),
        ("mse-8bit", 8, {"grid": 20}),
    ]
    assert [c.scope for c in cells] == ["body"] * 6 + ["all"]  # a variant's scope replaces the sweep's
    assert cells[5].key().startswith("abpn_x4-mse-g10-w4a4-") and cells[5].method == "mse"
    # the label is part of the identity: same method, options and bits under another label is another cell
    assert cells[2].key() != cells[6].key() and cells[2].options == cells[6].options
    # plain method names keep the cache keys they had before variants existed (old caches stay valid)
    plain = SweepConfig.from_dict({"name": "t", "models": [{"name": "abpn", "scale": 4}], "methods": ["minmax"], "bits": [4],
                                   "calib": {"n": 2, "patch": 16}})
    assert [c.key() for c in expand(plain)] == [
        "abpn_x4-fp32-fp-9d7823ae10ce2ee1", "abpn_x4-bicubic-fp-805543ea6de92ec6", "abpn_x4-minmax-w4a4-c069e45b523713b6"]


def test_variant_calib_replaces_the_sweeps_fields_for_that_variant_only():
    base = SweepConfig.from_dict({**SWEEP, "methods": ["mse"]})
    cfg = SweepConfig.from_dict({**SWEEP, "methods": ["mse", {"label": "mse-128", "method": "mse", "calib": {"n": 128}}]})
    cells = {(c.name, c.w_bits): c for c in expand(cfg)}
    assert cells["mse-128", 4].calib == dataclasses.replace(cfg.calib, n=128)
    assert cells["mse", 4].calib == cfg.calib
    assert {c.key() for c in expand(base)} <= {c.key() for c in expand(cfg)}  # other cells keep their keys


def test_model_options_apply_to_that_model_only_and_keep_other_keys():
    two = [{"name": "abpn", "scale": 4}, {"name": "espcn", "scale": 3}]
    base = SweepConfig.from_dict({**SWEEP, "models": two, "options": {"mse": {"grid": 20}},
                                  "methods": ["mse", {"label": "mse-g10", "method": "mse", "options": {"grid": 10}}]})
    own = SweepConfig.from_dict({**SWEEP, "options": {"mse": {"grid": 20}},
                                 "models": [two[0], {**two[1], "options": {"mse": {"grid": 30, "batch_size": 4}}}],
                                 "methods": ["mse", {"label": "mse-g10", "method": "mse", "options": {"grid": 10}}]})
    cells = {(c.model.label, c.name, c.w_bits): c for c in expand(own)}
    # the model's options override the sweep's and the variant's, for every variant of that method
    assert cells["espcn_x3", "mse", 4].options == {"grid": 30, "batch_size": 4}
    assert cells["espcn_x3", "mse-g10", 4].options == {"grid": 30, "batch_size": 4}
    assert cells["abpn_x4", "mse-g10", 4].options == {"grid": 10}
    before = {c.key() for c in expand(base)}
    after = {c.key() for c in expand(own)}
    assert {k for k in before if k.startswith("abpn") or "-fp-" in k} <= after  # other models and references keep keys
    assert not {k for k in after - before if not k.startswith("espcn_x3-mse")}
    with pytest.raises(ValueError, match="unknown or sweep-controlled options"):
        SweepConfig.from_dict({**SWEEP, "models": [{**two[0], "options": {"mse": {"gird": 1}}}]})


@pytest.mark.parametrize("methods, match", [
    (["mse", {"label": "mse", "method": "mse", "options": {"grid": 9}}], "labels must be unique"),
    ([{"label": "a b", "method": "mse"}], "bad variant label"),
    ([{"label": "fp32", "method": "mse"}], "bad variant label"),
    (["no-such-method"], "unknown method"),
    ([{"label": "x", "method": "mse", "options": {"gird": 9}}], r"unknown or sweep-controlled options \['gird'\]"),
    ([{"label": "x", "method": "mse", "options": {"w_bits": 4}}], "sweep-controlled"),
    ([{"label": "x", "method": "mse", "bogus": 1}], "a method variant is"),
    ([{"label": "x", "method": "mse", "bits": [[8, 8, 8]]}], "bits items"),
    ([3], "a method name or a mapping"),
    ([{"label": "x", "method": "mse", "scope": "tail"}], "scope must be one of"),
    ([{"label": "x", "method": "mse", "calib": {"m": 4}}], r"calib of x: unknown option\(s\) \['m'\]"),
])
def test_variant_validation(methods, match):
    with pytest.raises(ValueError, match=match):
        SweepConfig.from_dict({**SWEEP, "methods": methods})


def test_crop_validation():
    crop = {"dataset": "Set5", "image": "bird", "box": [0, 0, 32, 32]}
    assert SweepConfig.from_dict({**SWEEP, "datasets": ["x/Set5"], "crop": crop}).crop.box == (0, 0, 32, 32)
    with pytest.raises(ValueError, match="crop needs a dataset among"):
        SweepConfig.from_dict({**SWEEP, "datasets": ["x/Set14"], "crop": crop})
    with pytest.raises(ValueError, match="box"):
        SweepConfig.from_dict({**SWEEP, "datasets": ["x/Set5"], "crop": {**crop, "box": [0, 0, 0, 32]}})


def test_subset_keeps_cell_keys_and_rejects_unknown_labels():
    full = SweepConfig.from_dict({**SWEEP, "models": [{"name": "abpn", "scale": 4}, {"name": "espcn", "scale": 3}]})
    part = full.subset(models=["espcn_x3"], methods=["mse"])
    assert [m.label for m in part.models] == ["espcn_x3"] and part.labels == ["mse"]
    keys = {c.key() for c in expand(part)}
    assert len(keys) == 4 and keys <= {c.key() for c in expand(full)}  # fp32, bicubic, mse at two widths
    assert full.subset() == full
    four = full.subset(w_bits=[4])
    assert four.bits == [(4, 4)] and {c.key() for c in expand(four)} < {c.key() for c in expand(full)}
    with pytest.raises(ValueError, match="w_bits"):
        full.subset(w_bits=[6])
    own = SweepConfig.from_dict({**SWEEP, "methods": ["minmax", {"label": "mse8", "method": "mse", "bits": [8]}]})
    assert own.subset(w_bits=[4]).labels == ["minmax"] and own.subset(w_bits=[8]).labels == ["minmax", "mse8"]
    with pytest.raises(ValueError, match="rfdn_x4"):
        full.subset(models=["rfdn_x4"])
    with pytest.raises(ValueError, match="brecq"):
        full.subset(methods=["brecq"])


def test_failed_cell_is_cached_reported_and_retried(tmp_path, tiny_set):
    cfg = SweepConfig.from_dict({**SWEEP, "methods": [{"label": "ort8", "method": "ort-minmax"}], "bits": [4],
                                 "datasets": [tiny_set], "bicubic": False})
    records = run_sweep(cfg, tmp_path, inline_executor(), progress=False)  # ONNX Runtime's quantizer is 8-bit only
    assert [r.method for r in records] == ["fp32"]
    failed = json.loads((tmp_path / "sweep.json").read_text())["failed"]
    assert list(failed) == [expand(cfg)[1].key()] and "8 bits only" in failed[expand(cfg)[1].key()]
    assert "## Failed cells" in (tmp_path / "tables.md").read_text()
    ran = []

    def counting(cells):
        ran.extend(c["method"] for c in cells)
        yield from inline_executor()(cells)

    run_sweep(cfg, tmp_path, counting, progress=False)
    assert ran == []  # a failure is cached like a result ...
    run_sweep(cfg, tmp_path, counting, progress=False, retry_failed=True)
    assert ran == ["ort-minmax"]  # ... and only it runs again on request


def test_ray_gives_results_identical_to_inline(tmp_path, tiny_set, monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    from srquant.bench import ray_executor

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    cfg = SweepConfig.from_dict({**SWEEP, "methods": ["minmax"], "bits": [4], "datasets": [tiny_set], "bicubic": False})
    a = run_sweep(cfg, tmp_path / "a", inline_executor(), progress=False)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 2**20)
    try:
        b = run_sweep(cfg, tmp_path / "b", ray_executor(), progress=False)
    finally:
        ray.shutdown()
    assert [(r.method, r.psnr_y, r.ssim_y, r.images) for r in a] == [(r.method, r.psnr_y, r.ssim_y, r.images) for r in b]
    assert len(b) == 2


KILLABLE = """
import json, sys, time
from srquant.bench import SweepConfig, run_sweep
from srquant.bench.runner import _run_cell_json

def first_cell_then_hang(cells):
    yield _run_cell_json(cells[0])
    time.sleep(300)  # the parent kills the process here, while the second cell "runs"

run_sweep(SweepConfig.from_dict(json.loads(sys.argv[1])), sys.argv[2], first_cell_then_hang, progress=False)
"""


def test_sweep_killed_in_a_subprocess_resumes(tmp_path, tiny_set):
    import subprocess
    import sys
    import time

    raw = {**SWEEP, "methods": ["minmax"], "bits": [4], "datasets": [tiny_set]}
    cfg = SweepConfig.from_dict(raw)
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, json.dumps(raw), str(tmp_path / "a")])
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "a" / "cells").glob("*.json")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    cached = {p: (p.stat().st_mtime_ns, p.read_text()) for p in (tmp_path / "a" / "cells").glob("*.json")}
    assert len(cached) == 1 and not (tmp_path / "a" / "tables.md").exists()  # killed mid-sweep, one cell done
    ran = []

    def counting(cells):
        ran.extend(cells)
        yield from inline_executor()(cells)

    run_sweep(cfg, tmp_path / "a", counting, progress=False)
    assert len(ran) == len(expand(cfg)) - 1  # the finished cell was not recomputed ...
    assert {p: (p.stat().st_mtime_ns, p.read_text()) for p in cached} == cached  # ... nor rewritten
    run_sweep(cfg, tmp_path / "b", inline_executor(), progress=False)
    assert _without_times((tmp_path / "a" / "tables.md").read_text()) == _without_times((tmp_path / "b" / "tables.md").read_text())


def test_committed_sweep_configs_load_and_share_cells():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[1] / "benchmarks" / "configs").glob("*.yaml"))
    loaded = {p.stem: SweepConfig.from_file(p) for p in configs}  # method and option names are checked on load
    quick, full = loaded["benchmarks"], loaded["benchmarks_all_models"]
    assert quick.bits == [(8, 8), (6, 6), (4, 4), (3, 3)] and quick.name == full.name
    assert {c.key() for c in expand(quick)} <= {c.key() for c in expand(full)}  # the full sweep reuses the quick one's cache


def test_wrong_crop_fails_before_any_cell_runs(tmp_path, tiny_set):
    crop = {"dataset": "tiny", "image": "0", "box": [0, 0, 32, 32]}
    with pytest.raises(ValueError, match=r"crop box \[40, 0, 32, 32\] exceeds 0.png at x4 \(64x64\)"):
        run_sweep(SweepConfig.from_dict({**SWEEP, "datasets": [tiny_set], "crop": {**crop, "box": [40, 0, 32, 32]}}), tmp_path, progress=False)
    with pytest.raises(ValueError, match="crop image '7' is not in"):
        run_sweep(SweepConfig.from_dict({**SWEEP, "datasets": [tiny_set], "crop": {**crop, "image": "7"}}), tmp_path, progress=False)
    assert not (tmp_path / "cells").exists()
