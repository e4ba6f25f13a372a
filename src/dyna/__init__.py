"""DyNA: dynamic neural architecture.

Biologically inspired PyTorch layers whose transformations are derived from the data itself:
signal functions and dynamic weight generation, continual neural units, and harmonic-oscillator
recurrent networks. Importing ``dyna`` only defines functions and classes.
"""

__version__ = "0.1.0"

from dyna.functional import (
    backward_gradient_normalization,
    log_proportional_error,
    noisein,
    noiseover,
    siglog,
    siglog_parametric,
)
from dyna.lib import TensorComposerDelta, TensorComposerMobius
from dyna.module import (
    DynamicConv2DDelta,
    DynamicConv2DMobius,
    SignalStabilizationCompressor,
    SignalStabilizationCompressorMode,
)

__all__ = [
    "DynamicConv2DDelta",
    "DynamicConv2DMobius",
    "SignalStabilizationCompressor",
    "SignalStabilizationCompressorMode",
    "TensorComposerDelta",
    "TensorComposerMobius",
    "__version__",
    "backward_gradient_normalization",
    "log_proportional_error",
    "noisein",
    "noiseover",
    "siglog",
    "siglog_parametric",
]
