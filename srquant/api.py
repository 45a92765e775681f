"""The public verbs: ``quantize`` a model with a method config (and evaluate it), ``save`` and ``load`` the result."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._version import __version__
from .errors import CheckpointError, SrquantError
from .evaluate import evaluate, model_predictor
from .fileio import atomic_path
from .methods import QuantConfig, config_from_dict, registered
from .models import SRInfo, create
from .models.checkpoints import read_checkpoint
from .quant.model import prepare
from .results import ResultRecord

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
    method = registered(config)
    qmodel = (method.prepare or prepare)(fp_model, config)
    if method.install is not None:
        method.install(qmodel, config)
    result = method.calibrate(qmodel, fp_model, calib, config)
    if method.backend != "torch":  # a peer runtime's own quantization returns that runtime's model
        qmodel = result
    qmodel.eval()
    qmodel.calib_seconds = time.perf_counter() - start
    return qmodel


def evaluate_quantized(qmodel: nn.Module, config: QuantConfig, info: SRInfo, datasets, /, *, label: str | None = None,
                       **options: Any) -> list[ResultRecord]:
    """Evaluate ``qmodel`` (quantized with ``config``) on ``datasets``; its records carry the method (or ``label``),
    bit widths, scope, calibration time and config. ``options``: :func:`~srquant.evaluate.evaluate`'s keywords."""
    return evaluate(model_predictor(qmodel, info), datasets, method=label or config.method, w_bits=config.w_bits,
                    a_bits=config.a_bits, scope=config.scope, calib_seconds=getattr(qmodel, "calib_seconds", None),
                    config=config.to_dict(), **options)


def quantize_and_evaluate(model: nn.Module, config: QuantConfig, calib: torch.Tensor, datasets, /, *,
                          label: str | None = None, **options: Any) -> tuple[nn.Module, list[ResultRecord]]:
    """:func:`quantize`, then :func:`evaluate_quantized`: the one quantize-then-evaluate step of the command line,
    the sweep runner, the analysis tools and the benchmark scripts. Returns the quantized model and its records
    (``options`` such as ``model``, the name the records carry, go to :func:`~srquant.evaluate.evaluate`)."""
    qmodel = quantize(model, config, calib)
    return qmodel, evaluate_quantized(qmodel, config, model.sr_info, datasets, label=label, **options)


def save(qmodel: nn.Module, path: str | Path) -> None:
    """Write weights, quantizer state, config and how to rebuild the float architecture (atomically), with a
    SHA-256 of all of it that :func:`load` verifies."""
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
    payload["sha256"] = payload_digest(payload)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)  # a file object: the zip's records are named archive/..., not after the temporary file


def payload_digest(payload: dict[str, Any]) -> str:
    """SHA-256 of a saved model's payload (all entries but ``sha256``): metadata as canonical JSON, then each
    tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    meta = {k: v for k, v in payload.items() if k not in ("state_dict", "sha256")}
    digest.update(json.dumps(meta, sort_keys=True, default=repr).encode())
    for name in sorted(payload["state_dict"]):
        value = payload["state_dict"][name]
        if isinstance(value, torch.Tensor):
            digest.update(f"\n{name}|{value.dtype}|{tuple(value.shape)}|".encode())
            digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
        else:
            digest.update(f"\n{name}|{value!r}".encode())
    return digest.hexdigest()


def read_artifact(path: str | Path) -> dict[str, Any]:
    """The checked payload of a saved quantized model: right format, well-formed entries, matching SHA-256."""
    payload = read_checkpoint(path)
    if payload.get("format") != ARTIFACT_FORMAT:
        raise CheckpointError(f"{path} is not an srquant quantized model (format {payload.get('format')!r})")
    state, config, build = payload.get("state_dict"), payload.get("config"), payload.get("build")
    if not (isinstance(state, dict) and all(isinstance(k, str) for k in state) and isinstance(config, dict)
            and isinstance(config.get("method"), str) and (build is None or isinstance(build, dict))):
        raise CheckpointError(f"{path} is a damaged srquant model (state_dict, config or build entry malformed)")
    if "sha256" in payload and payload["sha256"] != payload_digest(payload):  # models saved before checksums existed have none
        raise CheckpointError(f"{path} is corrupted: its contents do not match the SHA-256 stored at save time")
    return payload


def load(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Rebuild a saved quantized model. ``model`` (the float architecture) is needed only for models that were
    not built with ``srquant.models.create``. A malformed or corrupted file raises :class:`CheckpointError`."""
    payload = read_artifact(path)
    try:
        return _rebuild(payload, model, path)
    except CheckpointError:
        raise
    except (SrquantError, KeyError, ValueError, TypeError, AttributeError, IndexError, RuntimeError) as err:
        raise CheckpointError(f"{path}: the saved model cannot be rebuilt ({type(err).__name__}: {err})") from None


def _rebuild(payload: dict[str, Any], model: nn.Module | None, path: str | Path) -> nn.Module:
    config = config_from_dict(payload["config"])
    if model is None:
        build = payload.get("build")
        if not build:
            raise CheckpointError(f"{path} holds a model srquant cannot rebuild by name; pass its float architecture as model=")
        model = create(build["name"], build["scale"], **build["kwargs"])
    qmodel = prepare(model, config)  # the saved config lists the layers (also those a layer rule picked)
    install = registered(config).install
    if install is not None:
        install(qmodel, config)
    qmodel.load_state_dict(payload["state_dict"], strict=True)  # each quantizer restores its calibrated state
    qmodel.eval()
    return qmodel
