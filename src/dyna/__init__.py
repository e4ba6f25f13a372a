"""DyNA: dynamic neural architecture.

Biologically inspired PyTorch layers whose transformations are derived from the data itself:
signal functions and dynamic weight generation, continual neural units, and harmonic-oscillator
recurrent networks. Importing ``dyna`` only defines functions and classes.
"""

__version__ = "0.1.0"

from typing import Any

from dyna import functional, module
from dyna._deprecation import CNU_PROJECTIONS as _CNU_PROJECTIONS
from dyna._deprecation import moved_attribute

# The top level re-exports every public function and layer: the sub-packages' __all__ are the
# one list of them.
from dyna.functional import *  # noqa: F403
from dyna.lib import CNUs, CompactSpectralMultiplier, TensorComposerDelta, TensorComposerMobius
from dyna.module import *  # noqa: F403

# lib's blocks are named here (the CNU core's attention stays in dyna.lib); the functions and
# layers are the sub-packages' own lists, each name once, in sorted order as before.
__all__ = ["CNUs", "CompactSpectralMultiplier", "TensorComposerDelta", "TensorComposerMobius"]
__all__ += ["__version__", *functional.__all__]
__all__ += [name for name in module.__all__ if name not in __all__]
__all__.sort()


def __getattr__(name: str) -> Any:
    # The CNU key projections that were exported here keep working for one release.
    return moved_attribute(__name__, name, _CNU_PROJECTIONS)
