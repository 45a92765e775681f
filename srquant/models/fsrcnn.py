"""FSRCNN(d=56, s=12, m=4) (Dong et al., ECCV 2016), 3-channel variant of the mobile / clip-free setting (models.md §6).

conv5 3->56, conv1 56->12, 4x conv3 12->12, conv1 12->56 (each followed by a per-channel PReLU), then a 9x9
``ConvTranspose2d`` 56->3 with stride s. Module names follow ``yjn870/FSRCNN-pytorch`` (``first_part``,
``mid_part``, ``last_part``), so a 3-channel checkpoint of that code loads strictly (but see the alignment note).

Deconvolution alignment: the full transposed output of LR pixel i is centred on HR index ``i*s + 4``; PyTorch crops
``padding`` pixels at the start and ``padding - output_padding`` at the end. We use
``padding = ceil((9 - s) / 2)`` and ``output_padding = 2 * padding + s - 9`` (x2: 4/1, x3: 3/0, x4: 3/1), the
smallest start crop PyTorch can express. For odd s this centres each LR pixel on its HR block exactly and equals
TF ``'same'`` (x3: 3/0, where yjn870's 4/2 is one HR pixel off); for even s an exact centre would need a
half-pixel crop, so the output is half an HR pixel up-left of centre (TF ``'same'``: half a pixel down-right)
and the learned kernel absorbs it. x2 coincides with yjn870; at x4 yjn870 (4/3) sits one pixel further off.

RGB in [0, 1]. ``act="relu"`` swaps the PReLUs for ReLUs (MAI 2021 Keras demo; fuses into INT8 convs).
``clip_output=True`` clamps the HR output to [0, input_range] after the deconvolution; the default is the original
clip-free network.
"""
from __future__ import annotations

import torch
from torch import nn

from ._registry import ModelSpec, register


def deconv_padding(scale: int, kernel_size: int = 9) -> tuple[int, int]:
    """(padding, output_padding) giving an ``H*scale`` output with the most centred crop PyTorch allows."""
    padding = (kernel_size - scale + 1) // 2
    return padding, 2 * padding + scale - kernel_size


class FSRCNN(nn.Module):
    """conv5 feature -> conv1 shrink -> m x conv3 map -> conv1 expand (PReLU after each) -> deconv9 stride s [-> clamp]."""

    def __init__(
        self,
        scale: int,
        d: int = 56,
        s: int = 12,
        m: int = 4,
        act: str = "prelu",
        clip_output: bool = False,
        input_range: float = 1.0,
    ):
        super().__init__()
        if act not in ("prelu", "relu"):
            raise ValueError(f"act must be 'prelu' or 'relu', not {act!r}")
        self.scale, self.clip_output, self.input_range = scale, clip_output, input_range

        def act_(ch: int) -> nn.Module:
            return nn.PReLU(ch) if act == "prelu" else nn.ReLU()

        self.first_part = nn.Sequential(nn.Conv2d(3, d, 5, padding=2), act_(d))
        mid: list[nn.Module] = [nn.Conv2d(d, s, 1), act_(s)]
        for _ in range(m):
            mid += [nn.Conv2d(s, s, 3, padding=1), act_(s)]
        mid += [nn.Conv2d(s, d, 1), act_(d)]
        self.mid_part = nn.Sequential(*mid)
        padding, output_padding = deconv_padding(scale)
        self.last_part = nn.ConvTranspose2d(d, 3, 9, stride=scale, padding=padding, output_padding=output_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.last_part(self.mid_part(self.first_part(x)))
        return out.clamp(0.0, self.input_range) if self.clip_output else out


register(
    ModelSpec(
        name="fsrcnn",
        builder=FSRCNN,
        scales=(2, 3, 4),
        kwargs={"d": 56, "s": 12, "m": 4, "act": "prelu", "clip_output": False},
        description="FSRCNN(56,12,4) RGB, PReLU, 9x9 ConvTranspose stride s (centred crop), RGB [0,1]; "
        "clip_output=True clamps the HR output",
        weights_note="no public RGB weights; train one with `srquant train`",
    )
)
