"""Mixed precision under a size budget: costs, sensitivities and the greedy allocation (srquant.quant.mixed_precision)."""
import copy

import pytest
import torch

import srquant
from srquant.methods import MinMaxConfig
from srquant.quant.mixed_precision import (LayerCost, allocate_bits, allocate_split, average_bits, bit_overrides,
                                           layer_costs, layer_sensitivities)
from srquant.quant.walk import quant_layers

from conftest import TinyResidualNet, tiny_calib

LAYERS = ["head", "body.0.conv1", "body.0.conv2", "body.1.conv1", "body.1.conv2", "tail"]


def test_layer_costs_count_weights_and_input_values_per_pixel():
    costs = layer_costs(TinyResidualNet(c=8), torch.rand(2, 3, 10, 10), LAYERS)
    assert costs["head"] == LayerCost(8 * 3 * 9, 3.0)
    assert costs["body.0.conv1"] == LayerCost(8 * 8 * 9, 8.0)
    assert costs["tail"].params == 3 * 8 * 9
    with pytest.raises(ValueError, match="not quantizable"):
        layer_costs(TinyResidualNet(), torch.rand(1, 3, 8, 8), ["body"])


def test_allocation_gives_the_bits_to_the_layer_that_gains_most():
    costs = {"a": LayerCost(100, 1.0), "b": LayerCost(100, 1.0)}
    sens = {"a": {3: 10.0, 4: 5.0, 6: 1.0, 8: 0.0}, "b": {3: 1.0, 4: 0.5, 6: 0.1, 8: 0.0}}
    bits = allocate_bits(sens, costs, 4.5)
    assert average_bits(bits, costs) == (4.5, 4.5)
    assert bits == {"a": 6, "b": 3}  # 'a' gains 9 dB-units from 3 -> 6 bits, 'b' at most 1
    assert allocate_bits(sens, costs, 8) == {"a": 8, "b": 8}
    assert allocate_bits(sens, costs, 3) == {"a": 3, "b": 3}
    with pytest.raises(ValueError, match="below the narrowest"):
        allocate_bits(sens, costs, 2.5)


def test_allocation_respects_separate_weight_and_activation_budgets():
    # 'big' holds most weights, 'wide' reads most activation values
    costs = {"big": LayerCost(900, 1.0), "wide": LayerCost(100, 9.0)}
    sens = {n: {3: 4.0, 4: 2.0, 6: 1.0, 8: 0.0} for n in costs}
    bits = allocate_bits(sens, costs, w_budget=6.0, a_budget=3.5)
    assert bits == {"big": 6, "wide": 3}  # 'wide' at 4 bits alone breaks the activation budget, 'big' at 8 the weights'
    w, a = average_bits(bits, costs)
    assert w == pytest.approx(5.7) and a == pytest.approx(3.3)
    assert allocate_bits(sens, costs, w_budget=4.0) == {"big": 4, "wide": 4}


def test_split_allocation_gives_weights_and_inputs_their_own_widths():
    costs = {"a": LayerCost(100, 1.0), "b": LayerCost(100, 1.0)}
    w_sens = {"a": {3: 10.0, 4: 5.0, 6: 1.0, 8: 0.0}, "b": {3: 1.0, 4: 0.5, 6: 0.1, 8: 0.0}}
    a_sens = {"a": w_sens["b"], "b": w_sens["a"]}  # the inputs rank the other way round
    assert allocate_split(w_sens, a_sens, costs, 4.5) == {"a": (6, 3), "b": (3, 6)}
    assert allocate_split(w_sens, a_sens, costs, 3.0, 8.0) == {"a": (3, 8), "b": (3, 8)}
    assert bit_overrides({"a": (6, 3), "b": 4}) == {"a": {"w_bits": 6, "a_bits": 3}, "b": {"w_bits": 4, "a_bits": 4}}


def test_sensitivities_equal_quantizing_one_layer_alone_and_fall_with_width():
    torch.manual_seed(0)
    model, calib = TinyResidualNet(c=8).eval(), tiny_calib()
    with torch.no_grad():
        ref = model(calib)

    def loss(qmodel):
        with torch.no_grad():
            return float((qmodel(calib) - ref).pow(2).mean())

    quantized = {b: srquant.quantize(model, MinMaxConfig(w_bits=b, a_bits=b, scope="all"), calib) for b in (3, 8)}
    sens = layer_sensitivities(quantized, ["head", "tail"], loss)
    for name in ("head", "tail"):
        assert sens[name][3] > sens[name][8] > 0
        alone = srquant.quantize(model, MinMaxConfig(w_bits=3, a_bits=3, scope="all",
                                                     overrides={"*": "fp", name: {"w_bits": 3, "a_bits": 3}}), calib)
        assert sens[name][3] == pytest.approx(loss(alone), rel=1e-6)
    weights = layer_sensitivities(quantized, ["head"], loss, part="weights")["head"][3]
    inputs = layer_sensitivities(quantized, ["head"], loss, part="inputs")["head"][3]
    only_weights = copy.deepcopy(model)  # the float model with the head's 3-bit weights
    head = dict(quant_layers(quantized[3]))["head"]
    with torch.no_grad():
        only_weights.head.weight.copy_(head.weight_quant(head.weight))
    assert weights == pytest.approx(loss(only_weights), rel=1e-6) and 0 < inputs < sens["head"][3]
    with pytest.raises(ValueError, match="part must be"):
        layer_sensitivities(quantized, ["head"], loss, part="bias")
    assert all(q.mode == "quant" for m in quantized.values() for _, layer in quant_layers(m)
               for q in (layer.weight_quant, layer.input_quant))  # the scan leaves every quantizer on


def test_bit_overrides_reach_the_quantized_layers():
    model, calib = TinyResidualNet(c=8).eval(), tiny_calib()
    bits = {"head": 8, "body.0.conv1": 3, "tail": 6}
    qmodel = srquant.quantize(model, MinMaxConfig(w_bits=4, a_bits=4, scope="all", overrides=bit_overrides(bits)), calib)
    got = {n: m.weight_quant.bits for n, m in quant_layers(qmodel)}
    assert got["head"] == 8 and got["body.0.conv1"] == 3 and got["tail"] == 6 and got["body.1.conv2"] == 4
