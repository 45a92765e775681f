"""DFSQ: universal sets, the subset quantizer, point selection and the method on a tiny net (no shared data, fast)."""
from __future__ import annotations

import math

import pytest
import torch

import srquant
from srquant.methods import DFSQConfig, config_from_dict
from srquant.methods.dfsq import ablation_configs
from srquant.quant.walk import quant_layers, quantizers_off
from srquant.quant.subset import SubsetQuantizer, normalize, quantize_to_points, snap, universal_set
from srquant.quant.subset_select import (
    kmeans_1d, quant_loss, select_exhaustive, select_kmeans, select_optimal, thin_universal,
)

from conftest import TinyResidualNet, tiny_calib, tiny_model


def test_universal_set_sizes():
    code, paper = universal_set("code"), universal_set("paper107")
    assert len(code) == 377 and len(paper) == 107
    for u in (code, paper):
        assert torch.equal(u, -u.flip(0)) and u.min() == -1 and u.max() == 1 and (u == 0).sum() == 1
        assert torch.all(u[1:] > u[:-1])
    assert 0.8125 in paper.tolist()  # the paper's worked example value
    assert len(universal_set("code", negatives=False)) == 189
    assert len(universal_set([[1, 0], [1, 0]])) == 5  # {0, 1/2, 1} and negatives
    with pytest.raises(KeyError):
        universal_set("nope")


def test_nearest_point_quantizer_by_hand():
    points = torch.tensor([[-1.0, 0.0, 0.25, 1.0], [-0.5, -0.25, 0.5, 0.75]])
    x = torch.tensor([[-0.9, 0.1, 0.13, 0.7], [0.0, -0.4, 0.7, 2.0]])  # rows = channels
    q = quantize_to_points(x.T[:, :, None, None], points)[:, :, 0, 0].T
    assert torch.equal(q, torch.tensor([[-1.0, 0.0, 0.25, 1.0], [-0.25, -0.5, 0.75, 0.75]]))
    assert torch.equal(quantize_to_points(torch.tensor([0.125]).reshape(1, 1, 1), points[:1]).flatten(), torch.tensor([0.0]))  # tie -> lower
    u = universal_set("paper107")
    v = torch.cat([torch.tensor([0.3, -0.02, 2.0, -3.0]), torch.rand(500, generator=torch.Generator().manual_seed(0)) * 2.2 - 1.1])
    assert torch.equal(snap(v, u), u[(v[:, None] - u[None]).abs().argmin(1)])
    assert snap(torch.tensor([0.3, 2.0]), u).tolist() == [0.3125, 1.0]


def test_quantizer_forward_and_straight_through():
    quant = SubsetQuantizer(2, channels=2, channelwise=True)
    quant.set_points(torch.tensor([[1.0, -1.0, 0.0, 0.5], [-0.5, 0.0, 0.5, 1.0]]))
    quant.post_relu.copy_(torch.tensor([False, True]))
    quant.mode = "quant"
    x = torch.tensor([[[[1.0, 3.0, 5.0]], [[0.0, 1.0, 4.0]]]], requires_grad=True)  # (1, 2, 1, 3)
    y = quant(x)
    # channel 0: mean 3, max|x-3| = 2 -> (-1, 0, 1) exact; channel 1 (post-ReLU): /4 -> (0, .25, 1) -> (0, 0|.5, 1)
    assert torch.allclose(y[0, 0, 0], torch.tensor([1.0, 3.0, 5.0]), atol=1e-5)
    assert torch.allclose(y[0, 1, 0], torch.tensor([0.0, 0.0, 4.0]), atol=1e-5)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    quant.mode = "off"
    assert quant(x) is x


@pytest.mark.parametrize("post_relu", [False, True])
def test_normalization_round_trip_with_dense_points(post_relu):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 9, 9, generator=gen) * torch.tensor([0.1, 1.0, 10.0, 100.0]).reshape(1, 4, 1, 1) + 2.0
    if post_relu:
        x = x.relu()
    xn, scale, shift = normalize(x, post_relu)
    assert xn.abs().max() <= 1 and torch.allclose(xn * scale + shift, x, rtol=1e-5, atol=1e-5)
    quant = SubsetQuantizer(8, channels=4)
    quant.set_points(torch.linspace(-1, 1, 256).repeat(4, 1))
    quant.post_relu.fill_(post_relu)
    quant.mode = "quant"
    rel = (quant(x) - x).abs().amax((0, 2, 3)) / (x - (0 if post_relu else x.mean((2, 3), keepdim=True))).abs().amax((0, 2, 3))
    assert rel.max() <= 1 / 255 + 1e-4  # half a step of a 256-level grid on [-1, 1]
    group_xn, group_scale, _ = normalize(x, post_relu, group=2)  # pooled statistics: still in [-1, 1], max hit per group
    assert group_xn.abs().amax((0, 2, 3)).allclose(torch.ones(4)) and torch.equal(group_scale[0], group_scale[1])


def _mixture(gen: torch.Generator, centers=(-0.6, -0.1, 0.3, 0.8), n: int = 3000, spread: float = 0.01) -> torch.Tensor:
    return torch.cat([c + spread * torch.randn(n, generator=gen) for c in centers])


def test_kmeans_recovers_separated_clusters():
    gen = torch.Generator().manual_seed(0)
    x = torch.stack([_mixture(gen), _mixture(gen, (-0.9, -0.5, 0.0, 0.45))])
    cent, sse = kmeans_1d(x, 4, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(cent, torch.tensor([[-0.6, -0.1, 0.3, 0.8], [-0.9, -0.5, 0.0, 0.45]]), atol=3e-3)
    assert torch.allclose(sse, quant_loss(x, cent))
    pinned, _ = kmeans_1d(x, 5, pin_zero=True, generator=torch.Generator().manual_seed(1))
    assert (pinned == 0).sum(1).ge(1).all()
    # snapped to a fine universal set, the selection lands on the universal values nearest to the true centres
    u = universal_set("code")
    points, loss = select_kmeans(x, u, 2, restarts=3, pin_zero=False)
    assert torch.equal(points, snap(torch.tensor([[-0.6, -0.1, 0.3, 0.8], [-0.9, -0.5, 0.0, 0.45]]), u))
    assert torch.allclose(loss, quant_loss(x, points))


def test_selection_against_exhaustive_and_exact_optimum():
    gen = torch.Generator().manual_seed(3)
    x = torch.cat([_mixture(gen, spread=0.08), 0.3 * torch.randn(2000, generator=gen)]).clamp(-1, 1)
    u = thin_universal(universal_set("paper107"), 20)
    assert len(u) == 20 and torch.equal(u, -u.flip(0))
    best, best_loss = select_exhaustive(x, u, 2)  # C(20, 4) = 4845 subsets
    exact, exact_loss = select_optimal(x[None], u, 2)
    assert torch.equal(best, exact) and math.isclose(float(best_loss), float(exact_loss), rel_tol=1e-9)
    fast, fast_loss = select_kmeans(x[None], u, 2, restarts=5, pin_zero=False)
    assert float(fast_loss) >= float(exact_loss) - 1e-9 and float(fast_loss) <= 1.5 * float(exact_loss)


def test_selection_is_deterministic_under_seed():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(6, 4000, generator=gen).clamp(-1, 1) * torch.rand(6, 1, generator=gen)
    u = universal_set("code")
    a = select_kmeans(x, u, 3, seed=7)
    b = select_kmeans(x, u, 3, seed=7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = select_kmeans(x, u, 3, seed=7, init="random")
    assert torch.equal(c[0], select_kmeans(x, u, 3, seed=7, init="random")[0])


# --- the method on a tiny net ----------------------------------------------------------------------------------


FAST = dict(restarts=2, kmeans_iters=30, batch_size=8)


def test_config_validation_and_defaults():
    cfg = DFSQConfig(w_bits=4, a_bits=4)
    assert (cfg.w_granularity, cfg.w_symmetric, cfg.a_granularity, cfg.scope) == ("channel", False, "channel", "body")
    assert cfg.weight_range == "minmax"  # the method as specified
    assert config_from_dict(cfg.to_dict()) == cfg
    for bad in (dict(universal_set="x"), dict(selection="x"), dict(post_relu="x"), dict(restarts=0),
                dict(act_points="runtime", a_granularity="tensor"), dict(word_sets=[[1, 0]], a_bits=2),
                dict(weight_range="percentile")):
        with pytest.raises(ValueError):
            DFSQConfig(**bad)
    labels = [(c.a_granularity, c.normalize) for _, c in ablation_configs(cfg)]
    assert labels == [("tensor", False), ("channel", False), ("tensor", True), ("channel", True)]


def test_dfsq_quantizes_body_and_round_trips(tmp_path):
    model, calib = tiny_model(), tiny_calib()
    q = srquant.quantize(model, DFSQConfig(w_bits=4, a_bits=4, **FAST), calib)
    layers = dict(quant_layers(q))
    assert sorted(layers) == ["body.0.conv1", "body.0.conv2", "body.1.conv1", "body.1.conv2"]
    assert all(isinstance(l.input_quant, type(layers["body.0.conv1"].input_quant)) for l in layers.values())
    assert layers["body.0.conv2"].input_quant.post_relu.all() and not layers["body.0.conv1"].input_quant.post_relu.any()
    u = universal_set("code")
    for layer in layers.values():
        pts = layer.input_quant.points
        assert pts.shape == (8, 16) and torch.isin(pts, u).all() and layer.input_quant.mode == "quant"
    x = torch.rand(2, 3, 10, 14, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        err = (q(x) - model(x)).pow(2).mean()
        assert 0 < err < 0.05 * model(x).pow(2).mean()
    with torch.no_grad(), quantizers_off(q):
        assert torch.allclose(q(x), model(x), atol=1e-6)
    assert all(l.input_quant.mode == "quant" for l in layers.values())
    again = srquant.quantize(model, DFSQConfig(w_bits=4, a_bits=4, **FAST), calib)
    with torch.no_grad():
        assert torch.equal(again(x), q(x))  # deterministic
    srquant.save(q, tmp_path / "dfsq.pt")
    loaded = srquant.load(tmp_path / "dfsq.pt", model=TinyResidualNet())
    with torch.no_grad():
        assert torch.equal(loaded(x), q(x))
    assert isinstance(loaded.srquant_config, DFSQConfig)


def test_layerwise_points_and_without_normalization():
    model, calib = tiny_model(), tiny_calib()
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    errs = {}
    for gran, norm in [("tensor", True), ("channel", True), ("channel", False)]:
        q = srquant.quantize(model, DFSQConfig(w_bits=8, a_bits=3, a_granularity=gran, normalize=norm, **FAST), calib)
        assert next(iter(quant_layers(q)))[1].input_quant.points.shape[0] == (8 if gran == "channel" else 1)
        with torch.no_grad():
            errs[gran, norm] = float((q(x) - model(x)).pow(2).mean())
    assert errs["channel", True] <= errs["tensor", True] * 1.5


def test_weight_range_mse_clips_filters_and_lowers_weight_error():
    model, calib = tiny_model(), tiny_calib()
    models = {r: srquant.quantize(model, DFSQConfig(w_bits=3, a_bits=4, weight_range=r, **FAST), calib)
              for r in ("minmax", "mse")}
    for (name, mm), (_, ms) in zip(quant_layers(models["minmax"]), quant_layers(models["mse"])):
        w = mm.weight.detach()
        lo, hi = w.amin(dim=(1, 2, 3)), w.amax(dim=(1, 2, 3))
        assert torch.allclose(mm.weight_quant.lo.flatten(), lo) and torch.allclose(mm.weight_quant.hi.flatten(), hi)
        assert (ms.weight_quant.hi.flatten() <= hi + 1e-7).all() and (ms.weight_quant.lo.flatten() >= lo - 1e-7).all()
        assert (ms.weight_quant.hi.flatten() < hi).any(), name  # 3-bit filters: clipping pays somewhere
        err = {k: float((q.weight_quant(w) - w).pow(2).sum()) for k, q in (("minmax", mm), ("mse", ms))}
        assert err["mse"] <= err["minmax"] + 1e-9, name


@pytest.mark.filterwarnings("ignore:exporting a model without runtime points")
def test_export_refuses_subset_quantizer(tmp_path):
    from srquant.export import ExportError, export_onnx

    q = srquant.quantize(tiny_model(), DFSQConfig(w_bits=8, a_bits=8, **FAST), tiny_calib())
    with pytest.raises(ExportError, match="SubsetQuantizer has no ONNX QDQ form"):
        export_onnx(q, tmp_path / "dfsq.onnx")
    assert not (tmp_path / "dfsq.onnx").exists()
