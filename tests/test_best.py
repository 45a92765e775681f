"""The `best` recipe on a small custom net srquant does not know (no shared data, a few seconds)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import srquant
from srquant.errors import ConfigError
from srquant.methods import BestConfig, MSEConfig, build_config
from srquant.quant.mixed_precision import average_bits, layer_costs
from srquant.quant.walk import quant_layers

from conftest import TinyBlock


class _Custom(nn.Module):
    """Not a registered architecture: a head, two leaky residual blocks, a 1x1 fuse and a pixel-shuffle tail."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.Sequential(TinyBlock(c, 0.1), TinyBlock(c, 0.1))
        self.fuse = nn.Conv2d(c, c, 1)
        self.tail = nn.Sequential(nn.Conv2d(c, 12, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, x):
        f = self.head(x)
        return self.tail(self.fuse(self.body(f)) + f)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return _Custom().eval()


def _calib() -> torch.Tensor:
    return torch.rand(8, 3, 12, 12, generator=torch.Generator().manual_seed(1))


FAST = dict(w_bits=4, a_bits=4, scope="all", grid=8, iters=20, tune_batch_size=4, batch_size=4, progress=False)


def _mse(qmodel: nn.Module, model: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((qmodel(x) - model(x)).pow(2).mean())


def test_budget_presets_fill_unset_step_counts_and_explicit_ones_win():
    fast, full = BestConfig(budget="fast"), BestConfig()
    assert fast.iters < full.iters
    assert BestConfig(budget="fast", iters=7).iters == 7
    assert build_config("best", {k: v for k, v in fast.to_dict().items() if k != "method"}) == fast  # round trip


@pytest.mark.parametrize("fields, message", [
    ({"budget": "slow"}, "budget must be one of"),
    ({"avg_bits": 2.5}, "avg_bits must be within"),
    ({"w_avg_bits": 4.0}, "give both w_avg_bits and a_avg_bits"),
    ({"network_iters": -1}, "network_iters must be >= 0"),
    ({"activations": "log2"}, "activations must be one of"),
    ({"network_iters": 10}, "subset grids do not have"),
])
def test_bad_options_are_refused(fields, message):
    with pytest.raises(ConfigError, match=message):
        build_config("best", fields)


@pytest.mark.parametrize("activations", ["subset", "uniform", "dual-region"])
def test_best_beats_mse_on_a_custom_net_and_is_deterministic(activations):
    model, calib = _model(), _calib()
    held = torch.rand(4, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    mse = srquant.quantize(model, MSEConfig(w_bits=4, a_bits=4, scope="all", grid=8), calib)
    a = srquant.quantize(model, BestConfig(**FAST, activations=activations), calib)
    b = srquant.quantize(model, BestConfig(**FAST, activations=activations), calib)
    assert torch.equal(a(calib), b(calib))
    assert _mse(a, model, calib) < _mse(mse, model, calib)
    assert _mse(a, model, held) < _mse(mse, model, held)
    assert all(r.loss_after <= r.loss_before for r in a.tuning_report)  # block reconstruction reports


def test_distillation_stage_never_ends_above_the_block_stage_loss():
    model, calib = _model(), _calib()
    base = {**FAST, "activations": "uniform"}
    without = srquant.quantize(model, BestConfig(**{**base, "network_iters": 0}), calib)
    with_it = srquant.quantize(model, BestConfig(**{**base, "lr_network": 1e-4, "network_iters": 50}), calib)
    (report,) = with_it.tuning_report
    assert report.kind == "network" and not report.reverted and report.loss_after < report.loss_before
    assert _mse(with_it, model, calib) < _mse(without, model, calib)


@pytest.mark.parametrize("activations", ["subset", "uniform"])
def test_mixed_precision_meets_the_budget_and_reloads(tmp_path, activations):
    model, calib = _model(), _calib()
    q = srquant.quantize(model, BestConfig(**FAST, avg_bits=4.0, activations=activations), calib)
    bits = {name: layer.weight_quant.bits for name, layer in quant_layers(q)}
    a_bits = {name: layer.input_quant.bits for name, layer in quant_layers(q)}
    assert len(set(bits.values())) > 1 and len(set(a_bits.values())) > 1  # the budgets are spent unevenly
    costs = layer_costs(model, calib[:1], list(bits))
    assert average_bits(bits, costs)[0] <= 4.0 + 1e-9 and average_bits(a_bits, costs)[1] <= 4.0 + 1e-9
    path = tmp_path / "best_mixed.pt"
    srquant.save(q, path)
    r = srquant.load(path, model=_model())
    assert {name: layer.weight_quant.bits for name, layer in quant_layers(r)} == bits
    assert {name: layer.input_quant.bits for name, layer in quant_layers(r)} == a_bits
    assert torch.equal(q(calib), r(calib))


def test_separate_weight_and_activation_budgets():
    model, calib = _model(), _calib()
    q = srquant.quantize(model, BestConfig(**{**FAST, "iters": 0, "network_iters": 0}, w_avg_bits=3.0,
                                           a_avg_bits=8.0), calib)
    bits = {name: layer.weight_quant.bits for name, layer in quant_layers(q)}
    w_avg, _ = average_bits(bits, layer_costs(model, calib[:1], list(bits)))
    assert w_avg <= 3.0 + 1e-9 and set(bits.values()) == {3}  # the weight budget binds every layer
