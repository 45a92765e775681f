"""CARN-M (Ahn, Kang, Sohn; ECCV 2018): the mobile cascading residual network.

Layout and parameter names follow ``nmhkahn/CARN-pytorch`` (``carn/model/carn_m.py``, ``carn/model/ops.py``). The
released ``carn_m.pth`` is multi-scale: one body with x2, x3 and x4 upsampling branches.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import ModelSpec, register

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


class MeanShift(nn.Module):
    """Adds (or subtracts) the RGB mean with a frozen 1x1 conv ``shifter`` (identity weight, +-mean bias)."""

    def __init__(self, mean_rgb: tuple[float, float, float], sub: bool):
        super().__init__()
        self.shifter = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.shifter.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.shifter.bias.copy_(torch.tensor(mean_rgb) * (-1.0 if sub else 1.0))
        self.shifter.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shifter(x)


class BasicBlock(nn.Module):
    """conv + ReLU (``body.0`` is the conv)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class EResidualBlock(nn.Module):
    """Efficient residual block: grouped conv3x3 + ReLU, grouped conv3x3 + ReLU, conv1x1, ReLU(out + x)."""

    def __init__(self, channels: int, group: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=group),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, groups=group),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + x)


class CascadingBlock(nn.Module):
    """Local cascade of CARN-M: ONE shared ``b1`` applied three times; outputs concatenated, fused by 1x1 convs."""

    def __init__(self, channels: int = 64, group: int = 1):
        super().__init__()
        self.b1 = EResidualBlock(channels, group=group)
        self.c1 = BasicBlock(channels * 2, channels, 1)
        self.c2 = BasicBlock(channels * 3, channels, 1)
        self.c3 = BasicBlock(channels * 4, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cat, out = x, x
        for fuse in (self.c1, self.c2, self.c3):
            cat = torch.cat([cat, self.b1(out)], dim=1)
            out = fuse(cat)
        return out


class _UpsampleBranch(nn.Module):
    """[grouped conv3x3 to r^2*C, ReLU, PixelShuffle(r)] once for x3, once per factor 2 for x2/x4."""

    def __init__(self, channels: int, scale: int, group: int = 1):
        super().__init__()
        steps = {2: [2], 3: [3], 4: [2, 2]}
        if scale not in steps:
            raise ValueError(f"CARN-M upsampling supports x2, x3 and x4, not x{scale}")
        layers: list[nn.Module] = []
        for r in steps[scale]:
            layers += [nn.Conv2d(channels, r * r * channels, 3, padding=1, groups=group), nn.ReLU(), nn.PixelShuffle(r)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class UpsampleBlock(nn.Module):
    """Multi-scale: branches ``up2``/``up3``/``up4`` chosen per call; single-scale: one branch ``up``."""

    def __init__(self, channels: int, scale: int, multi_scale: bool, group: int = 1):
        super().__init__()
        self.multi_scale = multi_scale
        if multi_scale:
            self.up2 = _UpsampleBranch(channels, 2, group)
            self.up3 = _UpsampleBranch(channels, 3, group)
            self.up4 = _UpsampleBranch(channels, 4, group)
        else:
            self.up = _UpsampleBranch(channels, scale, group)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        if not self.multi_scale:
            return self.up(x)
        return getattr(self, f"up{scale}")(x)


class CARNM(nn.Module):
    """CARN-M: mean shift, conv3x3, three cascading blocks with global cascade, upsampler, conv3x3, mean shift back.

    ``self.scale`` (set at construction) picks the upsampling branch; ``forward(x, scale)`` may override it when the
    network is multi-scale.
    """

    def __init__(self, scale: int, multi_scale: bool = True, group: int = 4, channels: int = 64):
        super().__init__()
        self.scale = scale
        self.sub_mean = MeanShift(DIV2K_MEAN, sub=True)
        self.add_mean = MeanShift(DIV2K_MEAN, sub=False)
        self.entry = nn.Conv2d(3, channels, 3, padding=1)
        self.b1 = CascadingBlock(channels, group)
        self.b2 = CascadingBlock(channels, group)
        self.b3 = CascadingBlock(channels, group)
        self.c1 = BasicBlock(channels * 2, channels, 1)
        self.c2 = BasicBlock(channels * 3, channels, 1)
        self.c3 = BasicBlock(channels * 4, channels, 1)
        self.upsample = UpsampleBlock(channels, scale, multi_scale, group)
        self.exit = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        scale = self.scale if scale is None else scale
        cat = out = self.entry(self.sub_mean(x))
        for block, fuse in ((self.b1, self.c1), (self.b2, self.c2), (self.b3, self.c3)):
            cat = torch.cat([cat, block(out)], dim=1)
            out = fuse(cat)
        return self.add_mean(self.exit(self.upsample(out, scale)))


register(
    ModelSpec(
        name="carn_m",
        builder=CARNM,
        scales=(2, 3, 4),
        multi_scale=True,
        kwargs={"multi_scale": True, "group": 4},
        description="CARN-M (nmhkahn/CARN-pytorch carn_m): group 4, shared residual block per cascade, mean shift, "
        "one checkpoint with x2/x3/x4 upsampling branches (forward(x, scale=None) uses self.scale), RGB [0,1]",
        weights_note="../shared/weights/carn_m_x234.pth (Set5 PSNR_Y x2 37.678 / x3 34.058 / x4 31.883)",
    )
)
