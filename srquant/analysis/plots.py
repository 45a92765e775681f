"""Writing figures and images atomically (temporary file in the target folder, then rename)."""
from __future__ import annotations

from pathlib import Path

from ..fileio import atomic_path


def save_figure(fig, path: str | Path) -> None:
    """Save a matplotlib figure as PNG atomically."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
