"""Layers: ``nn.Module`` s users put in their models, thin over ``functional`` and ``lib``."""

from dyna.functional.horn import delay_steps
from dyna.module.cnu import Conv2dCNU, LinearCNU
from dyna.module.dynamic_conv2d_delta import DynamicConv2DDelta
from dyna.module.dynamic_conv2d_mobius import DynamicConv2DMobius
from dyna.module.horn import HORNSeqLayer, HORNSeqNetwork, HORNState, HORNStep
from dyna.module.signal_stabilization_compressor import (
    SignalStabilizationCompressor,
    SignalStabilizationCompressorMode,
)

__all__ = [
    "Conv2dCNU",
    "DynamicConv2DDelta",
    "DynamicConv2DMobius",
    "HORNSeqLayer",
    "HORNSeqNetwork",
    "HORNState",
    "HORNStep",
    "LinearCNU",
    "SignalStabilizationCompressor",
    "SignalStabilizationCompressorMode",
    "delay_steps",
]
