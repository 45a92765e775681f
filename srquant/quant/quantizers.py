"""Quantizer modules: the :class:`Quantizer` contract, and the uniform quantizer that holds a range [lo, hi] (per
tensor or per channel) and fake-quantizes what passes through."""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from .primitives import amin_amax, fake_quant, int_range, qparams


class Quantizer(nn.Module):
    """What every quantizer module shares.

    ``mode`` is ``"quant"`` (apply :meth:`quantize`), ``"observe"`` (pass through; :meth:`observe` feeds
    ``observer.update``) or ``"off"`` (pass through). The calibrated state is the module's state dict: loading one
    that holds ``calibrated_key`` restores it (after :meth:`_shape_like`, which shapes the module like the saved
    state) and switches the quantizer to ``"quant"``. Calibration sets the observers and modes through
    :func:`srquant.quant.walk.observing`.
    """

    calibrated_key: ClassVar[str] = ""  # a state-dict entry whose presence means "calibrated"

    def __init__(self, bits: int):
        super().__init__()
        self.bits = bits
        self.mode = "off"
        self.observer = None

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def observe(self, x: torch.Tensor) -> None:
        self.observer.update(x.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "quant":
            return self.quantize(x)
        if self.mode == "observe" and self.observer is not None:
            self.observe(x)
        return x

    def _shape_like(self, state_dict: dict, prefix: str) -> None:
        """Before loading: give parameters whose shape depends on calibration the saved shapes."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        calibrated = prefix + self.calibrated_key in state_dict
        if calibrated:
            self._shape_like(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if calibrated:
            self.mode = "quant"


class UniformQuantizer(Quantizer):
    """Uniform affine quantizer with learnable range bounds.

    ``axis`` is None (per tensor) or the channel dimension(s) that get their own range. ``mode`` is ``"quant"``
    (fake-quantize), ``"observe"`` (pass through and feed ``observer``) or ``"off"`` (pass through).
    Optional learned rounding (AdaRound): ``init_learned_rounding`` adds a rounding variable per element.
    """

    calibrated_key = "lo"

    def __init__(self, bits: int, symmetric: bool = False, axis: int | tuple[int, ...] | None = None):
        int_range(bits, symmetric)  # validates the bit width
        super().__init__(bits)
        self.symmetric, self.axis = symmetric, axis
        self.lo = nn.Parameter(torch.zeros(()), requires_grad=False)
        self.hi = nn.Parameter(torch.ones(()), requires_grad=False)
        self.alpha: nn.Parameter | None = None  # AdaRound rounding variable
        self.hard_rounding = True

    def extra_repr(self) -> str:
        gran = "tensor" if self.axis is None else f"axis={self.axis}"
        return f"bits={self.bits}, {'sym' if self.symmetric else 'asym'}, {gran}, mode={self.mode}"

    @torch.no_grad()
    def set_range(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        lo = torch.as_tensor(lo, dtype=torch.float32)
        hi = torch.as_tensor(hi, dtype=torch.float32)
        self.lo = nn.Parameter(lo.clone(), requires_grad=self.lo.requires_grad)
        self.hi = nn.Parameter(torch.maximum(hi, lo + 1e-8).clone(), requires_grad=self.hi.requires_grad)
        self.mode = "quant"

    def init_from_minmax(self, x: torch.Tensor) -> None:
        self.set_range(*amin_amax(x.detach(), self.axis))

    def params(self) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        return qparams(self.lo, self.hi, self.bits, self.symmetric)

    def range_params(self) -> dict[str, list[nn.Parameter]]:
        """Learnable range parameters by group, for the tuning loop (every quantizer has ``bounds`` = [lower, upper])."""
        return {"bounds": [self.lo, self.hi]}

    # --- AdaRound -------------------------------------------------------------------------------------------
    ZETA, GAMMA = 1.1, -0.1

    @torch.no_grad()
    def init_learned_rounding(self, w: torch.Tensor) -> None:
        """Start the rounding variable where the soft rounding equals the fractional part (AdaRound init)."""
        scale, _, _, _ = self.params()
        frac = (w / scale - torch.floor(w / scale)).clamp(0.01, 0.99)
        self.alpha = nn.Parameter(-torch.log((self.ZETA - self.GAMMA) / (frac - self.GAMMA) - 1))
        self.hard_rounding = False

    def soft_rounding(self) -> torch.Tensor:
        return torch.clamp(torch.sigmoid(self.alpha) * (self.ZETA - self.GAMMA) + self.GAMMA, 0, 1)

    def rounding_regularizer(self, beta: float) -> torch.Tensor:
        return (1 - (2 * self.soft_rounding() - 1).abs().pow(beta)).sum()

    def _learned_round(self, w: torch.Tensor) -> torch.Tensor:
        scale, zero_point, qmin, qmax = self.params()
        h = (self.alpha >= 0).float() if self.hard_rounding else self.soft_rounding()
        q = torch.clamp(torch.floor(w / scale) + h + zero_point, qmin, qmax)
        return (q - zero_point) * scale

    # ---------------------------------------------------------------------------------------------------------
    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        if self.alpha is not None:
            return self._learned_round(x)
        return fake_quant(x, *self.params())

    def _shape_like(self, state_dict: dict, prefix: str) -> None:
        """Per-channel ranges and a learned rounding variable take the saved shapes (the rounding stays hard)."""
        self.set_range(state_dict[prefix + "lo"], state_dict[prefix + "hi"])
        if prefix + "alpha" in state_dict:
            self.alpha = nn.Parameter(state_dict[prefix + "alpha"].clone(), requires_grad=False)
            self.hard_rounding = True
