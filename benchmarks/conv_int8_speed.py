"""One convolution in ONNX Runtime, FP32 `Conv` vs INT8 `QLinearConv`, timed side by side per channel width.

    python benchmarks/conv_int8_speed.py --channels 20,24,40,50,64 --kernel 3 --size 256

For each width C, a C -> C convolution on a 1 x C x size x size input, FP32 and INT8 (uint8 activations, int8
per-channel weights, the layout srquant exports), --repeats interleaved runs after --warmup, medians and the INT8
speed-up. On the development machine one width's INT8 time varies by up to 2.8x from one run of the script to the
next (docs/int8.md, Speed): repeat it before reading anything into one width.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from srquant.export.runtime import DEFAULT_OPT, OPT_LEVELS, session_options


def conv_models(channels: int, kernel: int, seed: int = 0) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """The FP32 `Conv` model and its `QLinearConv` twin (same shapes, random weights)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((channels, channels, kernel, kernel)).astype(np.float32) * 0.05
    b = np.zeros(channels, np.float32)
    pads = [kernel // 2] * 4
    shape = [1, channels, None, None]
    fp = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=pads)], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    w_scale = (np.abs(w).reshape(channels, -1).max(1) / 127).astype(np.float32)
    w_q = np.round(w / w_scale[:, None, None, None]).astype(np.int8)
    inits = [numpy_helper.from_array(v, n) for n, v in [
        ("x_s", np.float32(0.02)), ("x_z", np.uint8(128)), ("w_q", w_q), ("w_s", w_scale),
        ("w_z", np.zeros(channels, np.int8)), ("y_s", np.float32(0.02)), ("y_z", np.uint8(128)),
        ("b_q", np.zeros(channels, np.int32))]]
    q = helper.make_graph(
        [helper.make_node("QLinearConv", ["x", "x_s", "x_z", "w_q", "w_s", "w_z", "y_s", "y_z", "b_q"], ["y"],
                          pads=pads)], "qconv",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, shape)],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, shape)], inits)
    opset = [helper.make_opsetid("", 13)]
    return helper.make_model(fp, opset_imports=opset), helper.make_model(q, opset_imports=opset)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--channels", default="20,24,40,50,64", help="comma list of channel widths")
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--optimization", default=DEFAULT_OPT, choices=sorted(OPT_LEVELS),
                   help="ONNX Runtime graph optimization level")
    args = p.parse_args(argv)

    print(f"{args.kernel}x{args.kernel} conv C -> C on 1 x C x {args.size} x {args.size}, {args.threads} threads, "
          f"ONNX Runtime {ort.__version__} ({args.optimization}), medians of {args.repeats} interleaved runs")
    print("\n| C | FP32 Conv ms | INT8 QLinearConv ms | INT8 speed-up |\n|---:|---:|---:|---:|")
    rng = np.random.default_rng(1)
    for channels in (int(c) for c in args.channels.split(",")):
        fp_model, q_model = conv_models(channels, args.kernel)
        x = rng.random((1, channels, args.size, args.size), dtype=np.float32)
        inputs = {"fp": {"x": x}, "int8": {"x": (x * 100 + 78).astype(np.uint8)}}
        options = session_options(args.threads, args.optimization)
        sessions = {name: ort.InferenceSession(model.SerializeToString(), options,
                                               providers=["CPUExecutionProvider"])
                    for name, model in (("fp", fp_model), ("int8", q_model))}
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for name, sess in sessions.items():
            for _ in range(args.warmup):
                sess.run(None, inputs[name])
        for _ in range(args.repeats):
            for name, sess in sessions.items():
                start = time.perf_counter()
                sess.run(None, inputs[name])
                times[name].append(time.perf_counter() - start)
        med = {name: statistics.median(t) * 1000 for name, t in times.items()}
        print(f"| {channels} | {med['fp']:.2f} | {med['int8']:.2f} | {med['fp'] / med['int8']:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
