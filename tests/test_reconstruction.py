"""The reconstruction loop and AdaRound / BRECQ / QDrop on a tiny random conv net (no shared data, a few seconds)."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

import srquant
from srquant.methods import AdaRoundConfig, BRECQConfig, MSEConfig, QDropConfig
from srquant.quant.layers import QuantLayer
from srquant.quant.walk import quant_layers
from srquant.quant.tuning import DropQuant, TuningConfig, mix_inputs, reconstruct
from srquant.quant.units import find_units

from conftest import TinyBlock


class _Tiny(nn.Module):
    def __init__(self, c: int = 8):
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.Sequential(TinyBlock(c, 0.1), TinyBlock(c, 0.1))
        self.fuse = nn.Conv2d(c, c, 1)
        self.tail = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x):
        f = self.head(x)
        return self.tail(self.fuse(self.body(f)) + f)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return _Tiny().eval()


def _calib() -> torch.Tensor:
    return torch.rand(8, 3, 12, 12, generator=torch.Generator().manual_seed(1))


FAST = dict(w_bits=4, a_bits=4, scope="all", grid=8, iters=20, tune_batch_size=4, batch_size=4, progress=False)
MSE = dict(w_bits=4, a_bits=4, scope="all", grid=8)


def test_auto_blocks_and_units():
    q = srquant.quantize(_model(), MSEConfig(**MSE), _calib())
    assert [(u.name, len(u.layers)) for u in find_units(q, "block")] == [("body.0", 2), ("body.1", 2), ("head", 1), ("fuse", 1), ("tail", 1)]
    assert [u.name for u in find_units(q, "block", ["body.1"])] == ["body.1", "head", "body.0.conv1", "body.0.conv2", "fuse", "tail"]
    assert len(find_units(q, "layer")) == 7 and find_units(q, "network")[0].name == ""


@pytest.mark.parametrize("unit", ["layer", "block", "network"])
def test_loop_reduces_unit_loss(unit):
    model, calib = _model(), _calib()
    q = srquant.quantize(model, MSEConfig(**MSE), calib)
    config = TuningConfig(unit=unit, learn_act_range=True, iters=40, batch_size=4, lr_rounding=3e-2, keep_best=False,
                          progress=False)
    reports = reconstruct(copy.deepcopy(q), model, calib, config)
    assert sum(r.loss_after for r in reports) < sum(r.loss_before for r in reports)
    assert all(r.loss_after < r.loss_before for r in reports if r.kind != "layer"), reports
    # keep_best (default): no unit ends worse than its initial state
    reports = reconstruct(q, model, calib, dataclasses.replace(config, keep_best=True))
    assert all(r.loss_after <= r.loss_before for r in reports) and not any(r.reverted for r in reports if r.kind != "layer")


def test_adaround_hard_rounding_is_floor_or_ceil():
    model, calib = _model(), _calib()
    q = srquant.quantize(model, AdaRoundConfig(**FAST, keep_best=False), calib)
    changed = 0
    for _, layer in quant_layers(q):
        wq = layer.weight_quant
        assert wq.alpha is not None and wq.hard_rounding
        scale, zp, qmin, qmax = wq.params()
        w = layer.weight.detach()
        code = torch.round(layer.quantized_weight().detach() / scale + zp)
        floor = torch.clamp(torch.floor(w / scale) + zp, qmin, qmax)
        ceil = torch.clamp(torch.floor(w / scale) + 1 + zp, qmin, qmax)
        assert bool(((code == floor) | (code == ceil)).all())
        changed += int((code != torch.clamp(torch.round(w / scale) + zp, qmin, qmax)).sum())
    assert changed > 0  # learned rounding is not just round-to-nearest


def test_qdrop_input_mix():
    g = torch.Generator().manual_seed(0)
    xq, xf = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    assert torch.equal(mix_inputs(xq, xf, 0.0, g), xq)
    assert torch.equal(mix_inputs(xq, xf, 1.0, g), xf)
    mixed = mix_inputs(xq, xf, 0.5, g)
    assert 0.2 < float(mixed.mean()) < 0.8 and bool(((mixed == 0) | (mixed == 1)).all())


def test_qdrop_p0_equals_brecq():
    model, calib = _model(), _calib()
    a = srquant.quantize(model, BRECQConfig(**FAST), calib)
    b = srquant.quantize(model, QDropConfig(drop_prob=0.0, **FAST), calib)
    assert torch.equal(a(calib), b(calib))


def test_qdrop_p1_trains_on_float_inputs_without_activation_quantization():
    model, calib = _model(), _calib()
    fp_in = {}
    hooks = [model.get_submodule(n).register_forward_pre_hook(lambda m, a, n=n: fp_in.setdefault(n, a[0]))
             for n in ("body.0", "body.1")]
    model(calib)
    for h in hooks:
        h.remove()
    q = srquant.quantize(model, MSEConfig(**MSE), calib)
    last_input, checked = {}, []
    for name in ("body.0", "body.1"):
        q.get_submodule(name).register_forward_pre_hook(lambda m, a, n=name: last_input.__setitem__(n, a[0]))

    def loss(pred, target, ctx):
        if ctx.step >= 0 and ctx.unit.name in fp_in:
            assert torch.equal(last_input[ctx.unit.name], fp_in[ctx.unit.name][ctx.index])
            assert all(isinstance(l.input_quant, DropQuant) for _, l in ctx.unit.layers)
            checked.append(ctx.unit.name)
        return sum(((p - t) ** 2).sum(1).mean() for p, t in zip(pred, target))

    reconstruct(q, model, calib, TuningConfig(unit="block", input_source="qdrop", drop_prob=1.0, iters=3, batch_size=4,
                                              progress=False), loss_fn=loss)
    assert checked.count("body.0") == 3 and checked.count("body.1") == 3
    assert not any(isinstance(l.input_quant, DropQuant) for _, l in quant_layers(q))  # wrappers removed


def test_deterministic_under_seed():
    model, calib = _model(), _calib()
    a = srquant.quantize(model, QDropConfig(**FAST), calib)
    b = srquant.quantize(model, QDropConfig(**FAST), calib)
    assert torch.equal(a(calib), b(calib))
    for (_, la), (_, lb) in zip(quant_layers(a), quant_layers(b)):
        assert torch.equal(la.weight_quant.alpha, lb.weight_quant.alpha)
        assert torch.equal(la.input_quant.lo, lb.input_quant.lo) and torch.equal(la.input_quant.hi, lb.input_quant.hi)


def test_brecq_learns_activation_bounds_and_round_trips(tmp_path):
    model, calib = _model(), _calib()
    init = srquant.quantize(model, MSEConfig(**MSE), calib)
    q = srquant.quantize(model, BRECQConfig(**FAST), calib)
    moved = [not torch.equal(la.input_quant.hi, lb.input_quant.hi) for (_, la), (_, lb) in zip(quant_layers(init), quant_layers(q))]
    assert any(moved)
    path = tmp_path / "brecq.pt"
    srquant.save(q, path)
    r = srquant.load(path, model=_model())
    assert isinstance(r.get_submodule("body.0.conv1"), QuantLayer)
    assert torch.equal(q(calib), r(calib))
    assert r.srquant_config == q.srquant_config


def test_block_tuning_covers_runtime_points():
    """With act_points="runtime", a block's conv outputs and residual sum are quantized too: BRECQ learns their
    ranges along with the layer inputs."""
    from srquant.quant.walk import graph_quantizers
    from srquant.quant.tuning import range_groups
    from srquant.quant.units import applied_act_quantizers, collect

    model = _Tiny().eval()
    calib = torch.rand(8, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    q = srquant.quantize(model, MSEConfig(w_bits=8, a_bits=8, scope="all", act_points="runtime"), calib)
    unit = next(u for u in find_units(q, "block") if u.kind == "block")
    inputs, _ = collect(q, unit.name, calib, 8, outputs=False)
    found = applied_act_quantizers(q, unit, inputs)
    layer_inputs = {id(layer.input_quant) for _, layer in unit.layers}
    points = {id(p) for _, p in graph_quantizers(q)}
    assert layer_inputs <= {id(m) for m in found}
    assert any(id(m) in points and id(m) not in layer_inputs for m in found)  # e.g. the residual sum
    unit.act_quants = found
    config = TuningConfig(learn_rounding=False, learn_act_range=True)
    assert len(range_groups(unit, config)) == len(found)
    before = {id(m): m.hi.detach().clone() for m in found}
    reconstruct(q, model, calib, dataclasses.replace(config, iters=20, progress=False, keep_best=False))
    assert any(not torch.equal(before[id(m)], m.hi) for m in found if id(m) not in layer_inputs)
