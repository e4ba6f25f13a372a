"""Weight builders and memory cores (tensor composers, CNU core, compact spectral multiplier)."""

from dyna.lib.tensor_composer_delta import TensorComposerDelta
from dyna.lib.tensor_composer_mobius import TensorComposerMobius

__all__ = ["TensorComposerDelta", "TensorComposerMobius"]
