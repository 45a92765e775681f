"""Sweep configuration: models x methods x bit widths x datasets, read from a small YAML (or TOML) file."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelEntry:
    name: str
    scale: int
    weights: str | None = None  # None: the embedded default
    kwargs: dict[str, Any] = field(default_factory=dict)

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
class SweepConfig:
    name: str
    models: list[ModelEntry]
    methods: list[str]
    bits: list[tuple[int, int]]
    datasets: list[str]  # benchmark folders; [] -> scikit-image demo photos
    scope: str = "body"
    calib: CalibEntry = CalibEntry()
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> config fields
    gray: str = "rgb2y"
    bicubic: bool = True

    @classmethod
    def from_file(cls, path: str | Path) -> "SweepConfig":
        path = Path(path)
        text = path.read_text()
        if path.suffix == ".toml":
            import tomllib

            raw = tomllib.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text)
        return cls.from_dict(raw, default_name=path.stem)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], default_name: str = "sweep") -> "SweepConfig":
        known = {"name", "models", "methods", "bits", "datasets", "scope", "calib", "options", "gray", "bicubic"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown sweep keys: {sorted(unknown)} (known: {sorted(known)})")
        if not raw.get("models") or not raw.get("methods") or not raw.get("bits"):
            raise ValueError("a sweep needs models, methods and bits")
        bits = [tuple(b) if isinstance(b, (list, tuple)) else (int(b), int(b)) for b in raw["bits"]]
        return cls(
            name=raw.get("name", default_name),
            models=[ModelEntry(**m) for m in raw["models"]],
            methods=list(raw["methods"]),
            bits=[(int(w), int(a)) for w, a in bits],
            datasets=list(raw.get("datasets", [])),
            scope=raw.get("scope", "body"),
            calib=CalibEntry(**raw.get("calib", {})),
            options=dict(raw.get("options", {})),
            gray=raw.get("gray", "rgb2y"),
            bicubic=bool(raw.get("bicubic", True)),
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

    def key(self) -> str:
        """Stable identity of the cell's inputs (the cache file name)."""
        blob = json.dumps(asdict(self), sort_keys=True, default=str)
        digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
        bits = "fp" if self.w_bits is None else f"w{self.w_bits}a{self.a_bits}"
        return f"{self.model.label}-{self.method}-{bits}-{digest}"


def expand(sweep: SweepConfig) -> list[Cell]:
    """Every cell of the sweep: per model, the FP32 (and bicubic) reference, then methods x bit widths."""
    cells = []
    common = dict(scope=sweep.scope, calib=sweep.calib, datasets=tuple(sweep.datasets), gray=sweep.gray)
    for model in sweep.models:
        refs = ["fp32"] + (["bicubic"] if sweep.bicubic else [])
        cells += [Cell(model, ref, None, None, options={}, **common) for ref in refs]
        for method in sweep.methods:
            for w, a in sweep.bits:
                cells.append(Cell(model, method, w, a, options=dict(sweep.options.get(method, {})), **common))
    return cells
