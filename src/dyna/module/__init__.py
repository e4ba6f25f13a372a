"""Layers: ``nn.Module`` s users put in their models, thin over ``functional`` and ``lib``."""

from dyna.module.signal_stabilization_compressor import (
    SignalStabilizationCompressor,
    SignalStabilizationCompressorMode,
)

__all__ = ["SignalStabilizationCompressor", "SignalStabilizationCompressorMode"]
