"""VDSR (Kim, Lee, Lee; CVPR 2016): 20-layer residual net on the bicubic-upsampled luma.

Layout and parameter names follow ``twtygqyy/pytorch-vdsr`` ``vdsr.py``: ``input`` conv 1->64, 18
``residual_layer.N.conv`` (conv 64->64 + ReLU), ``output`` conv 64->1, no biases, global residual.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import ModelSpec, register


class ConvReLU(nn.Module):
    """conv3x3 (no bias) + ReLU, stored as ``conv``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class VDSR(nn.Module):
    """``x + output(residual_layer(relu(input(x))))`` on a Y image already upsampled to the target size.

    The same weights serve every scale: ``scale`` is recorded (``self.scale``) but the computation ignores it.
    """

    def __init__(self, scale: int, num_channels: int = 1, num_feat: int = 64, num_layers: int = 18):
        super().__init__()
        self.scale = scale
        self.input = nn.Conv2d(num_channels, num_feat, 3, padding=1, bias=False)
        self.residual_layer = nn.Sequential(*[ConvReLU(num_feat) for _ in range(num_layers)])
        self.output = nn.Conv2d(num_feat, num_channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        """``scale`` is accepted for the multi-scale calling convention and ignored (the input is pre-upsampled)."""
        return x + self.output(self.residual_layer(F.relu(self.input(x))))


register(
    ModelSpec(
        name="vdsr",
        builder=VDSR,
        scales=(2, 3, 4),
        color="y",
        upsample_input=True,
        multi_scale=True,
        description="VDSR (twtygqyy/pytorch-vdsr): 20 conv layers, no bias, global residual; input = MATLAB-bicubic "
        "upsampled Y in [0,1]; one network for x2/x3/x4",
        weights_note="../shared/weights/vdsr_x234.pth (Set5 PSNR_Y x2 37.613 / x3 33.757 / x4 31.440); "
        "vdsr_x234_ORIGINAL_legacy_pickle.pth is refused by the safe loader",
    )
)
