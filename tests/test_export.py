"""Real-INT8 export: runtime quantization points, ONNX QDQ export, ONNX Runtime op report, ort-* methods.

Small random-init models built here (no ../shared needed); the integration test at the end skips when the
shared weights and benchmarks are absent.
"""
import json
from collections import Counter

import onnx
import pytest
import torch
from torch import nn

import srquant
from srquant.export import ExportError, OrtRunner, export_onnx, op_report, optimized_graph
from srquant.export.runtime import cpu_has_vnni
from srquant.methods import MinMaxConfig, OrtMinMaxConfig
from srquant.methods.ort import OrtQuantizedModel
from srquant.models.imdn import IMDN
from srquant.models.pan import PAN
from srquant.quant.walk import act_points, graph_quantizers

from conftest import need_shared

# ONNX Runtime's U8S8 kernels saturate int16 pair sums on x86 CPUs without VNNI: 7-bit weight codes are exact.
W_BITS = 8 if cpu_has_vnni() else 7


def _tiny(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "imdn":  # conv + leaky ReLU + split + concat + contrast channel attention + residuals + shuffle
        model = IMDN(scale=2, nf=32, num_modules=2)
    else:  # PAN: sigmoid gates, nearest upsampling, bilinear skip added at the end
        model = PAN(scale=2, nf=16, unf=8, nb=2)
    return model.eval()


def _calib(n: int = 8, size: int = 24) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    base = torch.rand(n, 3, size // 4, size // 4, generator=g)  # smooth images: SR nets are tame on them
    return nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)


def _quantize(kind: str, **kw) -> tuple[nn.Module, nn.Module]:
    model = _tiny(kind)
    config = MinMaxConfig(w_bits=W_BITS, a_bits=8, scope="all", act_points="runtime", **kw)
    return model, srquant.quantize(model, config, _calib())


def _n_convs(model: nn.Module) -> int:
    return sum(isinstance(m, nn.Conv2d) for m in model.modules())


@pytest.fixture(scope="module")
def imdn_export(tmp_path_factory):
    model, qmodel = _quantize("imdn")
    path = export_onnx(qmodel, tmp_path_factory.mktemp("onnx") / "imdn_int8.onnx")
    return model, qmodel, path


def test_runtime_points_quantize_conv_outputs_and_concats():
    _, qmodel = _quantize("imdn")
    names = [p.tensor for _, p in act_points(qmodel)]
    assert any(n.endswith(":cat") for n in names)  # the distillation concat
    assert any(n.endswith(":c1") for n in names)  # a conv output
    assert any("cca" in n for n in names)  # channel-attention tensors
    assert all(q.mode == "quant" for _, q in graph_quantizers(qmodel))
    # the points only add roundings: with every quantizer off the model is the float model again
    from srquant.quant.walk import quantizers_off

    x = _calib(2)
    with torch.no_grad(), quantizers_off(qmodel):
        assert torch.allclose(qmodel(x), _tiny("imdn")(x), atol=1e-5)


def test_every_conv_runs_as_qlinearconv(imdn_export):
    model, _, path = imdn_export
    ops = Counter(n.op_type for n in optimized_graph(path).graph.node)
    assert ops["QLinearConv"] == _n_convs(model)
    assert ops["Conv"] == 0 and ops["FusedConv"] == 0
    for op in ("QLinearAdd", "QLinearConcat", "QLinearLeakyRelu", "QLinearMul", "QLinearGlobalAveragePool"):
        assert ops[op] > 0, op


def test_export_matches_simulation(imdn_export):
    _, qmodel, path = imdn_export
    x = _calib(2, 20)
    with torch.no_grad():
        sim = qmodel(x)
    ort = OrtRunner(path)(x)
    assert ort.shape == sim.shape == (2, 3, 40, 40)
    diff = (ort - sim).abs()
    # roundings on exactly-tied values and float summation order flip single LSBs; nothing more
    assert diff.mean() < 0.02 * sim.abs().mean()
    assert diff.max() < 0.1 * sim.abs().max()


def test_op_report_lists_float_ops(imdn_export):
    model, _, path = imdn_export
    report = op_report(path, _calib(1, 32), runs=1)
    assert report.integer_convs == report.source_convs == _n_convs(model)
    floats = {s.op for s in report.float_ops()}
    assert "QLinearConv" not in floats
    assert {"Sqrt", "DepthToSpace"} <= floats  # std of the channel attention (1x1 tensors), the pixel shuffle
    assert "float ops:" in report.format()


def test_pan_export_keeps_final_add_float(tmp_path):
    model, qmodel = _quantize("pan")
    path = export_onnx(qmodel, tmp_path / "pan.onnx")
    ops = Counter(n.op_type for n in optimized_graph(path).graph.node)
    assert ops["QLinearConv"] == _n_convs(model)
    assert ops["QLinearSigmoid"] > 0 and ops["QLinearMul"] > 0
    x = _calib(1, 16)
    with torch.no_grad():
        sim = qmodel(x)
    assert (OrtRunner(path)(x) - sim).abs().mean() < 0.02 * sim.abs().mean()


def test_save_load_roundtrip_with_runtime_points(tmp_path):
    _, qmodel = _quantize("imdn")
    srquant.save(qmodel, tmp_path / "q.pt")
    again = srquant.load(tmp_path / "q.pt", model=_tiny("imdn"))
    x = _calib(1)
    with torch.no_grad():
        assert torch.equal(qmodel(x), again(x))


def test_export_refuses_low_bit_activations(tmp_path):
    model = _tiny("imdn")
    qmodel = srquant.quantize(model, MinMaxConfig(w_bits=4, a_bits=4, scope="all", act_points="runtime"), _calib())
    with pytest.raises(ExportError, match="8"):
        export_onnx(qmodel, tmp_path / "x.onnx")


def test_ort_minmax_method(tmp_path):
    model = _tiny("imdn")
    q = srquant.quantize(model, OrtMinMaxConfig(scope="all", reduce_range=True), _calib())
    assert isinstance(q, OrtQuantizedModel) and q.onnx_path.exists() and q.calib_seconds > 0
    x = _calib(1)
    with torch.no_grad():
        ref = model(x)
    out = q(x)
    assert out.shape == ref.shape
    assert (out - ref).abs().mean() < 0.05 * ref.abs().mean()
    ops = Counter(n.op_type for n in optimized_graph(q.onnx_path).graph.node)
    assert ops["QLinearConv"] == _n_convs(model)
    with pytest.raises(ValueError, match="ONNX"):
        srquant.save(q, tmp_path / "q.pt")
    body = srquant.quantize(model, OrtMinMaxConfig(scope="body", reduce_range=True), _calib())
    assert len(body.excluded_nodes) == 2  # head conv and the upsampler conv stay float


@pytest.mark.shared
@pytest.mark.slow
def test_imdn_x4_export_within_003_db_of_simulation(tmp_path):
    weights = need_shared("weights", "imdn_x4.pth")
    set5 = need_shared("data", "benchmarks", "Set5")
    calib_dir = need_shared("data", "calib", "SunHays80")
    from srquant.data import BenchmarkFolder, sample_lr_patches
    from srquant.evaluate import evaluate, model_predictor, prepare_input

    model = srquant.create("imdn", 4, weights=weights)
    calib = prepare_input(sample_lr_patches(calib_dir, 16, 48, 4, seed=0).patches, model.sr_info)
    qmodel = srquant.quantize(model, MinMaxConfig(w_bits=W_BITS, scope="all", act_points="runtime"), calib)
    path = export_onnx(qmodel, tmp_path / "imdn.onnx")
    ds = [BenchmarkFolder(set5, 4)]
    sim = evaluate(model_predictor(qmodel, model.sr_info), ds, model="imdn", progress=False)[0].psnr_y
    real = evaluate(model_predictor(OrtRunner(path), model.sr_info), ds, model="imdn", progress=False)[0].psnr_y
    assert abs(sim - real) < 0.03


def test_uint8_weight_storage_is_exact_at_8_bits(tmp_path):
    """8-bit weight codes stored as uint8 (zero point 128) run on kernels that never saturate: ONNX Runtime then
    matches the simulation as closely as at 7 bits, on any CPU."""
    model = _tiny("imdn")
    qmodel = srquant.quantize(model, MinMaxConfig(w_bits=8, a_bits=8, scope="all", act_points="runtime"), _calib())
    path = export_onnx(qmodel, tmp_path / "u8.onnx", weight_storage="uint8")
    graph = onnx.load(str(path)).graph
    weight_types = {i.data_type for i in graph.initializer if len(i.dims) == 4}
    assert weight_types == {onnx.TensorProto.UINT8}
    ops = Counter(n.op_type for n in optimized_graph(path).graph.node)
    assert ops["QLinearConv"] == _n_convs(model) and ops["Conv"] == 0
    x = _calib(2, 20)
    with torch.no_grad():
        sim = qmodel(x)
    diff = (OrtRunner(path)(x) - sim).abs()
    assert diff.mean() < 0.02 * sim.abs().mean()
    with pytest.raises(ExportError, match="weight_storage"):
        export_onnx(qmodel, tmp_path / "bad.onnx", weight_storage="int4")
    assert not (tmp_path / "bad.onnx").exists()


def test_cli_export_and_eval_onnx(tmp_path, capsys):
    from srquant.cli import main

    run = tmp_path / "run"
    assert main(["quantize", "--method", "minmax", "--scope", "all", "--option", "act_points=runtime",
                 "--n-calib", "4", "--patch", "24", "--out", str(run), "--quiet"]) == 0
    sim = json.loads((run / "results.json").read_text())["results"][1]
    assert main(["export", str(run / "model.pt"), "--out", str(tmp_path / "abpn.onnx"), "--size", "16"]) == 0
    assert main(["eval", "--onnx", str(tmp_path / "abpn.onnx"), "--json", str(tmp_path / "ort.json"), "--quiet"]) == 0
    (real,) = json.loads((tmp_path / "ort.json").read_text())["results"]
    assert real["backend"] == "onnxruntime" and real["method"] == "minmax" and real["scale"] == 4
    assert abs(real["psnr_y"] - sim["psnr_y"]) < 0.03


def test_dead_activation_keeps_conv_bias_int32(tmp_path):
    """A ReLU that never fires in calibration gets a scale ~1e-8/255; the conv behind it cannot hold its bias in
    int32 units of s_in * s_w. Left float, ONNX Runtime's WeightBiasQuantization (basic level) converts it with int32
    overflow (every code -2^31), so the fused graph left the simulation (IMDN x2: -0.8 dB on Set5). The export
    widens that activation's scale instead: every conv bias is int32 and all optimization levels agree."""
    model = _tiny("imdn")
    with torch.no_grad():
        model.IMDB1.cca.conv_du[0].bias.fill_(-100.0)  # squeeze conv always negative: the ReLU after it is dead
    qmodel = srquant.quantize(model, MinMaxConfig(w_bits=W_BITS, a_bits=8, scope="all", act_points="runtime"),
                              _calib())
    with pytest.warns(UserWarning, match="almost empty calibration range"):
        path = export_onnx(qmodel, tmp_path / "dead.onnx")
    graph = onnx.load(str(path)).graph
    floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    assert not [n.name for n in graph.node if n.op_type == "Conv" and len(n.input) > 2 and n.input[2] in floats]
    x = _calib(1, 16)
    with torch.no_grad():
        sim = qmodel(x)
    plain = OrtRunner(path, threads=1, optimization="disable")(x)
    fused = OrtRunner(path, threads=1, optimization="basic")(x)
    assert torch.equal(plain, fused)
    assert (OrtRunner(path, threads=1)(x) - sim).abs().mean() < 0.02 * sim.abs().mean()


def test_narrow_convs_padded_to_16_filters_give_the_same_outputs(tmp_path):
    _, qmodel = _quantize("pan")  # nf=16, unf=8: the upsampler convs and the 8 -> 3 output conv are narrow
    padded = export_onnx(qmodel, tmp_path / "padded.onnx")
    plain = export_onnx(qmodel, tmp_path / "plain.onnx", pad_out_channels=0)
    def conv_widths(path):
        graph = onnx.load(str(path)).graph
        inits = {t.name: t for t in graph.initializer}
        producers = {o: n for n in graph.node for o in n.output}
        return [inits[producers[n.input[1]].input[0]].dims[0] for n in graph.node if n.op_type == "Conv"], graph

    before, _ = conv_widths(plain)
    after, graph = conv_widths(padded)
    assert sorted(after) == sorted(max(w, 16) for w in before) and min(before) < 16
    assert Counter(n.op_type for n in graph.node)["Slice"] == sum(w < 16 for w in before)
    x = _calib(2, 32)
    assert torch.equal(OrtRunner(padded, threads=1)(x), OrtRunner(plain, threads=1)(x))
    assert Counter(n.op_type for n in optimized_graph(padded).graph.node)["QLinearConv"] == len(before)
    with pytest.raises(ValueError, match="pad_out_channels"):
        export_onnx(qmodel, tmp_path / "bad.onnx", pad_out_channels=-1)


class _SharedBlockNet(nn.Module):
    """A block applied twice with the same weights (CARN-M's shared residual blocks)."""

    def __init__(self, c: int = 16):
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.shared = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))
        self.tail = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x):
        f = self.head(x)
        f = f + self.shared(f)
        return self.tail(f + self.shared(f))


def test_a_conv_run_twice_exports_one_bias_per_grid(tmp_path):
    torch.manual_seed(0)
    model = _SharedBlockNet().eval()
    with pytest.warns(UserWarning, match="more than once per forward"):
        qmodel = srquant.quantize(model, MinMaxConfig(w_bits=W_BITS, a_bits=8, scope="all", act_points="runtime"),
                                  _calib())
    path = export_onnx(qmodel, tmp_path / "shared.onnx")  # checked: every tensor name defined once
    x = _calib(1, 16)
    with torch.no_grad():
        sim = qmodel(x)
    assert (OrtRunner(path, threads=1)(x) - sim).abs().max() < 0.05 * sim.abs().max()
