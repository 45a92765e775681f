"""Fuzzing the four entry points that read untrusted files: ``read_image``, ``read_checkpoint``, ``srquant.load`` and
the YAML configs (sweeps and ``--config`` files). Any exception other than srquant's own
:class:`~srquant.errors.SrquantError` fails, and so does an input that takes over 1 s or 500 MB.

In CI each entry point gets a few dozen inputs (a few seconds in all). ``SRQUANT_FUZZ_S=600`` gives the four of
them 600 s in all; ``-s`` prints per entry point the inputs tried, the errors seen, the slowest input and the
largest memory rise.
"""
from __future__ import annotations

import dataclasses
import io
import os
import resource
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image

import srquant
from srquant import api
from srquant.bench.config import SweepConfig
from srquant.data import read_image
from srquant.errors import SrquantError
from srquant.fileio import read_config_file
from srquant.methods import MinMaxConfig, build_config, config_class, method_names
from srquant.models import create, read_checkpoint
from srquant.models._registry import ASSETS

FUZZ_SECONDS = float(os.environ.get("SRQUANT_FUZZ_S", "0"))
CI_EXAMPLES = 40  # per entry point when SRQUANT_FUZZ_S is unset
MAX_SECONDS = 1.0
MAX_MB = 500.0
CONFIGS = Path(__file__).resolve().parents[1] / "benchmarks" / "configs"


# --- measuring one input ---------------------------------------------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """Resident memory rise during a block, sampled every millisecond by a thread."""

    def __enter__(self) -> "PeakRSS":
        self.base = self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())

    @property
    def rise_mb(self) -> float:
        return self.peak - self.base


@dataclass
class Stats:
    inputs: int = 0
    errors: Counter = field(default_factory=Counter)
    slowest: float = 0.0
    most_mb: float = 0.0

    def line(self, name: str) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in self.errors.most_common())
        return (f"{name}: {self.inputs} inputs, slowest {self.slowest:.3f} s, largest memory rise {self.most_mb:.0f} MB; "
                f"srquant errors: {kinds or 'none'}")


STATS: dict[str, Stats] = {}


def measured(name: str, fn) -> None:
    """Run ``fn``; a srquant error is counted, any other exception propagates (and fails the test)."""
    stats = STATS.setdefault(name, Stats())
    start = time.perf_counter()
    try:
        with PeakRSS() as mem:
            fn()
    except SrquantError as err:
        stats.errors[type(err).__name__] += 1
    seconds = time.perf_counter() - start
    stats.inputs += 1
    stats.slowest, stats.most_mb = max(stats.slowest, seconds), max(stats.most_mb, mem.rise_mb)
    assert seconds <= MAX_SECONDS, f"{name}: one input took {seconds:.2f} s"
    assert mem.rise_mb <= MAX_MB, f"{name}: one input raised memory by {mem.rise_mb:.0f} MB"


def fuzz(name: str, strategy: st.SearchStrategy, check) -> None:
    """Run ``check`` on inputs of ``strategy``: CI_EXAMPLES of them, or batches until this entry point's share
    (a quarter) of SRQUANT_FUZZ_S is spent."""
    budget = FUZZ_SECONDS / 4
    batch = CI_EXAMPLES if not budget else 200

    @settings(max_examples=batch, deadline=None, database=None, phases=[Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def one(value) -> None:
        measured(name, lambda: check(value))

    start = time.perf_counter()
    one()
    while time.perf_counter() - start < budget:
        one()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{STATS[name].line(name)}; {time.perf_counter() - start:.0f} s; process peak RSS so far {peak:.0f} MB")


# --- mutations of valid files ----------------------------------------------------------------------------------------
@st.composite
def mutated(draw, seeds: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    """A seed file with a few byte-level changes: flips, overwrites (header fields first), truncation, insertion,
    zeroed runs; or random bytes under a seed's suffix."""
    suffix, seed = draw(st.sampled_from(seeds))
    if draw(st.integers(0, 19)) == 0:
        return suffix, draw(st.binary(max_size=4096))
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        size = len(data)
        pos = draw(st.one_of(st.integers(0, min(size, 64) - 1), st.integers(0, size - 1)))
        kind = draw(st.sampled_from(["flip", "overwrite", "big", "truncate", "insert", "zeros"]))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            data[pos:pos + 1] = bytes([draw(st.integers(0, 255))])
        elif kind == "big":  # a size field pushed up
            data[pos:pos + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x1f\x40", b"\x7f\xff", b"\x00\x01\x00\x00"]))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[pos:pos + draw(st.integers(1, 1000))] = bytes(min(1000, size - pos))
    return suffix, bytes(data)


def _write(tmp: Path, suffix: str, data: bytes) -> Path:
    path = tmp / f"input{suffix}"
    path.write_bytes(data)
    return path


def names_file(path: Path, fn) -> None:
    """Run ``fn``; a srquant error must name ``path`` (and carry no ANSI escapes, no advice to load unsafely)."""
    try:
        fn()
    except SrquantError as err:
        message = str(err)
        assert path.name in message, f"{type(err).__name__} does not name the file: {message}"
        assert "\x1b[" not in message and "weights_only" not in message and "Weights only" not in message, message
        raise


# --- seeds -----------------------------------------------------------------------------------------------------------
def image_seeds() -> list[tuple[str, bytes]]:
    import png

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    seeds = []
    for suffix, mode, kwargs in ((".png", "RGB", {}), (".png", "RGBA", {}), (".png", "L", {}), (".png", "P", {}),
                                 (".jpg", "RGB", {}), (".jpg", "RGB", {"progressive": True}), (".bmp", "RGB", {}),
                                 (".tif", "RGB", {}), (".webp", "RGB", {}), (".ppm", "RGB", {}), (".gif", "P", {})):
        buf = io.BytesIO()
        Image.fromarray(rgb).convert(mode).save(buf, format=Image.registered_extensions()[suffix], **kwargs)
        seeds.append((suffix, buf.getvalue()))
    for planes, mode, interlace in ((3, "RGB;16", False), (1, "L;16", False), (3, "RGB;16", True)):
        arr = rng.integers(0, 65536, (12, 10 * planes), dtype=np.uint16)
        buf = io.BytesIO()
        png.from_array(arr, mode, info={"interlace": interlace}).write(buf)
        seeds.append((".png", buf.getvalue()))
    return seeds


@pytest.fixture(scope="module")
def quantized_model_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("seed") / "model.pt"
    api.save(api.quantize(create("abpn", 2, pretrained=True), MinMaxConfig(), torch.rand(2, 3, 8, 8)), path)
    return path.read_bytes()


def checkpoint_seeds(model_bytes: bytes) -> list[tuple[str, bytes]]:
    state = torch.load(ASSETS / "abpn_x2.pt", weights_only=True)
    small = {k: v for k, v in list(state.items())[:2]}
    legacy = io.BytesIO()
    torch.save(small, legacy, _use_new_zipfile_serialization=False)
    wrapped = io.BytesIO()
    torch.save({"params_ema": small, "iter": 3}, wrapped)
    return [(".pt", (ASSETS / "abpn_x2.pt").read_bytes()), (".pt", legacy.getvalue()), (".pt", wrapped.getvalue()),
            (".pt", model_bytes)]


# --- the four entry points -------------------------------------------------------------------------------------------
def _check_image(img: np.ndarray) -> None:
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


def test_fuzz_read_image(tmp_path):
    seeds = image_seeds()
    read_image(_write(tmp_path, *seeds[0]))  # warm-up: imports and decoders

    def check(case):
        path = _write(tmp_path, *case)
        names_file(path, lambda: _check_image(read_image(path)))

    fuzz("read_image", mutated(seeds), check)


def test_fuzz_read_checkpoint(tmp_path, quantized_model_bytes):
    seeds = checkpoint_seeds(quantized_model_bytes)

    def check(case):
        path = _write(tmp_path, *case)
        names_file(path, lambda: read_checkpoint(path))
        names_file(path, lambda: create("abpn", 2, weights=path))  # and what loading it into a model does

    check(seeds[0])
    fuzz("read_checkpoint", mutated(seeds), check)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def forged_payloads(draw, payload: dict) -> dict:
    """A saved model's payload with some entries replaced, its sha256 recomputed: past the checksum, into rebuild."""
    forged = {**payload, "config": dict(payload["config"]), "build": dict(payload["build"]),
              "state_dict": dict(payload["state_dict"])}
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["config", "build", "state_dict"]))
        keys = sorted(forged[where]) + ["extra"]
        key = draw(st.sampled_from(keys))
        if where == "state_dict":
            shape = draw(st.lists(st.integers(0, 4), max_size=4))
            forged[where][key] = torch.zeros(shape, dtype=draw(st.sampled_from([torch.float32, torch.int64, torch.bool])))
        else:
            forged[where][key] = draw(JSONISH | st.sampled_from(method_names()))
    forged["sha256"] = api.payload_digest(forged)
    return forged


def test_fuzz_srquant_load(tmp_path, quantized_model_bytes):
    seeds = [(".pt", quantized_model_bytes)]
    payload = torch.load(io.BytesIO(quantized_model_bytes), weights_only=True)
    srquant.load(_write(tmp_path, *seeds[0]))

    def check(case):
        path = tmp_path / "model.pt"
        if isinstance(case, dict):
            torch.save(case, path)
        else:
            path.write_bytes(case[1])
        names_file(path, lambda: srquant.load(path))

    fuzz("srquant.load", st.one_of(mutated(seeds), forged_payloads(payload)), check)


def _yaml_text(value) -> str:
    return yaml.safe_dump(value, default_flow_style=None, sort_keys=False)


SWEEP_KEYS = ["name", "models", "methods", "bits", "datasets", "scope", "calib", "options", "gray", "bicubic", "crop"]


@st.composite
def yaml_configs(draw, method: str) -> str:
    """Real sweep configs with characters changed, sweep-shaped or ``method``-config-shaped documents with random
    values, or random text."""
    kind = draw(st.sampled_from(["real", "shaped", "method", "text"]))
    if kind == "real":
        text = draw(st.sampled_from(sorted(CONFIGS.glob("*.yaml")))).read_text()
        for _ in range(draw(st.integers(1, 4))):
            pos = draw(st.integers(0, len(text)))
            text = text[:pos] + draw(st.text(max_size=6)) + text[pos + draw(st.integers(0, 6)):]
        return text
    if kind == "shaped":
        base = {"models": [{"name": "abpn", "scale": 4}], "methods": ["mse"], "bits": [8]}
        for key in draw(st.lists(st.sampled_from(SWEEP_KEYS), max_size=4)):
            base[key] = draw(JSONISH)
        return _yaml_text(base)
    if kind == "method":
        fields = [f.name for f in dataclasses.fields(config_class(method))]
        return _yaml_text(draw(st.dictionaries(st.sampled_from(fields), JSONISH, max_size=3)))
    return draw(st.text(max_size=400))


def test_fuzz_yaml_configs(tmp_path):
    def check(case):
        text, method = case
        path = tmp_path / "config.yaml"
        path.write_text(text, encoding="utf-8")
        errors = []
        for read in (lambda: SweepConfig.from_file(path),  # as a sweep, and as a quantize --config file
                     lambda: build_config(method, read_config_file(path, "--config file"), f"--config file {path}")):
            try:
                names_file(path, read)
            except SrquantError as err:
                errors.append(err)
        if errors:
            raise errors[0]

    cases = st.sampled_from(method_names()).flatmap(lambda m: st.tuples(yaml_configs(m), st.just(m)))
    fuzz("yaml configs", cases, check)
