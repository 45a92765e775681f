"""From a float SR model to a deployable INT8 ONNX file: calibrate the ``int8`` recipe, export, check, evaluate.

``srquant int8`` is this module behind the command line::

    qmodel = srquant.quantize(model, Int8Config(), calib)
    path = export_onnx(qmodel, "out/model_int8.onnx")
    runner, diff = check_runtime(qmodel, path, "openvino")
    records = int8_records(model, qmodel, runner, datasets)

The integer model is checked against the simulation on a smooth check input (the largest output difference, in
the model's output units), and evaluated beside FP32 and the simulation in one result schema: the FP32 record has
``method: fp32``, the simulation and the integer model ``method: int8`` with ``backend`` ``torch`` and the
runtime's name.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .data.benchmark import BenchmarkFolder
from .evaluate import evaluate, model_predictor
from .export.runtime import open_runner, smooth_input
from .results import ResultRecord

ONNX_FILE = "model_int8.onnx"
CHECK_SIZE = 64  # LR pixels of the check input


def check_runtime(qmodel: nn.Module, path: str | Path, runtime: str = "onnxruntime", threads: int = 2):
    """Open ``path`` in ``runtime``; return the runner and the largest |simulation - runtime| on a check input."""
    info = qmodel.sr_info
    x = smooth_input(1 if info.color == "y" else 3, CHECK_SIZE, info.input_range)
    runner = open_runner(path, runtime, threads)
    with torch.no_grad():
        diff = float((qmodel(x) - runner(x)).abs().max())
    return runner, diff


def int8_records(model: nn.Module, qmodel: nn.Module, runner, datasets: list[BenchmarkFolder],
                 **common) -> list[ResultRecord]:
    """FP32, the simulation and the integer model in ``runner`` on ``datasets`` (``common``: evaluate options)."""
    info, config = model.sr_info, qmodel.srquant_config
    quant = dict(method=config.method, w_bits=8, a_bits=8, scope=config.scope, config=config.to_dict(),
                 calib_seconds=getattr(qmodel, "calib_seconds", None))
    records = evaluate(model_predictor(model, info), datasets, model=info.name, **common)
    records += evaluate(model_predictor(qmodel, info), datasets, model=info.name, backend="torch", **quant, **common)
    records += evaluate(model_predictor(runner, info), datasets, model=info.name, backend=runner.backend, **quant,
                        **common)
    return records
