"""EDSR (Lim et al., CVPRW 2017) in the layout of ``sanghyun-son/EDSR-PyTorch`` (``src/model/edsr.py``, ``common.py``).

Parameter names match the official ``.pt`` files (plain state dicts): ``sub_mean``/``add_mean`` (the DIV2K
mean shift; the official files carry ``sub_mean.weight/bias`` and ``add_mean.weight/bias``), ``head.0``,
``body.N.body.0`` / ``body.N.body.2`` (resblock convs), ``body.{n_resblocks}`` (the conv closing the body),
``tail.0.K`` (sub-pixel upsampler convs) and ``tail.1``. Input and output are RGB in [0, 255] (``rgb_range`` 255).

BasicSR's EDSR checkpoints (``{'params': ...}``, keys ``conv_first``, ``body.N.conv1/conv2``,
``conv_after_body``, ``upsample.K``, ``conv_last``) load through :func:`remap_edsr_keys`. BasicSR computes
``(x - mean) * img_range`` on a [0, 1] input and ``y / img_range + mean`` at the output with img_range 255 and a
non-buffer ``mean`` (so its files hold no mean); with the default DIV2K mean this is exactly the official
network on [0, 255] pixels, so a BasicSR checkpoint used here takes and returns [0, 255] images.
"""
from __future__ import annotations

import math
import re

import torch
from torch import nn

from ._registry import ModelSpec, register

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def _conv(in_ch: int, out_ch: int, kernel_size: int = 3) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)


class MeanShift(nn.Module):
    """Fixed per-channel affine ``y = x / std + sign * rgb_range * mean / std`` (the official ``MeanShift``).

    The official module is a frozen 1x1 ``Conv2d`` with weight ``eye(3) / std``; here ``weight`` and ``bias`` are
    persistent buffers under the same names (so official files load strictly) and the forward applies the
    diagonal as an elementwise affine, which keeps it out of conv-quantization passes.
    """

    def __init__(self, rgb_range: float, rgb_mean=DIV2K_RGB_MEAN, rgb_std=(1.0, 1.0, 1.0), sign: int = -1):
        super().__init__()
        std = torch.tensor(rgb_std, dtype=torch.float32)
        self.register_buffer("weight", (torch.eye(3) / std.view(3, 1)).view(3, 3, 1, 1))
        self.register_buffer("bias", sign * rgb_range * torch.tensor(rgb_mean, dtype=torch.float32) / std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.diagonal(self.weight[:, :, 0, 0])
        return x * scale.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class ResBlock(nn.Module):
    """conv3x3 -> ReLU -> conv3x3, scaled by ``res_scale``, plus identity (keys ``body.0``, ``body.2``)."""

    def __init__(self, n_feats: int, res_scale: float = 1.0):
        super().__init__()
        self.body = nn.Sequential(_conv(n_feats, n_feats), nn.ReLU(inplace=True), _conv(n_feats, n_feats))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x)
        if self.res_scale != 1:
            res = res * self.res_scale
        return res + x


class Upsampler(nn.Sequential):
    """Sub-pixel upsampler: log2(s) x [conv n->4n, PixelShuffle(2)] for s = 2^k, [conv n->9n, PixelShuffle(3)] for 3."""

    def __init__(self, scale: int, n_feats: int):
        layers: list[nn.Module] = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [_conv(n_feats, 4 * n_feats), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [_conv(n_feats, 9 * n_feats), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"EDSR upsampler supports scales 2^k and 3, not {scale}")
        super().__init__(*layers)


class EDSR(nn.Module):
    """sub_mean -> head conv -> [resblocks, conv] + skip -> upsampler, conv -> add_mean. No output clip."""

    def __init__(
        self,
        scale: int,
        n_resblocks: int = 16,
        n_feats: int = 64,
        res_scale: float = 1.0,
        rgb_range: float = 255.0,
        n_colors: int = 3,
    ):
        super().__init__()
        self.scale = scale
        self.sub_mean = MeanShift(rgb_range, sign=-1)
        self.add_mean = MeanShift(rgb_range, sign=1)
        self.head = nn.Sequential(_conv(n_colors, n_feats))
        self.body = nn.Sequential(*[ResBlock(n_feats, res_scale) for _ in range(n_resblocks)], _conv(n_feats, n_feats))
        self.tail = nn.Sequential(Upsampler(scale, n_feats), _conv(n_feats, n_colors))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x))
        x = self.body(x) + x
        return self.add_mean(self.tail(x))


_BASICSR_RULES = (
    (re.compile(r"^conv_first\.(weight|bias)$"), r"head.0.\1"),
    (re.compile(r"^body\.(\d+)\.conv1\.(weight|bias)$"), r"body.\1.body.0.\2"),
    (re.compile(r"^body\.(\d+)\.conv2\.(weight|bias)$"), r"body.\1.body.2.\2"),
    (re.compile(r"^upsample\.(\d+)\.(weight|bias)$"), r"tail.0.\1.\2"),
    (re.compile(r"^conv_last\.(weight|bias)$"), r"tail.1.\1"),
)


def _basicsr_to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    n_blocks = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"^body\.(\d+)\.conv1\.", k))), default=-1)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("conv_after_body."):
            out[f"body.{n_blocks}.{key.split('.', 1)[1]}"] = value
            continue
        for pattern, repl in _BASICSR_RULES:
            if pattern.match(key):
                key = pattern.sub(repl, key)
                break
        out[key] = value  # an unmatched key stays as it is, so the loader reports it as unexpected
    return out


def remap_edsr_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept official and BasicSR EDSR files: translate BasicSR names; supply the mean shift if the file lacks it.

    The mean-shift tensors are fixed (never trained): when absent they are filled with the official values for
    ``rgb_range`` 255 and the DIV2K mean, which is also what BasicSR's default ``img_range``/``rgb_mean`` compute.
    """
    if "conv_first.weight" in state:
        state = _basicsr_to_official(state)
    state = dict(state)
    for name, sign in (("sub_mean", -1), ("add_mean", 1)):
        default = MeanShift(255.0, sign=sign)
        state.setdefault(f"{name}.weight", default.weight)
        state.setdefault(f"{name}.bias", default.bias)
    return state


_WEIGHTS_NOTE = (
    "official: https://cv.snu.ac.kr/research/EDSR/models/{} (plain state dict); BasicSR {{'params': ...}} files "
    "load too (remapped, [0, 255] I/O)"
)

register(
    ModelSpec(
        name="edsr_baseline",
        builder=EDSR,
        scales=(2, 3, 4),
        input_range=255.0,
        remap_keys=remap_edsr_keys,
        kwargs={"n_resblocks": 16, "n_feats": 64, "res_scale": 1.0},
        description="EDSR-baseline (EDSR-PyTorch r16f64): 16 resblocks, 64 feats, res_scale 1, RGB [0,255], no clip",
        weights_note=_WEIGHTS_NOTE.format("edsr_baseline_x{2,3,4}-*.pt"),
    )
)

register(
    ModelSpec(
        name="edsr",
        builder=EDSR,
        scales=(2, 3, 4),
        input_range=255.0,
        remap_keys=remap_edsr_keys,
        kwargs={"n_resblocks": 32, "n_feats": 256, "res_scale": 0.1},
        description="EDSR (EDSR-PyTorch r32f256): 32 resblocks, 256 feats, res_scale 0.1, RGB [0,255], no clip",
        weights_note=_WEIGHTS_NOTE.format("edsr_x{2,3,4}-*.pt"),
    )
)
