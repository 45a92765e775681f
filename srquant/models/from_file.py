"""Models srquant does not know: ``--model path/to/file.py:ClassName`` on the command line.

The contract: the class is an ``nn.Module`` whose ``forward`` takes an NCHW RGB batch with pixels in
``[0, input_range]`` (1 by default, 255 with ``--input-range 255``) and returns the batch upscaled by ``scale``.
Its constructor takes the keyword arguments of ``--model-args`` (a JSON object); when it has a ``scale`` or
``upscale`` parameter that ``--model-args`` does not set, it gets ``--scale``. ``--weights`` is a state dict (or a
checkpoint holding one under ``params_ema``, ``params``, ``state_dict`` or ``model``), loaded strictly.
"""
from __future__ import annotations

import importlib.util
import inspect
import json
import sys
from pathlib import Path

from torch import nn

from ..errors import ConfigError, InputError, ModelError
from ._registry import ModelSpec, SRInfo
from .checkpoints import load_state_dict_into

SCALE_PARAMETERS = ("scale", "upscale")


def is_model_file(spec: str) -> bool:
    """True for ``path/to/file.py:ClassName`` (a registered name has no ``.py:``)."""
    return ".py:" in spec


def parse_model_args(text: str | None) -> dict:
    """``--model-args``: a JSON object of constructor keyword arguments."""
    if not text:
        return {}
    try:
        args = json.loads(text)
    except ValueError as err:
        raise ConfigError(f"--model-args must be a JSON object, e.g. '{{\"channels\": 32}}' ({err})") from None
    if not isinstance(args, dict):
        raise ConfigError(f"--model-args must be a JSON object, got {type(args).__name__}")
    return args


def _load_class(spec: str) -> type[nn.Module]:
    file, _, class_name = spec.rpartition(":")
    path = Path(file)
    if not path.is_file():
        raise InputError(f"model file not found: {path}")
    module_name = f"srquant_user_model_{abs(hash(str(path.resolve())))}"
    loader = importlib.util.spec_from_file_location(module_name, path)
    if loader is None or loader.loader is None:
        raise InputError(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(loader)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
    try:
        loader.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - any error in the user's file is reported as the file's
        del sys.modules[module_name]
        raise InputError(f"{path} failed to import: {type(err).__name__}: {err}") from err
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        found = sorted(n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module)
                       and v.__module__ == module_name)
        raise ModelError(f"{path} has no nn.Module class {class_name!r} (its modules: {', '.join(found) or 'none'})")
    return cls


def create_from_file(spec: str, scale: int, weights: str | Path | None = None, model_args: dict | None = None,
                     input_range: float = 1.0) -> nn.Module:
    """Build ``ClassName`` from ``path/to/file.py:ClassName`` with ``model_args``; load ``weights`` if given."""
    if scale < 1:
        raise ConfigError(f"--scale must be a positive integer, got {scale}")
    if input_range not in (1.0, 255.0):
        raise ConfigError(f"--input-range must be 1 or 255, got {input_range:g}")
    cls = _load_class(spec)
    kwargs = dict(model_args or {})
    params = inspect.signature(cls.__init__).parameters
    for name in SCALE_PARAMETERS:
        if name in params and name not in kwargs:
            kwargs[name] = scale
            break
    try:
        model = cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{spec}: the constructor rejects --model-args {kwargs} ({err})") from None
    name = cls.__name__.lower()
    if weights is not None:
        load_state_dict_into(model, weights, ModelSpec(name, cls, (scale,)))
    model.eval()
    model.sr_info = SRInfo(name=name, scale=scale, input_range=float(input_range))
    return model
