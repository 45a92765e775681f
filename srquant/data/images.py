"""Image reading and conversion: every image becomes an HxWx3 uint8 RGB array, or a clear error."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".ppm", ".webp")


class ImageError(ValueError):
    """An image that cannot be read or used."""


def read_image(path: str | Path, with_gray_flag: bool = False) -> np.ndarray | tuple[np.ndarray, bool]:
    """Read ``path`` as HxWx3 uint8 RGB (and, with ``with_gray_flag``, whether the file had one colour channel).

    Grayscale is replicated to three channels (as cv2.IMREAD_COLOR does in the reference code), an alpha channel is
    dropped, 16-bit images are scaled to 8 bits with rounding (x / 257). Anything else raises :class:`ImageError`.
    """
    import imageio.v3 as iio

    path = Path(path)
    try:
        img = _read_png16(path) if _is_png16(path) else np.asarray(iio.imread(path, plugin="pillow"))
    except Exception as err:  # the decoders raise many types for a broken file
        raise ImageError(f"cannot read image {path}: {err}") from None
    if img.dtype == np.uint16:
        img = np.floor(img.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    elif img.dtype == np.bool_:
        img = img.astype(np.uint8) * 255
    elif img.dtype != np.uint8:
        raise ImageError(f"{path}: unsupported pixel type {img.dtype} (expected 8- or 16-bit)")
    gray = img.ndim == 2 or img.shape[2] == 2
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] in (2, 4):  # gray+alpha or RGBA: drop alpha
        img = img[:, :, :-1]
        if img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ImageError(f"{path}: unsupported image shape {img.shape} (multi-page or multi-channel image?)")
    img = np.ascontiguousarray(img)
    return (img, gray) if with_gray_flag else img


def _is_png16(path: Path) -> bool:
    """A 16-bit PNG (Pillow would silently keep only the high byte of 16-bit colour PNGs)."""
    with open(path, "rb") as f:
        head = f.read(29)
    return head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 29 and head[24] == 16


def _read_png16(path: Path) -> np.ndarray:
    import png  # pypng: exact 16-bit decoding

    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    img = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(height, width, info["planes"])
    return img[..., 0] if info["planes"] == 1 else img


def write_image(path: str | Path, img: np.ndarray) -> None:
    """Write a uint8 image atomically (temporary file, then rename)."""
    import imageio.v3 as iio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    os.close(fd)
    try:
        iio.imwrite(tmp, img, extension=path.suffix)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so height and width are multiples of ``scale``."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Y of MATLAB ``rgb2ycbcr`` for [0, 255] RGB (uint8 or float), as float64 in [16, 235]; no rounding."""
    img = img.astype(np.float64)
    return 16.0 + (65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]) / 255.0


def to_grayscale_rgb(img: np.ndarray) -> np.ndarray:
    """Luma (rounded MATLAB Y, full range) replicated to three channels: a grayscale image for RGB models."""
    y = 0.299 * img[..., 0].astype(np.float64) + 0.587 * img[..., 1] + 0.114 * img[..., 2]
    y = np.clip(np.floor(y + 0.5), 0, 255).astype(np.uint8)
    return np.repeat(y[..., None], 3, axis=2)


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
