"""MSRResNet, BasicSR's "modified SRResNet" (``XPixelGroup/BasicSR`` ``basicsr/archs/srresnet_arch.py``).

Parameter names match BasicSR (``conv_first``, ``body.N.conv1/conv2``, ``upconv1``, ``upconv2`` (x4 only),
``conv_hr``, ``conv_last``); BasicSR files wrap them as ``{'params': ...}`` / ``{'params_ema': ...}``.
RGB in [0, 1]; the output adds a bilinear upsampling of the input (global residual). No output clip.

Only ``msrresnet`` is registered: the original SRResNet of Ledig et al. (BatchNorm, PReLU, 9x9 head/tail convs)
is a different network whose checkpoints would not fit, so the name ``srresnet`` is deliberately left free.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import ModelSpec, register


def _conv(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, padding=1)


@torch.no_grad()
def _scaled_kaiming_(modules: list[nn.Module], scale: float = 0.1) -> None:
    """BasicSR ``default_init_weights``: Kaiming-normal weights times ``scale``, zero biases."""
    for module in modules:
        nn.init.kaiming_normal_(module.weight)
        module.weight.mul_(scale)
        nn.init.zeros_(module.bias)


class ResidualBlockNoBN(nn.Module):
    """conv3x3 -> ReLU -> conv3x3 plus identity (keys ``conv1``, ``conv2``)."""

    def __init__(self, num_feat: int = 64):
        super().__init__()
        self.conv1 = _conv(num_feat, num_feat)
        self.conv2 = _conv(num_feat, num_feat)
        self.relu = nn.ReLU(inplace=True)
        _scaled_kaiming_([self.conv1, self.conv2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


class MSRResNet(nn.Module):
    """conv_first, LReLU(0.1) -> 16 resblocks -> sub-pixel upsampling, LReLU -> conv_hr, LReLU -> conv_last; + bilinear."""

    def __init__(self, scale: int, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_block: int = 16):
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"MSRResNet supports scales 2, 3 and 4, not {scale}")
        self.scale = scale
        self.conv_first = _conv(num_in_ch, num_feat)
        self.body = nn.Sequential(*[ResidualBlockNoBN(num_feat) for _ in range(num_block)])
        if scale == 4:
            self.upconv1 = _conv(num_feat, num_feat * 4)
            self.upconv2 = _conv(num_feat, num_feat * 4)
            self.pixel_shuffle = nn.PixelShuffle(2)
        else:
            self.upconv1 = _conv(num_feat, num_feat * scale * scale)
            self.pixel_shuffle = nn.PixelShuffle(scale)
        self.conv_hr = _conv(num_feat, num_feat)
        self.conv_last = _conv(num_feat, num_out_ch)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)
        upconvs = [self.upconv1, self.upconv2] if scale == 4 else [self.upconv1]
        _scaled_kaiming_([self.conv_first, *upconvs, self.conv_hr, self.conv_last])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(self.lrelu(self.conv_first(x)))
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        if self.scale == 4:
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        return out + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)


register(
    ModelSpec(
        name="msrresnet",
        builder=MSRResNet,
        scales=(2, 3, 4),
        kwargs={"num_feat": 64, "num_block": 16},
        description="MSRResNet (BasicSR): 64 feats, 16 BN-free resblocks, LReLU 0.1, bilinear global residual, "
        "RGB [0,1], no clip",
        weights_note="BasicSR model zoo MSRResNet_x{2,3,4} files ({'params': ...}) load strictly",
    )
)
