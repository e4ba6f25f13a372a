"""The signal stabilisation compressor as a function: its per-dtype constants and a fused kernel.

For x of shape (B, ..., W) and the leak term ``l = x * leak``,

    z = (sigmoid(x) + l) * (siglog(x) + l),    out = z / sqrt(mean(|z|, last axis) + eps)

with backward gradient normalisation (BGN) at the input, after the gate and at the output.
:func:`stabilize` computes it in one forward pass with a hand-written backward (the Delta
composer's stabiliser); :func:`stabilize_ref` composes the autograd functions literally and is
the specification. :class:`~dyna.module.SignalStabilizationCompressor` is the configurable layer
(modes, trainable leak, optional BGNs); it shares :func:`compressor_constants` with these.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from dyna.functional._autograd import first_order_backward
from dyna.functional._backend import check_backend, logger, use_triton
from dyna.functional.gradient_normalization import (
    backward_gradient_normalization,
    default_bgn_eps,
)
from dyna.functional.siglog import (
    default_siglog_eps,
    siglog,
    siglog_surrogate_denominator,
    siglog_value,
)


class StabilizerConstants(NamedTuple):
    """The compressor's constants as a composer holds them: ``stabilize(x, *constants)``."""

    eps: float
    leak: float = 1e-3


def compressor_constants(dtype: torch.dtype, eps: float, leak: float) -> tuple[float, float]:
    """The compressor's (eps, leak) for ``dtype``, as the reference picks them.

    float32 and bfloat16 use the arguments; float16 and float64 use the dtype's smallest normal
    number for eps and its square root for leak.
    """
    if dtype in (torch.float32, torch.bfloat16):
        return eps, leak
    eps = torch.finfo(dtype).smallest_normal
    return eps, math.sqrt(eps)


class _Stabilize(torch.autograd.Function):
    """The Delta composer's compressor with its three BGNs, forward and backward by hand."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, eps: float, leak: float, bgn_eps: float, siglog_eps: float
    ) -> torch.Tensor:
        sigmoid = torch.sigmoid(x)
        leak_term = x * leak
        gate = sigmoid + leak_term
        # siglog(x) + leak term, in the order of SigLog.forward (then the leak is added).
        value = siglog_value(x, siglog_eps).add_(leak_term)
        z = gate * value
        scale = torch.rsqrt(z.abs().mean(dim=-1, keepdim=True) + eps)
        ctx.save_for_backward(x, sigmoid, gate, value, z, scale)
        ctx.leak = leak
        ctx.bgn_eps = bgn_eps
        return z * scale

    @staticmethod
    # in-place arithmetic on saved tensors; a surrogate inside
    @first_order_backward("stabilize", "stabilize_ref")
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, sigmoid, gate, value, z, scale = ctx.saved_tensors
        dims = tuple(range(1, grad.dim()))
        root = math.sqrt(math.prod(grad.shape[1:]))
        bgn_eps = grad.new_full((1,), ctx.bgn_eps)

        def normalize(g: torch.Tensor) -> torch.Tensor:
            norm = torch.linalg.vector_norm(g, dim=dims, keepdim=True)
            return g.mul_(root / (norm + bgn_eps))

        grad = normalize(grad.clone())  # output BGN
        # y = z (mean|z| + eps)^(-1/2): dz = g s - s^3 / (2 W) sum_w(g z) sign(z)
        weighted = torch.einsum("...w,...w->...", grad, z).unsqueeze(-1)
        weighted.mul_(scale.pow(3)).mul_(-0.5 / grad.shape[-1])
        grad_z = normalize(torch.addcmul(grad.mul_(scale), weighted, z.sign()))  # mid BGN
        # z = gate * value; gate' = s (1 - s) + leak; value' = siglog surrogate + leak.
        surrogate = siglog_surrogate_denominator(x).reciprocal_().add_(ctx.leak)
        gate_slope = torch.addcmul(sigmoid, sigmoid, sigmoid, value=-1.0).add_(ctx.leak)
        grad_x = surrogate.mul_(gate).addcmul_(gate_slope, value).mul_(grad_z)
        return normalize(grad_x), None, None, None, None  # input BGN


def stabilize(
    x: torch.Tensor, eps: float, leak: float = 1e-3, *, backend: str | None = None
) -> torch.Tensor:
    """The signal stabilisation compressor with all three BGNs, gating, fixed leak; fused.

    Equals ``SignalStabilizationCompressor(bgn_input=True, bgn_mid=True, bgn_output=True,
    mode="gating", trainable=False, leak=leak, eps=eps)(x)`` (see :func:`stabilize_ref`), with
    its per-dtype constants, in one forward pass and a hand-written backward.

    Args:
        x: (B, ..., W) floating; normalised over the last axis, BGN per sample.
        eps: added under the square root (float32/bfloat16; float16/float64 use the dtype's
            smallest normal number).
        leak: leak coefficient (likewise replaced by sqrt(smallest normal)).
        backend: ``None`` (the Triton kernels of
            :mod:`dyna.functional.signal_stabilization_triton` for CUDA tensors), ``"torch"`` or
            ``"triton"``; see :mod:`dyna.functional._backend`. The kernels hold whole rows:
            W > 4096 runs the torch path (logged at debug level).

    Returns:
        Like ``x``.
    """
    backend = check_backend(backend)
    eps, leak = compressor_constants(x.dtype, eps, leak)
    if use_triton("stabilize", backend, x):
        from dyna.functional import signal_stabilization_triton as kernels

        if x.dim() >= 2 and x.shape[-1] <= kernels.MAX_WIDTH:
            return kernels.stabilize(
                x.contiguous(), eps, leak, default_bgn_eps(), default_siglog_eps()
            )
        logger.debug("stabilize: the torch path takes shape %s", tuple(x.shape))
    return _Stabilize.apply(x, eps, leak, default_bgn_eps(), default_siglog_eps())


def stabilize_ref(x: torch.Tensor, eps: float, leak: float = 1e-3) -> torch.Tensor:
    """Literal twin of :func:`stabilize` (the compressor's autograd formula)."""
    eps, leak = compressor_constants(x.dtype, eps, leak)
    x = backward_gradient_normalization(x)
    leak_term = x * leak
    z = (torch.sigmoid(x) + leak_term) * (siglog(x) + leak_term)
    z = backward_gradient_normalization(z)
    z = z * torch.rsqrt(z.abs().mean(dim=-1, keepdim=True) + eps)
    return backward_gradient_normalization(z)
