"""Layers: ``nn.Module`` s users put in their models, thin over ``functional`` and ``lib``."""

from dyna.functional.horn import delay_steps
from dyna.module.horn import HORNSeqLayer, HORNSeqNetwork, HORNState, HORNStep
from dyna.module.signal_stabilization_compressor import (
    SignalStabilizationCompressor,
    SignalStabilizationCompressorMode,
)

__all__ = [
    "HORNSeqLayer",
    "HORNSeqNetwork",
    "HORNState",
    "HORNStep",
    "SignalStabilizationCompressor",
    "SignalStabilizationCompressorMode",
    "delay_steps",
]
