"""PAN (Zhao et al., ECCV-W 2020): pixel attention network.

Layout and parameter names follow ``zhaohengyuan1/PAN`` ``codes/models/archs/PAN_arch.py``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import ModelSpec, register


class PA(nn.Module):
    """Pixel attention: ``x * sigmoid(conv1x1(x))``."""

    def __init__(self, nf: int):
        super().__init__()
        self.conv = nn.Conv2d(nf, nf, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))


class PAConv(nn.Module):
    """Pixel-attention conv: ``k4(k3(x) * sigmoid(k2(x)))``."""

    def __init__(self, nf: int, k_size: int = 3):
        super().__init__()
        self.k2 = nn.Conv2d(nf, nf, 1)
        self.k3 = nn.Conv2d(nf, nf, k_size, padding=k_size // 2, bias=False)
        self.k4 = nn.Conv2d(nf, nf, k_size, padding=k_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.k4(self.k3(x) * torch.sigmoid(self.k2(x)))


class SCPA(nn.Module):
    """Self-calibrated block with pixel attention: two 1x1 halves, plain 3x3 / PAConv branches, 1x1 fuse, residual."""

    def __init__(self, nf: int, reduction: int = 2):
        super().__init__()
        width = nf // reduction
        self.conv1_a = nn.Conv2d(nf, width, 1, bias=False)
        self.conv1_b = nn.Conv2d(nf, width, 1, bias=False)
        self.k1 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False))
        self.PAConv = PAConv(width)
        self.conv3 = nn.Conv2d(width * reduction, nf, 1, bias=False)
        self.lrelu = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.lrelu(self.k1(self.lrelu(self.conv1_a(x))))
        b = self.lrelu(self.PAConv(self.lrelu(self.conv1_b(x))))
        return self.conv3(torch.cat([a, b], dim=1)) + x


class PAN(nn.Module):
    """conv3x3, ``nb`` SCPA blocks + conv3x3 (trunk skip), nearest-up + conv + PA + conv stages, + bilinear(x).

    x2/x3 use one upsampling stage (nearest by ``scale``); x4 uses two (nearest x2 each).
    """

    def __init__(self, scale: int, in_nc: int = 3, out_nc: int = 3, nf: int = 40, unf: int = 24, nb: int = 16):
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"PAN supports x2, x3 and x4, not x{scale}")
        self.scale = scale
        self.conv_first = nn.Conv2d(in_nc, nf, 3, padding=1)
        self.SCPA_trunk = nn.Sequential(*[SCPA(nf) for _ in range(nb)])
        self.trunk_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.upconv1 = nn.Conv2d(nf, unf, 3, padding=1)
        self.att1 = PA(unf)
        self.HRconv1 = nn.Conv2d(unf, unf, 3, padding=1)
        if scale == 4:
            self.upconv2 = nn.Conv2d(unf, unf, 3, padding=1)
            self.att2 = PA(unf)
            self.HRconv2 = nn.Conv2d(unf, unf, 3, padding=1)
        self.conv_last = nn.Conv2d(unf, out_nc, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.2)

    def _up(self, fea: torch.Tensor, factor: int, upconv: nn.Module, att: nn.Module, hrconv: nn.Module) -> torch.Tensor:
        fea = upconv(F.interpolate(fea, scale_factor=factor, mode="nearest"))
        return self.lrelu(hrconv(self.lrelu(att(fea))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.conv_first(x)
        fea = fea + self.trunk_conv(self.SCPA_trunk(fea))
        if self.scale == 4:
            fea = self._up(fea, 2, self.upconv1, self.att1, self.HRconv1)
            fea = self._up(fea, 2, self.upconv2, self.att2, self.HRconv2)
        else:
            fea = self._up(fea, self.scale, self.upconv1, self.att1, self.HRconv1)
        base = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return self.conv_last(fea) + base


register(
    ModelSpec(
        name="pan",
        builder=PAN,
        scales=(2, 3, 4),
        kwargs={"in_nc": 3, "out_nc": 3, "nf": 40, "unf": 24, "nb": 16},
        description="PAN (zhaohengyuan1/PAN, ECCV-W 2020): nf 40, unf 24, 16 SCPA blocks, pixel attention, RGB [0,1]",
        weights_note="../shared/weights/pan_x2.pth, pan_x3.pth, pan_x4.pth (Set5 PSNR_Y 38.001 / 34.400 / 32.131)",
    )
)
