"""IMDN (Hui et al., ACM MM 2019) and relatives: IMDN_RTC (AI-in-RTC winner), KAIR IMDN (NTIRE 2022 ESR baseline).

Layouts and parameter names follow ``Zheng222/IMDN`` (``model/architecture.py``, ``model/block.py``) and
``cszn/KAIR`` ``models/network_imdn.py`` as shipped in ``ofsoundof/NTIRE2022_ESR``, so the released checkpoints
load strictly.
"""
from __future__ import annotations

import torch
from torch import nn

from ._registry import ModelSpec, register


def _conv(in_ch: int, out_ch: int, kernel_size: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)


def _pixel_shuffle_head(in_ch: int, out_ch: int, scale: int) -> list[nn.Module]:
    """conv3x3 to ``out_ch * scale^2`` channels, then PixelShuffle (two entries so Sequential indices match)."""
    return [_conv(in_ch, out_ch * scale * scale, 3), nn.PixelShuffle(scale)]


class _Shortcut(nn.Module):
    """``x + sub(x)``; the submodule is stored as ``sub`` (checkpoint keys ``model.1.sub.N``)."""

    def __init__(self, sub: nn.Module):
        super().__init__()
        self.sub = sub

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sub(x)


class CCALayer(nn.Module):
    """Contrast-aware channel attention: (per-channel std + mean) -> 1x1 squeeze/excite -> sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).sqrt()
        return x * self.conv_du(std + mean)


class IMDModule(nn.Module):
    """Information multi-distillation block: three 3x3 steps each keep 1/4 of the channels, CCA, 1x1 fuse, residual.

    ``attention=False`` gives the IMDN_RTC ``IMDModule_speed`` variant (no CCA, 1x1 fuse from the distilled channels).
    """

    def __init__(self, channels: int, distillation_rate: float = 0.25, attention: bool = True):
        super().__init__()
        self.distilled = int(channels * distillation_rate)
        self.remaining = channels - self.distilled
        self.c1 = _conv(channels, channels, 3)
        self.c2 = _conv(self.remaining, channels, 3)
        self.c3 = _conv(self.remaining, channels, 3)
        self.c4 = _conv(self.remaining, self.distilled, 3)
        self.act = nn.LeakyReLU(0.05)
        self.c5 = _conv(self.distilled * 4, channels, 1)
        self.cca = CCALayer(self.distilled * 4) if attention else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = (self.distilled, self.remaining)
        d1, r1 = torch.split(self.act(self.c1(x)), split, dim=1)
        d2, r2 = torch.split(self.act(self.c2(r1)), split, dim=1)
        d3, r3 = torch.split(self.act(self.c3(r2)), split, dim=1)
        d4 = self.c4(r3)
        return self.c5(self.cca(torch.cat([d1, d2, d3, d4], dim=1))) + x


class IMDN(nn.Module):
    """IMDN: conv3x3, ``num_modules`` IMDBs (``IMDB1``...), concat -> 1x1 + LReLU, conv3x3 + global skip, upsampler.

    The upsampler is conv3x3 to ``out_nc * scale^2`` channels + PixelShuffle.
    """

    def __init__(self, scale: int, in_nc: int = 3, nf: int = 64, num_modules: int = 6, out_nc: int = 3):
        super().__init__()
        self.scale = scale
        self.num_modules = num_modules
        self.fea_conv = _conv(in_nc, nf, 3)
        for i in range(num_modules):
            self.add_module(f"IMDB{i + 1}", IMDModule(nf))
        self.c = nn.Sequential(_conv(nf * num_modules, nf, 1), nn.LeakyReLU(0.05))
        self.LR_conv = _conv(nf, nf, 3)
        self.upsampler = nn.Sequential(*_pixel_shuffle_head(nf, out_nc, scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.fea_conv(x)
        outs, out = [], fea
        for i in range(self.num_modules):
            out = getattr(self, f"IMDB{i + 1}")(out)
            outs.append(out)
        out = self.LR_conv(self.c(torch.cat(outs, dim=1))) + fea
        return self.upsampler(out)


class IMDNRTC(nn.Module):
    """IMDN_RTC (AI in RTC 2019 winner): conv3x3, shortcut over [IMDB_speed x N, conv1x1], conv3x3 + shuffle.

    ``clip_output`` clamps the HR output (after the shuffle) to [0, input_range]; the released model has no clip.
    """

    def __init__(
        self,
        scale: int,
        in_nc: int = 3,
        nf: int = 12,
        num_modules: int = 5,
        out_nc: int = 3,
        input_range: float = 1.0,
        clip_output: bool = False,
    ):
        super().__init__()
        self.scale, self.input_range, self.clip_output = scale, input_range, clip_output
        body = [IMDModule(nf, attention=False) for _ in range(num_modules)] + [_conv(nf, nf, 1)]
        self.model = nn.Sequential(
            _conv(in_nc, nf, 3), _Shortcut(nn.Sequential(*body)), *_pixel_shuffle_head(nf, out_nc, scale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out.clamp(0.0, self.input_range) if self.clip_output else out


class KAIRIMDBlock(nn.Module):
    """KAIR's simplified IMDB: like :class:`IMDModule` without CCA; LReLU sits inside ``conv1..3`` (Sequential)."""

    def __init__(self, channels: int, distillation_rate: float = 0.25, negative_slope: float = 0.05):
        super().__init__()
        self.distilled = int(channels * distillation_rate)
        self.remaining = channels - self.distilled
        self.conv1 = nn.Sequential(_conv(channels, channels, 3), nn.LeakyReLU(negative_slope))
        self.conv2 = nn.Sequential(_conv(self.remaining, channels, 3), nn.LeakyReLU(negative_slope))
        self.conv3 = nn.Sequential(_conv(self.remaining, channels, 3), nn.LeakyReLU(negative_slope))
        self.conv4 = _conv(self.remaining, self.distilled, 3)
        self.conv1x1 = _conv(self.distilled * 4, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = (self.distilled, self.remaining)
        d1, r1 = torch.split(self.conv1(x), split, dim=1)
        d2, r2 = torch.split(self.conv2(r1), split, dim=1)
        d3, r3 = torch.split(self.conv3(r2), split, dim=1)
        return x + self.conv1x1(torch.cat([d1, d2, d3, self.conv4(r3)], dim=1))


class KAIRIMDN(nn.Module):
    """KAIR IMDN (NTIRE 2022 ESR baseline): conv3x3, shortcut over [IMDB x nb, conv3x3], conv3x3 + shuffle."""

    def __init__(self, scale: int, in_nc: int = 3, out_nc: int = 3, nc: int = 64, nb: int = 8):
        super().__init__()
        self.scale = scale
        body = [KAIRIMDBlock(nc) for _ in range(nb)] + [_conv(nc, nc, 3)]
        self.model = nn.Sequential(
            _conv(in_nc, nc, 3), _Shortcut(nn.Sequential(*body)), *_pixel_shuffle_head(nc, out_nc, scale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


register(
    ModelSpec(
        name="imdn",
        builder=IMDN,
        scales=(2, 3, 4),
        kwargs={"nf": 64, "num_modules": 6},
        description="IMDN (Zheng222/IMDN, ACM MM 2019): nf 64, 6 IMDBs with contrast-aware attention, RGB [0,1]",
        weights_note="../shared/weights/imdn_x2.pth, imdn_x3.pth, imdn_x4.pth (Set5 PSNR_Y 37.996 / 34.360 / 32.210)",
    )
)

register(
    ModelSpec(
        name="imdn_rtc",
        builder=IMDNRTC,
        scales=(2, 3, 4),
        kwargs={"nf": 12, "num_modules": 5},
        blocks=("model.1.sub.*",),
        description="IMDN_RTC (Zheng222/IMDN, AI-in-RTC 2019 winner): nf 12, 5 attention-free IMDBs, RGB [0,1]; "
        "clip_output=True adds an HR output clamp (clip-free study)",
        weights_note="../shared/weights/imdn_rtc_x2.pth, x2 only (Set5 PSNR_Y 37.311)",
    )
)

register(
    ModelSpec(
        name="imdn_kair",
        builder=KAIRIMDN,
        scales=(2, 3, 4),
        kwargs={"nc": 64, "nb": 8},
        blocks=("model.1.sub.*",),
        description="KAIR IMDN, the NTIRE 2022 efficient-SR baseline (ofsoundof/NTIRE2022_ESR imdn_baseline): "
        "nc 64, 8 attention-free IMDBs, RGB [0,1]",
        weights_note="../shared/weights/imdn_ntire22_baseline_x4.pth, x4 only (Set5 PSNR_Y 32.247)",
    )
)
