"""Quantization methods: one config dataclass plus one registered implementation each."""
from .base import (Method, QuantConfig, build_config, config_class, config_from_dict, method_names, register_method,
                   registered)
from .uniform import MinMaxConfig, MSEConfig, PercentileConfig
from .reconstruction import AdaRoundConfig, BRECQConfig, QDropConfig, ReconstructionConfig
from .dfsq import DFSQConfig
from .ort import OrtEntropyConfig, OrtMinMaxConfig, OrtPercentileConfig, OrtQuantizedModel
from .ptq4sr import DBDCConfig, PTQ4SRConfig
from .fullint import FullIntConfig
from .int8 import Int8Config
from .nncf_ptq import NncfConfig
from .outlier_aware import OutlierAwareConfig
from .best import BestConfig

__all__ = [
    "AdaRoundConfig", "BestConfig", "BRECQConfig", "DBDCConfig", "DFSQConfig", "FullIntConfig", "Int8Config", "PTQ4SRConfig", "QDropConfig", "ReconstructionConfig",
    "OrtEntropyConfig", "OrtMinMaxConfig", "OrtPercentileConfig", "OrtQuantizedModel", "OutlierAwareConfig",
    "MSEConfig", "NncfConfig", "MinMaxConfig", "PercentileConfig", "QuantConfig", "build_config", "config_class", "config_from_dict",
    "Method", "method_names", "register_method", "registered",
]
