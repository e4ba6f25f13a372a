"""Standard normal draws as one opaque operator, so that compiled code draws what eager code does.

:func:`standard_normal_like` is ``torch.randn`` of each given tensor's shape, registered as the
custom operator ``dyna::standard_normal_like``: a compiler sees one call it may not reorder or
lower to its own generator, so a compiled module consumes the global generator exactly as the
eager module does. The Delta composer draws its training noise through it.
"""

from __future__ import annotations

import torch
from torch import library as op_registry


@op_registry.custom_op(
    "dyna::standard_normal_like", mutates_args=(), tags=(torch.Tag.nondeterministic_seeded,)
)
def _standard_normal_like(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    # Contiguous draws in logical order: randn_like would follow the input's strides, which a
    # compiler may choose differently from eager mode.
    return [
        torch.randn(tensor.shape, dtype=tensor.dtype, device=tensor.device) for tensor in tensors
    ]


@_standard_normal_like.register_fake
def _standard_normal_like_fake(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [tensor.new_empty(tensor.shape) for tensor in tensors]


def standard_normal_like(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``torch.randn`` of each tensor's shape, dtype and device, in order, as one operator.

    Inductor would otherwise lower ``randn_like`` to its own counter-based generator, evaluated
    one element at a time on the CPU (about ten times slower than PyTorch's vectorised sampler
    over a filter bank) and giving other numbers than eager mode. As one opaque operator (one
    call for all the draws of a forward pass, so that a compiler cannot reorder them) the
    compiled module draws exactly what the eager module draws from the same seed.

    Args:
        tensors: floating tensors whose shapes, dtypes and devices the draws take.

    Returns:
        One tensor of standard normal samples per input, outside the autograd graph.
    """
    return tuple(_standard_normal_like([tensor.detach() for tensor in tensors]))
