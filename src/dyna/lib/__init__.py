"""Weight builders and memory cores (tensor composers, CNU core, compact spectral multiplier)."""

from dyna.lib.cnu import CNUAttention, CNUs
from dyna.lib.compact_spectral_multiplier import CompactSpectralMultiplier
from dyna.lib.tensor_composer_delta import TensorComposerDelta
from dyna.lib.tensor_composer_mobius import TensorComposerMobius

__all__ = [
    "CNUAttention",
    "CNUs",
    "CompactSpectralMultiplier",
    "TensorComposerDelta",
    "TensorComposerMobius",
]
