"""Quantization methods: one config dataclass plus one registered implementation each."""
from .base import QuantConfig, config_class, config_from_dict, implementation, method_names, register_method
from .uniform import MinMaxConfig, MSEConfig, PercentileConfig

__all__ = [
    "MSEConfig", "MinMaxConfig", "PercentileConfig", "QuantConfig", "config_class", "config_from_dict",
    "implementation", "method_names", "register_method",
]
