"""Layers: ``nn.Module`` s users put in their models, thin over ``functional`` and ``lib``."""

from dyna.module.dynamic_conv2d_delta import DynamicConv2DDelta
from dyna.module.dynamic_conv2d_mobius import DynamicConv2DMobius
from dyna.module.signal_stabilization_compressor import (
    SignalStabilizationCompressor,
    SignalStabilizationCompressorMode,
)

__all__ = [
    "DynamicConv2DDelta",
    "DynamicConv2DMobius",
    "SignalStabilizationCompressor",
    "SignalStabilizationCompressorMode",
]
