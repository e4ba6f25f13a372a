"""Log-proportional error: the relative error of two signals measured on a shifted log scale.

With ``m = min(min x, min y)`` over both tensors (held constant for the gradient),
``x~ = x - m + e`` and ``y~ = y - m + e`` (both >= e, so both logarithms are >= 1):

    err = | (ln x~ - ln y~) / ln y~ |

The gradient with respect to ``x`` is the reference DyNA's; the one with respect to ``y`` is
the true derivative ``-s * ln x~ / ((ln y~)**2 * y~)`` with ``s = sign((ln x~ - ln y~) / ln y~)``
(the reference returns ``s * (-1/v + u/v**2) / y~`` there, which is not the derivative).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dyna._validation import check_floating_tensor

_REDUCTIONS = ("mean", "sum", "none")


class LogProportionalError(torch.autograd.Function):
    """Element-wise log-proportional error with the minimum ``m`` treated as a constant."""

    # forward and setup_context are separate so that torch.func transforms (vmap) apply
    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.numel() == 0:
            return torch.empty_like(x)
        shift = torch.minimum(x.min(), y.min())
        log_x = torch.log(x - shift + math.e)
        log_y = torch.log(y - shift + math.e)
        return ((log_x - log_y) / log_y).abs()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        x, y = inputs
        if x.numel() == 0:
            return
        # the shift again (two reductions) rather than an extra output of forward
        ctx.save_for_backward(x, y, torch.minimum(x.min(), y.min()))

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not ctx.saved_tensors:
            return grad_output, grad_output
        x, y, shift = ctx.saved_tensors
        shifted_x = x - shift + math.e
        shifted_y = y - shift + math.e
        log_x = torch.log(shifted_x)
        log_y = torch.log(shifted_y)
        sign = torch.sign((log_x - log_y) / log_y)
        grad_x = grad_output * (sign / log_y) * (1.0 / shifted_x)
        grad_y = grad_output * (-sign * log_x / (log_y * log_y * shifted_y))
        return grad_x, grad_y


def log_proportional_error(
    x: torch.Tensor, y: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Log-proportional error between a prediction ``x`` and a target ``y``.

    ``err = |(ln(x - m + e) - ln(y - m + e)) / ln(y - m + e)|`` with ``m`` the smallest value of
    both tensors together; ``m`` is a constant for the gradient.

    Args:
        x: floating tensor of any shape (the prediction).
        y: tensor of the same shape and dtype as ``x`` (the target); no broadcasting.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Returns:
        A 0-d tensor for ``"mean"``/``"sum"``, else a tensor of ``x``'s shape; dtype of ``x``.

    Example:
        >>> log_proportional_error(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.5]))
        tensor(0.1886)
    """
    check_floating_tensor("x", x)
    check_floating_tensor("y", y)
    if x.dtype != y.dtype:
        raise TypeError(f"x and y must have the same dtype, got {x.dtype} and {y.dtype}")
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    error = LogProportionalError.apply(x, y)
    if reduction == "mean":
        return error.mean()
    if reduction == "sum":
        return error.sum()
    return error
