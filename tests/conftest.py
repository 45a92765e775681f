"""Shared fixtures: the ../shared folder (real weights, benchmarks) is optional; tests that need it skip clearly."""
import os
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning made small convs up to 100x slower.
# Set before torch loads libgomp (it reads the variable once).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

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


# --- a tiny residual net (head, two ReLU or leaky-ReLU blocks, tail) and its calibration batch, shared by method tests ----------
class TinyBlock(nn.Module):
    def __init__(self, c: int, negative_slope: float = 0.0):
        super().__init__()
        act = nn.LeakyReLU(negative_slope) if negative_slope else nn.ReLU()
        self.conv1, self.act, self.conv2 = nn.Conv2d(c, c, 3, padding=1), act, nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(self.act(self.conv1(x)))


class TinyResidualNet(nn.Module):
    def __init__(self, c: int = 8):
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.Sequential(TinyBlock(c), TinyBlock(c))
        self.tail = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x):
        f = self.head(x)
        return self.tail(self.body(f) + f)


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return TinyResidualNet().eval()


def tiny_calib() -> torch.Tensor:
    return torch.rand(8, 3, 12, 12, generator=torch.Generator().manual_seed(1))
