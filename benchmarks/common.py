"""What the benchmark scripts share: where ../shared is, the clip-free study's models, a timing input and the
interleaved timer. The scripts run as ``python benchmarks/NAME.py`` and import it as ``common``."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from srquant.data.images import list_images, read_image
from srquant.data.imresize import imresize
from srquant.evaluate import prepare_input

SHARED = Path(__file__).resolve().parents[2] / "shared"  # real weights and benchmark images, beside the repository
CLIPFREE_MODELS = {  # the clip-free study's models: name -> (scale, weights; None = srquant's embedded default)
    "rfdn": (4, SHARED / "weights" / "rfdn_aim_x4.pth"),
    "imdn_rtc": (2, SHARED / "weights" / "imdn_rtc_x2.pth"),
    "abpn": (4, None),
    "espcn": (3, None),
}


def lr_input(info, size: int, folder: Path | None, seed: int = 0) -> torch.Tensor:
    """A size x size LR image in the model's input range (a natural crop when ``folder`` has one)."""
    hr_size = size * info.scale
    if folder is not None and folder.exists():
        for path in list_images(folder):
            img = read_image(path)
            if min(img.shape[:2]) >= hr_size:
                top, left = (img.shape[0] - hr_size) // 2, (img.shape[1] - hr_size) // 2
                return prepare_input(imresize(img[top:top + hr_size, left:left + hr_size], 1.0 / info.scale), info)
    print(f"note: no calibration image of {hr_size}px; timing on smooth random input", file=sys.stderr)
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, size // 8, size // 8, generator=g), size=(size, size),
                                        mode="bilinear", align_corners=False)
    return x * info.input_range


def timeit(backends: dict, x: torch.Tensor, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per run of each backend on ``x``: warm-up, then the timed runs interleaved across backends (so load
    changes on a shared machine hit them alike)."""
    times: dict[str, list[float]] = {name: [] for name in backends}
    with torch.inference_mode():
        for fn in backends.values():
            for _ in range(warmup):
                fn(x)
        for _ in range(repeats):
            for name, fn in backends.items():
                start = time.perf_counter()
                fn(x)
                times[name].append(time.perf_counter() - start)
    return times
