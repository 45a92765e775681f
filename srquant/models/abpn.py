"""ABPN (Du et al., Mobile AI 2021): anchor-based plain net, NJU ``base7`` layout (D4C28)."""
from __future__ import annotations

import torch
from torch import nn

from ._registry import ModelSpec, register


class ABPN(nn.Module):
    """conv3->28 ReLU, 4x conv 28->28 ReLU, conv 28->3s^2 ReLU, conv 3s^2->3s^2, + anchor, pixel shuffle, clip.

    The anchor repeats each input channel s^2 times (PyTorch PixelShuffle order). ``clip_output`` keeps the
    original design's clamp of the HR output to [0, input_range]; the clip-free variant drops it.
    """

    def __init__(self, scale: int, num_feat: int = 28, num_mid: int = 4, input_range: float = 1.0, clip_output: bool = True):
        super().__init__()
        self.scale, self.input_range, self.clip_output = scale, input_range, clip_output
        out_ch = 3 * scale * scale
        layers: list[nn.Module] = [nn.Conv2d(3, num_feat, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(num_mid):
            layers += [nn.Conv2d(num_feat, num_feat, 3, padding=1), nn.ReLU(inplace=True)]
        layers += [nn.Conv2d(num_feat, out_ch, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(out_ch, out_ch, 3, padding=1)]
        self.body = nn.Sequential(*layers)
        self.upsample = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        anchor = torch.repeat_interleave(x, self.scale * self.scale, dim=1)
        out = self.upsample(self.body(x) + anchor)
        return out.clamp(0.0, self.input_range) if self.clip_output else out


register(
    ModelSpec(
        name="abpn",
        builder=ABPN,
        scales=(2, 3, 4),
        default_weights={2: "abpn_x2.pt", 4: "abpn_x4.pt"},
        description="ABPN base7 D4C28 (anchor + output clip); srquant's embedded default, trained by `srquant train`",
        weights_note="embedded x2/x4: trained by srquant itself (docs/models.md)",
    )
)
