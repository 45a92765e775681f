"""srquant's ONNX metadata: what an export writes into ``metadata_props`` and how runners read it back."""
from __future__ import annotations

import json
from pathlib import Path

import onnx
from torch import nn

from .._version import __version__
from ..errors import InputError, OnnxError
from ..models import SRInfo, get_spec


def write_metadata(model: onnx.ModelProto, qmodel: nn.Module, kind: str) -> None:
    """Store srquant's version, the export kind, the model's SR info and the method config in ``metadata_props``."""
    info = getattr(qmodel, "sr_info", None)
    config = getattr(qmodel, "srquant_config", None)
    props = {"srquant_version": __version__, "srquant_kind": kind}
    if info is not None:
        props.update(sr_model=info.name, sr_scale=str(info.scale), sr_input_range=str(info.input_range), sr_color=info.color)
    if config is not None:
        props["srquant_config"] = json.dumps(config.to_dict())
    for key, value in props.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))


def info_from_metadata(meta: dict[str, str], path: Path, scale: int | None = None, model: str | None = None):
    """The :class:`~srquant.models.SRInfo` recorded in an ONNX file's metadata. A file srquant did not write has
    none: ``scale`` is then needed, and ``model`` (a registered name) gives its input range and colour mode."""
    name = meta.get("sr_model")
    if name is None:
        if scale is None:
            raise InputError(f"{path} has no srquant metadata (sr_model, sr_scale): pass --scale (and --model for "
                             "a registered architecture's input range and colour mode)")
        if model is None:
            return SRInfo(path.stem, int(scale))
        spec = get_spec(model)
        return SRInfo(spec.name, int(scale), spec.input_range, spec.color, upsample_input=spec.upsample_input)
    upsample = False
    try:
        upsample = get_spec(name).upsample_input
    except KeyError:
        pass
    try:
        return SRInfo(name, int(meta.get("sr_scale", scale)), float(meta.get("sr_input_range", 1.0)),
                      meta.get("sr_color", "rgb"), upsample_input=upsample)
    except (TypeError, ValueError):
        raise OnnxError(f"{path}: malformed srquant metadata (sr_scale, sr_input_range)") from None
