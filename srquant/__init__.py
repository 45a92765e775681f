"""srquant: post-training quantization of image super-resolution networks."""
__version__ = "0.1.0"

from .api import load, quantize, save  # noqa: E402
from .models import create  # noqa: E402

__all__ = ["__version__", "create", "load", "quantize", "save"]
