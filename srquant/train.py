"""Training of the small embedded-default models (ABPN, ESPCN, ...) on CPU, reproducible from a seed."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .data.images import list_images, mod_crop, read_image
from .data.imresize import imresize
from .models import create


@dataclass(frozen=True)
class TrainConfig:
    model: str
    scale: int
    data: str  # folder of HR training images
    iters: int = 20000
    batch: int = 16
    patch: int = 48  # LR patch size
    lr: float = 1e-3
    seed: int = 0
    threads: int = 2


def _load_pairs(folder: str, scale: int) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = []
    for path in list_images(folder):
        hr = mod_crop(read_image(path), scale)
        pairs.append((hr, imresize(hr, 1.0 / scale)))
    if not pairs:
        raise FileNotFoundError(f"no training images in {folder}")
    return pairs


def _batch(pairs, rng: np.random.Generator, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Aligned random LR/HR crops with random flips and transposes, as float NCHW in [0, 1]."""
    lrs, hrs, p, s = [], [], cfg.patch, cfg.scale
    for _ in range(cfg.batch):
        hr, lr = pairs[int(rng.integers(len(pairs)))]
        y, x = int(rng.integers(lr.shape[0] - p + 1)), int(rng.integers(lr.shape[1] - p + 1))
        lp, hp = lr[y : y + p, x : x + p], hr[y * s : (y + p) * s, x * s : (x + p) * s]
        if rng.random() < 0.5:
            lp, hp = lp[:, ::-1], hp[:, ::-1]
        if rng.random() < 0.5:
            lp, hp = lp[::-1], hp[::-1]
        if rng.random() < 0.5:
            lp, hp = lp.transpose(1, 0, 2), hp.transpose(1, 0, 2)
        lrs.append(lp)
        hrs.append(hp)

    def to_tensor(a: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(a).transpose(0, 3, 1, 2).copy()).float().div_(255.0)

    return to_tensor(lrs), to_tensor(hrs)


def train(cfg: TrainConfig, out: str | Path, progress: bool = True) -> dict:
    """Train ``cfg.model`` with L1 loss, Adam and a cosine learning-rate schedule; save the state dict to ``out``."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    model = create(cfg.model, cfg.scale).train()
    info = model.sr_info
    if info.color != "rgb" or info.upsample_input:
        raise ValueError(f"srquant train supports RGB models on LR input; {cfg.model} is {info.color}")
    pairs = _load_pairs(cfg.data, cfg.scale)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / cfg.iters)))
    start, running = time.perf_counter(), None
    bar = tqdm(range(cfg.iters), desc=f"train {cfg.model} x{cfg.scale}", disable=not progress)
    for _ in bar:
        lr, hr = _batch(pairs, rng, cfg)
        loss = torch.nn.functional.l1_loss(model(lr * info.input_range) / info.input_range, hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.set_postfix(l1=f"{running:.4f}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(out)
    return {"config": asdict(cfg), "seconds": time.perf_counter() - start, "final_l1": running}
