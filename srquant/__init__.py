"""srquant: post-training quantization of image super-resolution networks."""
from ._version import __version__
from .api import load, quantize, quantize_and_evaluate, save
from .models import create

__all__ = ["__version__", "create", "load", "quantize", "quantize_and_evaluate", "save"]
