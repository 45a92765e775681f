"""ESPCN (Shi et al., CVPR 2016), the 3-channel paper layout used in the mobile / clip-free setting (docs models.md §5).

conv5 3->64, conv3 64->32, conv3 32->3s^2, PixelShuffle(s). Module names follow ``yjn870/ESPCN-pytorch``
(``first_part.0``, ``first_part.2``, ``last_part.0``) so a 3-channel checkpoint of that code loads strictly.

Assumptions (documented choices, not the paper's): RGB in [0, 1]; the hidden activation defaults to ReLU rather
than the paper's tanh, because ReLU fuses into INT8 convs and the clip-free study needs an INT8-friendly net
(``act="tanh"`` restores the paper). ``clip_output=True`` clamps the HR output to [0, input_range] after the
shuffle (the "clipped" variant); the default is the original, clip-free network.
"""
from __future__ import annotations

import torch
from torch import nn

from ._registry import ModelSpec, register

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


class ESPCN(nn.Module):
    """conv5 -> act -> conv3 -> act -> conv3 to 3s^2 -> PixelShuffle [-> clamp]."""

    def __init__(
        self,
        scale: int,
        act: str = "relu",
        clip_output: bool = False,
        input_range: float = 1.0,
    ):
        super().__init__()
        if act not in _ACTIVATIONS:
            raise ValueError(f"act must be one of {sorted(_ACTIVATIONS)}, not {act!r}")
        self.scale, self.clip_output, self.input_range = scale, clip_output, input_range
        act_cls = _ACTIVATIONS[act]
        self.first_part = nn.Sequential(
            nn.Conv2d(3, 64, 5, padding=2), act_cls(), nn.Conv2d(64, 32, 3, padding=1), act_cls()
        )
        self.last_part = nn.Sequential(nn.Conv2d(32, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.last_part(self.first_part(x))
        return out.clamp(0.0, self.input_range) if self.clip_output else out


register(
    ModelSpec(
        name="espcn",
        builder=ESPCN,
        scales=(2, 3, 4),
        kwargs={"act": "relu", "clip_output": False},
        default_weights={3: "espcn_x3.pt"},
        description="ESPCN RGB (conv5 64, conv3 32, conv3 3s^2, PixelShuffle), ReLU (tanh optional), RGB [0,1]; "
        "clip_output=True clamps the HR output; srquant's embedded x3 (the clip-free study's scale)",
        weights_note="no public RGB weights; embedded x3 trained by `srquant train` (docs/clipfree.md)",
    )
)
