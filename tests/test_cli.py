"""The srquant command line on the embedded default (ABPN x4) and the scikit-image demo photos: no ../shared."""
import json

import pytest

from srquant.cli import main

SCHEMA_KEYS = {"model", "dataset", "scale", "method", "w_bits", "a_bits", "psnr_y", "ssim_y", "n_images", "seconds"}


def test_models_lists_registry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "imdn" in out and "abpn" in out and "embedded x2,x4" in out.replace("x4 ", "x4")


def test_eval_embedded_default_writes_schema(tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", "abpn", "--scale", "4", "--json", str(out), "--quiet"]) == 0
    payload = json.loads(out.read_text())
    (rec,) = payload["results"]
    assert SCHEMA_KEYS <= set(rec) and rec["method"] == "fp32" and rec["n_images"] == 6
    assert len(rec["images"]) == 6 and 20 < rec["psnr_y"] < 50
    assert "skimage-demo" in capsys.readouterr().out


def test_eval_bicubic_is_worse_than_abpn(tmp_path):
    main(["eval", "--model", "bicubic", "--scale", "4", "--json", str(tmp_path / "b.json"), "--quiet"])
    main(["eval", "--model", "abpn", "--scale", "4", "--json", str(tmp_path / "a.json"), "--quiet"])
    bicubic = json.loads((tmp_path / "b.json").read_text())["results"][0]["psnr_y"]
    abpn = json.loads((tmp_path / "a.json").read_text())["results"][0]["psnr_y"]
    assert abpn > bicubic + 0.5


def test_quantize_writes_artifacts_and_resumes(tmp_path, capsys):
    args = ["quantize", "--model", "abpn", "--scale", "4", "--method", "minmax", "--n-calib", "4", "--patch", "24",
            "--out", str(tmp_path / "run"), "--quiet"]
    assert main(args) == 0
    first = capsys.readouterr().out
    payload = json.loads((tmp_path / "run" / "results.json").read_text())
    fp, q = payload["results"]
    assert fp["method"] == "fp32" and q["method"] == "minmax" and q["w_bits"] == 8 and q["calib_seconds"] > 0
    assert q["config"]["scope"] == "body" and abs(q["psnr_y"] - fp["psnr_y"]) < 0.5
    assert "calibrated minmax" in first and (tmp_path / "run" / "results.md").read_text().startswith("| model")
    assert main(args) == 0
    again = capsys.readouterr().out
    assert "reusing" in again
    assert json.loads((tmp_path / "run" / "results.json").read_text())["results"][1]["psnr_y"] == q["psnr_y"]
    assert main(args[:-3] + ["--seed", "1"] + args[-3:]) == 0  # other calibration patches: recalibrate
    assert "calibrated minmax" in capsys.readouterr().out


@pytest.mark.parametrize("bad,message", [
    (["--w-bits", "1"], "w_bits must be an integer from 2 to 8"),
    (["--option", "percentile"], "key=value"),
    (["--model", "nope"], "unknown model"),
])
def test_quantize_bad_input_is_a_clear_error(tmp_path, capsys, bad, message):
    args = ["quantize", "--n-calib", "2", "--patch", "16", "--out", str(tmp_path / "r"), "--quiet", *bad]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r" / "model.pt").exists()


def test_eval_needs_weights_when_none_embedded(capsys):
    assert main(["eval", "--model", "imdn", "--scale", "4", "--quiet"]) == 2
    assert "no embedded weights" in capsys.readouterr().err
