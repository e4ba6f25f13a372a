"""DyNA: dynamic neural architecture.

Biologically inspired PyTorch layers whose transformations are derived from the data itself:
signal functions and dynamic weight generation, continual neural units, and harmonic-oscillator
recurrent networks. Importing ``dyna`` only defines functions and classes.
"""

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING, Any

from dyna._deprecation import CNU_PROJECTIONS as _CNU_PROJECTIONS
from dyna._deprecation import moved_attribute

if TYPE_CHECKING:  # what the top level re-exports, for type checkers and editors
    from dyna.functional import *  # noqa: F403
    from dyna.lib import CNUs as CNUs
    from dyna.lib import CompactSpectralMultiplier as CompactSpectralMultiplier
    from dyna.lib import TensorComposerDelta as TensorComposerDelta
    from dyna.lib import TensorComposerMobius as TensorComposerMobius
    from dyna.module import *  # noqa: F403

# The top level re-exports every public function and layer: the sub-packages' __all__ are the
# one list of them, and lib's blocks are named here (the CNU core's attention stays in
# dyna.lib). They are imported on first use, not by `import dyna`: the `dyna` command then
# starts without importing torch, so a Ctrl-C during its start-up reaches the command's own
# handler instead of interrupting an import. `from dyna import X` and `dyna.X` work as before.
_LIB_EXPORTS = ("CNUs", "CompactSpectralMultiplier", "TensorComposerDelta", "TensorComposerMobius")
_SOURCES: dict[str, str] = {}


def _sources() -> dict[str, str]:
    """Each re-exported name and the sub-package it comes from (imports them the first time)."""
    if not _SOURCES:
        for package in ("dyna.functional", "dyna.module"):
            for name in importlib.import_module(package).__all__:
                _SOURCES.setdefault(name, package)
        _SOURCES.update(dict.fromkeys(_LIB_EXPORTS, "dyna.lib"))
    return _SOURCES


def __getattr__(name: str) -> Any:
    if name == "__all__":
        value: Any = sorted(["__version__", *_sources()])
    elif name in _sources():
        value = getattr(importlib.import_module(_sources()[name]), name)
    else:
        # The CNU key projections that were exported here keep working for one release.
        return moved_attribute(__name__, name, _CNU_PROJECTIONS)
    globals()[name] = value  # later uses find it without coming here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_sources()})
