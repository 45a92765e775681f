"""PTQ4SR: DBDC clipping on hand-made histograms, batch averaging, PaC on a tiny SR net (seconds, no shared data);
one integration test on IMDN x4 when ../shared is present."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import srquant
from srquant.methods import DBDCConfig, MinMaxConfig, PTQ4SRConfig
from srquant.methods.ptq4sr import (
    attention_loss, block_names, dbdc_range, default_clip_mass, density_clip_range, pixel_aware_calibration,
)
from srquant.quant.walk import quant_layers

from conftest import TinyBlock, need_shared


class _TinySR(nn.Module):
    """head conv, two residual blocks, a conv closing the body, conv + pixel shuffle x2 (the tail)."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.Sequential(TinyBlock(c, 0.1), TinyBlock(c, 0.1))
        self.fuse = nn.Conv2d(c, c, 3, padding=1)
        self.up = nn.Sequential(nn.Conv2d(c, 12, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, x):
        f = self.head(x)
        return self.up(self.fuse(self.body(f)) + f)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return _TinySR().eval()


def _calib(n: int = 8) -> torch.Tensor:
    return torch.rand(n, 3, 12, 12, generator=torch.Generator().manual_seed(1))


FAST = dict(w_bits=4, a_bits=4, scope="all", batch_size=4, iters_act=10, iters_weight=3, tune_batch_size=4,
            progress=False)


# --- DBDC math ----------------------------------------------------------------------------------------------------
def test_density_clip_symmetric_histogram():
    # 28 values, p = 0.07: keep at most 26.04. The tie at the ends (1 vs 1) drops the upper bin, then 1 < 3 drops
    # the lower one: 26 values kept in bins 1..4.
    hist = torch.tensor([1.0, 3, 10, 10, 3, 1])
    assert density_clip_range(hist, torch.arange(7.0), 0.07) == (1.0, 5.0)


def test_density_clip_skewed_histogram_trims_the_sparse_tail():
    # 100 values, p = 0.05: keep at most 95. Drops: upper (tie 1/1), then lower 1, 0, 0, 0, 2 (each below the
    # upper end's 6), then upper 6 (below 20): kept 90. Five bins go on the sparse side, two on the dense side.
    hist = torch.tensor([1.0, 0, 0, 0, 2, 20, 40, 30, 6, 1])
    edges = torch.arange(11.0) * 0.5 - 1.0  # bins 5..7 kept: [edges[5], edges[8]]
    assert density_clip_range(hist, edges, 0.05) == (1.5, 3.0)


def test_density_clip_p0_keeps_everything_and_validates():
    hist = torch.tensor([0.0, 5, 0, 1])
    assert density_clip_range(hist, torch.tensor([-2.0, -1, 0, 1, 2]), 0.0) == (-2.0, 2.0)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        density_clip_range(hist, torch.arange(5.0), 1.0)
    with pytest.raises(ValueError, match="need 5 edges"):
        density_clip_range(hist, torch.arange(4.0), 0.1)


def test_dbdc_range_drops_a_lone_outlier():
    values = torch.cat([torch.linspace(0, 1, 1000), torch.tensor([100.0])])
    lo, hi = dbdc_range(values, p=0.01, bins=100)  # all 1000 regular values sit in the first bin [0, 1]
    assert (lo, hi) == (0.0, 1.0)


def test_default_clip_mass_per_bit_width():
    assert [default_clip_mass(b) for b in (4, 6, 8)] == [5e-4, 1e-4, 1e-5]
    assert math.isclose(default_clip_mass(5), math.sqrt(5e-4 * 1e-4))
    assert math.isclose(default_clip_mass(7), math.sqrt(1e-4 * 1e-5))
    assert math.isclose(default_clip_mass(3), 5e-4 * math.sqrt(5))  # the 4 -> 6 bit trend continued
    assert math.isclose(default_clip_mass(2), 2.5e-3)
    assert DBDCConfig(p=0.02).clip_mass(8) == 0.02


# --- DBDC on a model ----------------------------------------------------------------------------------------------
def test_dbdc_bounds_are_averaged_over_batches_and_weights_are_minmax():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1)).eval()
    calib = torch.zeros(4, 3, 2, 2)
    calib[0, 0, 0, 0], calib[1, 1, 1, 1] = 1.0, 0.5  # batch 1: [0, 1]
    calib[2, 0, 0, 0], calib[3, 2, 0, 1] = -1.0, 3.0  # batch 2: [-1, 3]
    q = srquant.quantize(model, DBDCConfig(scope="all", p=0.0, batch_size=2), calib)
    layer = dict(quant_layers(q))["0"]
    assert (float(layer.input_quant.lo), float(layer.input_quant.hi)) == (-0.5, 2.0)  # not the overall (-1, 3)
    w = model[0].weight.detach()
    assert torch.equal(layer.weight_quant.lo.flatten(), w.amin(dim=(1, 2, 3)))
    assert torch.equal(layer.weight_quant.hi.flatten(), w.amax(dim=(1, 2, 3)))


@pytest.mark.parametrize("scope, n_layers, n_eight", [("body", 5, 0), ("all-ends8", 7, 2)])
def test_dbdc_scopes(scope, n_layers, n_eight):
    model, calib = _model(), _calib()
    q = srquant.quantize(model, DBDCConfig(w_bits=4, a_bits=4, scope=scope, batch_size=4), calib)
    layers = dict(quant_layers(q))
    assert len(layers) == n_layers and sum(l.input_quant.bits == 8 for l in layers.values()) == n_eight
    assert all(l.input_quant.mode == "quant" and l.weight_quant.mode == "quant" for l in layers.values())
    with torch.no_grad():
        assert not torch.equal(q(calib), model(calib)) and torch.isfinite(q(calib)).all()


# --- PaC ----------------------------------------------------------------------------------------------------------
def test_attention_loss_by_hand():
    f = torch.tensor([[[[1.0, 0.0]], [[1.0, 2.0]]]])  # 1 x 2 x 1 x 2: channel mean of squares = [1, 2]
    expected = ((1 / math.sqrt(5) - 1) ** 2 + (2 / math.sqrt(5)) ** 2) / 2
    assert math.isclose(float(attention_loss(f, torch.tensor([[1.0, 0.0]]))), expected, rel_tol=1e-6)


def test_pac_trains_only_bounds_and_lowers_the_loss():
    model, calib = _model(), _calib()
    dbdc = srquant.quantize(model, DBDCConfig(w_bits=4, a_bits=4, scope="all", batch_size=4), calib)
    assert block_names(dbdc) == ["body.0", "body.1"]
    before = {k: v.clone() for k, v in dbdc.state_dict().items()}
    config = PTQ4SRConfig(**{**FAST, "keep_best": False, "lr_weight": 1e-2})
    reports = pixel_aware_calibration(dbdc, model, calib, config)
    assert [r.kind for r in reports] == ["network", "network"]
    assert reports[0].loss_after < reports[0].loss_before  # activation stage
    after = dbdc.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith((".lo", ".hi")) for k in changed)
    assert any(".input_quant." in k for k in changed) and any(".weight_quant." in k for k in changed)


def test_ptq4sr_is_deterministic_and_round_trips(tmp_path):
    model, calib = _model(), _calib()
    a = srquant.quantize(model, PTQ4SRConfig(**FAST), calib)
    b = srquant.quantize(model, PTQ4SRConfig(**FAST), calib)
    with torch.no_grad():
        assert torch.equal(a(calib), b(calib))
    srquant.save(a, tmp_path / "ptq4sr.pt")
    loaded = srquant.load(tmp_path / "ptq4sr.pt", model=_model())
    with torch.no_grad():
        assert torch.equal(loaded(calib), a(calib))
    assert loaded.srquant_config == a.srquant_config and isinstance(loaded.srquant_config, PTQ4SRConfig)


def test_ptq4sr_under_no_grad_improves_on_dbdc():
    model, calib = _model(), _calib()
    with torch.no_grad():  # PaC enables gradients itself
        ref = model(calib)
        err = {cfg.method: float((srquant.quantize(model, cfg, calib)(calib) - ref).abs().mean())
               for cfg in (DBDCConfig(w_bits=4, a_bits=4, scope="all", batch_size=4), PTQ4SRConfig(**FAST))}
    assert err["ptq4sr"] < err["dbdc"], err


@pytest.mark.parametrize("kwargs, message", [
    (dict(p=1.0), "p \\(clipped mass\\) must be a number in"),
    (dict(p=-0.1), "p \\(clipped mass\\) must be a number in"),
    (dict(p="2e-4"), "p \\(clipped mass\\) must be a number in"),  # YAML 1.1 reads 2e-4 as a string
    (dict(bins=1), "bins must be an integer >= 2"),
    (dict(a_granularity="channel"), "a_granularity must be 'tensor'"),
    (dict(iters_act=-1), "iters_act and iters_weight must be >= 0"),
    (dict(tune_batch_size=0), "tune_batch_size must be >= 1"),
    (dict(lr_act=-1.0), "lr_act, lr_weight and feature_weight must be numbers >= 0"),
    (dict(feature_weight=-5.0), "lr_act, lr_weight and feature_weight must be numbers >= 0"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PTQ4SRConfig(**kwargs)


def test_defaults_are_the_official_ones():
    c = PTQ4SRConfig()
    assert (c.method, c.bins, c.p, c.iters_act, c.iters_weight, c.tune_batch_size) == ("ptq4sr", 2048, None, 250, 250, 2)
    assert (c.lr_act, c.lr_weight, c.feature_weight, c.scope) == (5e-3, 5e-6, 5.0, "body")
    assert DBDCConfig().method == "dbdc" and "dbdc" in srquant.methods.method_names()


# --- real weights -------------------------------------------------------------------------------------------------
@pytest.mark.shared
@pytest.mark.slow
def test_imdn_x4_w4a4_dbdc_beats_minmax_on_set5():
    weights = need_shared("weights", "imdn_x4.pth")
    set5 = need_shared("data", "benchmarks", "Set5")
    calib_dir = need_shared("data", "calib", "SunHays80")
    from srquant.data import BenchmarkFolder
    from srquant.evaluate import calibration_batch, evaluate, model_predictor

    model = srquant.create("imdn", 4, weights=weights)
    calib = calibration_batch(model.sr_info, calib_dir, 8, 48, 0)
    psnr = {}
    for cfg in (MinMaxConfig(w_bits=4, a_bits=4), DBDCConfig(w_bits=4, a_bits=4)):
        q = srquant.quantize(model, cfg, calib)
        psnr[cfg.method] = evaluate(model_predictor(q, model.sr_info), [BenchmarkFolder(set5, 4)], model="imdn",
                                    progress=False)[0].psnr_y
    assert psnr["dbdc"] > psnr["minmax"] + 1.0, psnr
