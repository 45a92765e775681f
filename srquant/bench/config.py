"""Sweep configuration: models x method variants x bit widths x datasets, read from a small YAML (or TOML) file."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..fileio import read_config_file
from ..methods.base import dataclass_from_mapping

REFERENCES = ("fp32", "bicubic")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    scale: int
    weights: str | None = None  # None: the embedded default
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> config fields for this model only

    @property
    def label(self) -> str:
        return f"{self.name}_x{self.scale}"


@dataclass(frozen=True)
class CalibEntry:
    folder: str | None = None  # None: scikit-image sample photos
    n: int = 32
    patch: int = 48
    seed: int = 0
    grayscale: bool = False


@dataclass(frozen=True)
class CropEntry:
    """A fixed HR region of one test image that every cell saves (visual comparison grids)."""

    dataset: str  # dataset name (its folder name; "skimage-demo" for the demo photos)
    image: str  # file stem
    box: tuple[int, int, int, int]  # top, left, height, width in HR pixels


@dataclass(frozen=True)
class Variant:
    """A labelled row of the tables: a registered method, its options and (optionally) its own bit widths."""

    label: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)
    bits: tuple[tuple[int, int], ...] | None = None  # None: the sweep's bit widths
    scope: str | None = None  # None: the sweep's scope
    calib: dict[str, Any] | None = None  # CalibEntry fields replacing the sweep's (e.g. {n: 128}); None: the sweep's


def _parse_bits(raw: Any) -> list[tuple[int, int]]:
    """``[8, [4, 8]]`` -> ``[(8, 8), (4, 8)]``: widths or [w_bits, a_bits] pairs, integers from 2 to 8."""
    pairs = [tuple(b) if isinstance(b, (list, tuple)) else (b, b) for b in _items(raw, "bits")]
    if not all(len(p) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and 2 <= v <= 8 for v in p)
               for p in pairs):
        raise ConfigError(f"bits items are a width or a [w_bits, a_bits] pair of integers from 2 to 8, got {raw!r}")
    return [(int(w), int(a)) for w, a in pairs]


def _check_options(method: str, options: dict[str, Any]) -> None:
    """Fail at load time (not after an hour of sweeping) on an unknown method, option name or option value."""
    from ..methods import build_config, config_class

    if not isinstance(options, dict):
        raise ConfigError(f"options of {method!r} must be a mapping, got {options!r}")
    try:
        cls = config_class(method)
    except (KeyError, TypeError):
        raise ConfigError(f"unknown method {method!r}") from None
    fixed = {"w_bits", "a_bits", "scope", "seed"}  # set by the sweep itself
    unknown = set(options) - ({f.name for f in dataclasses.fields(cls)} - fixed)
    if unknown:
        raise ConfigError(f"{method}: unknown or sweep-controlled options {sorted(map(str, unknown))}")
    build_config(method, options, f"{method} options")


def parse_variant(item: str | dict[str, Any], options: dict[str, dict[str, Any]]) -> Variant:
    """``"mse"`` (options from ``options[mse]``) or ``{label, method, options, bits, scope, calib}`` (its options
    override ``options[method]``; bits and scope replace the sweep's; calib fields replace the sweep's)."""
    if isinstance(item, str):
        variant = Variant(item, item, dict(options.get(item, {})))
    elif isinstance(item, dict):
        unknown = set(item) - {"label", "method", "options", "bits", "scope", "calib"}
        if unknown or "method" not in item:
            raise ValueError(f"a method variant is {{label, method, options, bits, scope, calib}} with a method; got keys {sorted(item)}")
        if "calib" in item:
            dataclass_from_mapping(CalibEntry, item["calib"], f"calib of {item.get('label', item['method'])}")
        method = item["method"]
        bits = tuple(_parse_bits(item["bits"])) if "bits" in item else None
        variant = Variant(str(item.get("label", method)), method, {**options.get(method, {}), **item.get("options", {})}, bits,
                          item.get("scope"), item.get("calib"))
    else:
        raise ValueError(f"methods items are a method name or a mapping, got {item!r}")
    if not _LABEL.match(variant.label) or variant.label in REFERENCES:
        raise ValueError(f"bad variant label {variant.label!r}: letters, digits and ._+- only, not fp32/bicubic")
    _check_options(variant.method, variant.options)
    return variant


def _items(value: Any, key: str) -> list:
    if not isinstance(value, list):
        raise ConfigError(f"{key} must be a list, got {value!r}")
    return value


def _model_entry(raw: Any) -> ModelEntry:
    """A checked models item: a registered model at one of its scales."""
    from ..models import get_spec

    entry = dataclass_from_mapping(ModelEntry, raw, "models item")
    try:
        spec = get_spec(entry.name)
    except KeyError as err:
        raise ConfigError(err.args[0]) from None
    if entry.scale not in spec.scales:
        raise ConfigError(f"{spec.name} supports scales {spec.scales}, not x{entry.scale}")
    return entry


@dataclass(frozen=True)
class SweepConfig:
    name: str
    models: list[ModelEntry]
    methods: list[Variant]
    bits: list[tuple[int, int]]
    datasets: list[str]  # benchmark folders; [] -> scikit-image demo photos
    scope: str = "body"
    calib: CalibEntry = CalibEntry()
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> config fields
    gray: str = "rgb2y"
    bicubic: bool = True
    crop: CropEntry | None = None

    @property
    def labels(self) -> list[str]:
        return [v.label for v in self.methods]

    def subset(self, models: list[str] | None = None, methods: list[str] | None = None,
               w_bits: list[int] | None = None) -> "SweepConfig":
        """The same sweep restricted to some model labels (``imdn_x4``), method labels and weight widths; cells keep
        their keys, so the full sweep later reuses them from the cache."""
        chosen = self
        if w_bits:
            def keep(pairs):
                return tuple(p for p in pairs if p[0] in w_bits)

            variants = [dataclasses.replace(v, bits=keep(v.bits)) if v.bits else v for v in self.methods]
            chosen = dataclasses.replace(chosen, bits=list(keep(self.bits)),
                                         methods=[v for v in variants if v.bits is None or v.bits])
            if not chosen.bits and all(v.bits is None for v in chosen.methods):
                raise ValueError(f"no bit width of sweep {self.name!r} has w_bits in {w_bits}")
        for what, wanted, have in (("model", models, [m.label for m in self.models]), ("method", methods, self.labels)):
            unknown = sorted(set(wanted or []) - set(have))
            if unknown:
                raise ValueError(f"{what}s {unknown} are not in sweep {self.name!r} (it has {have})")
        if models:
            chosen = dataclasses.replace(chosen, models=[m for m in chosen.models if m.label in models])
        if methods:
            chosen = dataclasses.replace(chosen, methods=[v for v in chosen.methods if v.label in methods])
        return chosen

    @classmethod
    def from_file(cls, path: str | Path) -> "SweepConfig":
        """Read a sweep; every problem raises :class:`ConfigError` naming the file."""
        raw = read_config_file(path, "sweep config")
        try:
            return cls.from_dict(raw, default_name=Path(path).stem)
        except (ValueError, TypeError, KeyError, AttributeError) as err:  # ConfigError is a ValueError
            detail = err.args[0] if isinstance(err, KeyError) and err.args else err
            raise ConfigError(f"sweep config {path}: {detail}") from None

    @classmethod
    def from_dict(cls, raw: dict[str, Any], default_name: str = "sweep") -> "SweepConfig":
        known = {"name", "models", "methods", "bits", "datasets", "scope", "calib", "options", "gray", "bicubic", "crop"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown sweep keys: {sorted(unknown)} (known: {sorted(known)})")
        if not raw.get("models") or not raw.get("methods") or not raw.get("bits"):
            raise ValueError("a sweep needs models, methods and bits")
        options = dict(raw.get("options", {}))
        methods = [parse_variant(item, options) for item in _items(raw["methods"], "methods")]
        labels = [v.label for v in methods]
        if len(set(labels)) != len(labels):
            raise ValueError(f"method labels must be unique, got {labels}")
        from ..quant.scope import SCOPES

        for scope in {raw.get("scope", "body")} | {v.scope for v in methods if v.scope}:
            if scope not in SCOPES:
                raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        models = [_model_entry(m) for m in _items(raw["models"], "models")]
        for m in models:
            for method, fields in m.options.items():
                _check_options(method, fields)
        datasets = list(raw.get("datasets", []))
        crop = None
        if raw.get("crop"):
            crop = CropEntry(**{**raw["crop"], "box": tuple(int(v) for v in raw["crop"]["box"])})
            names = [Path(d).name for d in datasets] or ["skimage-demo"]
            if crop.dataset not in names or len(crop.box) != 4 or min(crop.box[2:]) < 1:
                raise ValueError(f"crop needs a dataset among {names} and box [top, left, height, width], got {raw['crop']}")
        return cls(
            name=raw.get("name", default_name),
            models=models,
            methods=methods,
            bits=_parse_bits(raw["bits"]),
            datasets=datasets,
            scope=raw.get("scope", "body"),
            calib=dataclass_from_mapping(CalibEntry, raw.get("calib", {}), "calib"),
            options=options,
            gray=raw.get("gray", "rgb2y"),
            bicubic=bool(raw.get("bicubic", True)),
            crop=crop,
        )


@dataclass(frozen=True)
class Cell:
    """One unit of work: a model with one method at one bit width ("fp32" and "bicubic" have no bits)."""

    model: ModelEntry
    method: str
    w_bits: int | None
    a_bits: int | None
    scope: str
    calib: CalibEntry
    options: dict[str, Any]
    datasets: tuple[str, ...]
    gray: str
    label: str | None = None  # variant label when it differs from the method name
    crop: CropEntry | None = None

    @property
    def name(self) -> str:
        """What tables and plots call this cell's method."""
        return self.label or self.method

    def key(self) -> str:
        """Stable identity of the cell's inputs (the cache file name)."""
        fields = asdict(self)
        del fields["model"]["options"]  # already merged into the cell's options
        for later in ("label", "crop"):  # fields added after the first release: unset ones keep older keys valid
            if fields[later] is None:
                del fields[later]
        blob = json.dumps(fields, sort_keys=True, default=str)
        digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
        bits = "fp" if self.w_bits is None else f"w{self.w_bits}a{self.a_bits}"
        return f"{self.model.label}-{self.name}-{bits}-{digest}"


def expand(sweep: SweepConfig) -> list[Cell]:
    """Every cell of the sweep: per model, the FP32 (and bicubic) reference, then variants x bit widths."""
    cells = []
    common = dict(calib=sweep.calib, datasets=tuple(sweep.datasets), gray=sweep.gray, crop=sweep.crop)
    for model in sweep.models:
        refs = ["fp32"] + (["bicubic"] if sweep.bicubic else [])
        cells += [Cell(model, ref, None, None, scope=sweep.scope, options={}, **common) for ref in refs]
        for v in sweep.methods:
            label = None if v.label == v.method else v.label
            options = {**v.options, **model.options.get(v.method, {})}
            own = {**common, "calib": dataclasses.replace(sweep.calib, **v.calib)} if v.calib else common
            for w, a in v.bits or sweep.bits:
                cells.append(Cell(model, v.method, w, a, scope=v.scope or sweep.scope, options=options, label=label, **own))
    return cells
