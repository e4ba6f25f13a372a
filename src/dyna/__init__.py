"""DyNA: dynamic neural architecture.

Biologically inspired PyTorch layers whose transformations are derived from the data itself:
signal functions and dynamic weight generation, continual neural units, and harmonic-oscillator
recurrent networks. Importing ``dyna`` only defines functions and classes.
"""

__version__ = "0.1.0"

from dyna.functional import (
    backward_gradient_normalization,
    delay_steps,
    horn_scan,
    horn_scan_ref,
    horn_step,
    log_proportional_error,
    noisein,
    noiseover,
    siglog,
    siglog_parametric,
)
from dyna.module import (
    HORNSeqLayer,
    HORNSeqNetwork,
    HORNState,
    HORNStep,
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
    "__version__",
    "backward_gradient_normalization",
    "delay_steps",
    "horn_scan",
    "horn_scan_ref",
    "horn_step",
    "log_proportional_error",
    "noisein",
    "noiseover",
    "siglog",
    "siglog_parametric",
]
