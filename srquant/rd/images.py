"""Representative-dataset (RD) images: LR model inputs, as TFLite's ``representative_dataset`` yields them.

An RD image is a whole LR image. Candidates are HR photos shrunk by MATLAB bicubic (after a mod-crop), as the
DIV2K LR images the seed's RD came from; a folder that already holds LR inputs (``srquant rd select`` / ``enhance``
output) is read as is. A grayscale RD replaces each image by its luma replicated to the three channels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.images import list_images, mod_crop, read_image, to_grayscale_rgb, write_image
from ..data.imresize import imresize


def rd_image(img: np.ndarray, scale: int, from_hr: bool = True, gray: bool = False) -> np.ndarray:
    """The RD image of a photo: its bicubic LR (``from_hr``) or the image itself, optionally in grayscale."""
    lr = imresize(mod_crop(img, scale), 1.0 / scale) if from_hr else img
    return to_grayscale_rgb(lr) if gray else lr


def load_rd(folder: str | Path, scale: int, from_hr: bool = False, gray: bool = False,
            limit: int | None = None) -> dict[str, np.ndarray]:
    """RD images by file stem, sorted by name (the first ``limit`` files when given)."""
    paths = list_images(folder)[:limit]
    if not paths:
        raise FileNotFoundError(f"no images in RD folder {folder}")
    return {p.stem: rd_image(read_image(p), scale, from_hr, gray) for p in paths}


def write_rd(folder: str | Path, images: dict[str, np.ndarray]) -> list[Path]:
    """Write RD images as PNG (atomically, one file at a time)."""
    paths = []
    for name, img in images.items():
        path = Path(folder) / f"{name}.png"
        write_image(path, img)
        paths.append(path)
    return paths
