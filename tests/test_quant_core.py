import pytest
import torch
from torch import nn

import srquant
from srquant.methods import MinMaxConfig, MSEConfig, PercentileConfig, config_from_dict
from srquant.quant.layers import QuantLayer
from srquant.quant.model import prepare
from srquant.quant.walk import quant_layers
from srquant.quant.observers import RangeObserver, mse_range, percentile_range
from srquant.quant.primitives import fake_quant, int_range, qparams
from srquant.quant.quantizers import UniformQuantizer
from srquant.quant.scope import find_ends, plan


def test_int_range_and_bit_validation():
    assert int_range(8, signed=True) == (-128, 127) and int_range(8, signed=False) == (0, 255)
    assert int_range(3, signed=False) == (0, 7)
    for bad in (1, 9, 16):
        with pytest.raises(ValueError, match="2- to 8-bit"):
            int_range(bad, signed=False)


def test_asymmetric_fake_quant_hand_computed():
    scale, zp, qmin, qmax = qparams(torch.tensor(-1.0), torch.tensor(3.0), bits=2, symmetric=False)
    assert scale.item() == pytest.approx(4 / 3) and zp.item() == 1 and (qmin, qmax) == (0, 3)
    x = torch.tensor([-1.0, 0.0, 0.5, 1.0, 3.0, 5.0])
    expect = torch.tensor([-4 / 3, 0, 0, 4 / 3, 8 / 3, 8 / 3])
    torch.testing.assert_close(fake_quant(x, scale, zp, qmin, qmax), expect)


def test_symmetric_fake_quant_hand_computed_half_to_even():
    scale, zp, qmin, qmax = qparams(torch.tensor(-3.0), torch.tensor(1.0), bits=3, symmetric=True)
    assert scale.item() == 1.0 and zp.item() == 0 and (qmin, qmax) == (-4, 3)
    x = torch.tensor([-3.0, -4.5, 0.5, 1.5, 2.5, 7.0])
    # round half to even: -3, -4, 0, 2, 2; 7 clamps to 3
    expect = torch.tensor([-3.0, -4.0, 0.0, 2.0, 2.0, 3.0])
    torch.testing.assert_close(fake_quant(x, scale, zp, qmin, qmax), expect)


def test_straight_through_gradient_and_range_gradient():
    lo = torch.tensor(-1.0, requires_grad=True)
    hi = torch.tensor(1.0, requires_grad=True)
    x = torch.tensor([-3.0, -0.4, 0.2, 0.9, 4.0], requires_grad=True)
    y = fake_quant(x, *qparams(lo, hi, 8, symmetric=False))
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]  # identity inside the range, zero where clamped
    assert hi.grad is not None and hi.grad.item() != 0 and lo.grad.item() != 0


def test_per_channel_weight_quantizer():
    w = torch.tensor([[1.0, -2.0], [0.5, 0.25]])
    q = UniformQuantizer(8, symmetric=True, axis=0)
    q.init_from_minmax(w)
    assert q.lo.shape == (2, 1)
    out = q(w)
    torch.testing.assert_close(out, w, atol=2.0 / 127 / 2, rtol=0)
    assert out[0, 1].item() == pytest.approx(-2.0) and out[1, 0].item() == pytest.approx(0.5)


def test_learned_rounding_is_floor_or_ceil():
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3)
    q = UniformQuantizer(4, symmetric=True, axis=0)
    q.init_from_minmax(w)
    q.init_learned_rounding(w)
    scale = q.params()[0]
    frac = w / scale - torch.floor(w / scale)
    torch.testing.assert_close(q.soft_rounding(), frac.clamp(0.01, 0.99), atol=1e-5, rtol=0)
    q.hard_rounding = True
    codes = q(w) / scale
    ok = torch.isclose(codes, torch.floor(w / scale)) | torch.isclose(codes, torch.ceil(w / scale))
    clipped = torch.isclose(codes, torch.full_like(codes, -8.0)) | torch.isclose(codes, torch.full_like(codes, 7.0))
    assert torch.all(ok | clipped)


def test_observer_and_range_choosers():
    obs = RangeObserver(axis=None)
    obs.update(torch.tensor([1.0, 2.0]))
    obs.update(torch.tensor([-3.0, 0.5]))
    assert obs.lo.item() == -3.0 and obs.hi.item() == 2.0 and obs.samples().numel() == 4
    lo, hi = percentile_range(torch.arange(101.0), 99.0)
    assert (lo.item(), hi.item()) == (1.0, 99.0)
    values = torch.cat([torch.rand(100000), torch.tensor([50.0])])
    lo, hi = mse_range(values, bits=4, symmetric=False)
    assert hi.item() < 25.0  # the lone outlier is clipped away


def _toy() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 12, 3, padding=1), nn.PixelShuffle(2),
    ).eval()


def test_scope_presets_and_overrides():
    model = _toy()
    assert find_ends(model) == ({"0"}, {"4"})
    assert set(plan(model, "body", 4, 4)) == {"2"}
    full = plan(model, "all-ends8", 4, 4)
    assert (full["0"].w_bits, full["2"].w_bits, full["4"].a_bits) == (8, 4, 8)
    assert plan(model, "all", 3, 3)["4"].w_bits == 3
    over = plan(model, "all", 4, 4, overrides={"0": "fp", "2": {"a_bits": 6}})
    assert "0" not in over and over["2"].a_bits == 6 and over["2"].w_bits == 4
    with pytest.raises(ValueError, match="matches no"):
        plan(model, "all", 4, 4, overrides={"nope*": "fp"})
    with pytest.raises(ValueError, match="scope"):
        plan(model, "middle", 4, 4)


class _TwoBranch(nn.Module):
    """A multi-scale toy like CARN-M: a forward argument picks one of two tails; the other never runs."""

    def __init__(self):
        super().__init__()
        self.head, self.body = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.up = nn.ModuleDict({"2": nn.Conv2d(4, 12, 3, padding=1), "3": nn.Conv2d(4, 27, 3, padding=1)})
        self.shuffles = nn.ModuleDict({"2": nn.PixelShuffle(2), "3": nn.PixelShuffle(3)})

    def forward(self, x, scale: int = 2):
        return self.shuffles[str(scale)](self.up[str(scale)](self.body(self.head(x))))


def test_layers_a_forward_never_runs_stay_float_and_runtime_points_trace():
    model = _TwoBranch()
    assert set(plan(model, "all", 4, 4)) == {"head", "body", "up.2"}
    assert set(plan(model, "all", 4, 4, overrides={"up.*": {"w_bits": 8}})) == {"head", "body", "up.2"}
    calib, x = torch.rand(4, 3, 8, 8), torch.rand(1, 3, 8, 8)
    for config in (MinMaxConfig(scope="all"), MinMaxConfig(scope="all", act_points="runtime")):
        q = srquant.quantize(model, config, calib)
        with torch.no_grad():
            assert (q(x) - model(x)).abs().max() < 0.05 * model(x).abs().max()


def test_prepare_leaves_float_model_untouched():
    model = _toy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    qmodel = prepare(model, MinMaxConfig(scope="all"))
    assert all(isinstance(m, nn.Conv2d) for m in model if isinstance(m, (nn.Conv2d, QuantLayer)))
    assert len(list(quant_layers(qmodel))) == 3
    srquant.quantize(model, MinMaxConfig(w_bits=4, a_bits=4, scope="all"), torch.rand(4, 3, 8, 8))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.parametrize("config", [MinMaxConfig(scope="all"), PercentileConfig(scope="all", percentile=99.9), MSEConfig(scope="all")])
def test_w8a8_close_to_float_deterministic_and_reloads(config, tmp_path):
    model = _toy()
    calib = torch.rand(8, 3, 16, 16)
    x = torch.rand(2, 3, 16, 16)
    q1 = srquant.quantize(model, config, calib)
    q2 = srquant.quantize(model, config, calib)
    with torch.no_grad():
        ref, out = model(x), q1(x)
        assert torch.equal(out, q2(x))
        assert (out - ref).abs().max() < 0.05 * ref.abs().max()
        srquant.save(q1, tmp_path / "q.pt")
        assert torch.equal(srquant.load(tmp_path / "q.pt", model=_toy())(x), out)


def test_low_bits_are_lossier():
    model, calib, x = _toy(), torch.rand(8, 3, 16, 16), torch.rand(2, 3, 16, 16)
    errs = []
    with torch.no_grad():
        for bits in (8, 4, 2):
            q = srquant.quantize(model, MinMaxConfig(w_bits=bits, a_bits=bits, scope="all"), calib)
            errs.append((q(x) - model(x)).pow(2).mean().item())
    assert errs[0] < errs[1] < errs[2]


def test_config_validation_and_round_trip():
    for bad in ({"w_bits": 1}, {"a_bits": 9}, {"scope": "middle"}, {"w_granularity": "row"}):
        with pytest.raises(ValueError):
            MinMaxConfig(**bad)
    with pytest.raises(ValueError):
        PercentileConfig(percentile=30)
    cfg = PercentileConfig(w_bits=6, a_bits=4, percentile=99.5, overrides={"body.*": "fp"})
    assert config_from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown option"):
        config_from_dict({**cfg.to_dict(), "bogus": 1})


def test_quantize_rejects_bad_calibration():
    with pytest.raises(ValueError, match="NxCxHxW"):
        srquant.quantize(_toy(), MinMaxConfig(), torch.rand(3, 8, 8))
    with pytest.raises(TypeError):
        srquant.quantize(_toy(), {"method": "minmax"}, torch.rand(1, 3, 8, 8))
