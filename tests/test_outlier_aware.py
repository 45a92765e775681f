"""Outlier-aware PTQ: the dual-region quantizer on hand-made inputs, the sensitivity-aware finetuning pieces, the
method end to end on a tiny net (save/load), cyclic updates in the tuning loop, and the analysis tools."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

import srquant
from srquant.analysis import (
    clip_abs_top, colour_shift, outlier_study, sensitivity_scan, single_layer_overrides, write_outlier_study,
    write_sensitivity,
)
from srquant.data.benchmark import BenchmarkFolder
from srquant.data.images import write_image
from srquant.methods import MSEConfig, OutlierAwareConfig
from srquant.methods.outlier_aware import feature_stds, normalized_distance, sensitivity_weights
from srquant.quant.dual_region import (
    DualRegionQuantizer, EMAObserver, abs_percentile, dual_region_mse_range, dual_region_quant, split_levels,
)
from srquant.quant.walk import quant_layers
from srquant.quant.tuning import TuningConfig, reconstruct

from conftest import tiny_calib, tiny_model

T = torch.tensor


def _q(x, l_a, u_a, bp, bits=4, split="summary", one_sided=False):
    return dual_region_quant(x, T(l_a), T(u_a), T(bp), *split_levels(bits, split, one_sided), one_sided=one_sided)


# --- the quantizer ------------------------------------------------------------------------------------------------
def test_split_levels():
    assert split_levels(4) == (7, 3) and split_levels(3) == (3, 1) and split_levels(8) == (127, 63)
    assert split_levels(4, "full") == (8, 4) and split_levels(2, "full") == (2, 1)
    assert split_levels(4, "summary", one_sided=True) == (8, 7) and split_levels(4, "full", one_sided=True) == (8, 8)
    with pytest.raises(ValueError, match="no outlier levels"):
        split_levels(2, "summary")
    with pytest.raises(ValueError, match="level_split"):
        split_levels(4, "half")


def test_summary_grid_levels_and_rounding():
    # bp 1.5 -> dense step 0.5 on [-1.5, 1.5]; (1.5, 4.5] in steps of 1; [-3, -1.5) in steps of 0.5
    x = torch.linspace(-10, 10, 20001)
    levels = _q(x, -3.0, 4.5, 1.5).unique()
    expected = [-3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.5, 3.5, 4.5]
    assert len(levels) == 13 and torch.allclose(levels, T(expected))
    inputs = T([0.1, 0.3, 0.74, 0.76, 1.4, 1.9, 2.1, 3.2, 9.0, -1.7, -1.8, -2.9, -9.0])
    out = T([0.0, 0.5, 0.5, 1.0, 1.5, 1.5, 2.5, 3.5, 4.5, -1.5, -2.0, -3.0, -3.0])
    assert torch.allclose(_q(inputs, -3.0, 4.5, 1.5), out)


def test_full_and_one_sided_grids():
    x = torch.linspace(-10, 10, 20001)
    full = _q(x, -4.0, 7.0, 1.4, split="full").unique()  # dense 8 levels step 0.4, sides 4 levels each
    assert len(full) == 16 and 0.0 not in full.tolist()
    assert torch.allclose(full[:5], T([-4.0, -3.35, -2.7, -2.05, -1.4]))
    assert torch.allclose(full[-4:], T([2.8, 4.2, 5.6, 7.0]))
    one = _q(x, -5.0, 8.0, 0.7, one_sided=True).unique()  # [0, 0.7] in 8 levels (step 0.1), 7 levels to 8.0
    assert len(one) == 15 and torch.allclose(one[:8], T([0.1 * k for k in range(8)]), atol=1e-6)
    assert torch.allclose(one[8:], T([0.7 + (8.0 - 0.7) / 7 * k for k in range(1, 8)]))


def test_empty_outlier_side_and_gradients():
    # u_a below bp: the positive outlier side is empty and values clamp at bp
    assert float(_q(T([5.0]), -3.0, 1.0, 1.5)) == 1.5
    x = torch.randn(4000, generator=torch.Generator().manual_seed(0)) * 2
    x.requires_grad_(True)
    l_a, u_a, bp = T(-3.0, requires_grad=True), T(3.5, requires_grad=True), T(1.0, requires_grad=True)
    out = dual_region_quant(x, l_a, u_a, bp, 7, 3)
    target = torch.randn(4000, generator=torch.Generator().manual_seed(1))
    ((out - target) ** 2).sum().backward()
    for p in (l_a, u_a, bp):
        assert p.grad is not None and torch.isfinite(p.grad) and float(p.grad) != 0.0
    inside = (x > -3.0) & (x < 3.5)  # straight-through inside the clipping range, zero outside
    grad_out = 2 * (out - target).detach()
    assert torch.allclose(x.grad[inside], grad_out[inside]) and bool((x.grad[~inside] == 0).all())


def test_abs_percentile_and_ema_observer():
    assert float(abs_percentile(torch.arange(1.0, 101.0), 99)) == 99.0
    assert float(abs_percentile(-torch.arange(1.0, 101.0), 50)) == 50.0
    obs = EMAObserver(beta=0.9, percentile=99)
    obs.update(torch.arange(1.0, 101.0))  # min 1, max 100, p99 99
    obs.update(torch.arange(-200.0, 0.0))  # min -200, max -1, p99 |x| 198
    assert math.isclose(float(obs.ema["bp"]), 0.9 * 99 + 0.1 * 198, rel_tol=1e-6)
    assert math.isclose(float(obs.ema["min"]), 0.9 * 1 - 0.1 * 200, rel_tol=1e-6)
    assert math.isclose(float(obs.ema["max"]), 0.9 * 100 - 0.1 * 1, rel_tol=1e-6)
    assert float(obs.lo.min()) == -200.0 and float(obs.hi.max()) == 100.0


def test_mse_range_beats_percentile_init_on_heavy_tails():
    g = torch.Generator().manual_seed(0)
    values = torch.cat([torch.randn(20000, generator=g), 30 * torch.randn(100, generator=g)])
    def err(l_a, u_a, bp):
        return float(((_q(values, float(l_a), float(u_a), float(bp)) - values) ** 2).mean())

    assert err(*dual_region_mse_range(values, 4)) < err(values.min(), values.max(), abs_percentile(values, 99))


def test_quantizer_modes_and_state_dict():
    q = DualRegionQuantizer(4)
    x = torch.linspace(-5, 5, 101)
    assert torch.equal(q(x), x)  # "off" until calibrated
    q.set_range(-3.0, 4.5, 1.5)
    assert q.mode == "quant" and len(q(x).unique()) <= 13
    q.set_range(-3.0, 4.5, 0.7, one_sided=True)
    r = DualRegionQuantizer(4)
    r.load_state_dict(q.state_dict())
    assert r.mode == "quant" and bool(r.one_sided) and torch.equal(r(x), q(x)) and float(r(T([-1.0]))) == 0.0
    assert set(q.range_params()) == {"bounds", "breakpoint"}


# --- sensitivity-aware finetuning pieces --------------------------------------------------------------------------
def test_sensitivity_weights_and_feature_distance():
    s = sensitivity_weights(T([1.0, 2.0, 3.0]))
    z = math.e + math.e**2 + math.e**3
    assert torch.allclose(s, T([math.e / z, math.e**2 / z, math.e**3 / z]))
    assert torch.allclose(sensitivity_weights(T([1.0, 5.0]), "uniform"), T([0.5, 0.5]))
    d = normalized_distance(T([[3.0, 4.0]]), T([[4.0, 3.0]]))  # |(0.6, 0.8) - (0.8, 0.6)| = sqrt(0.08)
    assert math.isclose(float(d), math.sqrt(0.08), rel_tol=1e-6)
    assert float(normalized_distance(T([[1.0, 2.0]]), T([[2.0, 4.0]]))) < 1e-7  # scale-invariant


def test_feature_stds_hand_made():
    conv = nn.Conv2d(1, 1, 1, bias=False)
    nn.init.constant_(conv.weight, 2.0)
    model = nn.Sequential(conv)
    x = T([[[[0.0, 0.0], [1.0, 1.0]]], [[[0.0, 1.0], [2.0, 3.0]]]])  # outputs (0,0,2,2) and (0,2,4,6)
    std = torch.tensor([0.0, 0, 2, 2]).std().item(), torch.tensor([0.0, 2, 4, 6]).std().item()
    assert math.isclose(float(feature_stds(model, ["0"], x, 1)[0]), sum(std) / 2, rel_tol=1e-6)


# --- the method ---------------------------------------------------------------------------------------------------


FAST = dict(w_bits=4, a_bits=4, scope="all", iters=6, tune_batch_size=4, batch_size=4, progress=False)


def test_config_validation():
    for bad in (dict(level_split="half"), dict(a_granularity="channel"), dict(one_sided="auto"),
                dict(cycle=["act.scale"]), dict(lam=-1.0), dict(a_bits=2), dict(act_points="runtime"),
                dict(bp_percentile=100.0), dict(act_init="percentile"), dict(sensitivity="std"),
                dict(dual_region=False, cycle=["act.breakpoint"]), dict(tune_batch_size=0)):
        with pytest.raises(ValueError):
            OutlierAwareConfig(**bad)
    OutlierAwareConfig(a_bits=2, level_split="full")
    with pytest.raises(ValueError, match="cycle entries"):
        TuningConfig(cycle=("rounding",))


def test_method_runs_and_round_trips(tmp_path):
    model, calib = tiny_model(), tiny_calib()
    q = srquant.quantize(model, OutlierAwareConfig(**FAST), calib)
    layers = dict(quant_layers(q))
    assert len(layers) == 6 and all(isinstance(l.input_quant, DualRegionQuantizer) for l in layers.values())
    assert bool(layers["body.0.conv2"].input_quant.one_sided) and not bool(layers["body.0.conv1"].input_quant.one_sided)
    assert math.isclose(sum(q.layer_sensitivity.values()), 1.0, rel_tol=1e-5)
    start = srquant.quantize(model, OutlierAwareConfig(**{**FAST, "finetune": False}), calib)
    moved = {n: (float(layers[n].input_quant.bp) != float(l.input_quant.bp),
                 not torch.equal(layers[n].weight_quant.hi, l.weight_quant.hi)) for n, l in quant_layers(start)}
    assert any(b for b, _ in moved.values()) and any(w for _, w in moved.values())
    report = q.tuning_report[0]
    assert report.loss_after <= report.loss_before
    path = tmp_path / "oa.pt"
    srquant.save(q, path)
    r = srquant.load(path, model=tiny_model())
    assert isinstance(r.get_submodule("body.0.conv1").input_quant, DualRegionQuantizer)
    assert torch.equal(q(calib), r(calib)) and r.srquant_config == q.srquant_config
    again = srquant.quantize(model, OutlierAwareConfig(**FAST), calib)  # same seed, same numbers
    assert torch.equal(q(calib), again(calib))


def test_ablation_switches():
    model, calib = tiny_model(), tiny_calib()
    uniform = srquant.quantize(model, OutlierAwareConfig(**{**FAST, "dual_region": False, "finetune": False}), calib)
    assert not any(isinstance(l.input_quant, DualRegionQuantizer) for _, l in quant_layers(uniform))
    assert not hasattr(uniform, "tuning_report")
    vanilla = srquant.quantize(model, OutlierAwareConfig(**{**FAST, "sensitivity": "none", "act_init": "mse"}), calib)
    assert vanilla.layer_sensitivity == {} and len(vanilla.tuning_report) == 1


def test_cycle_trains_one_group_per_phase():
    model, calib = tiny_model(), tiny_calib()
    base = srquant.quantize(model, OutlierAwareConfig(**{**FAST, "finetune": False}), calib)

    def run(iters):
        q = copy.deepcopy(base)
        reconstruct(q, model, calib, TuningConfig(unit="network", learn_rounding=False, learn_act_range=True,
                                                  learn_weight_range=True, cycle=("act.bounds", "act.breakpoint"),
                                                  cycle_steps=2, iters=iters, batch_size=4, keep_best=False,
                                                  progress=False))
        return state(q)

    def state(q):
        return [(float(lay.input_quant.u_a), float(lay.input_quant.bp), lay.weight_quant.hi.clone())
                for _, lay in quant_layers(q)]

    before = state(base)
    after2, after4 = run(2), run(4)
    assert any(a[0] != b[0] for a, b in zip(after2, before))  # phase 1: bounds move ...
    assert all(a[1] == b[1] for a, b in zip(after2, before))  # ... breakpoints do not
    assert any(a[1] != b[1] for a, b in zip(after4, after2))  # phase 2: breakpoints move
    assert all(torch.equal(a[2], b[2]) for a, b in zip(after4, before))  # weight bounds are not in the cycle


def test_reconstruct_still_accepts_the_mse_baseline():
    model, calib = tiny_model(), tiny_calib()
    q = srquant.quantize(model, MSEConfig(w_bits=4, a_bits=4, scope="all", grid=8), calib)
    reports = reconstruct(q, model, calib, TuningConfig(unit="network", learn_rounding=False, learn_act_range=True,
                                                        cycle=("act.bounds",), iters=4, batch_size=4, progress=False))
    assert reports[0].loss_after <= reports[0].loss_before


# --- analysis tools -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_set")
    g = np.random.default_rng(0)
    for i in range(2):
        base = g.integers(0, 255, (6, 6, 3)).astype(np.float64)
        img = np.kron(base, np.ones((8, 8, 1))) + g.normal(0, 6, (48, 48, 3))
        write_image(root / f"img{i}.png", np.clip(img, 0, 255).astype(np.uint8))
    return BenchmarkFolder(root, 4)


def test_clip_and_colour_shift_by_hand():
    x = torch.arange(-50.0, 51.0)  # |x| 99th percentile (nearest rank of 101 values) = 50 -> nothing clipped at 1 %
    assert torch.equal(clip_abs_top(x, 1.0), x)
    assert float(clip_abs_top(x, 10.0).abs().max()) == float(abs_percentile(x, 90.0))
    ref = np.zeros((2, 2, 3), np.uint8)
    shifted = ref.copy()
    shifted[..., 2] = 255  # pure blue everywhere: dB = 255, dCb = 112, dCr = -18.214
    s = colour_shift(shifted, ref)
    assert s["dB"] == 255.0 and s["dR"] == 0.0 and math.isclose(s["dCb"], 112.0) and math.isclose(s["dCr"], -18.214)
    assert math.isclose(s["chroma_err"], math.hypot(112.0, 18.214))


def test_sensitivity_scan_writes_files(tmp_path, tiny_set):
    model = srquant.create("abpn", 4)
    calib = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert single_layer_overrides("body.2", 4) == {"*": "fp", "body.2": {"w_bits": 4, "a_bits": 4}}
    rows = sensitivity_scan(model, calib, [tiny_set], bits=4, layers=["body.0", "body.10"])
    assert [r["layer"] for r in rows] == ["body.0", "body.10"]
    assert all(math.isclose(r["drop"], r[f"{tiny_set.name} fp32"] - r[f"{tiny_set.name} psnr"]) for r in rows)
    paths = write_sensitivity(rows, tmp_path / "scan", "tiny")
    assert [p.name for p in paths] == ["sensitivity.csv", "sensitivity.md", "sensitivity.png"]
    assert paths[0].read_text().splitlines()[1].startswith("0,body.0,")
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_outlier_study_writes_files(tmp_path, tiny_set):
    model = srquant.create("abpn", 4)
    rows, example = outlier_study(model, [tiny_set], percent=5.0)
    assert len(rows) == 1 and rows[0]["images"] == 2 and rows[0]["layers clipped"] == 5
    assert math.isclose(rows[0]["drop"], rows[0]["fp32"] - rows[0]["clipped"])
    assert example["fp"].shape == example["clipped"].shape == (48, 48, 3)
    paths = write_outlier_study(rows, example, tmp_path / "outliers", crop=16)
    assert [p.name for p in paths] == ["outliers.csv", "outliers.md", "outliers.png"]
    import imageio.v3 as iio

    assert iio.imread(paths[2]).shape == (16, 16 * 2 + 4, 3)
    with pytest.raises(ValueError, match="percent"):
        outlier_study(model, [tiny_set], percent=60.0)
