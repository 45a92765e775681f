"""Every released checkpoint reproduces the Y-PSNR of ../shared/weights/MANIFEST.md within 0.01 dB; the embedded
defaults beat bicubic on Set5."""
import pytest
import torch

from srquant.data import BenchmarkFolder
from srquant.evaluate import evaluate, model_predictor
from srquant.models import create
from srquant.models.releases import RELEASES

from conftest import need_shared


@pytest.mark.shared
@pytest.mark.parametrize("name,scale,weights,dataset,expected", RELEASES, ids=[f"{r.model}-x{r.scale}-{r.dataset}" for r in RELEASES])
def test_checkpoint_reproduces_manifest_psnr(name, scale, weights, dataset, expected):
    model = create(name, scale, weights=need_shared("weights", weights))
    folder = BenchmarkFolder(need_shared("data", "benchmarks", dataset), scale)
    with torch.inference_mode():
        rec = evaluate(model_predictor(model, model.sr_info), [folder], model=name, progress=False)[0]
    assert rec.psnr_y == pytest.approx(expected, abs=0.01)


@pytest.mark.shared
@pytest.mark.parametrize("scale,gain", [(2, 2.0), (4, 1.5)])
def test_embedded_abpn_beats_bicubic_on_set5(scale, gain):
    from srquant.evaluate import bicubic_predictor

    folder = BenchmarkFolder(need_shared("data", "benchmarks", "Set5"), scale)
    model = create("abpn", scale, pretrained=True)
    with torch.inference_mode():
        ours = evaluate(model_predictor(model, model.sr_info), [folder], model="abpn", progress=False)[0].psnr_y
    bicubic = evaluate(bicubic_predictor(scale), [folder], model="bicubic", progress=False)[0].psnr_y
    assert ours >= bicubic + gain


@pytest.mark.shared
def test_models_verify_prints_the_reference_table(capsys):
    from srquant.cli import main

    assert main(["models", "imdn_rtc", "--verify", "--shared", str(need_shared())]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| imdn_rtc")]
    assert len(rows) == sum(r.model == "imdn_rtc" for r in RELEASES)
    assert all(abs(float(row.split("|")[-2])) <= 0.01 for row in rows)


def test_models_verify_needs_the_shared_folder(tmp_path, capsys):
    from srquant.cli import main

    assert main(["models", "--verify", "--shared", str(tmp_path)]) == 2
    assert "--verify needs" in capsys.readouterr().err
