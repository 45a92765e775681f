"""Real INT8: ONNX QDQ export of srquant models and ONNX Runtime sessions / op reports."""
from .onnx_qdq import ExportError, clean_qdq, export_float_onnx, export_onnx
from .runtime import OpReport, OrtRunner, op_report, optimized_graph, session_options

__all__ = [
    "ExportError", "OpReport", "OrtRunner", "clean_qdq", "export_float_onnx", "export_onnx", "op_report",
    "optimized_graph", "session_options",
]
