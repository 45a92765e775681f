"""Shared fixtures: the ../shared folder (real weights, benchmarks) is optional; tests that need it skip clearly."""
import os
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning made small convs up to 100x slower.
# Set before torch loads libgomp (it reads the variable once).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
BENCH = SHARED / "data" / "benchmarks"
WEIGHTS = SHARED / "weights"
CALIB = SHARED / "data" / "calib" / "SunHays80"

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny inputs run faster on one thread than on a shared, busy intra-op pool."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def need_shared(*parts: str) -> Path:
    """Path under ../shared, or skip the test with a message saying what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the ../shared folder beside the repository is absent)")
    return path
