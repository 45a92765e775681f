"""Quantization methods: one config dataclass plus one registered implementation each."""
from .base import QuantConfig, config_class, config_from_dict, implementation, method_names, register_method
from .uniform import MinMaxConfig, MSEConfig, PercentileConfig
from .reconstruction import AdaRoundConfig, BRECQConfig, QDropConfig, ReconstructionConfig
from .dfsq import DFSQConfig
from .ort import OrtEntropyConfig, OrtMinMaxConfig, OrtPercentileConfig, OrtQuantizedModel

__all__ = [
    "AdaRoundConfig", "BRECQConfig", "DFSQConfig", "QDropConfig", "ReconstructionConfig",
    "OrtEntropyConfig", "OrtMinMaxConfig", "OrtPercentileConfig", "OrtQuantizedModel",
    "MSEConfig", "MinMaxConfig", "PercentileConfig", "QuantConfig", "config_class", "config_from_dict",
    "implementation", "method_names", "register_method",
]
