"""Checks that every command runs on its inputs and outputs before any work, so a typo fails in a second, not after
calibration. Each raises a :class:`~srquant.errors.SrquantError` naming the path and what is wrong with it."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .data.images import image_size, list_images
from .errors import InputError, ModelError, OutputError


def check_image_folder(folder: str | Path, what: str) -> list[Path]:
    """The images of ``folder`` (``what`` names it: "calibration folder", ...), each header checked (readable,
    within the pixel limit)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{what} not found: {folder}" if not folder.exists() else f"{what} {folder} is not a folder")
    paths = list_images(folder)
    if not paths:
        raise InputError(f"no images in {what} {folder}")
    for path in paths:
        image_size(path)
    return paths


def check_data_folders(folders: list[str] | None, scale: int | None = None, what: str = "--data folder") -> None:
    """Benchmark folders (``--data``): each exists and holds HR images (in ``HR_x{scale}/``, ``HR/`` or itself), all
    with readable headers."""
    for folder in folders or []:
        root = Path(folder)
        if not root.is_dir():
            raise InputError(f"{what} not found: {root}" if not root.exists() else f"{what} {root} is not a folder")
        subfolders = ([root / f"HR_x{scale}"] if scale else []) + [root / "HR", root]
        hr = next((d for d in subfolders if d.is_dir() and list_images(d)), None)
        if hr is None:
            raise InputError(f"no HR images in {what} {root} (looked in HR_x<scale>/, HR/ and the folder itself)")
        for path in list_images(hr):
            image_size(path)


def check_input_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}" if not path.exists() else f"{what} {path} is not a file")
    return path


def check_output_dir(path: str | Path, what: str) -> Path:
    """Create ``path`` if needed and prove it writable (a probe file); an existing file or a read-only place raises
    :class:`OutputError`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is an existing file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".srquant-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputError(f"{what} {path} cannot be written: {err.strerror or err}") from None
    return path


def check_output_file(path: str | Path, what: str) -> Path:
    """``path`` can be written as a file: not a folder, its folder creatable and writable."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder; a file path is needed")
    check_output_dir(path.parent, f"{what}'s folder")
    return path


def check_scale(scale: int, supported: tuple[int, ...] | None, name: str) -> None:
    """``scale`` is a positive integer that ``name`` supports (``supported`` None: any scale from 2 up)."""
    if supported is None:
        if not isinstance(scale, int) or scale < 2:
            raise ModelError(f"{name} needs an integer --scale of 2 or more, got {scale}")
    elif scale not in supported:
        raise ModelError(f"{name} supports scales {', '.join(f'x{s}' for s in supported)}, not x{scale}")
