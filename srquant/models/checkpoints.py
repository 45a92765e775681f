"""Safe checkpoint loading: never unpickles code, unwraps the usual containers, names every key that does not fit."""
from __future__ import annotations

import fnmatch
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import CheckpointError, InputError, clean_message

if TYPE_CHECKING:
    from ._registry import ModelSpec

__all__ = ["CheckpointError", "check_and_load", "extract_state_dict", "load_state_dict_into", "read_checkpoint"]

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format: a zip archive with a CRC-32 per record
PICKLE_PROTO = b"\x80"  # torch's legacy format: pickles (protocol 2+) written one after another


def read_checkpoint(path: str | Path) -> dict:
    """Load ``path`` with ``weights_only=True`` after checking its zip CRCs; every malformed file (empty, truncated,
    corrupted, not a checkpoint, pickled code) raises :class:`CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointError(f"{path} is empty (0 bytes)")
    if head == ZIP_MAGIC:
        _check_zip(path)
    elif not head.startswith(PICKLE_PROTO):
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (neither a zip archive nor a pickle)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a damaged legacy file warns of odd pickle protocols before failing
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        code = _unsupported_global(err)
        if code is None:
            raise CheckpointError(f"{path} is corrupted or not a PyTorch checkpoint ({_first_line(err)})") from None
        raise CheckpointError(
            f"{path} holds pickled Python code ({code}), not only tensors: a legacy full-module pickle (or a damaged "
            "file). srquant never unpickles arbitrary code. "
            "Re-save it as a state_dict (torch.save(model.state_dict(), ...)) in a trusted environment."
        ) from None
    except Exception as err:  # noqa: BLE001 - torch.load raises many types (IndexError, struct.error, ...) on bad bytes
        raise CheckpointError(f"{path} is corrupted or not a PyTorch checkpoint ({_first_line(err)})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return obj


def _check_zip(path: Path) -> None:
    """Verify every record's CRC-32 (torch.load does not): a flipped byte must not load as a changed tensor."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except Exception as err:  # noqa: BLE001 - zipfile raises many types for a damaged archive
        raise CheckpointError(f"{path} is a damaged or truncated zip archive ({_first_line(err)})") from None
    if bad is not None:
        raise CheckpointError(f"{path} is corrupted: CRC-32 mismatch in record {bad}")


TORCH_ADVICE = ("weights_only", "Weights only", "trust", "documentation of torch.load")  # advice to load unsafely


def _first_line(err: BaseException) -> str:
    """``Type: reason`` of an exception: its first line that is not torch's advice on ``weights_only`` (the
    weights-only unpickler's own reason when there is one), without ANSI escapes."""
    text = clean_message(str(err))
    reason = text.partition("WeightsUnpickler error:")[2] or text
    lines = [ln.strip() for ln in reason.splitlines() if ln.strip() and not any(a in ln for a in TORCH_ADVICE)]
    return f"{type(err).__name__}: {lines[0][:200]}" if lines else type(err).__name__


def _unsupported_global(err: pickle.UnpicklingError) -> str | None:
    """The ``GLOBAL module.name`` a weights-only load refused when it names real Python code (a pickled module or
    function), else None (a damaged file whose bytes happen to read as a garbled GLOBAL opcode)."""
    match = re.search(r"Unsupported global: GLOBAL (\S+)", clean_message(str(err)))
    if match is None or not all(part.isidentifier() for part in match.group(1).split(".")):
        return None
    return f"GLOBAL {match.group(1)}"


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def extract_state_dict(obj: dict, container_keys: tuple[str, ...], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the tensor dict inside common containers ({'params_ema':...}, {'state_dict':...}, ...)."""
    if _is_state_dict(obj):
        return obj
    for key in container_keys:
        if _is_state_dict(obj.get(key)):
            return obj[key]
    raise CheckpointError(
        f"no state dict found in {source} (top-level keys: {sorted(map(str, obj))[:10]}; looked under {container_keys})"
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
    try:
        model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {source} does not load into {type(model).__name__}: {_first_line(err)}") from None


def load_state_dict_into(model: nn.Module, path: str | Path, spec: "ModelSpec", strict: bool = True) -> None:
    state = extract_state_dict(read_checkpoint(path), spec.checkpoint_keys, str(path))
    state = strip_prefix(state, spec.strip_prefixes)
    if spec.remap_keys is not None:
        try:
            state = spec.remap_keys(state)
        except (KeyError, IndexError, ValueError, TypeError) as err:
            raise CheckpointError(f"{path} does not have the key layout {spec.name} expects ({err!r})") from None
    state = {k: v for k, v in state.items() if not any(fnmatch.fnmatch(k, p) for p in spec.ignore_keys)}
    check_and_load(model, state, str(path), strict=strict)
