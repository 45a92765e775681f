"""The public verbs: ``quantize`` a model with a method config, ``save`` and ``load`` the result."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .methods import QuantConfig, config_from_dict, implementation
from .models import create
from .models.checkpoints import CheckpointError, read_checkpoint
from .quant.model import prepare, quantizers

ARTIFACT_FORMAT = "srquant-quantized-model/1"


def quantize(model: nn.Module, config: QuantConfig, calib: torch.Tensor) -> nn.Module:
    """Return a fake-quantized copy of ``model`` calibrated by ``config``'s method on ``calib``.

    ``calib`` is a float NxCxHxW batch in the model's input range. The float model is left untouched; the result
    carries ``srquant_config`` and ``calib_seconds``.
    """
    if not isinstance(config, QuantConfig):
        raise TypeError(f"config must be a method config (e.g. MinMaxConfig), not {type(config).__name__}")
    if calib.dim() != 4 or len(calib) == 0:
        raise ValueError(f"calib must be a non-empty NxCxHxW tensor, got shape {tuple(calib.shape)}")
    torch.manual_seed(config.seed)
    start = time.perf_counter()
    fp_model = model.eval()
    qmodel = prepare(fp_model, config)
    replaced = implementation(config)(qmodel, fp_model, calib, config)
    if replaced is not None:  # methods that produce another kind of model (ONNX Runtime's quantize_static)
        qmodel = replaced
    qmodel.eval()
    qmodel.calib_seconds = time.perf_counter() - start
    return qmodel


def save(qmodel: nn.Module, path: str | Path) -> None:
    """Write weights, quantizer state, config and how to rebuild the float architecture (atomically)."""
    config = getattr(qmodel, "srquant_config", None)
    if config is None:
        raise ValueError("not a model returned by srquant.quantize")
    if hasattr(qmodel, "onnx_path"):
        raise ValueError(f"{config.method} produced an ONNX model ({qmodel.onnx_path}); keep it with .save_onnx(path)")
    payload = {
        "format": ARTIFACT_FORMAT,
        "srquant_version": __version__,
        "config": config.to_dict(),
        "build": getattr(qmodel, "srquant_build", None),
        "state_dict": qmodel.state_dict(),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def saved_config(path: str | Path) -> dict:
    """The method config stored in a saved quantized model."""
    return read_checkpoint(path)["config"]


def load(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Rebuild a saved quantized model. ``model`` (the float architecture) is needed only for models that were
    not built with ``srquant.models.create``."""
    payload = read_checkpoint(path)
    if payload.get("format") != ARTIFACT_FORMAT:
        raise CheckpointError(f"{path} is not an srquant quantized model (format {payload.get('format')!r})")
    config = config_from_dict(payload["config"])
    if model is None:
        build = payload.get("build")
        if not build:
            raise ValueError(f"{path} holds a model srquant cannot rebuild by name; pass its float architecture as model=")
        model = create(build["name"], build["scale"], **build["kwargs"])
    qmodel = prepare(model, config)
    if hasattr(config, "rebuild"):  # methods that install their own quantizer modules (DFSQ); buffers load below
        config.rebuild(qmodel)
    state = payload["state_dict"]
    for name, q in quantizers(qmodel):
        prefix = f"{name}." if name else ""
        if prefix + "lo" in state:
            q.set_range(state[prefix + "lo"], state[prefix + "hi"])
        if prefix + "alpha" in state:
            q.alpha = nn.Parameter(state[prefix + "alpha"].clone(), requires_grad=False)
            q.hard_rounding = True
    qmodel.load_state_dict(state, strict=True)
    qmodel.eval()
    return qmodel
