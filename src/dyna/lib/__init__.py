"""Weight builders and memory cores (tensor composers, CNU core, compact spectral multiplier)."""

from dyna.lib.cnu import CNUAttention, CNUs

__all__ = ["CNUAttention", "CNUs"]
