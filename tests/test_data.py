import numpy as np
import pytest
from PIL import Image

from srquant.data import BenchmarkFolder, ImageError, imresize, mod_crop, read_image, rgb_to_y, sample_lr_patches
from srquant.data.images import to_grayscale_rgb

from conftest import BENCH, need_shared


def test_imresize_hand_computed_halving():
    # width 4 -> 2 with the antialiased cubic (a=-0.5, width 8): weights by hand, symmetric borders
    out = imresize(np.array([[1.0, 2.0, 3.0, 4.0]]), output_shape=(1, 2))
    np.testing.assert_allclose(out, [[1.4609375, 3.5390625]], atol=1e-12)


def test_imresize_constant_and_uint8_rounding():
    img = np.full((12, 9, 3), 77, np.uint8)
    for scale in (0.5, 1 / 3, 2, 3):
        out = imresize(img, scale)
        assert out.dtype == np.uint8 and np.all(out == 77)
    assert imresize(img, 0.5).shape == (6, 5, 3)  # ceil(9 / 2)


def test_imresize_bad_args():
    with pytest.raises(ValueError):
        imresize(np.zeros((4, 4)), 0.5, output_shape=(2, 2))
    with pytest.raises(TypeError):
        imresize(np.zeros((4, 4), np.int32), 0.5)


def test_rgb_to_y_matlab_range():
    assert rgb_to_y(np.array([[[0, 0, 0]]], np.uint8))[0, 0] == pytest.approx(16.0)
    assert rgb_to_y(np.array([[[255, 255, 255]]], np.uint8))[0, 0] == pytest.approx(235.0)


def test_mod_crop():
    assert mod_crop(np.zeros((13, 10, 3)), 4).shape == (12, 8, 3)


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "I;16"])
def test_read_image_odd_modes(tmp_path, mode):
    rng = np.random.default_rng(0)
    if mode == "I;16":
        arr = rng.integers(0, 65536, (8, 6), dtype=np.uint16)
        Image.fromarray(arr).save(tmp_path / "x.png")
        expect = np.floor(arr / 257 + 0.5).astype(np.uint8)
    else:
        chans = {"L": 1, "RGBA": 4, "LA": 2}[mode]
        arr = rng.integers(0, 256, (8, 6, chans), dtype=np.uint8)
        Image.fromarray(arr.squeeze(), mode).save(tmp_path / "x.png")
        expect = arr[..., 0] if chans in (1, 2) else arr[..., :3]
    img, gray = read_image(tmp_path / "x.png", with_gray_flag=True)
    assert img.shape == (8, 6, 3) and img.dtype == np.uint8
    assert gray == (mode in ("L", "LA", "I;16"))
    np.testing.assert_array_equal(img if expect.ndim == 3 else img[..., 0], expect)


def test_read_image_rgb16(tmp_path):
    import png

    arr = np.random.default_rng(1).integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    png.from_array(arr.reshape(5, 21), "RGB;16").save(str(tmp_path / "x.png"))
    np.testing.assert_array_equal(read_image(tmp_path / "x.png"), np.floor(arr / 257 + 0.5).astype(np.uint8))


def test_read_image_unreadable(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ImageError, match="broken.png"):
        read_image(tmp_path / "broken.png")


def _write(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_benchmark_folder_generates_lr_and_modcrops(tmp_path):
    rng = np.random.default_rng(0)
    _write(tmp_path / "set" / "HR" / "a.png", rng.integers(0, 256, (30, 27, 3), dtype=np.uint8))
    pair = next(iter(BenchmarkFolder(tmp_path / "set", 4)))
    assert pair.hr.shape == (28, 24, 3) and pair.lr.shape == (7, 6, 3)
    np.testing.assert_array_equal(pair.lr, imresize(pair.hr, 0.25))


def test_benchmark_folder_rejects_wrong_lr_and_tiny_images(tmp_path):
    rng = np.random.default_rng(0)
    _write(tmp_path / "set" / "HR" / "a.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    _write(tmp_path / "set" / "LR_bicubic" / "X4" / "ax4.png", rng.integers(0, 256, (9, 8, 3), dtype=np.uint8))
    with pytest.raises(ImageError, match="expected 8x8"):
        list(BenchmarkFolder(tmp_path / "set", 4))
    _write(tmp_path / "tiny" / "b.png", rng.integers(0, 256, (5, 5, 3), dtype=np.uint8))
    with pytest.raises(ImageError, match="too small"):
        list(BenchmarkFolder(tmp_path / "tiny", 4))


def test_calibration_patches_seeded(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        _write(tmp_path / f"{i}.png", rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))
    a = sample_lr_patches(tmp_path, n=5, patch=8, scale=4, seed=3)
    b = sample_lr_patches(tmp_path, n=5, patch=8, scale=4, seed=3)
    c = sample_lr_patches(tmp_path, n=5, patch=8, scale=4, seed=4)
    assert a.patches.shape == (5, 8, 8, 3) and a.patches.dtype == np.uint8
    np.testing.assert_array_equal(a.patches, b.patches)
    assert a.sources == b.sources and not np.array_equal(a.patches, c.patches)
    g = sample_lr_patches(tmp_path, n=2, patch=8, scale=4, seed=3, grayscale=True).patches
    assert np.all(g[..., 0] == g[..., 1]) and np.all(g[..., 1] == g[..., 2])
    with pytest.raises(ImageError, match="smaller than"):
        sample_lr_patches(tmp_path, n=1, patch=32, scale=4)


def test_grayscale_rgb_is_luma():
    img = np.array([[[255, 0, 0], [10, 200, 30]]], np.uint8)
    g = to_grayscale_rgb(img)
    assert g[0, 0, 0] == 76 and np.all(g[..., 0] == g[..., 2])


@pytest.mark.parametrize("dataset", ["Set5", "Set14"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_imresize_matches_matlab_lr_bit_exactly(dataset, scale):
    root = need_shared("data", "benchmarks", dataset)
    folder = BenchmarkFolder(root, scale)
    generated = BenchmarkFolder(root, scale, lr_source="generate")
    for path in folder.paths:
        assert np.array_equal(folder.load(path).lr, generated.load(path).lr), path.name
