"""Shared fixtures: the ../shared folder (real weights, benchmarks) is optional; tests that need it skip clearly."""
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"
BENCH = SHARED / "data" / "benchmarks"
WEIGHTS = SHARED / "weights"
CALIB = SHARED / "data" / "calib" / "SunHays80"

torch.set_num_threads(2)


def need_shared(*parts: str) -> Path:
    """Path under ../shared, or skip the test with a message saying what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the ../shared folder beside the repository is absent)")
    return path
