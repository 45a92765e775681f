"""The Quantizer contract: one observe step, the calibrated state restored by load_state_dict, one observing loop."""
import pytest
import torch
from torch import nn

from srquant.quant.dual_region import DualRegionQuantizer
from srquant.quant.layers import make_quant_layer
from srquant.quant.observers import RangeObserver, TensorList
from srquant.quant.quantizers import Quantizer, UniformQuantizer
from srquant.quant.subset import SubsetQuantizer
from srquant.quant.walk import observing

X = torch.randn(2, 4, 5, 5, generator=torch.Generator().manual_seed(0))


def test_every_quantizer_kind_is_a_quantizer():
    for q in (UniformQuantizer(4), SubsetQuantizer(2, 4), DualRegionQuantizer(4)):
        assert isinstance(q, Quantizer) and q.mode == "off" and q.observer is None
        torch.testing.assert_close(q(X), X)  # off: pass through


@pytest.mark.parametrize("learned_rounding", [False, True])
def test_uniform_state_dict_restores_shape_rounding_and_mode(learned_rounding):
    q = UniformQuantizer(4, symmetric=True, axis=0)
    w = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(1))
    q.init_from_minmax(w)
    if learned_rounding:
        q.init_learned_rounding(w)
        q.hard_rounding = True
    fresh = UniformQuantizer(4, symmetric=True, axis=0)
    fresh.load_state_dict(q.state_dict())
    assert fresh.mode == "quant" and fresh.lo.shape == (4, 1, 1, 1)
    assert (fresh.alpha is not None) == learned_rounding and fresh.hard_rounding
    torch.testing.assert_close(fresh(w), q(w), rtol=0, atol=0)


def test_subset_and_dual_region_state_dicts_restore_calibration():
    s = SubsetQuantizer(2, 4)
    s.set_points(torch.tensor([[-1.0, -0.5, 0.0, 1.0]]).repeat(4, 1))
    s.post_relu.fill_(False)
    s.mode = "quant"
    d = DualRegionQuantizer(4)
    d.set_range(-1.0, 2.0, 0.5)
    for q, fresh in ((s, SubsetQuantizer(2, 4)), (d, DualRegionQuantizer(4))):
        fresh.load_state_dict(q.state_dict())
        assert fresh.mode == "quant"
        torch.testing.assert_close(fresh(X), q(X), rtol=0, atol=0)


def test_observing_feeds_the_observers_and_restores_the_modes():
    model = nn.Sequential(make_quant_layer(nn.Conv2d(4, 4, 3), 8, 8, "channel", "tensor", True, False),
                          make_quant_layer(nn.Conv2d(4, 4, 3), 8, 8, "channel", "tensor", True, False))
    model[0].weight_quant.mode = "quant"
    first, second = model[0].input_quant, model[1].input_quant
    seen, ranges = TensorList(), RangeObserver(None)
    with observing(model, {first: seen, second: ranges}):
        assert model[0].weight_quant.mode == "off" and first.mode == second.mode == "observe"
        model(X)
    assert len(seen.tensors) == 1 and torch.equal(seen.tensors[0], X)
    assert float(ranges.lo) < float(ranges.hi)
    assert first.mode == second.mode == "off" and first.observer is second.observer is None
    with pytest.raises(RuntimeError), observing(model, {first: TensorList()}):
        raise RuntimeError("calibration failed")
    assert first.mode == "off" and first.observer is None
