"""ONNX Runtime sessions as srquant forwards, and a report of what actually runs in integer arithmetic.

:class:`OrtRunner` is a tensor -> tensor callable (so ``model_predictor(OrtRunner(path), info)`` evaluates an ONNX
file like any model). :func:`op_report` answers "is it really INT8?": it saves the graph ONNX Runtime runs after
its optimizations, profiles a few runs and sums kernel time per op type, and marks an op *float* when its kernel
reads or writes float tensors (QuantizeLinear / DequantizeLinear are listed apart as conversions).
"""
from __future__ import annotations

import json
import os
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from ..errors import ConfigError, InputError, OnnxError, clean_message
from .metadata import info_from_metadata
from .onnx_graph import GRAPH_DIGEST_KEY, graph_digest

OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
DEFAULT_OPT = "all"
CONVERSIONS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
SHAPE_ONLY = {"Shape", "Size"}  # read a tensor's shape, not its values
FLOAT_TYPES = {"float", "double", "float16", "bfloat16"}


def cpu_description() -> str:
    """The CPU's model name and the flags integer kernels depend on (8-bit dot products, AVX-512, AMX)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
    flags = [f for f in fields.get("flags", "").split() if f in wanted]
    return f"{fields.get('model name', 'unknown CPU')}; flags: {' '.join(flags) or 'none of ' + ' '.join(wanted)}"


def cpu_has_vnni() -> bool | None:
    """True if the CPU has 8-bit dot-product instructions without int16 saturation (None: unknown)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), None)
    if flags is None:
        return None
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags))


def smooth_input(channels: int, size: int, scale: float = 1.0) -> torch.Tensor:
    """A seeded, smooth 1 x channels x size x size image in ``[0, scale]`` (bilinear upsampling of noise): a check
    and timing input with the statistics of a photo rather than of white noise."""
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, channels, max(1, size // 8), max(1, size // 8), generator=g)
    return torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False) * scale


def session_options(threads: int = 2, optimization: str = DEFAULT_OPT, optimized_path: str | Path | None = None,
                    profile_prefix: str | Path | None = None) -> ort.SessionOptions:
    """Session options: ``threads`` intra-op threads (1 inter-op), graph optimization level by name."""
    if optimization not in OPT_LEVELS:
        raise ValueError(f"optimization must be one of {sorted(OPT_LEVELS)}, got {optimization!r}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = OPT_LEVELS[optimization]
    so.log_severity_level = 3
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = str(profile_prefix)
    return so


def open_session(path: str | Path, options: ort.SessionOptions) -> ort.InferenceSession:
    """A CPU session of the ONNX file ``path``; a missing, empty or malformed file raises an srquant error naming it."""

    path = Path(path)
    if not path.is_file():
        raise InputError(f"ONNX file not found: {path}")
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - ONNX Runtime's errors derive from Exception only
        if not type(err).__module__.startswith("onnxruntime"):
            raise
        raise OnnxError(f"{path} is not a valid ONNX model for ONNX Runtime ({clean_message(str(err)).strip()})") from None
    meta = session.get_modelmeta()
    stored = meta.custom_metadata_map.get(GRAPH_DIGEST_KEY)
    if stored is not None and stored.startswith(f"{meta.producer_name}:"):
        if stored != graph_digest(onnx.load(str(path), load_external_data=False)):
            raise OnnxError(f"{path} is corrupted: its graph does not match the SHA-256 stored at export")
    return session


class OrtRunner:
    """An ONNX Runtime CPU session with a tensor -> tensor ``__call__`` (the model's one input and output)."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, threads: int = 2, optimization: str = DEFAULT_OPT):
        self.path = Path(path)
        self.threads, self.optimization = threads, optimization
        self.session = open_session(self.path, session_options(threads, optimization))
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def run_numpy(self, x: np.ndarray) -> np.ndarray:
        try:
            return self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]
        except Exception as err:  # noqa: BLE001 - ONNX Runtime's errors derive from Exception only
            if not type(err).__module__.startswith("onnxruntime"):
                raise
            raise OnnxError(f"{self.path}: ONNX Runtime cannot run it on a {'x'.join(map(str, x.shape))} input "
                            f"({clean_message(str(err)).strip()})") from None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run_numpy(x.detach().cpu().float().numpy()))

    def __repr__(self) -> str:
        return f"OrtRunner({str(self.path)!r}, threads={self.threads}, optimization={self.optimization!r})"

    def metadata(self) -> dict[str, str]:
        """The ``metadata_props`` srquant stored at export (model name, scale, input range, colour, config)."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def sr_info(self, scale: int | None = None, model: str | None = None):
        return info_from_metadata(self.metadata(), self.path, scale, model)


def open_runner(path: str | Path, runtime: str = "onnxruntime", threads: int = 2):
    """A tensor -> tensor runner of the ONNX file ``path`` in ``runtime`` (onnxruntime or openvino)."""
    if runtime == "onnxruntime":
        return OrtRunner(path, threads=threads)
    if runtime == "openvino":
        from .openvino import OpenVinoRunner

        return OpenVinoRunner(path, threads=threads)
    raise ConfigError(f"runtime must be one of onnxruntime, openvino; got {runtime!r}")


def optimized_graph(path: str | Path, optimization: str = DEFAULT_OPT, threads: int = 2) -> onnx.ModelProto:
    """The graph ONNX Runtime executes after its optimizations (fusions such as DQ->Conv->Q => QLinearConv)."""
    with tempfile.TemporaryDirectory(prefix="srquant-ort-") as tmp:
        out = Path(tmp) / "optimized.onnx"
        open_session(path, session_options(threads, optimization, optimized_path=out))
        return onnx.load(str(out))


@dataclass
class OpStat:
    op: str
    count: int = 0  # nodes of this type in the optimized graph
    ms: float = 0.0  # mean kernel time per run
    float_nodes: int = 0  # nodes whose kernel reads or writes float tensors
    float_ms: float = 0.0


@dataclass
class OpReport:
    """Node types after optimization and per-op kernel time (mean over profiled runs)."""

    path: str
    optimization: str
    ops: dict[str, OpStat] = field(default_factory=dict)
    source_convs: int = 0  # Conv/ConvTranspose nodes in the file before optimization

    @property
    def total_ms(self) -> float:
        return sum(s.ms for s in self.ops.values())

    @property
    def integer_convs(self) -> int:
        return sum(s.count - s.float_nodes for op, s in self.ops.items() if op.endswith("QLinearConv") or op == "ConvInteger")

    @property
    def float_convs(self) -> int:
        return sum(s.count for op, s in self.ops.items() if op in ("Conv", "FusedConv", "ConvTranspose", "NchwcConv"))

    def float_ops(self) -> list[OpStat]:
        """Ops left in float (Q/DQ conversions excluded), most expensive first."""
        return sorted((s for op, s in self.ops.items() if s.float_nodes and op not in CONVERSIONS),
                      key=lambda s: -s.float_ms)

    def share(self, ms: float) -> float:
        return ms / self.total_ms if self.total_ms > 0 else 0.0

    def format(self, top: int = 20) -> str:
        lines = [f"ONNX Runtime ops after {self.optimization} optimization ({Path(self.path).name}): "
                 f"{self.integer_convs}/{self.source_convs} convs integer, {self.float_convs} float convs, "
                 f"{self.total_ms:.1f} ms kernel time per run",
                 "| op | nodes | float nodes | ms/run | share |", "|---|---:|---:|---:|---:|"]
        for s in sorted(self.ops.values(), key=lambda s: -s.ms)[:top]:
            lines.append(f"| {s.op} | {s.count} | {s.float_nodes} | {s.ms:.2f} | {100 * self.share(s.ms):.1f}% |")
        floats = self.float_ops()
        conv = sum(s.ms for op, s in self.ops.items() if op in CONVERSIONS)
        lines.append("float ops: " + (", ".join(f"{s.op} x{s.float_nodes} ({100 * self.share(s.float_ms):.1f}%)" for s in floats)
                                      or "none") + f"; Q/DQ conversions {100 * self.share(conv):.1f}%")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"path": self.path, "optimization": self.optimization, "source_convs": self.source_convs,
                "integer_convs": self.integer_convs, "float_convs": self.float_convs, "total_ms": self.total_ms,
                "ops": {op: vars(s) for op, s in self.ops.items()}}


def _has_float(type_shapes, min_rank: int) -> bool:
    for entry in type_shapes or []:
        for dtype, shape in entry.items():
            if dtype in FLOAT_TYPES and len(shape or []) >= min_rank:
                return True
    return False


def _float_kernel(args: dict) -> bool:
    """A kernel computes in float if it writes a float tensor or reads one of rank >= 2 (scales and per-channel
    scale vectors of the QLinear ops are float too, but they are parameters, not data)."""
    return _has_float(args.get("output_type_shape"), 0) or _has_float(args.get("input_type_shape"), 2)


def op_report(path: str | Path, example: torch.Tensor | np.ndarray, *, threads: int = 2,
              optimization: str = DEFAULT_OPT, runs: int = 3) -> OpReport:
    """Profile ``runs`` inferences of ``example`` (after one warm-up) and report ops, kernel times, float ops."""
    x = example.detach().cpu().float().numpy() if isinstance(example, torch.Tensor) else np.asarray(example, np.float32)
    graph = optimized_graph(path, optimization, threads)  # first: a bad file fails here with a clear error
    source = onnx.load(str(path), load_external_data=False)
    report = OpReport(str(path), optimization,
                      source_convs=sum(n.op_type in ("Conv", "ConvTranspose") for n in source.graph.node))
    counts = Counter(n.op_type for n in graph.graph.node)
    for op, c in counts.items():
        report.ops[op] = OpStat(op, count=c)
    with tempfile.TemporaryDirectory(prefix="srquant-prof-") as tmp:
        so = session_options(threads, optimization, profile_prefix=Path(tmp) / "prof")
        sess = open_session(path, so)
        name, out = sess.get_inputs()[0].name, sess.get_outputs()[0].name
        sess.run([out], {name: x})  # warm-up (also profiled: discarded below by run index)
        for _ in range(runs):
            sess.run([out], {name: x})
        prof = sess.end_profiling()
        events = json.load(open(prof))
        os.remove(prof)
    per_node_runs: dict[str, list[float]] = defaultdict(list)
    node_info: dict[str, tuple[str, bool]] = {}
    for ev in events:
        if ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith("_kernel_time"):
            continue
        args = ev.get("args", {})
        node = ev["name"][: -len("_kernel_time")]
        per_node_runs[node].append(ev.get("dur", 0) / 1000.0)
        is_float = _float_kernel(args) and args.get("op_name") not in SHAPE_ONLY
        node_info[node] = (args.get("op_name", "?"), is_float)
    for node, times in per_node_runs.items():
        op, is_float = node_info[node]
        kept = times[1:] if len(times) > runs else times  # drop the warm-up
        ms = float(np.mean(kept)) if kept else 0.0
        stat = report.ops.setdefault(op, OpStat(op))
        stat.ms += ms
        if is_float:
            stat.float_nodes += 1
            stat.float_ms += ms
    for stat in report.ops.values():  # float nodes counted per profiled node; a node type absent from the
        stat.float_nodes = min(stat.float_nodes, stat.count or stat.float_nodes)  # optimized file keeps its count
    return report
