"""Real INT8: ONNX QDQ export of srquant models and ONNX Runtime sessions / op reports."""
from ..errors import ExportError
from .onnx_graph import clean_qdq
from .onnx_qdq import export_float_onnx, export_onnx
from .runtime import (OpReport, OrtRunner, op_report, open_runner, optimized_graph, session_options,
                      smooth_input)

__all__ = [
    "ExportError", "OpReport", "OrtRunner", "clean_qdq", "export_float_onnx", "export_onnx", "op_report", "open_runner",
    "optimized_graph", "session_options", "smooth_input",
]
