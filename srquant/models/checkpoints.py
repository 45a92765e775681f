"""Safe checkpoint loading: never unpickles code, unwraps the usual containers, names every key that does not fit."""
from __future__ import annotations

import fnmatch
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from ._registry import ModelSpec


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the architecture."""


def read_checkpoint(path: str | Path) -> dict:
    """Load ``path`` with ``weights_only=True``; refuse legacy full-module pickles with a clear message."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"{path} is not a plain tensor checkpoint (weights-only loading failed: {str(err).splitlines()[0]}). "
            "It is probably a legacy full-module pickle; srquant never unpickles arbitrary code. "
            "Re-save it as a state_dict (torch.save(model.state_dict(), ...)) in a trusted environment."
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return obj


def extract_state_dict(obj: dict, container_keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Find the tensor dict inside common containers ({'params_ema':...}, {'state_dict':...}, ...)."""
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    for key in container_keys:
        inner = obj.get(key)
        if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return inner
    raise CheckpointError(
        f"no state dict found in checkpoint (top-level keys: {sorted(obj)[:10]}; looked under {container_keys})"
    )


def strip_prefix(state: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    for prefix in prefixes:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _summarize(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def check_and_load(model: nn.Module, state: dict[str, torch.Tensor], source: str, strict: bool = True) -> None:
    """Load ``state`` into ``model``; on any mismatch raise naming missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    if shape or (strict and (missing or unexpected)):
        parts = [f"checkpoint {source} does not fit {type(model).__name__}:"]
        if missing:
            parts.append(f"missing keys: {_summarize(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_summarize(unexpected)}")
        if shape:
            parts.append(f"shape mismatch (checkpoint vs model): {_summarize(shape)}")
        raise CheckpointError("\n  ".join(parts))
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def load_state_dict_into(model: nn.Module, path: str | Path, spec: "ModelSpec", strict: bool = True) -> None:
    state = extract_state_dict(read_checkpoint(path), spec.checkpoint_keys)
    state = strip_prefix(state, spec.strip_prefixes)
    if spec.remap_keys is not None:
        state = spec.remap_keys(state)
    state = {k: v for k, v in state.items() if not any(fnmatch.fnmatch(k, p) for p in spec.ignore_keys)}
    check_and_load(model, state, str(path), strict=strict)
