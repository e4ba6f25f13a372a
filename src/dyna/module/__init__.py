"""Layers: ``nn.Module`` s users put in their models, thin over ``functional`` and ``lib``."""

from dyna.module.cnu import Conv2dCNU, LinearCNU
from dyna.module.signal_stabilization_compressor import (
    SignalStabilizationCompressor,
    SignalStabilizationCompressorMode,
)

__all__ = [
    "Conv2dCNU",
    "LinearCNU",
    "SignalStabilizationCompressor",
    "SignalStabilizationCompressorMode",
]
