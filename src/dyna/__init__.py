"""DyNA: dynamic neural architecture.

Biologically inspired PyTorch layers whose transformations are derived from the data itself:
signal functions and dynamic weight generation, continual neural units, and harmonic-oscillator
recurrent networks. Importing ``dyna`` only defines functions and classes.
"""

__version__ = "0.1.0"

from typing import Any

from dyna._deprecation import moved_attribute
from dyna.functional import (
    backward_gradient_normalization,
    cnu_blend_weights,
    cnu_linear,
    cnu_linear_ref,
    compact_spectral_features,
    compact_spectral_inner,
    count_sketch,
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
from dyna.lib import CNUs, CompactSpectralMultiplier, TensorComposerDelta, TensorComposerMobius
from dyna.module import (
    Conv2dCNU,
    DynamicConv2DDelta,
    DynamicConv2DMobius,
    HORNSeqLayer,
    HORNSeqNetwork,
    HORNState,
    HORNStep,
    LinearCNU,
    SignalStabilizationCompressor,
    SignalStabilizationCompressorMode,
)

__all__ = [
    "CNUs",
    "CompactSpectralMultiplier",
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
    "TensorComposerDelta",
    "TensorComposerMobius",
    "__version__",
    "backward_gradient_normalization",
    "cnu_blend_weights",
    "cnu_linear",
    "cnu_linear_ref",
    "compact_spectral_features",
    "compact_spectral_inner",
    "count_sketch",
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


# The CNU key projections were exported here before; they live in dyna.functional.cnu only (the
# names are generic, the functions are not). The old names keep working for one release.
_MOVED = {name: "dyna.functional.cnu" for name in ("psi", "resize1d", "resize2d")}


def __getattr__(name: str) -> Any:
    return moved_attribute(__name__, name, _MOVED)
