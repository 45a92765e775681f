"""XCAT-R: srquant's *reconstruction* of XCAT (Ayazoglu & Bilecen, ECCV-W 2022, arXiv 2208.14655), models.md §4.3.

Only XCAT's abstract and first page could be read; this is NOT the paper's exact network. What is taken from
the paper: HXBlocks (heterogeneous group convolution with cross concatenation, no 1x1 convs between groups),
a non-trainable convolution implementing the upsampling path, an INT8-oriented plain design.

Assumed (inferred, unverified): width 32; a conv3x3 3->32 + ReLU head; three HXBlocks, each splitting the 32
channels heterogeneously into P = 8 and Q = 24 with P' = ReLU(conv3x3 8->8) and Q' = ReLU(grouped conv3x3
24->24, 3 groups); cross-concatenation routing P_next = Q'[:8], Q_next = [P', Q'[8:]] (parameter-free); a
conv3x3 32->3s^2 tail; an ABPN-style anchor (each input channel repeated s^2 times, PyTorch PixelShuffle order)
added before PixelShuffle; an output clamp to [0, input_range] after the shuffle (on by default, as the clip-free
paper lists XCAT among clipped nets); RGB in [0, 1]; ReLU everywhere.

The anchor is a frozen 1x1 conv whose weight is a *non-persistent buffer*: it is not a parameter (nothing can
train it, parameter counts exclude it) and not in the state dict (it is fixed by the scale, so checkpoints stay
minimal and cannot disagree with it). Trainable parameters: 11,372 / 15,707 / 21,776 for x2 / x3 / x4.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import ModelSpec, register


class AnchorConv(nn.Module):
    """Frozen bias-free 1x1 conv 3 -> 3s^2 with weight 1 where ``in_channel == out_channel // s^2``, else 0."""

    def __init__(self, scale: int, channels: int = 3):
        super().__init__()
        out_ch = channels * scale * scale
        weight = torch.zeros(out_ch, channels, 1, 1)
        weight[torch.arange(out_ch), torch.arange(out_ch) // (scale * scale)] = 1.0
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight)


class HXBlock(nn.Module):
    """Heterogeneous split (P | Q), conv on P, grouped conv on Q, ReLU, cross-concatenation ``[Q'[:p], P', Q'[p:]]``.

    The output's first ``p`` channels are the next block's P, the rest its Q.
    """

    def __init__(self, num_feat: int = 32, split: int = 8, groups: int = 3):
        super().__init__()
        if (num_feat - split) % groups:
            raise ValueError(f"Q width {num_feat - split} is not divisible by {groups} groups")
        self.split = split
        self.conv_p = nn.Conv2d(split, split, 3, padding=1)
        self.conv_q = nn.Conv2d(num_feat - split, num_feat - split, 3, padding=1, groups=groups)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.relu(self.conv_p(x[:, : self.split]))
        q = self.relu(self.conv_q(x[:, self.split :]))
        return torch.cat((q[:, : self.split], p, q[:, self.split :]), 1)


class XCATR(nn.Module):
    """conv3x3 + ReLU -> 3 HXBlocks -> conv3x3 to 3s^2, + frozen anchor, PixelShuffle [-> clamp]."""

    def __init__(
        self,
        scale: int,
        num_feat: int = 32,
        split: int = 8,
        groups: int = 3,
        num_blocks: int = 3,
        clip_output: bool = True,
        input_range: float = 1.0,
    ):
        super().__init__()
        self.scale, self.clip_output, self.input_range = scale, clip_output, input_range
        self.head = nn.Sequential(nn.Conv2d(3, num_feat, 3, padding=1), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[HXBlock(num_feat, split, groups) for _ in range(num_blocks)])
        self.tail = nn.Conv2d(num_feat, 3 * scale * scale, 3, padding=1)
        self.anchor = AnchorConv(scale)
        self.upsample = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.upsample(self.tail(self.blocks(self.head(x))) + self.anchor(x))
        return out.clamp(0.0, self.input_range) if self.clip_output else out


register(
    ModelSpec(
        name="xcat_r",
        builder=XCATR,
        scales=(2, 3, 4),
        kwargs={"num_feat": 32, "split": 8, "groups": 3, "num_blocks": 3, "clip_output": True},
        description="XCAT-R: a reconstruction of XCAT (HXBlock x3, 8/24 heterogeneous split, cross-concat, frozen "
        "1x1 anchor, output clip), RGB [0,1]; NOT the paper's exact network",
        weights_note="no public XCAT code or weights; train one with `srquant train`",
    )
)
