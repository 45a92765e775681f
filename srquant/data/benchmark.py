"""Benchmark folders (Set5, Set14, B100, Urban100, Manga109 layouts): HR images plus optional MATLAB-bicubic LR."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InputError
from .images import ImageError, list_images, mod_crop, read_image
from .imresize import imresize


DEMO_FILES = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg", "hubble_deep_field.jpg")
DEMO_CALIB_FILES = ("motorcycle_right.png", "ihc.png", "retina.jpg")  # disjoint from DEMO_FILES


def demo_image_dir() -> Path:
    """scikit-image's bundled sample photos (shipped in its wheel: no download)."""
    import skimage.data

    return Path(skimage.data.__file__).parent


@dataclass(frozen=True)
class SRPair:
    name: str
    hr: np.ndarray  # HxWx3 uint8, mod-cropped to the scale
    lr: np.ndarray  # (H/s)x(W/s)x3 uint8
    gray: bool = False  # the HR file had a single channel (replicated to RGB here)


class BenchmarkFolder:
    """HR images of one test set at one scale.

    Layout: ``root/HR_x{s}/`` (a scale-specific crop, as B100's ``HR_x3``) or ``root/HR/`` or images directly in
    ``root``; LR from ``root/LR_bicubic/X{s}/{stem}x{s}.png`` (or ``{stem}.png``) when present, otherwise generated
    with the MATLAB-exact :func:`imresize`. ``lr_source="generate"`` ignores LR files.
    """

    def __init__(
        self,
        root: str | Path,
        scale: int,
        name: str | None = None,
        lr_source: str = "auto",
        files: list[str] | None = None,
    ):
        if lr_source not in ("auto", "generate"):
            raise ValueError(f"lr_source must be 'auto' or 'generate', not {lr_source!r}")
        self.root, self.scale, self.lr_source = Path(root), int(scale), lr_source
        if not self.root.is_dir():
            raise InputError(f"benchmark folder not found: {self.root}")
        self.name = name or self.root.name
        for candidate in (self.root / f"HR_x{scale}", self.root / "HR", self.root):
            if candidate.is_dir() and list_images(candidate):
                self.hr_dir = candidate
                break
        else:
            raise InputError(f"no HR images in {self.root} (looked in HR_x{scale}/, HR/ and the folder itself)")
        self.paths = list_images(self.hr_dir)
        if files is not None:
            self.paths = [self.hr_dir / f for f in files]

    @classmethod
    def demo(cls, scale: int) -> "BenchmarkFolder":
        """Six colour photos bundled with scikit-image: a test set that needs no download and no ../shared."""
        return cls(demo_image_dir(), scale, "skimage-demo", lr_source="generate", files=list(DEMO_FILES))

    def __len__(self) -> int:
        return len(self.paths)

    def _lr_path(self, hr_path: Path) -> Path | None:
        if self.lr_source == "generate":
            return None
        lr_dir = self.root / "LR_bicubic" / f"X{self.scale}"
        for stem in (f"{hr_path.stem}x{self.scale}", hr_path.stem):
            for suffix in (hr_path.suffix, ".png"):
                if (lr_dir / f"{stem}{suffix}").is_file():
                    return lr_dir / f"{stem}{suffix}"
        return None

    def load(self, hr_path: Path) -> SRPair:
        hr, gray = read_image(hr_path, with_gray_flag=True)
        if min(hr.shape[:2]) < 2 * self.scale:
            raise ImageError(f"{hr_path}: {hr.shape[1]}x{hr.shape[0]} is too small for x{self.scale} "
                             f"(at least {2 * self.scale}x{2 * self.scale})")
        hr = mod_crop(hr, self.scale)
        lr_path = self._lr_path(hr_path)
        if lr_path is None:
            lr = imresize(hr, 1.0 / self.scale)
        else:
            lr = read_image(lr_path)
            expected = (hr.shape[0] // self.scale, hr.shape[1] // self.scale)
            if lr.shape[:2] != expected:
                raise ImageError(f"{lr_path}: LR is {lr.shape[1]}x{lr.shape[0]}, expected {expected[1]}x{expected[0]} for x{self.scale}")
        return SRPair(hr_path.stem, hr, lr, gray)

    def __iter__(self) -> Iterator[SRPair]:
        for path in self.paths:
            yield self.load(path)
