"""Weight builders and memory cores (tensor composers, CNU core, compact spectral multiplier)."""

from dyna.lib.cnu import CNUAttention, CNUs
from dyna.lib.compact_spectral_multiplier import CompactSpectralMultiplier

__all__ = ["CNUAttention", "CNUs", "CompactSpectralMultiplier"]
