"""Method configs (pure, validated, serializable data) and the registry that maps each to its implementation."""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from ..errors import ConfigError
from ..quant.scope import SCOPES

Implementation = Callable[[nn.Module, nn.Module, torch.Tensor, "QuantConfig"], None]
Install = Callable[[nn.Module, "QuantConfig"], None]
Prepare = Callable[[nn.Module, "QuantConfig"], nn.Module]
BACKENDS = ("torch", "onnxruntime")


@dataclass(frozen=True)
class Method:
    """A registered method: its config class and its steps.

    ``prepare(fp_model, config)`` makes the quantized copy (default :func:`srquant.quant.model.prepare`; the
    official variants' layer rules pick their own layers); ``install(qmodel, config)`` puts the method's own modules
    into it (:func:`srquant.load` runs it too, before loading the saved state); ``calibrate(qmodel, fp_model, calib,
    config)`` sets the quantizers' state and returns nothing. A method of another ``backend`` than ``"torch"`` is a
    peer runtime's own quantization (ONNX Runtime, NNCF): its ``calibrate`` returns the runtime's model, which
    :func:`srquant.quantize` returns in place of the fake-quantized one.
    """

    config: type["QuantConfig"]
    calibrate: Implementation
    install: Install | None = None
    prepare: Prepare | None = None
    backend: str = "torch"


_METHODS: dict[str, Method] = {}


@dataclass
class QuantConfig:
    """Fields every method shares. Subclasses add their own and set ``method``."""

    method: ClassVar[str] = ""
    w_bits: int = 8
    a_bits: int = 8
    scope: str = "body"  # body | all-ends8 | all
    w_granularity: str = "channel"  # tensor | channel | kernel
    a_granularity: str = "tensor"  # tensor | channel
    w_symmetric: bool = True  # signed int weights with zero point 0 (what integer runtimes expect)
    a_symmetric: bool = False  # unsigned activations with a zero point
    overrides: dict[str, Any] = field(default_factory=dict)  # name pattern -> "fp" | {"w_bits", "a_bits"}
    act_points: str = "inputs"  # inputs: layer inputs only | runtime: also what an INT8 runtime rounds (export)
    seed: int = 0
    batch_size: int = 8  # calibration forward batch

    def __post_init__(self) -> None:
        for name in ("w_bits", "a_bits"):
            bits = getattr(self, name)
            if not isinstance(bits, int) or not 2 <= bits <= 8:
                raise ValueError(f"{name} must be an integer from 2 to 8, got {bits!r}")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {self.scope!r}")
        if self.w_granularity not in ("tensor", "channel", "kernel"):
            raise ValueError(f"w_granularity must be tensor, channel or kernel, got {self.w_granularity!r}")
        if self.a_granularity not in ("tensor", "channel"):
            raise ValueError(f"a_granularity must be tensor or channel, got {self.a_granularity!r}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.act_points not in ("inputs", "runtime"):
            raise ValueError(f"act_points must be 'inputs' or 'runtime', got {self.act_points!r}")
        if self.act_points == "runtime" and self.a_granularity != "tensor":
            raise ValueError("act_points='runtime' needs a_granularity='tensor' (integer runtimes quantize per tensor)")

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **dataclasses.asdict(self)}


def register_method(config_cls: type[QuantConfig], *, install: Install | None = None, prepare: Prepare | None = None,
                    backend: str = "torch") -> Callable[[Implementation], Implementation]:
    """Decorator: ``@register_method(MinMaxConfig)`` on the function that calibrates with that config; the keywords
    name the method's other steps (see :class:`Method`). ``install`` must be idempotent."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")

    def wrap(fn: Implementation) -> Implementation:
        if config_cls.method in _METHODS:
            raise ValueError(f"method {config_cls.method!r} registered twice")
        _METHODS[config_cls.method] = Method(config_cls, fn, install, prepare, backend)
        return fn

    return wrap


def method_names() -> list[str]:
    return sorted(_METHODS)


def registered(config: QuantConfig) -> Method:
    """The registered method of ``config``."""
    if config.method not in _METHODS:
        raise KeyError(f"no implementation registered for method {config.method!r}")
    return _METHODS[config.method]


def config_class(method: str) -> type[QuantConfig]:
    if method not in _METHODS:
        raise KeyError(f"unknown method {method!r}; known: {', '.join(method_names())}")
    return _METHODS[method].config


def config_from_dict(data: dict[str, Any], source: str = "config") -> QuantConfig:
    data = dict(data)
    return build_config(data.pop("method", None), data, source)


def build_config(method: str, fields: dict[str, Any], source: str = "config") -> QuantConfig:
    """``method``'s config from ``fields`` with every name and value type checked; any problem raises
    :class:`ConfigError` starting with ``source`` (where the fields came from)."""
    if not isinstance(method, str) or method not in _METHODS:
        raise ConfigError(f"{source}: unknown method {method!r}; known: {', '.join(method_names())}")
    return dataclass_from_mapping(config_class(method), fields, f"{source}: method {method}")


def dataclass_from_mapping(cls: type, fields: Any, source: str) -> Any:
    """``cls(**fields)`` after checking that ``fields`` is a mapping of known field names to values of the
    annotated types; any problem (and any ``ValueError`` of ``cls`` itself) raises :class:`ConfigError`."""
    if not isinstance(fields, dict):
        raise ConfigError(f"{source}: expected a mapping of option names to values, got {fields!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(str(k) for k in fields if k not in names)
    if unknown:
        raise ConfigError(f"{source}: unknown option(s) {unknown}; known: {', '.join(names)}")
    for name, value in fields.items():
        if not has_type(value, hints[name]):
            raise ConfigError(f"{source}: option {name} must be {_type_name(hints[name])}, got {value!r}")
    try:
        return cls(**fields)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{source}: {err}") from None


def has_type(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the annotation ``hint`` (bool, int, float, str, None, unions, dict/list of those)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(has_type(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if (origin or hint) is dict:
        key, val = args or (Any, Any)
        return isinstance(value, dict) and all(has_type(k, key) and has_type(v, val) for k, v in value.items())
    if (origin or hint) is list:
        (item,) = args or (Any,)
        return isinstance(value, list) and all(has_type(v, item) for v in value)
    return True


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
