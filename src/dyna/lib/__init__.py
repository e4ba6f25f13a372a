"""Weight builders and memory cores (tensor composers, CNU core, compact spectral multiplier)."""

__all__: list[str] = []
