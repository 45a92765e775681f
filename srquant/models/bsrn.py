"""BSRN (Li et al., NTIRE 2022 efficient-SR model-complexity winner, team18): blueprint separable residual network.

Layout and parameter names follow ``ofsoundof/NTIRE2022_ESR`` ``models/team18_bsrn.py`` with ``conv='BSConvU'`` and
``upsampler='pixelshuffledirect'`` (the only variant implemented). Pointwise convs are ``nn.Linear`` layers applied
channels-last, exactly as in the release, so the checkpoint's 2-D weights load unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import ModelSpec, register


def _linear_nchw(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """Apply a channel-mixing ``nn.Linear`` to an NCHW tensor (a 1x1 conv stored as a Linear)."""
    return layer(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class BSConvU(nn.Module):
    """Blueprint separable conv (unconstrained): pointwise ``pw`` (Linear) then depthwise ``dw`` (k x k)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.pw = nn.Linear(in_ch, out_ch)
        self.dw = nn.Conv2d(out_ch, out_ch, kernel_size, padding=padding, groups=out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dw(_linear_nchw(self.pw, x))


class ESA(nn.Module):
    """Enhanced spatial attention with Linear 1x1s, BSConvU 3x3s and GELU; needs inputs of at least 15x15 pixels."""

    def __init__(self, channels: int):
        super().__init__()
        f = channels // 4
        self.conv1 = nn.Linear(channels, f)
        self.conv_f = nn.Linear(f, f)
        self.conv_max = BSConvU(f, f)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2)
        self.conv3 = BSConvU(f, f)
        self.conv3_ = BSConvU(f, f)
        self.conv4 = nn.Linear(f, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1 = _linear_nchw(self.conv1, x)
        v = F.max_pool2d(self.conv2(c1), kernel_size=7, stride=3)
        v = F.gelu(self.conv_max(v))
        v = self.conv3_(F.gelu(self.conv3(v)))
        v = F.interpolate(v, size=x.shape[2:], mode="bilinear", align_corners=False)
        return x * torch.sigmoid(_linear_nchw(self.conv4, v + _linear_nchw(self.conv_f, c1)))


class ESDB(nn.Module):
    """Efficient separable distillation block (``RFDB`` in the release): distill/refine x3 with BSConvU, GELU,
    Linear fuse, ESA, learnable channel weights ``cw``, Linear ``conv_out``, residual."""

    def __init__(self, channels: int):
        super().__init__()
        dc = channels // 2
        self.c1_d = nn.Linear(channels, dc)
        self.c1_r = BSConvU(channels, channels)
        self.c2_d = nn.Linear(channels, dc)
        self.c2_r = BSConvU(channels, channels)
        self.c3_d = nn.Linear(channels, dc)
        self.c3_r = BSConvU(channels, channels)
        self.c4 = BSConvU(channels, dc)
        self.act = nn.GELU()
        self.c5 = nn.Linear(dc * 4, channels)
        self.esa = ESA(channels)
        self.cw = nn.Parameter(torch.normal(mean=1.0, std=0.2, size=(1, channels)))
        self.conv_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.act(_linear_nchw(self.c1_d, x))
        r1 = self.act(self.c1_r(x) + x)
        d2 = self.act(_linear_nchw(self.c2_d, r1))
        r2 = self.act(self.c2_r(r1) + r1)
        d3 = self.act(_linear_nchw(self.c3_d, r2))
        r3 = self.act(self.c3_r(r2) + r2)
        r4 = self.act(self.c4(r3))
        out = self.esa(_linear_nchw(self.c5, torch.cat([d1, d2, d3, r4], dim=1)))
        out = self.conv_out(out.permute(0, 2, 3, 1) * self.cw).permute(0, 3, 1, 2)
        return out + x


class _PixelShuffleDirect(nn.Module):
    """conv3x3 to ``out_ch * scale^2`` + PixelShuffle, stored as ``upsampleOneStep`` like the release."""

    def __init__(self, scale: int, num_feat: int, num_out_ch: int):
        super().__init__()
        self.upsampleOneStep = nn.Sequential(
            nn.Conv2d(num_feat, num_out_ch * scale * scale, 3, padding=1), nn.PixelShuffle(scale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsampleOneStep(x)


class BSRN(nn.Module):
    """Input repeated 4x along channels, BSConvU, ``num_block`` ESDBs (``B1``...), Linear fuse + GELU,
    BSConvU + global skip, pixel-shuffle upsampler."""

    def __init__(self, scale: int, num_in_ch: int = 3, num_feat: int = 48, num_block: int = 5, num_out_ch: int = 3):
        super().__init__()
        self.scale = scale
        self.num_block = num_block
        self.fea_conv = BSConvU(num_in_ch * 4, num_feat)
        for i in range(num_block):
            self.add_module(f"B{i + 1}", ESDB(num_feat))
        self.c1 = nn.Linear(num_feat * num_block, num_feat)
        self.GELU = nn.GELU()
        self.c2 = BSConvU(num_feat, num_feat)
        self.upsampler = _PixelShuffleDirect(scale, num_feat, num_out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = out = self.fea_conv(torch.cat([x, x, x, x], dim=1))
        outs = []
        for i in range(self.num_block):
            out = getattr(self, f"B{i + 1}")(out)
            outs.append(out)
        out = self.GELU(_linear_nchw(self.c1, torch.cat(outs, dim=1)))
        return self.upsampler(self.c2(out) + fea)


register(
    ModelSpec(
        name="bsrn",
        builder=BSRN,
        scales=(2, 3, 4),
        kwargs={"num_feat": 48, "num_block": 5},
        description="BSRN (NTIRE 2022 ESR team18): num_feat 48, 5 blocks, BSConvU, pixelshuffledirect, RGB [0,1]",
        weights_note="../shared/weights/bsrn_ntire22_x4.pth (dict key 'params'), x4 only (Set5 PSNR_Y 32.010)",
    )
)
