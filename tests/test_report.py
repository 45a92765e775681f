"""Plots, the self-contained HTML report (rendered in headless Chromium) and BENCHMARKS.md generation."""
import base64
import io
import dataclasses
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from srquant.cli import main
from srquant.report.plots import (
    activation_distribution_figure, crop_grid_figure, layer_inputs, psnr_by_bits, psnr_vs_bits_figure, save_figure,
    sensitivity_figure,
)
from srquant.results import ResultRecord
from test_bench import write_tiny_set

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _record(dataset, method, bits, psnr):
    w = a = bits
    return ResultRecord("m_x4", dataset, 4, method, w, a, psnr, 0.9, 1, 0.1)


RECORDS = [
    _record("A", "fp32", None, 30.0), _record("B", "fp32", None, 28.0),
    _record("A", "minmax", 4, 27.0), _record("B", "minmax", 4, 25.0), _record("A", "minmax", 8, 29.5),
    _record("A", "mse", 4, 27.5), _record("B", "mse", 4, 26.5),
]


def _png_size(path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_MAGIC
    return Image.open(path).size


def test_psnr_by_bits_and_its_plot(tmp_path):
    assert psnr_by_bits(RECORDS, "m_x4") == {"fp32": {(0, 0): 29.0}, "minmax": {(4, 4): 26.0, (8, 8): 29.5},
                                             "mse": {(4, 4): 27.0}}
    assert psnr_by_bits(RECORDS, "m_x4", "B") == {"fp32": {(0, 0): 28.0}, "minmax": {(4, 4): 25.0}, "mse": {(4, 4): 26.5}}
    fig = psnr_vs_bits_figure(RECORDS, "m_x4", method_order=["mse", "minmax"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["W4A4", "W8A8"]
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines}
    assert lines["minmax"] == ([0, 1], [26.0, 29.5]) and lines["mse"] == ([0], [27.0])
    assert lines["fp32 29.00"][1] == [29.0, 29.0]
    assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == ["mse", "minmax"]  # the sweep's order
    assert _png_size(save_figure(fig, tmp_path / "p" / "psnr.png")) == (700, 450)


def test_sensitivity_bars(tmp_path):
    fig = sensitivity_figure({"head": 0.1, "body.0": 1.5, "tail": 0.4}, title="IMDN x4 W4")
    ax = fig.axes[0]
    assert [round(p.get_width(), 6) for p in ax.patches] == [0.1, 1.5, 0.4]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["head", "body.0", "tail"]
    assert _png_size(save_figure(fig, tmp_path / "s.png"))[0] == 700


def test_layer_inputs_hook_and_activation_distributions(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1)).eval()
    x = torch.randn(5, 3, 6, 6)
    acts = layer_inputs(model, x, "2", batch_size=2)  # three forward batches, concatenated
    with torch.no_grad():
        assert acts.shape == (5, 8, 6, 6) and torch.allclose(acts, model[1](model[0](x)), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="no module named 'nope'"):
        layer_inputs(model, x, "nope")

    # hand-made activations: sample s, channel c holds the values s + c * [-1, ..., 1]
    ramp = torch.linspace(-1, 1, 16).reshape(4, 4)
    acts = torch.stack([torch.stack([s + c * ramp for c in range(6)]) for s in range(4)])
    fig = activation_distribution_figure(acts, sample=2, channel=3, channels=6, samples=4)
    left, right = fig.axes
    def top(ax):  # the upper whisker reaches the maximum
        return max(max(line.get_ydata()) for line in ax.lines)

    assert top(left) == pytest.approx(2 + 5) and top(right) == pytest.approx(3 + 3)
    assert len(left.get_xticklabels()) == 6 and len(right.get_xticklabels()) == 4
    assert left.get_title() == "sample_2, per channel" and right.get_title() == "channel_3, per sample"
    assert _png_size(save_figure(fig, tmp_path / "a.png")) == (1100, 400)
    with pytest.raises(ValueError, match="out of range"):
        activation_distribution_figure(acts, channel=6)


def test_crop_grid_shows_each_crop_unchanged(tmp_path):
    rng = np.random.default_rng(0)
    crops = [(f"c{i}", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for i in range(3)] + [("y", np.full((8, 8), 7, np.uint8))]
    fig = crop_grid_figure(crops, ncols=2, title="grid")
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in shown] == ["c0", "c1", "c2", "y"]
    assert all(np.array_equal(ax.images[0].get_array(), img) for ax, (_, img) in zip(shown, crops))
    assert _png_size(save_figure(fig, tmp_path / "g.png")) == (440, 530)
    with pytest.raises(ValueError, match="no crops"):
        crop_grid_figure([])


SWEEP_YAML = """
name: report-test
models: [{{name: abpn, scale: 4}}]
methods:
  - minmax
  - {{label: mse-g10, method: mse, options: {{grid: 10}}}}
bits: [4]
datasets: [{tiny}]
calib: {{n: 2, patch: 16}}
crop: {{dataset: tiny, image: "1", box: [8, 16, 40, 32]}}
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A finished 4-cell sweep (FP32, bicubic, two W4A4 variants) with crops, run once for the module."""
    root = tmp_path_factory.mktemp("sweep")
    config = root / "sweep.yaml"
    config.write_text(SWEEP_YAML.format(tiny=write_tiny_set(root / "tiny")))
    assert main(["bench", str(config), "--out", str(root / "run"), "--executor", "inline", "--quiet"]) == 0
    return root


def _data_pngs(html: str) -> list[bytes]:
    srcs = re.findall(r'src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    return [base64.b64decode(s.split(",", 1)[1]) for s in srcs]


def test_html_report_is_self_contained(sweep):
    out = sweep / "report.html"
    assert main(["report", str(sweep / "run"), "--out", str(out)]) == 0
    html = out.read_text()
    assert not re.search(r"https?://|<link|<script|@import|url\(", html)
    pngs = _data_pngs(html)
    assert len(pngs) == 1 + 5  # the PSNR plot; HR, bicubic, FP32, minmax, mse-g10 crops
    crops = [Image.open(io.BytesIO(p)) for p in pngs[1:]]
    assert all(c.size == (32, 40) for c in crops)  # box [top, left, height, width] = [8, 16, 40, 32]
    from srquant.results import read_results

    records = read_results(sweep / "run" / "results.json")
    assert {r.method for r in records} == {"fp32", "bicubic", "minmax", "mse-g10"}
    for r in records:
        assert f"{r.psnr_y:.3f} / {r.ssim_y:.4f}" in html
    hr = np.asarray(Image.open(sweep / "tiny" / "1.png"))[8:48, 16:48]
    assert np.array_equal(np.asarray(crops[0]), hr)  # the HR crop is the box of the test image


def test_report_renders_in_headless_chromium(sweep, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); .ci/run installs it")
    out = sweep / "chromium.html"
    main(["report", str(sweep / "run"), "--out", str(out)])
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600"]
    shot = tmp_path / "shot.png"
    run = subprocess.run(flags + ["--enable-logging=stderr", "--v=0", f"--screenshot={shot}", out.as_uri()],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == []  # the page logs nothing (it has no scripts; a broken page would)
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert img.shape == (1600, 1200)
    assert img.std() > 10 and (img < 128).mean() > 0.01  # not blank: text, tables, plot and crops drawn
    dom = subprocess.run(flags + ["--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=180).stdout
    assert dom.count('<table class="results">') == 1 and dom.count("<img") == 6 and "mse-g10" in dom


def test_benchmarks_markdown_from_the_cache(sweep):
    md = sweep / "docs" / "BENCH.md"
    config = sweep / "sweep.yaml"
    assert main(["bench", str(config), "--out", str(sweep / "run"), "--executor", "inline", "--quiet", "--markdown", str(md)]) == 0
    text = md.read_text()
    assert f"`srquant bench {config} --out {sweep / 'run'} --executor inline --markdown {md}`" in text
    assert "- Hardware: " in text and "2 threads per cell" in text and "minmax; mse-g10 (mse, grid=10)." in text
    assert "4 cells computed" not in text and "0 cells computed, 4 from the cache" in text
    assert "| W4A4 | mse-g10 |" in text and "| - | bicubic |" in text
    links = re.findall(r"\]\(([^)]+\.png)\)", text)
    assert links == ["benchmarks/plots/abpn_x4_psnr.png", "benchmarks/plots/abpn_x4_W4A4_crops.png"]
    assert all((md.parent / link).read_bytes()[:8] == PNG_MAGIC for link in links)


def test_results_table_labels_mixed_precision_by_its_budgets():
    from srquant.results import markdown_table

    mixed = dataclasses.replace(_record("A", "best", 4, 28.0), config={"avg_bits": None, "w_avg_bits": 4.0,
                                                                       "a_avg_bits": 6.0})
    table = markdown_table([_record("A", "fp32", None, 30.0), _record("A", "best", 4, 27.0), mixed])
    assert "| fp32 | FP32 |" in table and "| best | W4A4 |" in table and "| best | mixed avg W4A6 |" in table
