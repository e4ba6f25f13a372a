"""First-order hand-written backward passes that refuse a second derivative up front."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch.autograd.function import once_differentiable

Backward = Callable[..., Any]


def first_order_backward(name: str, twin: str) -> Callable[[Backward], Backward]:
    """Decorate the ``backward`` of an ``autograd.Function`` whose gradient is hand-written.

    ``once_differentiable`` alone refuses a double backward only when the upstream gradient
    itself requires grad. With a constant upstream gradient and parameters that require grad,
    ``autograd.grad(..., create_graph=True)`` would return first derivatives whose own graph
    silently lacks every term through this backward. Building that graph is the signal: with
    ``create_graph=True`` (grad mode on inside the backward) this raises instead, naming the
    plain-autograd ``twin`` to use for higher derivatives.
    """

    def decorate(backward: Backward) -> Backward:
        first_order = once_differentiable(backward)

        @functools.wraps(backward)
        def checked(ctx: Any, *grads: Any) -> Any:
            if torch.is_grad_enabled() and not torch.compiler.is_compiling():
                raise RuntimeError(
                    f"{name}: its hand-written backward cannot differentiate twice "
                    f"(create_graph=True); use {twin} for higher derivatives"
                )
            return first_order(ctx, *grads)

        return checked

    return decorate
