"""Released checkpoints (IMDN, IMDN_RTC, KAIR IMDN, RFDN, PAN, CARN-M, RLFN, BSRN, VDSR) and their architectures.

The real-weight tests read ../shared/weights (skipped when absent): strict key matching, the parameter counts of
weights/MANIFEST.md, and a forward-pass sanity check (the SR of a Set5 crop beats bicubic). The full Set5 PSNR
reproduction lives in the benchmark suite; the architecture tests at random init need nothing.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import need_shared
from srquant.data import imresize, read_image, rgb_to_y
from srquant.models import CheckpointError, create

# (registered name, scale, checkpoint file, parameter count from weights/MANIFEST.md)
CHECKPOINTS = [
    ("imdn", 2, "imdn_x2.pth", 694_404),
    ("imdn", 3, "imdn_x3.pth", 703_059),
    ("imdn", 4, "imdn_x4.pth", 715_176),
    ("imdn_rtc", 2, "imdn_rtc_x2.pth", 20_190),
    ("imdn_kair", 4, "imdn_ntire22_baseline_x4.pth", 893_936),
    ("rfdn", 4, "rfdn_aim_x4.pth", 433_448),
    ("pan", 2, "pan_x2.pth", 261_403),
    ("pan", 3, "pan_x3.pth", 261_403),
    ("pan", 4, "pan_x4.pth", 272_419),
    ("carn_m", 2, "carn_m_x234.pth", 414_811),
    ("carn_m", 3, "carn_m_x234.pth", 414_811),
    ("carn_m", 4, "carn_m_x234.pth", 414_811),
    ("rlfn", 4, "rlfn_ntire22_x4.pth", 317_218),
    ("bsrn", 4, "bsrn_ntire22_x4.pth", 156_288),
    ("vdsr", 2, "vdsr_x234.pth", 664_704),
]
IDS = [f"{name}-x{scale}" for name, scale, _, _ in CHECKPOINTS]


pytestmark = pytest.mark.usefixtures("one_thread")


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _psnr_y(sr: np.ndarray, hr: np.ndarray, shave: int) -> float:
    diff = (sr - hr)[shave:-shave, shave:-shave]
    return float(10 * np.log10(255.0**2 / np.mean(diff**2)))


@pytest.mark.shared
@pytest.mark.parametrize(("name", "scale", "filename", "params"), CHECKPOINTS, ids=IDS)
def test_release_loads_strictly(name, scale, filename, params):
    model = create(name, scale, weights=need_shared("weights", filename))
    assert _n_params(model) == params
    assert not model.training


@pytest.mark.shared
@pytest.mark.parametrize(("name", "scale", "filename", "params"), CHECKPOINTS, ids=IDS)
def test_release_beats_bicubic_on_a_set5_crop(name, scale, filename, params):
    """The central 24x24 LR crop of Set5 'bird': the model must beat bicubic by > 3 dB.

    The released nets gain 4.8-9.2 dB here; a wrong forward pass (a missing skip, a wrong branch) falls far short.
    """
    bench = need_shared("data", "benchmarks", "Set5")
    model = create(name, scale, weights=need_shared("weights", filename))
    info = model.sr_info
    lr = read_image(bench / "LR_bicubic" / f"X{scale}" / f"birdx{scale}.png")
    top, left = lr.shape[0] // 2 - 12, lr.shape[1] // 2 - 12
    lr = lr[top : top + 24, left : left + 24]
    hr = read_image(bench / "HR" / "bird.png")[top * scale : (top + 24) * scale, left * scale : (left + 24) * scale]
    hr_y = rgb_to_y(hr)
    bicubic = imresize(lr.astype(np.float64), scale)
    if info.color == "y":
        x = torch.from_numpy(rgb_to_y(bicubic) / 255.0)[None, None]
    else:
        x = torch.from_numpy(lr.transpose(2, 0, 1) / 255.0)[None]
    with torch.inference_mode():
        out = model(x.float() * info.input_range)[0].double().numpy() * (255.0 / info.input_range)
    sr = np.clip(out, 0, 255)
    sr_y = sr[0] if info.color == "y" else rgb_to_y(sr.transpose(1, 2, 0))
    shave = 2 * scale  # past the crop's own border effects
    assert _psnr_y(sr_y, hr_y, shave) > _psnr_y(rgb_to_y(bicubic), hr_y, shave) + 3.0


@pytest.mark.shared
def test_legacy_vdsr_pickle_is_refused():
    with pytest.raises(CheckpointError, match="legacy"):
        create("vdsr", 2, weights=need_shared("weights", "vdsr_x234_ORIGINAL_legacy_pickle.pth"))


# ---------------------------------------------------------------------------------------------------------------
# Architectures at random init (no ../shared needed). ESA-based nets (RFDN, RLFN, BSRN) need >= 15x15 inputs.

ARCHS = [
    ("imdn", 12),
    ("imdn_rtc", 12),
    ("imdn_kair", 12),
    ("pan", 12),
    ("carn_m", 12),
    ("rfdn", 16),
    ("rlfn", 16),
    ("bsrn", 16),
]


@pytest.mark.parametrize(("name", "size"), ARCHS, ids=[a for a, _ in ARCHS])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_architecture_output_shape(name, size, scale):
    torch.manual_seed(0)
    model = create(name, scale)
    with torch.inference_mode():
        out = model(torch.rand(1, 3, size, size) * model.sr_info.input_range)
    assert out.shape == (1, 3, size * scale, size * scale)
    assert torch.isfinite(out).all()


def test_vdsr_keeps_the_upsampled_size_for_every_scale():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 24, 24)
    for scale in (2, 3, 4):
        model = create("vdsr", scale)
        assert model.sr_info.color == "y" and model.sr_info.upsample_input
        with torch.inference_mode():
            assert model(x).shape == x.shape


def test_carn_m_branch_follows_construction_scale_unless_overridden():
    torch.manual_seed(0)
    model = create("carn_m", 2)
    x = torch.rand(1, 3, 8, 8)
    with torch.inference_mode():
        assert model(x).shape[-1] == 16
        assert model(x, scale=3).shape[-1] == 24
        assert model(x, 4).shape[-1] == 32
    assert create("carn_m", 4).scale == 4


@pytest.mark.parametrize(("name", "scale", "size"), [("rfdn", 4, 16), ("imdn_rtc", 2, 12)])
def test_optional_output_clip(name, scale, size):
    torch.manual_seed(0)
    plain = create(name, scale)
    clipped = create(name, scale, clip_output=True)
    clipped.load_state_dict(plain.state_dict())
    top = plain.sr_info.input_range
    assert not plain.clip_output and not plain.sr_info.clip_output
    assert clipped.clip_output and clipped.sr_info.clip_output
    x = torch.rand(1, 3, size, size) * top
    with torch.inference_mode():
        raw, out = plain(x), clipped(x)
    assert raw.min() < 0 or raw.max() > top  # random init overshoots, so the clip has work to do
    assert torch.equal(out, raw.clamp(0, top))
