import math

import numpy as np
import pytest

from srquant.evaluate import bicubic_predictor, evaluate
from srquant.data import BenchmarkFolder
from srquant.metrics import psnr, ssim
from srquant.models.releases import BICUBIC_PSNR

from conftest import need_shared


def test_psnr_hand_computed():
    hr = np.full((10, 10, 3), 100, np.uint8)
    sr = hr + 1
    assert psnr(sr, hr, channel="rgb") == pytest.approx(10 * math.log10(255**2))
    # every channel +1 moves Y by (65.481 + 128.553 + 24.966) / 255 = 219 / 255
    assert psnr(sr, hr, channel="y") == pytest.approx(10 * math.log10(255**2 / (219 / 255) ** 2))
    assert psnr(hr, hr) == math.inf


def test_psnr_shave_ignores_border():
    hr = np.full((10, 10, 3), 50, np.uint8)
    sr = hr.copy()
    sr[:2] = 0
    assert psnr(sr, hr, shave=2) == math.inf and psnr(sr, hr, shave=1) < 30


def test_ssim_hand_computed_constant_images():
    a, b = np.full((20, 20), 100.0), np.full((20, 20), 110.0)
    c1 = (0.01 * 255) ** 2
    expect = (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)
    assert ssim(a, b) == pytest.approx(expect, rel=1e-9)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert ssim(x, x) == pytest.approx(1.0) and ssim(x, x, channel="rgb") == pytest.approx(1.0)


def test_metric_errors():
    with pytest.raises(ValueError):
        psnr(np.zeros((4, 4, 3)), np.zeros((5, 4, 3)))
    with pytest.raises(ValueError):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)), channel="lab")



@pytest.mark.parametrize("dataset,scale", list(BICUBIC_PSNR))
def test_bicubic_baseline_matches_published(dataset, scale):
    root = need_shared("data", "benchmarks", dataset)
    rec = evaluate(bicubic_predictor(scale), [BenchmarkFolder(root, scale)], model="bicubic", gray="native", progress=False)[0]
    assert rec.psnr_y == pytest.approx(BICUBIC_PSNR[dataset, scale], abs=0.05)
