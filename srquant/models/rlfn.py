"""RLFN (Kong et al., NTIRE 2022 efficient-SR runtime winner, team04): residual local feature network, ``RLFN_cut``.

Layout and parameter names follow ``ofsoundof/NTIRE2022_ESR`` ``models/team04_rlfn.py``. The released
``team04_rlfn.pth`` expects RGB in [0, 255].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import ModelSpec, register


def _conv(in_ch: int, out_ch: int, kernel_size: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)


class ESA(nn.Module):
    """Slim enhanced spatial attention (RLFN cut: no ``conv_max``/``conv3_``); needs inputs of at least 15x15 pixels."""

    def __init__(self, esa_channels: int, channels: int):
        super().__init__()
        f = esa_channels
        self.conv1 = nn.Conv2d(channels, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1 = self.conv1(x)
        v = self.conv3(F.max_pool2d(self.conv2(c1), kernel_size=7, stride=3))
        v = F.interpolate(v, size=x.shape[2:], mode="bilinear", align_corners=False)
        return x * torch.sigmoid(self.conv4(v + self.conv_f(c1)))


class RLFB(nn.Module):
    """Residual local feature block: 3x (conv3x3 + LReLU) with a skip over all three, conv1x1, ESA."""

    def __init__(self, channels: int, mid_channels: int, esa_channels: int = 16):
        super().__init__()
        self.c1_r = _conv(channels, mid_channels, 3)
        self.c2_r = _conv(mid_channels, mid_channels, 3)
        self.c3_r = _conv(mid_channels, channels, 3)
        self.c5 = _conv(channels, channels, 1)
        self.esa = ESA(esa_channels, channels)
        self.act = nn.LeakyReLU(0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.c1_r(x))
        out = self.act(self.c2_r(out))
        out = self.act(self.c3_r(out)) + x
        return self.esa(self.c5(out))


class RLFN(nn.Module):
    """``RLFN_cut``: conv3x3, ``num_blocks`` RLFBs (``B1``...), conv3x3 + global skip, conv3x3 + PixelShuffle."""

    def __init__(
        self,
        scale: int,
        in_nc: int = 3,
        out_nc: int = 3,
        nf: int = 46,
        mf: int = 48,
        num_blocks: int = 4,
        esa_channels: int = 16,
    ):
        super().__init__()
        self.scale = scale
        self.num_blocks = num_blocks
        self.fea_conv = _conv(in_nc, nf, 3)
        for i in range(num_blocks):
            self.add_module(f"B{i + 1}", RLFB(nf, mf, esa_channels))
        self.LR_conv = _conv(nf, nf, 3)
        self.upsampler = nn.Sequential(_conv(nf, out_nc * scale * scale, 3), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = out = self.fea_conv(x)
        for i in range(self.num_blocks):
            out = getattr(self, f"B{i + 1}")(out)
        return self.upsampler(self.LR_conv(out) + fea)


register(
    ModelSpec(
        name="rlfn",
        builder=RLFN,
        scales=(2, 3, 4),
        input_range=255.0,
        kwargs={"in_nc": 3, "out_nc": 3, "nf": 46, "mf": 48},
        description="RLFN_cut (NTIRE 2022 ESR team04): nf 46, mf 48, 4 RLFBs with slim ESA, RGB in [0,255]",
        weights_note="../shared/weights/rlfn_ntire22_x4.pth, x4 only (Set5 PSNR_Y 32.097)",
    )
)
