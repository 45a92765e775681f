"""Every released checkpoint reproduces the Y-PSNR of ../shared/weights/MANIFEST.md within 0.01 dB."""
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
