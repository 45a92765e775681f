"""Representative-dataset curation (srquant.rd) and full-integer INT8 (fullint) on hand-made models and images.

No ../shared needed: toy models whose outputs are computable by hand, and a random-init ESPCN for the CLI.
"""
import json

import numpy as np
import pytest
import torch
from torch import nn

import srquant
from srquant.cli import main
from srquant.data import imresize, write_image
from srquant.methods import FullIntConfig, MinMaxConfig
from srquant.models import SRInfo
from srquant.rd import (BlurConfig, OutlierConfig, Score, box_blur_at, curate, enhance, find_outliers, global_blur,
                        load_rd, model_variant, quantize_rd, rank, rd_image, score_images, select_clean, select_good,
                        window_mask)
from srquant.rd.outliers import range_mask, to_lr_grid, zscore_mask


class Gain(nn.Module):
    """Pointwise toy SR model: nearest x2 upsampling, then 1.2 x - 0.1 (overshoots for dark and bright pixels)."""

    sr_info = SRInfo("gain", 2)

    def forward(self, x):
        return nn.functional.interpolate(x, scale_factor=2, mode="nearest") * 1.2 - 0.1


class ShuffleNet(nn.Module):
    """conv1x1 (y = 2x - 0.5 on every output channel) -> PixelShuffle(2) [-> clamp to [0, 1]]."""

    def __init__(self, clip_output: bool):
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            for c in range(12):
                self.conv.weight[c, c // 4] = 2.0
            self.conv.bias.fill_(-0.5)
        self.shuffle = nn.PixelShuffle(2)
        self.clip_output = clip_output
        self.sr_info = SRInfo("shuffle", 2, clip_output=clip_output)

    def forward(self, x):
        out = self.shuffle(self.conv(x))
        return out.clamp(0.0, 1.0) if self.clip_output else out


def _gray_with_bright_block() -> np.ndarray:
    img = np.full((8, 8, 3), 128, np.uint8)
    img[3:5, 3:5] = 250  # 1.2 * 250 - 25.5 = 274.5 > 255: outliers; 1.2 * 128 - 25.5 = 128.1: fine
    return img


# ---------------------------------------------------------------------------------------------------------------
# ON
# ---------------------------------------------------------------------------------------------------------------
def test_range_outliers_counted_on_hand_made_output():
    y = torch.tensor([[[[-0.01, 0.0, 0.5], [1.0, 1.02, 0.3]]]])  # model units, range [0, 1]
    assert range_mask(y, OutlierConfig(), 1.0).sum() == 2
    assert range_mask(y, OutlierConfig(tolerance=3.0), 1.0).sum() == 1  # -2.55 px is within 3 px; 260.1 is not
    assert range_mask(y * 255, OutlierConfig(), 255.0).sum() == 2  # the same image in a [0, 255] model


def test_find_outliers_counts_values_and_maps_them_to_lr():
    img = np.full((4, 5, 3), 128, np.uint8)
    img[0, 0] = 20  # 1.2 * 20 - 25.5 = -1.5 < 0
    img[2, 3, 1] = 240  # 262.5 > 255, one channel only
    found = find_outliers(Gain(), img)
    assert found.count == 3 * 4 + 1 * 4  # x2 nearest: 4 output values per LR value
    assert found.lr_map.sum() == 2 and found.lr_map[0, 0] and found.lr_map[2, 3]
    assert found.out_range == pytest.approx((-1.5, 262.5), abs=1e-3)
    score = score_images(Gain(), {"img": img})[0]
    assert (score.on, score.out_range) == (found.count, found.out_range)


def test_zscore_and_activation_outliers():
    assert int(zscore_mask(torch.tensor([0.0, 0.0, 0.0, 0.0, 10.0]), 1.5).sum()) == 1  # |10 - 2| > 1.5 * 4.47
    conv = nn.Conv2d(3, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)  # activation = R + G + B
    conv.sr_info = SRInfo("sum", 1)
    img = np.zeros((2, 3, 3), np.uint8)
    img[1, 2] = 255  # 3.0 > 2.5
    found = find_outliers(conv, img, OutlierConfig(kind="activation", threshold=2.5))
    assert found.count == 1 and found.lr_map[1, 2] and found.lr_map.sum() == 1


def test_to_lr_grid_maps_hr_positions_down():
    mask = torch.zeros(1, 3, 6, 8, dtype=torch.bool)
    mask[0, 2, 3, 5] = True
    lr = to_lr_grid(mask, (3, 4))
    assert lr.sum() == 1 and lr[1, 2]


def test_ranking_and_m1_selection_order():
    scores = [Score("c", 5), Score("a", 0), Score("d", 0), Score("b", 17)]
    assert [s.name for s in rank(scores)] == ["a", "d", "c", "b"]
    assert select_good(scores, 3) == ["a", "d", "c"]
    assert select_clean(scores) == ["a", "d"] and select_clean(scores, 5) == ["a", "d", "c"]
    with pytest.raises(ValueError, match="k must be >= 1"):
        select_good(scores, 0)


@pytest.mark.parametrize("kwargs,message", [
    ({"kind": "nope"}, "outlier kind"), ({"lo": 10, "hi": 5}, "lo < hi"), ({"kind": "activation"}, "threshold"),
])
def test_outlier_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OutlierConfig(**kwargs)


# ---------------------------------------------------------------------------------------------------------------
# M2 blurs
# ---------------------------------------------------------------------------------------------------------------
def test_global_blur_is_a_gaussian_of_hand_computed_weights():
    img = np.zeros((9, 9, 3), np.uint8)
    img[4, 4] = 255
    w = np.exp(-np.arange(-2, 3) ** 2 / 2.0)  # sigma 1, truncate 2: a 5-tap kernel
    w /= w.sum()
    expected = np.zeros((9, 9))
    expected[2:7, 2:7] = 255 * np.outer(w, w)
    out = global_blur(img, sigma=1.0, truncate=2.0)
    assert np.array_equal(out[..., 0], np.clip(np.rint(expected), 0, 255).astype(np.uint8))
    assert out[4, 4, 0] == 41 and np.array_equal(out[..., 0], out[..., 2])


def test_box_blur_changes_only_masked_pixels():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    mask = np.zeros((6, 7), bool)
    mask[2, 3] = mask[5, 0] = True
    out = box_blur_at(img, mask, kernel=3)
    assert np.array_equal(out[~mask], img[~mask])
    assert np.array_equal(out[2, 3], np.rint(img[1:4, 2:5].reshape(-1, 3).mean(axis=0)).astype(np.uint8))
    assert window_mask(mask, 1).sum() == 9 + 4  # a 3x3 window, and a 2x2 one cut by the corner


def test_lipb_blurs_only_outlier_pixels_and_removes_outliers():
    img = _gray_with_bright_block()
    result = enhance(Gain(), img, BlurConfig("lipb", kernel=3))
    assert result.on_before == 4 * 4 * 3 and result.on_after == 0 and result.iterations == 1
    changed = np.any(result.image != img, axis=2)
    assert np.array_equal(changed, img[..., 0] == 250)
    assert result.image[3, 3, 0] == 182  # (4 * 250 + 5 * 128) / 9 = 182.2


def test_libb_blurs_a_window_around_outliers():
    img = _gray_with_bright_block()
    result = enhance(Gain(), img, BlurConfig("libb", radius=1, kernel=3))
    changed = np.any(result.image != img, axis=2)
    assert result.on_after < result.on_before
    assert not changed[window_mask(img[..., 0] == 250, 1) == 0].any()  # nothing outside the windows moved
    assert changed[3:5, 3:5].all()


def test_gb_blurs_once_and_only_when_there_are_outliers():
    img = _gray_with_bright_block()
    result = enhance(Gain(), img, BlurConfig("gb"))
    assert result.iterations == 1 and result.on_after < result.on_before
    clean = np.full((8, 8, 3), 128, np.uint8)
    untouched = enhance(Gain(), clean, BlurConfig("gb"))
    assert untouched.iterations == 0 and np.array_equal(untouched.image, clean)


def test_curate_keeps_good_images_and_repairs_bad_ones():
    clean = np.full((8, 8, 3), 128, np.uint8)
    images = {"bad": _gray_with_bright_block(), "good": clean}
    rd, scores = curate(Gain(), images, blur=BlurConfig("lipb"))
    assert [(s.name, s.on) for s in scores] == [("bad", 48), ("good", 0)]
    assert np.array_equal(rd["good"], clean) and find_outliers(Gain(), rd["bad"]).count == 0
    top, _ = curate(Gain(), images, k=1, blur=None)
    assert list(top) == ["good"]
    images["flat"] = np.full((8, 8, 3), 250, np.uint8)  # 1.2 * 250 - 25.5 > 255 everywhere: no blur repairs it
    kept, _ = curate(Gain(), images, blur=BlurConfig("lipb"))
    repaired, _ = curate(Gain(), images, blur=BlurConfig("lipb"), drop_unrepaired=True)
    assert sorted(kept) == ["bad", "flat", "good"] and sorted(repaired) == ["bad", "good"]


def test_blur_config_validation():
    with pytest.raises(ValueError, match="blur method"):
        BlurConfig("median")
    with pytest.raises(ValueError, match="max_iter"):
        BlurConfig(max_iter=0)


# ---------------------------------------------------------------------------------------------------------------
# RD images
# ---------------------------------------------------------------------------------------------------------------
def test_grayscale_rd_image_is_luma_of_the_bicubic_lr():
    img = np.empty((12, 10, 3), np.uint8)
    img[...] = (200, 100, 50)
    lr = rd_image(img, 2, gray=True)
    assert lr.shape == (6, 5, 3)
    assert (lr == 124).all()  # 0.299 * 200 + 0.587 * 100 + 0.114 * 50 = 124.2
    rgb = rd_image(img, 2)
    assert (rgb == np.array([200, 100, 50], np.uint8)).all()
    assert np.array_equal(rd_image(img[:11], 2), imresize(img[:10], 0.5))  # mod-crop first


# ---------------------------------------------------------------------------------------------------------------
# fullint: quantized output, folded clip, uint8 readout
# ---------------------------------------------------------------------------------------------------------------
def _corners_calib() -> torch.Tensor:
    x = torch.zeros(2, 3, 4, 4)
    x[1] = 1.0  # y = 2x - 0.5 spans [-0.5, 1.5]
    return x


def _output_range(qmodel):
    q = qmodel.act_points["output"].quantizer
    return float(q.lo), float(q.hi)


def _conv_out_range(qmodel):
    q = qmodel.act_points["conv"].quantizer
    return float(q.lo), float(q.hi)


def test_fullint_folds_the_clip_into_the_conv_range():
    free = srquant.quantize(ShuffleNet(False), FullIntConfig(readout="dequant"), _corners_calib())
    clipped = srquant.quantize(ShuffleNet(True), FullIntConfig(readout="dequant"), _corners_calib())
    unfolded = srquant.quantize(ShuffleNet(True), FullIntConfig(readout="dequant", fold_clip=False), _corners_calib())
    assert _output_range(free) == _conv_out_range(free) == (-0.5, 1.5)
    assert _output_range(clipped) == _conv_out_range(clipped) == (0.0, 1.0)
    assert _conv_out_range(unfolded) == (-0.5, 1.5) and _output_range(unfolded) == (0.0, 1.0)


def test_uint8_readout_reads_output_codes_as_pixels():
    qmodel = srquant.quantize(ShuffleNet(False), FullIntConfig(), _corners_calib())
    # output range [-0.5, 1.5]: scale 2/255, zero point round(0.5 / (2/255)) = 64; pixel 128 gives
    # y = 2 * 128/255 - 0.5 = 64.25 steps -> code 64 + 64 = 128, read as pixel 128
    x = torch.full((1, 3, 2, 2), 128 / 255)
    with torch.no_grad():
        out = qmodel(x)
    code = 128
    assert torch.allclose(out, torch.full_like(out, code / 255))
    dequant = srquant.quantize(ShuffleNet(False), FullIntConfig(readout="dequant"), _corners_calib())
    with torch.no_grad():
        assert torch.allclose(dequant(x), torch.full((1, 3, 4, 4), (code - 64) * 2 / 255))


def test_raw_input_feeds_pixels_as_codes():
    calib = torch.full((1, 3, 4, 4), 0.5)
    calib[..., 0, 0] = 0.25  # input range [0, 0.5] (0 is always on the grid): scale 0.5 / 255, zero point 0
    qmodel = srquant.quantize(ShuffleNet(True), FullIntConfig(raw_input=True, readout="dequant"), calib)
    x = torch.full((1, 3, 2, 2), 100 / 255)  # pixel 100 -> code 100 -> value 100 * 0.5 / 255
    plain = srquant.quantize(ShuffleNet(True), FullIntConfig(readout="dequant"), calib)
    with torch.no_grad():
        assert torch.allclose(qmodel(x), plain(x * 0.5), atol=1e-6)


def test_fullint_save_load_and_onnx_runtime_match(tmp_path):
    from srquant.export import OrtRunner, export_onnx

    qmodel = srquant.quantize(ShuffleNet(True), FullIntConfig(w_bits=7), _corners_calib())
    srquant.save(qmodel, tmp_path / "q.pt")
    again = srquant.load(tmp_path / "q.pt", model=ShuffleNet(True))
    x = torch.rand(1, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sim = qmodel(x)
        assert torch.equal(again(x), sim)
    real = OrtRunner(export_onnx(qmodel, tmp_path / "q.onnx"))(x)
    assert (real - sim).abs().max() <= 1 / 255 + 1e-6  # at most one code apart (ties, summation order)


def test_fullint_config_validation():
    with pytest.raises(ValueError, match="scope must be 'all'"):
        FullIntConfig(scope="body")
    with pytest.raises(ValueError, match="act_points must be 'runtime'"):
        FullIntConfig(act_points="inputs")
    with pytest.raises(ValueError, match="readout"):
        FullIntConfig(readout="float")
    with pytest.raises(ValueError, match="unsigned 8-bit"):
        FullIntConfig(a_bits=6)


# ---------------------------------------------------------------------------------------------------------------
# calibration on whole RD images
# ---------------------------------------------------------------------------------------------------------------
def test_quantize_rd_merges_sizes_into_the_full_range():
    small = np.full((4, 4, 3), 255, np.uint8)  # y = 1.5 everywhere
    big = np.zeros((6, 5, 3), np.uint8)  # y = -0.5 everywhere
    big[0, 0] = 128  # y = 0.504
    assert _output_range(quantize_rd(ShuffleNet(False), FullIntConfig(readout="dequant"), [big]))[1] < 0.51
    qmodel = quantize_rd(ShuffleNet(False), FullIntConfig(readout="dequant"), [small, big])
    assert _output_range(qmodel) == (-0.5, 1.5)  # the hull of the two sizes' ranges
    with pytest.raises(ValueError, match="min/max ranges"):
        quantize_rd(ShuffleNet(False), srquant.methods.MSEConfig(), [small])
    assert quantize_rd(ShuffleNet(False), MinMaxConfig(), [small, big]).calib_seconds > 0


def test_model_variant_builds_clipped_and_clip_free(tmp_path):
    torch.save(srquant.create("espcn", 2).state_dict(), tmp_path / "w.pt")
    clipped = model_variant("espcn", 2, str(tmp_path / "w.pt"), clip=True)
    free = model_variant("espcn", 2, str(tmp_path / "w.pt"), clip=False)
    assert clipped.sr_info.clip_output and not free.sr_info.clip_output
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        assert torch.equal(clipped(x), free(x).clamp(0, 1))
    with pytest.raises(ValueError, match="no clip_output option"):
        model_variant("imdn", 2, weights="unused.pt")


# ---------------------------------------------------------------------------------------------------------------
# CLI: srquant rd score | select | enhance, srquant quantize --rd
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rd")
    torch.manual_seed(0)
    model = srquant.create("espcn", 2)
    torch.save(model.state_dict(), root / "espcn.pt")
    rng = np.random.default_rng(0)
    for i in range(3):  # HR photos: smooth gradients plus noise of growing strength
        base = np.linspace(40, 200, 32)[None, :, None] * np.ones((32, 1, 3))
        noise = rng.normal(0, 20 * i, (32, 32, 3))
        write_image(root / "photos" / f"p{i}.png", np.clip(base + noise, 0, 255).astype(np.uint8))
    for i in range(2):
        write_image(root / "test" / f"t{i}.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    return root


def _rd_args(root, *extra):
    return ["--model", "espcn", "--scale", "2", "--weights", str(root / "espcn.pt"), "--images", str(root / "photos"),
            *extra]


def test_cli_rd_score_select_enhance(tiny_setup, capsys):
    root = tiny_setup
    assert main(["rd", "score", *_rd_args(root)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "rank" not in line]
    ons = [int(line.split("|")[3]) for line in lines]
    assert len(ons) == 3 and ons == sorted(ons)

    out = root / "selected"
    assert main(["rd", "select", *_rd_args(root, "--k", "2", "--out", str(out))]) == 0
    payload = json.loads((out / "rd.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}.png" for n in payload["selected"]] + ["rd.json"])
    picked = load_rd(out, 2)
    assert all(img.shape == (16, 16, 3) and (img[..., 0] == img[..., 2]).all() for img in picked.values())  # gray LR

    enhanced = root / "enhanced"
    assert main(["rd", "enhance", *_rd_args(root, "--blur", "libb", "--max-iter", "2", "--out", str(enhanced))]) == 0
    report = json.loads((enhanced / "rd.json").read_text())["images"]
    assert [r["name"] for r in report] == ["p0", "p1", "p2"]
    assert all(r["iterations"] == 2 and r["on_after"] > 0 for r in report)  # random net: outliers stay, Thr stops
    assert not [p for p in enhanced.iterdir() if p.suffix not in (".png", ".json")]  # no temporary files left
    none_repaired = root / "repaired"
    assert main(["rd", "enhance", *_rd_args(root, "--blur", "libb", "--max-iter", "2", "--drop-unrepaired",
                                            "--out", str(none_repaired))]) == 2
    assert "no image lost its outliers" in capsys.readouterr().err and not none_repaired.exists()


def test_cli_quantize_with_rd(tiny_setup, capsys):
    root = tiny_setup
    out = root / "q"
    args = ["quantize", "--model", "espcn", "--scale", "2", "--weights", str(root / "espcn.pt"), "--method", "fullint",
            "--scope", "all", "--w-bits", "7", "--clip-output", "on", "--rd", str(root / "selected"),
            "--data", str(root / "test"), "--out", str(out), "--quiet"]
    assert main(args) == 0
    records = json.loads((out / "results.json").read_text())["results"]
    assert [r["method"] for r in records] == ["fp32", "fullint"]
    qmodel = srquant.load(out / "model.pt")
    assert qmodel.sr_info.clip_output and float(qmodel.act_points["output"].quantizer.lo) == 0.0
    assert main([*args[:-3], "--method", "mse", "--out", str(root / "q2"), "--quiet"]) == 2
    assert "min/max ranges" in capsys.readouterr().err
