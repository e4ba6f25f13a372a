"""Backward gradient normalisation (BGN): identity forward, per-slice gradient rescaling backward.

Following Cabana and Lago-Fernández (arXiv:2106.09475), the gradient flowing back through the
marked tensor is rescaled so that every slice along axis 0 has RMS one:

    g'[b] = g[b] / (||g[b]||_2 + eps) * sqrt(n),    n = numel(g[b])

For a 1-D tensor the norm is taken over the whole vector and n = 1, so the gradient is scaled
to unit norm (kept from the reference DyNA implementation).

:func:`backward_gradient_normalization_multiplicity` is the same rescaling for a tensor that
stands for L identical copies of itself (the sum of BGN over the copies, without them).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dyna._validation import check_floating_tensor, check_real
from dyna.functional._compile import constant_result


class BackwardGradientNormalization(torch.autograd.Function):
    """Autograd function behind :func:`backward_gradient_normalization`."""

    eps = 1e-6
    # forward and setup_context are separate so that torch.func transforms (vmap) apply
    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, eps: float) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        ctx.eps = inputs[1]

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return normalized_gradient(grad_output, ctx.eps), None


def normalized_gradient(
    grad_output: torch.Tensor, eps: float, multiplicity: int = 1
) -> torch.Tensor:
    """The gradient BGN passes back: every slice along axis 0 rescaled to RMS one.

    ``g'[b] = g[b] / (||g[b]|| / sqrt(L) + eps) * sqrt(n L)`` with n = numel(g[b]) and L the
    ``multiplicity`` (1 for plain BGN; see :func:`backward_gradient_normalization_multiplicity`).
    A 1-D gradient is one slice with n = 1 (scaled to unit norm), as in the reference.

    Args:
        grad_output: (B, ...) or (N,) gradient reaching the marked tensor.
        eps: added to the (scaled) slice norm.
        multiplicity: number L >= 1 of identical copies the tensor stands for.

    Returns:
        A new tensor of the shape and dtype of ``grad_output``.
    """
    if grad_output.dim() == 1:
        slice_dims: tuple[int, ...] = (0,)
        slice_numel = 1
    else:
        slice_dims = tuple(range(1, grad_output.dim()))
        slice_numel = math.prod(grad_output.shape[1:])
    norm = torch.linalg.vector_norm(grad_output, dim=slice_dims, keepdim=True)
    if multiplicity != 1:
        norm = norm / math.sqrt(multiplicity)
    # The reference adds eps as a tensor of the gradient's dtype (1e-6 rounds in bfloat16).
    eps_tensor = grad_output.new_full((1,), eps)
    return grad_output / (norm + eps_tensor) * math.sqrt(slice_numel * multiplicity)


# torch.compile cannot read attributes of an autograd.Function class while tracing; read the
# default outside the graph (a compiled caller sees the value at compile time).
@constant_result
def default_bgn_eps() -> float:
    """``BackwardGradientNormalization.eps``, read at call time (1e-6 unless changed)."""
    return BackwardGradientNormalization.eps


def backward_gradient_normalization(x: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """Identity in the forward pass; normalise the gradient per slice of axis 0 in the backward.

    Args:
        x: floating tensor with at least one dimension, shape (B, ...).
        eps: added to the slice norm; ``None`` uses ``BackwardGradientNormalization.eps``
            (1e-6), read at call time.

    Returns:
        A view of ``x`` (same shape and dtype). Its gradient is ``g[b] / (||g[b]|| + eps) *
        sqrt(numel(g[b]))`` for every b along axis 0; for a 1-D ``x`` the whole gradient is
        scaled to unit norm. An all-zero gradient stays zero for ``eps > 0`` (with ``eps = 0``
        it becomes NaN, as in the reference).

    Example:
        >>> x = torch.zeros(2, 2, requires_grad=True)
        >>> upstream = torch.tensor([[3.0, 4.0], [0.0, 1e-3]])
        >>> backward_gradient_normalization(x).backward(upstream)
        >>> x.grad  # every row now has norm sqrt(2)
        tensor([[0.8485, 1.1314],
                [0.0000, 1.4128]])
    """
    check_floating_tensor("x", x, min_dim=1)
    if eps is None:
        eps = default_bgn_eps()
    eps = check_real("eps", eps, minimum=0.0)
    return BackwardGradientNormalization.apply(x, eps)


class _GradientNormalizationMultiplicity(torch.autograd.Function):
    """BGN of a tensor standing for ``multiplicity`` identical copies of itself."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, multiplicity: int, eps: float) -> torch.Tensor:
        ctx.multiplicity = multiplicity
        ctx.eps = eps
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return normalized_gradient(grad_output, ctx.eps, ctx.multiplicity), None, None


def backward_gradient_normalization_multiplicity(
    x: torch.Tensor, multiplicity: int, eps: float | None = None
) -> torch.Tensor:
    """BGN of ``x`` as if ``x`` were copied ``multiplicity`` times along a new axis.

    Identity forward. Backward, per slice b along axis 0 with n = numel(g[b]) and L the
    multiplicity: ``g'[b] = g[b] * sqrt(n L) / (||g[b]|| / sqrt(L) + eps)``, which is the sum
    over the copies of :func:`backward_gradient_normalization` applied to the expanded tensor
    when every copy receives ``g / L``. ``multiplicity = 1`` is plain BGN. The Mobius composer
    uses it to normalise its L identical latent copies without materialising them.

    Args:
        x: floating tensor of shape (B, ...), at least 2-D.
        multiplicity: number of virtual copies L >= 1.
        eps: as for :func:`backward_gradient_normalization` (``None``: its class default).

    Returns:
        A view of ``x`` (same shape and dtype) whose gradient is rescaled as above.
    """
    if eps is None:
        eps = default_bgn_eps()
    return _GradientNormalizationMultiplicity.apply(x, multiplicity, eps)
