"""RDN (Zhang et al., CVPR 2018) in the layout of ``sanghyun-son/EDSR-PyTorch`` ``src/model/rdn.py``.

Parameter names follow that file: ``SFENet1``, ``SFENet2``, ``RDBs.N.convs.M.conv.0``, ``RDBs.N.LFF``,
``GFF.0`` (1x1) / ``GFF.1`` (3x3) and ``UPNet.K``. That RDN has no mean shift; like the rest of EDSR-PyTorch it
takes RGB in [0, 255] (``rgb_range`` 255). Config B (the paper's): G0 = 64, D = 16 blocks, C = 8 convs, G = 64.
"""
from __future__ import annotations

import torch
from torch import nn

from ._registry import ModelSpec, register


def _conv(in_ch: int, out_ch: int, kernel_size: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=(kernel_size - 1) // 2)


class RDBConv(nn.Module):
    """conv -> ReLU (key ``conv.0``), concatenated after its input (dense connection)."""

    def __init__(self, in_ch: int, growth: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Sequential(_conv(in_ch, growth, kernel_size), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.conv(x)), 1)


class RDB(nn.Module):
    """Residual dense block: C dense convs, 1x1 local feature fusion (``LFF``) back to G0, local residual."""

    def __init__(self, g0: int, growth: int, n_convs: int, kernel_size: int = 3):
        super().__init__()
        self.convs = nn.Sequential(*[RDBConv(g0 + c * growth, growth, kernel_size) for c in range(n_convs)])
        self.LFF = nn.Conv2d(g0 + n_convs * growth, g0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LFF(self.convs(x)) + x


class RDN(nn.Module):
    """SFENet1, SFENet2 -> D RDBs -> GFF(concat of all RDB outputs) + SFENet1 features -> UPNet. No output clip."""

    def __init__(
        self, scale: int, G0: int = 64, D: int = 16, C: int = 8, G: int = 64, kernel_size: int = 3, n_colors: int = 3
    ):
        super().__init__()
        self.scale = scale
        self.SFENet1 = _conv(n_colors, G0, kernel_size)
        self.SFENet2 = _conv(G0, G0, kernel_size)
        self.RDBs = nn.ModuleList(RDB(G0, G, C, kernel_size) for _ in range(D))
        self.GFF = nn.Sequential(nn.Conv2d(D * G0, G0, 1), _conv(G0, G0, kernel_size))
        if scale in (2, 3):
            up: list[nn.Module] = [_conv(G0, G * scale * scale, kernel_size), nn.PixelShuffle(scale)]
        elif scale == 4:
            up = [_conv(G0, G * 4, kernel_size), nn.PixelShuffle(2), _conv(G, G * 4, kernel_size), nn.PixelShuffle(2)]
        else:
            raise ValueError(f"RDN supports scales 2, 3 and 4, not {scale}")
        self.UPNet = nn.Sequential(*up, _conv(G, n_colors, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.SFENet1(x)
        x = self.SFENet2(f1)
        outs = []
        for block in self.RDBs:
            x = block(x)
            outs.append(x)
        return self.UPNet(self.GFF(torch.cat(outs, 1)) + f1)


register(
    ModelSpec(
        name="rdn",
        builder=RDN,
        scales=(2, 3, 4),
        input_range=255.0,
        kwargs={"G0": 64, "D": 16, "C": 8, "G": 64, "kernel_size": 3},
        description="RDN config B (EDSR-PyTorch rdn.py): G0 64, D 16, C 8, G 64, RGB [0,255], no mean shift, no clip",
        weights_note="EDSR-PyTorch publishes no RDN .pt; a state dict saved by its rdn.py (plain .pt) loads strictly",
    )
)
