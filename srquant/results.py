"""The one result schema of srquant: ``{"srquant_version", "results": [record, ...]}``, written atomically."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import ArtifactError
from .fileio import atomic_path, checked_json, read_checked_json


@dataclass
class ResultRecord:
    """One model x dataset x method x bit-width evaluation."""

    model: str
    dataset: str
    scale: int
    method: str
    w_bits: int | None
    a_bits: int | None
    psnr_y: float
    ssim_y: float
    n_images: int
    seconds: float
    scope: str | None = None
    calib_seconds: float | None = None
    backend: str = "torch"
    channel: str = "y"
    shave: int | None = None
    gray: str = "rgb2y"
    config: dict[str, Any] | None = None
    images: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it (readers never see half a file)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_results(path: str | Path, records: list[ResultRecord]) -> None:
    """The result schema with a ``sha256`` of its contents (checked by :func:`read_results`)."""
    payload = {"srquant_version": __version__, "results": [r.to_dict() for r in records]}
    write_text_atomic(path, checked_json(payload))


def read_results(path: str | Path) -> list[ResultRecord]:
    payload = read_checked_json(path, "results file")
    try:
        return [ResultRecord(**r) for r in payload["results"]]
    except (KeyError, TypeError) as err:
        raise ArtifactError(f"results file {path} does not follow the result schema ({err!r})") from None


def bits_label(r: ResultRecord) -> str:
    """``W4A4``, ``FP32``, or for a mixed-precision model its average-bits budgets (``mixed avg W4A6``)."""
    if r.w_bits is None:
        return "FP32"
    config = r.config or {}
    if config.get("avg_bits") is not None or config.get("w_avg_bits") is not None:
        w = config["w_avg_bits"] if config.get("w_avg_bits") is not None else config["avg_bits"]
        a = config["a_avg_bits"] if config.get("a_avg_bits") is not None else config["avg_bits"]
        return f"mixed avg W{w:g}A{a:g}"
    return f"W{r.w_bits}A{r.a_bits}"


def markdown_table(records: list[ResultRecord]) -> str:
    """PSNR/SSIM table: one row per (model, method, bits), one column pair per dataset; a backend column when the
    records come from more than one backend (a simulation and its runtime)."""
    datasets = list(dict.fromkeys(r.dataset for r in records))
    backends = len({r.backend for r in records}) > 1
    rows: dict[tuple, dict[str, ResultRecord]] = {}
    for r in records:
        key = (r.model, f"x{r.scale}", str(r.method), bits_label(r)) + ((r.backend,) if backends else ())
        rows.setdefault(key, {})[r.dataset] = r
    columns = ["model", "scale", "method", "bits"] + (["backend"] if backends else [])
    head = "| " + " | ".join(columns) + " | " + " | ".join(f"{d} PSNR / SSIM" for d in datasets) + " |"
    sep = "|" + "---|" * (len(columns) + len(datasets))
    lines = [head, sep]
    for key, cells in rows.items():
        vals = [f"{cells[d].psnr_y:.3f} / {cells[d].ssim_y:.4f}" if d in cells else "-" for d in datasets]
        lines.append("| " + " | ".join(list(key) + vals) + " |")
    return "\n".join(lines) + "\n"
