"""OpenVINO as a second runtime for the same ONNX files (optional extra ``srquant[openvino]``).

OpenVINO reads an ONNX QDQ file as it is and runs its convolutions in integer arithmetic on CPUs with 8-bit dot
products. :class:`OpenVinoRunner` has the same tensor -> tensor ``__call__``, ``metadata`` and ``sr_info`` as
:class:`~srquant.export.runtime.OrtRunner`, so evaluation and the speed benchmark treat both alike.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from ..errors import InputError, OnnxError, clean_message
from .metadata import info_from_metadata


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


class OpenVinoRunner:
    """An OpenVINO CPU compiled model of an ONNX file, with ``threads`` inference threads and the latency hint."""

    backend = "openvino"

    def __init__(self, path: str | Path, threads: int = 2):
        try:
            import openvino as ov
        except ImportError:
            raise InputError("the OpenVINO runtime is not installed: pip install 'srquant[openvino]'") from None
        self.path, self.threads = Path(path), threads
        if not self.path.is_file():
            raise InputError(f"ONNX file not found: {self.path}")
        try:
            self._meta = {p.key: p.value for p in onnx.load(str(self.path), load_external_data=False).metadata_props}
            core = ov.Core()
            self.compiled = core.compile_model(core.read_model(str(self.path)), "CPU", {
                "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
        except Exception as err:  # noqa: BLE001 - onnx and OpenVINO raise their own exception types
            raise OnnxError(f"{self.path} is not an ONNX model OpenVINO can compile "
                            f"({clean_message(str(err)).strip().splitlines()[0]})") from None
        self.request = self.compiled.create_infer_request()

    def run_numpy(self, x: np.ndarray) -> np.ndarray:
        result = self.request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return np.asarray(result[self.compiled.output(0)])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run_numpy(x.detach().cpu().float().numpy()).copy())

    def __repr__(self) -> str:
        return f"OpenVinoRunner({str(self.path)!r}, threads={self.threads})"

    def metadata(self) -> dict[str, str]:
        return dict(self._meta)

    def sr_info(self, scale: int | None = None, model: str | None = None):
        return info_from_metadata(self._meta, self.path, scale, model)

