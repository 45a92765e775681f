"""Image reading and conversion: every image becomes an HxWx3 uint8 RGB array, or a clear error."""
from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np

from ..errors import ImageError, InputError, clean_message
from ..fileio import atomic_path

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".ppm", ".webp")
PILLOW_FORMATS = ("BMP", "JPEG", "MPO", "TIFF", "PPM", "WEBP")  # decoded by Pillow (PNG is parsed here first)
MAX_PIXELS = 36_000_000  # width x height x frames, any bit depth (an 8K UHD photo is 33.2 MP); checked before decoding
DEFLATE_MAX_RATIO = 1032  # zlib cannot expand data more than this: a PNG claiming more pixels is truncated or forged
JPEG_MAX_PIXELS_PER_BYTE = 4096  # Huffman JPEG spends >= 1 bit per 8x8 block (512 px/byte); 8x that for arithmetic
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # IHDR colour type -> samples per pixel


def read_image(path: str | Path, with_gray_flag: bool = False) -> np.ndarray | tuple[np.ndarray, bool]:
    """Read ``path`` as HxWx3 uint8 RGB (and, with ``with_gray_flag``, whether the file had one colour channel).

    Grayscale is replicated to three channels (as cv2.IMREAD_COLOR does in the reference code), an alpha channel is
    dropped, 16-bit images are scaled to 8 bits with rounding (x / 257). The size in the header is checked against
    :data:`MAX_PIXELS` before anything is decoded. Anything else raises :class:`ImageError`.
    """
    import imageio.v3 as iio

    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    png16 = image_size(path)[2] == 16
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's bomb warnings: the size is checked above
            img = _read_png16(path) if png16 else np.asarray(iio.imread(path, plugin="pillow"))
    except Exception as err:  # the decoders raise many types for a broken file
        raise ImageError(f"cannot read image {path}: {_reason(err)}") from None
    if img.dtype == np.uint16:
        img = _to_8bit(img)
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


def image_size(path: str | Path) -> tuple[int, int, int]:
    """(width, height, bits per sample) from the header alone; raises :class:`ImageError` for an unreadable header,
    a PNG or JPEG claiming more pixels than its bytes can encode (truncated or forged), or more than
    :data:`MAX_PIXELS` pixels (all frames of a multi-frame file)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(29)
    size = path.stat().st_size
    if head.startswith(PNG_SIGNATURE):
        width, height, bits, colour = _png_header(path, head)
        frames, possible = 1, height * (1 + (width * PNG_CHANNELS[colour] * bits + 7) // 8) <= DEFLATE_MAX_RATIO * size
    else:
        width, height, bits, frames, kind = _pillow_header(path)
        if kind not in PILLOW_FORMATS:  # GIF, ICO, PSD, ...: not benchmark formats, and more decoders to attack
            raise ImageError(f"{path}: unsupported image format {kind} (supported: PNG, {', '.join(PILLOW_FORMATS)})")
        possible = kind not in ("JPEG", "MPO") or width * height <= JPEG_MAX_PIXELS_PER_BYTE * size
    if not possible:  # a decoder would allocate the claimed size first (libjpeg even decodes it, filling with grey)
        raise ImageError(f"{path} is truncated or corrupted: its header claims {width}x{height} pixels, more than "
                         f"its {size} bytes can hold")
    if width < 1 or height < 1:
        raise ImageError(f"{path}: invalid size {width}x{height} in its header")
    if width * height * frames > MAX_PIXELS:
        what = f"{width}x{height}" + (f" x {frames} frames" if frames > 1 else "")
        raise ImageError(f"{path}: {what} exceeds srquant's limit of {MAX_PIXELS:,} pixels "
                         "(srquant.data.images.MAX_PIXELS); not decoded")
    return width, height, bits


def _png_header(path: Path, head: bytes) -> tuple[int, int, int, int]:
    """Width, height, bit depth and colour type from a PNG's IHDR chunk."""
    if len(head) < 29 or head[12:16] != b"IHDR":
        raise ImageError(f"cannot read image {path}: PNG without an IHDR header")
    width, height, bits, colour = struct.unpack(">IIBB", head[16:26])
    if colour not in PNG_CHANNELS or bits not in (1, 2, 4, 8, 16):
        raise ImageError(f"cannot read image {path}: invalid PNG header (bit depth {bits}, colour type {colour})")
    return width, height, bits, colour


def _pillow_header(path: Path) -> tuple[int, int, int, int, str]:
    """Width, height, bits per sample, frame count and format as Pillow reads them from the header (nothing
    decoded)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                bits = 16 if im.mode.startswith("I;16") else 32 if im.mode in ("I", "F") else 8
                return im.size[0], im.size[1], bits, int(getattr(im, "n_frames", 1)), str(im.format)
    except Exception as err:  # Pillow raises many types for a broken header
        raise ImageError(f"cannot read image {path}: {_reason(err)}") from None


def _reason(err: BaseException) -> str:
    text = clean_message(str(err)).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _to_8bit(img: np.ndarray) -> np.ndarray:
    """16 -> 8 bits as round(x / 257) (= floor((2x + 257) / 514)), in integers: no float64 copy of a big image."""
    return ((img.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)


def _read_png16(path: Path) -> np.ndarray:
    """A 16-bit PNG, exactly (Pillow would keep only the high byte of 16-bit colour PNGs), converted row by row."""
    import png  # pypng: exact 16-bit decoding

    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    planes = info["planes"]
    img = np.empty((height, width * planes), dtype=np.uint8)
    count = 0
    for count, row in enumerate(rows, 1):
        if count > height:
            raise ValueError("more rows than the header says")
        img[count - 1] = _to_8bit(np.asarray(row, dtype=np.uint16))
    if count != height:
        raise ValueError(f"{count} rows of {height}")
    img = img.reshape(height, width, planes)
    return img[..., 0] if planes == 1 else img


def write_image(path: str | Path, img: np.ndarray) -> None:
    """Write a uint8 image atomically (temporary file, then rename)."""
    import imageio.v3 as iio

    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        iio.imwrite(tmp, img, extension=path.suffix)


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
        raise InputError(f"image folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
