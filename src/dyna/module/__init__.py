"""Layers: ``nn.Module`` s users put in their models, thin over ``functional`` and ``lib``."""

from dyna.functional.horn import delay_steps
from dyna.module.cnu import Conv2dCNU, LinearCNU
from dyna.module.horn import HORNSeqLayer, HORNSeqNetwork, HORNState, HORNStep
from dyna.module.signal_stabilization_compressor import (
    SignalStabilizationCompressor,
    SignalStabilizationCompressorMode,
)

__all__ = [
    "Conv2dCNU",
    "HORNSeqLayer",
    "HORNSeqNetwork",
    "HORNState",
    "HORNStep",
    "LinearCNU",
    "SignalStabilizationCompressor",
    "SignalStabilizationCompressorMode",
    "delay_steps",
]
