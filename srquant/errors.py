"""srquant's error types: one per kind of problem, all :class:`SrquantError`, each message naming the file at fault.

The command line prints any of them as ``srquant: error: MESSAGE`` and exits with status 2 (``--debug`` shows the
traceback). Each also derives from the built-in type code used to catch before (``ValueError``, ``OSError``, ...).
"""
from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


class SrquantError(Exception):
    """Base of every error srquant raises on bad input."""


class ConfigError(SrquantError, ValueError):
    """A bad option, method config or YAML config file."""


class InputError(SrquantError, FileNotFoundError):
    """A missing or unusable input file or folder (weights, --data, --calib, ONNX file)."""


class OutputError(SrquantError, OSError):
    """An output path that cannot be written (an existing file where a folder is needed, no write permission)."""


class ModelError(SrquantError, KeyError, ValueError):
    """An unknown model or a scale it does not support (a ``KeyError`` for a name lookup, a ``ValueError`` too)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(SrquantError, RuntimeError):
    """A checkpoint or saved model that cannot be read, is corrupted, or does not fit the architecture."""


class ImageError(SrquantError, ValueError):
    """An image that cannot be read or used."""


class ArtifactError(SrquantError, ValueError):
    """A JSON file srquant wrote earlier (results, a sweep's cached cell) that is damaged or was edited."""


class OnnxError(SrquantError, RuntimeError):
    """An ONNX file that ONNX Runtime cannot load or run."""


class ExportError(ValueError):
    """The model cannot be expressed as an ONNX QDQ graph."""


def clean_message(text: str) -> str:
    """``text`` without ANSI escape sequences (coloured messages of torch or ONNX Runtime)."""
    return _ANSI.sub("", text)
