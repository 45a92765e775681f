"""RFDN (Liu, Tang, Wu; AIM 2020 efficient-SR winner): residual feature distillation network.

Layout and parameter names follow ``njulj/RFDN`` (``RFDN.py``, ``block.py``). The released ``RFDN_AIM.pth`` expects
RGB in [0, 255] (the same file is the NTIRE 2022 ESR ``rfdn_baseline.pth``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import ModelSpec, register


def _conv(in_ch: int, out_ch: int, kernel_size: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)


class ESA(nn.Module):
    """Enhanced spatial attention: 1x1 squeeze, strided conv + max-pool 7/3, convs, bilinear up, 1x1, sigmoid gate.

    Needs inputs of at least 15x15 pixels (the strided conv and the 7x7 pool leave nothing below that).
    """

    def __init__(self, channels: int):
        super().__init__()
        f = channels // 4
        self.conv1 = nn.Conv2d(channels, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv_max = nn.Conv2d(f, f, 3, padding=1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv3_ = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1 = self.conv1(x)
        v = F.max_pool2d(self.conv2(c1), kernel_size=7, stride=3)
        v = F.relu(self.conv_max(v))
        v = self.conv3_(F.relu(self.conv3(v)))
        v = F.interpolate(v, size=x.shape[2:], mode="bilinear", align_corners=False)
        return x * torch.sigmoid(self.conv4(v + self.conv_f(c1)))


class RFDB(nn.Module):
    """Residual feature distillation block: 3x (1x1 distill | 3x3 + identity refine), 3x3, concat, 1x1 fuse, ESA."""

    def __init__(self, channels: int):
        super().__init__()
        dc = channels // 2
        self.c1_d = _conv(channels, dc, 1)
        self.c1_r = _conv(channels, channels, 3)
        self.c2_d = _conv(channels, dc, 1)
        self.c2_r = _conv(channels, channels, 3)
        self.c3_d = _conv(channels, dc, 1)
        self.c3_r = _conv(channels, channels, 3)
        self.c4 = _conv(channels, dc, 3)
        self.act = nn.LeakyReLU(0.05)
        self.c5 = _conv(dc * 4, channels, 1)
        self.esa = ESA(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.act(self.c1_d(x))
        r1 = self.act(self.c1_r(x) + x)
        d2 = self.act(self.c2_d(r1))
        r2 = self.act(self.c2_r(r1) + r1)
        d3 = self.act(self.c3_d(r2))
        r3 = self.act(self.c3_r(r2) + r2)
        r4 = self.act(self.c4(r3))
        return self.esa(self.c5(torch.cat([d1, d2, d3, r4], dim=1)))


class RFDN(nn.Module):
    """conv3x3, ``num_modules`` RFDBs (``B1``...), concat -> 1x1 + LReLU, conv3x3 + global skip, conv3x3 + shuffle.

    ``clip_output`` clamps the HR output (after the shuffle) to [0, input_range]; the released model has no clip.
    """

    def __init__(
        self,
        scale: int,
        in_nc: int = 3,
        nf: int = 50,
        num_modules: int = 4,
        out_nc: int = 3,
        input_range: float = 255.0,
        clip_output: bool = False,
    ):
        super().__init__()
        self.scale, self.input_range, self.clip_output = scale, input_range, clip_output
        self.num_modules = num_modules
        self.fea_conv = _conv(in_nc, nf, 3)
        for i in range(num_modules):
            self.add_module(f"B{i + 1}", RFDB(nf))
        self.c = nn.Sequential(_conv(nf * num_modules, nf, 1), nn.LeakyReLU(0.05))
        self.LR_conv = _conv(nf, nf, 3)
        self.upsampler = nn.Sequential(_conv(nf, out_nc * scale * scale, 3), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.fea_conv(x)
        outs, out = [], fea
        for i in range(self.num_modules):
            out = getattr(self, f"B{i + 1}")(out)
            outs.append(out)
        out = self.upsampler(self.LR_conv(self.c(torch.cat(outs, dim=1))) + fea)
        return out.clamp(0.0, self.input_range) if self.clip_output else out


register(
    ModelSpec(
        name="rfdn",
        builder=RFDN,
        scales=(2, 3, 4),
        input_range=255.0,
        kwargs={"nf": 50, "num_modules": 4, "input_range": 255.0},
        description="RFDN (njulj/RFDN, AIM 2020 winner): nf 50, 4 RFDBs with ESA, RGB in [0,255]; "
        "clip_output=True adds an HR output clamp to [0,255] (clip-free study)",
        weights_note="../shared/weights/rfdn_aim_x4.pth, x4 only (Set5 PSNR_Y 32.159)",
    )
)
