"""``srquant analyze layer-loss``: a saved quantized model with one layer's weights, then its input, in float."""
import srquant
from srquant.cli import main
from srquant.evaluate import calibration_batch
from srquant.methods import MinMaxConfig
from test_bench import write_tiny_set


def test_layer_loss_table(tmp_path, capsys):
    data = write_tiny_set(tmp_path / "tiny")
    model = srquant.create("abpn", 4, pretrained=True)  # trained: quantization costs real dB
    qmodel = srquant.quantize(model, MinMaxConfig(w_bits=4, a_bits=4), calibration_batch(model.sr_info, n=4, patch=16))
    srquant.save(qmodel, tmp_path / "q.pt")
    out = tmp_path / "out"
    assert main(["analyze", "layer-loss", str(tmp_path / "q.pt"), "--model", "abpn", "--scale", "4", "--data", data,
                 "--threads", "1", "--out", str(out), "--quiet"]) == 0
    assert "abpn x4, minmax W4A4, tiny: FP32" in capsys.readouterr().out
    lines = (out / "layer_loss.csv").read_text().splitlines()
    assert lines[0] == "layer,w bits,a bits,weights in float dB,input in float dB"
    layers = [line.split(",") for line in lines[1:-2]]
    assert len(layers) == sum(1 for _ in srquant.quant.walk.quant_layers(qmodel))
    assert all(row[1] == row[2] == "4" for row in layers)
    every_weight = float(lines[-2].split(",")[3])
    assert every_weight > 0.05  # W4 weights in float recover PSNR on a W4A4 model
    assert lines[-1].startswith("every input,")
