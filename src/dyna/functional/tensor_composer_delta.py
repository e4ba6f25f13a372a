"""Hand-optimised stages of the Delta composer, each beside its plain ``*_ref`` twin.

:class:`~dyna.lib.TensorComposerDelta` spends its time in a few element-wise stages over
batch-sized 2-D fields. The fast versions here give the same numbers as the reference DyNA
implementation (to rounding) and the same gradients, with fewer passes over memory; the
``*_ref`` functions transcribe the reference literally and are the specification the tests
compare against.

- :func:`delta_oriented_fields`: steps "lerp, affine, orientation, projection",
  ``w = Re(v_value * conj(v_orient / |v_orient|))`` with ``v = beta + (z1 + c (z2 - z1)) s``.
  The per-sample complex coefficients are constant over the field, so ``v`` is one batched
  matrix product of the coefficients with the parameter fields.
- :func:`delta_decorrelate_mix`: the repulsion between filters, the straight-through penalty,
  the eps lift, the filter noise and the rank mixture, with a backward on small factors
  (Triton kernels in :mod:`dyna.functional.tensor_composer_delta_mix_triton`).
- :func:`lift_small` and :func:`std_mean_last`: the eps lift and an overflow-safe std.

The stabiliser between the two stages is :func:`dyna.functional.signal_stabilization.stabilize`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dyna.functional._autograd import first_order_backward
from dyna.functional._backend import check_backend, logger, use_triton
from dyna.functional.gradient_normalization import backward_gradient_normalization, default_bgn_eps


class _OrientedValue(torch.autograd.Function):
    """``w = Re(value * conj(o))`` with ``o = orient / sqrt(|orient|^2 + eps)`` and BGN on ``o``.

    Input: ``v`` (r, part, comp, B, N), the batched product of :func:`delta_oriented_fields`
    (part 0 value, 1 orientation; comp re, im). Output: (B, r, N) contiguous. BGN acts per
    sample b on the gradient reaching o. One fused forward and a hand-written backward that
    returns the whole gradient of ``v`` at once replace a dozen autograd nodes (and the
    full-size zero fills of their slice backwards) over the composer's largest tensors.
    """

    @staticmethod
    def forward(ctx: Any, v: torch.Tensor, eps: float, bgn_eps: float) -> torch.Tensor:
        rank, _, _, batch, n = v.shape
        value_re, value_im, orient_re, orient_im = _oriented_parts(v)
        if torch.compiler.is_compiling() or torch.compiler.is_exporting():
            # Traced: torch.export records autograd and rejects out= arithmetic on tensors
            # that require grad; the plain ops are what the compiler fuses anyway.
            inverse_norm = (orient_re * orient_re + orient_im * orient_im + eps).rsqrt()
            out = (value_re * orient_re + value_im * orient_im) * inverse_norm
            ctx.save_for_backward(v, inverse_norm, out)
            ctx.bgn_eps = bgn_eps
            return out
        inverse_norm = torch.mul(orient_re, orient_re, out=v.new_empty(batch, rank, n))
        inverse_norm.addcmul_(orient_im, orient_im).add_(eps).rsqrt_()
        out = torch.mul(value_re, orient_re, out=v.new_empty(batch, rank, n))
        out.addcmul_(value_im, orient_im).mul_(inverse_norm)
        ctx.save_for_backward(v, inverse_norm, out)
        ctx.bgn_eps = bgn_eps
        return out

    @staticmethod
    # in-place and out= arithmetic; BGN has no useful second derivative
    @first_order_backward("delta_oriented_fields", "delta_oriented_fields_ref")
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        v, inverse_norm, out = ctx.saved_tensors
        value_re, value_im, orient_re, orient_im = _oriented_parts(v)
        # BGN of the gradient reaching o (g * value), per sample over r, N and both parts.
        energy = value_re * value_re
        energy.addcmul_(value_im, value_im).mul_(grad).mul_(grad)
        norm = energy.sum(dim=(1, 2), keepdim=True).sqrt_()
        numel = 2 * grad.shape[1] * grad.shape[2]
        scale = math.sqrt(numel) / (norm + grad.new_full((1,), ctx.bgn_eps))
        # d w / d value = o = orient * rho, with rho = 1 / |orient|_eps.
        grad_rho = grad * inverse_norm
        # d o / d orient = rho (I - o o^T); o . value = w, so the BGN-scaled gradient
        # g' value gives grad_orient = g' rho (value - o w) = g' rho (value - orient rho w).
        rho_w = inverse_norm * out
        if torch.compiler.is_compiling():
            # Traced (no strided out=): the compiler fuses the parts and their stack.
            grad_rho_scaled = grad_rho * scale
            parts = (
                grad_rho * orient_re,
                grad_rho * orient_im,
                (value_re - orient_re * rho_w) * grad_rho_scaled,
                (value_im - orient_im * rho_w) * grad_rho_scaled,
            )
            grad_v = torch.stack([part.transpose(0, 1) for part in parts], dim=1).view(v.shape)
            return grad_v, None, None
        # Eager: every part is written straight into its slot of grad_v (the layout of v, rows
        # of N contiguous), which saves the full-size copy of a stack.
        grad_v = torch.empty_like(v)
        slot_value_re, slot_value_im, slot_orient_re, slot_orient_im = _oriented_parts(grad_v)
        torch.mul(grad_rho, orient_re, out=slot_value_re)
        torch.mul(grad_rho, orient_im, out=slot_value_im)
        grad_rho.mul_(scale)
        torch.addcmul(value_re, orient_re, rho_w, value=-1.0, out=slot_orient_re)
        slot_orient_re.mul_(grad_rho)
        torch.addcmul(value_im, orient_im, rho_w, value=-1.0, out=slot_orient_im)
        slot_orient_im.mul_(grad_rho)
        return grad_v, None, None


def _oriented_parts(
    v: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(value_re, value_im, orient_re, orient_im) of v (r, part, comp, B, N), each (B, r, N)."""
    value_re, value_im, orient_re, orient_im = (
        v[:, part, comp].transpose(0, 1) for part in (0, 1) for comp in (0, 1)
    )
    return value_re, value_im, orient_re, orient_im


def delta_oriented_fields(
    modulation: torch.Tensor, weights: torch.Tensor, eps: float, *, backend: str | None = None
) -> torch.Tensor:
    """Per-sample filter bank of the Delta composer before its stabiliser.

    Args:
        modulation: (B, r, 3, 2, 2) per-sample complex coefficients: axis 2 is the role
            (0 lerp factor c - 0.5, 1 bias beta, 2 scale s - 1), axis 3 the part (0 value,
            1 orientation), axis 4 (re, im).
        weights: (1, r, 2, 2, H, W, 2) filter bank: pair (z1, z2), part, H, W, (re, im).
        eps: added to |v_orient|^2 under the square root.
        backend: ``None`` (the Triton kernels of
            :mod:`dyna.functional.tensor_composer_delta_triton` for CUDA tensors), ``"torch"``
            or ``"triton"``; see :mod:`dyna.functional._backend`. The kernels synthesise the
            fields v on the fly, never storing them.

    Returns:
        (B, r, H, W): ``Re(v_value * conj(o))`` with ``o = BGN(v_orient / |v_orient|_eps)``
        (BGN per sample) and ``v = beta + (z1 + c (z2 - z1)) s`` for each part.
    """
    batch, rank = modulation.shape[:2]
    height, width = weights.shape[4:6]
    n = height * width
    lerp_re = modulation[:, :, 0, :, 0] + 0.5
    lerp_im = modulation[:, :, 0, :, 1]
    scale_re = modulation[:, :, 2, :, 0] + 1.0
    scale_im = modulation[:, :, 2, :, 1]
    # v = beta + a1 z1 + a2 z2 with a1 = s (1 - c), a2 = s c: complex numbers per (b, r, part).
    a2_re = scale_re * lerp_re - scale_im * lerp_im
    a2_im = scale_re * lerp_im + scale_im * lerp_re
    a1_re = scale_re - a2_re
    a1_im = scale_im - a2_im
    # Real form: (re, im) rows against the fields (z1_re, z1_im, z2_re, z2_im).
    coefficients = torch.stack(
        (
            torch.stack((a1_re, -a1_im, a2_re, -a2_im), dim=-1),
            torch.stack((a1_im, a1_re, a2_im, a2_re), dim=-1),
        ),
        dim=-2,
    )  # (B, r, part, comp, 4)
    # (r, pair, part, H, W, comp) -> (r, part, (pair, comp), H*W)
    fields = weights[0].permute(0, 2, 1, 5, 3, 4).reshape(rank * 2, 4, n)
    if use_triton("delta_oriented_fields", check_backend(backend), modulation):
        from dyna.functional import tensor_composer_delta_triton as kernels

        # (B, r, part, comp, 5): the four field weights and the bias beta.
        affine = torch.cat((coefficients, modulation[:, :, 1].unsqueeze(-1)), dim=-1)
        out = kernels.oriented_value(
            affine.contiguous(), fields.view(rank, 2, 4, n), eps, default_bgn_eps()
        )
        return out.view(batch, rank, height, width)
    coefficients = coefficients.permute(1, 2, 3, 0, 4).reshape(rank * 2, 2 * batch, 4)
    bias = modulation[:, :, 1].permute(1, 2, 3, 0).reshape(rank * 2, 2 * batch, 1)
    v = torch.baddbmm(bias, coefficients, fields).view(rank, 2, 2, batch, n)
    return _OrientedValue.apply(v, eps, default_bgn_eps()).view(batch, rank, height, width)


def delta_oriented_fields_ref(
    modulation: torch.Tensor, weights: torch.Tensor, eps: float
) -> torch.Tensor:
    """Literal twin of :func:`delta_oriented_fields` (the reference's lerp/affine/projection)."""
    batch, rank = modulation.shape[:2]
    height, width = weights.shape[4:6]
    mod = modulation.reshape(batch, rank, 3, 2, 1, 1, 2).expand(-1, -1, -1, -1, height, width, -1)
    shift_lerp = torch.tensor([0.5, 0.0], dtype=modulation.dtype, device=modulation.device)
    shift_scale = torch.tensor([1.0, 0.0], dtype=modulation.dtype, device=modulation.device)
    c = mod[:, :, 0] + shift_lerp
    beta = mod[:, :, 1]
    s = mod[:, :, 2] + shift_scale
    w = weights.expand(batch, -1, -1, -1, -1, -1, -1)
    z1, z2 = w[:, :, 0], w[:, :, 1]
    lerp = torch.stack(
        (
            (1 - c[..., 0]) * z1[..., 0]
            + c[..., 0] * z2[..., 0]
            - c[..., 1] * (z2[..., 1] - z1[..., 1]),
            (1 - c[..., 0]) * z1[..., 1]
            + c[..., 0] * z2[..., 1]
            + c[..., 1] * (z2[..., 0] - z1[..., 0]),
        ),
        dim=-1,
    )
    v = torch.stack(
        (
            beta[..., 0] + (lerp[..., 0] * s[..., 0] - lerp[..., 1] * s[..., 1]),
            beta[..., 1] + (lerp[..., 0] * s[..., 1] + lerp[..., 1] * s[..., 0]),
        ),
        dim=-1,
    )
    denom = (v[:, :, 1] ** 2).sum(-1).add(eps).sqrt().unsqueeze(-1)
    orient = backward_gradient_normalization(v[:, :, 1] / denom)
    return (v[:, :, 0] * orient).sum(dim=-1)


class _LiftSmall(torch.autograd.Function):
    """Forward: |x| < eps becomes sign(x) * eps; backward: identity (straight-through)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, eps: float) -> torch.Tensor:
        return torch.where(x.abs() < eps, x.sign() * eps, x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def lift_small(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Straight-through lift of magnitudes below ``eps`` to ``eps`` (an exact 0 stays 0)."""
    return _LiftSmall.apply(x, eps)


def lift_small_ref(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Literal twin of :func:`lift_small` (the reference's detached correction)."""
    stable = torch.where(x.abs() < eps, x.sign() * eps, x)
    return x + (stable - x).detach()


def std_mean_last(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unbiased std and mean over the last axis, keepdim (as ``torch.std_mean``), no overflow.

    ``torch.std_mean`` runs a Welford update per element, about four times slower on the CPU
    than a mean and a norm of the centred values. Each centred row is scaled by a power of two
    near its peak before the norm (exact in binary floating point), so that its squares cannot
    overflow while the std itself is representable: float32 filters of magnitude 1e19, which
    contexts of magnitude 1e6 produce, would otherwise give an infinite std and NaN noise.
    """
    n = x.shape[-1]
    mean = x.mean(dim=-1, keepdim=True)
    centered = x - mean
    peak = centered.abs().amax(dim=-1, keepdim=True)
    # Bounded so that the scale itself stays finite for tiny or zero rows.
    limit = (int(math.log2(torch.finfo(x.dtype).max)) + 1) // 2
    exponent = torch.frexp(peak).exponent.clamp_(-limit, 2 * limit)
    scale = torch.ldexp(torch.ones_like(peak), -exponent)
    norm = torch.linalg.vector_norm(centered.mul_(scale), dim=-1, keepdim=True)
    return norm.div_(scale).div_(math.sqrt(n - 1)), mean


class _DecorrelateMix(torch.autograd.Function):
    """The Delta composer from its stabilised bank to the mixed matrix, by hand.

    Forward: Gram matrix, repulsion, eps lift, training noise and the rank mixture, with the
    temporaries updated in place. Backward: the gradient reaching the filters is the outer
    product ``mixing (x) g`` of two small factors, so everything up to the bank's gradient (the
    repulsion's transpose, the straight-through penalty, the BGN norm) is computed on (B, r)
    and (B, r, r) factors; the full-size work is two reads and one batched product.
    """

    @staticmethod
    def forward(
        ctx: Any,
        raw: torch.Tensor,
        mixing: torch.Tensor,
        noise: torch.Tensor | None,
        repulsion: float,
        penalty_strength: float,
        noise_strength: float,
        eps: float,
        bgn_eps: float,
    ) -> torch.Tensor:
        rank = raw.shape[1]
        off_diagonal = ~torch.eye(rank, dtype=torch.bool, device=raw.device)
        gram = torch.bmm(raw, raw.transpose(1, 2)).mul_(off_diagonal)
        filters = torch.baddbmm(raw, gram, raw, alpha=-repulsion)
        # Lift |f| < eps to sign(f) eps: sign(f) max(|f|, eps) (an exact 0 stays 0).
        sign = filters.sign()
        filters.abs_().clamp_min_(eps).mul_(sign)
        if noise is not None:
            std, mean = std_mean_last(filters)
            filters.add_(mean.mul_(noise_strength))
            filters.addcmul_(noise, std.add_(eps).mul_(noise_strength))
        out = torch.bmm(mixing.unsqueeze(1), filters).squeeze(1)
        ctx.save_for_backward(raw, mixing, filters, gram)
        ctx.constants = (repulsion, penalty_strength, bgn_eps)
        return out

    @staticmethod
    # The second derivative through this hand-written backward would silently be wrong (the
    # straight-through penalty and BGN are not differentiated): refuse it instead.
    @first_order_backward("delta_decorrelate_mix", "delta_decorrelate_mix_ref")
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        raw, mixing, filters, gram = ctx.saved_tensors
        repulsion, penalty_strength, bgn_eps = ctx.constants
        rank, n = raw.shape[1], raw.shape[2]
        column = grad.unsqueeze(-1)  # (B, N, 1)
        grad_mixing = torch.bmm(filters, column).squeeze(-1)
        # Gradient of the filters: mixing (x) grad. Through the repulsion f = x - a G x it
        # reaches x as (mixing - a G^T mixing) (x) grad, and G as -a mixing (x) (x grad).
        coefficient = mixing - repulsion * torch.bmm(
            gram.transpose(1, 2), mixing.unsqueeze(-1)
        ).squeeze(-1)
        projected = torch.bmm(raw, column).squeeze(-1)  # (B, r): x grad
        grad_gram = torch.einsum("bi,bj->bij", mixing, projected).mul_(-repulsion)
        # Straight-through penalty mean_j G_ij^2, with gradient lambda sum_N of the filters'.
        grad_penalty = mixing * grad.sum(dim=-1, keepdim=True) * penalty_strength
        grad_gram.addcmul_(grad_penalty.unsqueeze(-1), gram, value=2.0 / rank)
        off_diagonal = ~torch.eye(rank, dtype=torch.bool, device=raw.device)
        grad_gram.mul_(off_diagonal)
        symmetric = grad_gram + grad_gram.transpose(1, 2)
        # BGN of coefficient (x) grad per sample: its norm is ||coefficient|| ||grad||.
        norm = torch.linalg.vector_norm(coefficient, dim=-1, keepdim=True) * (
            torch.linalg.vector_norm(grad, dim=-1, keepdim=True)
        )
        coefficient = coefficient * (math.sqrt(rank * n) / (norm + grad.new_full((1,), bgn_eps)))
        grad_raw = coefficient.unsqueeze(-1) * grad.unsqueeze(1)
        grad_raw.baddbmm_(symmetric, raw)  # the Gram matrix's gradient, before the BGN
        return grad_raw, grad_mixing, None, None, None, None, None, None


def delta_decorrelate_mix(
    bank: torch.Tensor,
    mixing: torch.Tensor,
    noise: torch.Tensor | None,
    repulsion: float,
    penalty_strength: float,
    noise_strength: float,
    eps: float,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """The Delta composer's decorrelation, eps lift, filter noise and rank mixture, fused.

    Args:
        bank: (B, r, N) stabilised filters x.
        mixing: (B, r) mixture weights pi of the filters (the drain slot left out).
        noise: (B, r, N) standard normal draws (training), or None (no noise).
        repulsion: a, the repulsion ``f = BGN(x) - a G BGN(x)`` with ``G`` the off-diagonal of
            ``x x^T`` (its gradient reaches x without the BGN).
        penalty_strength: lambda of the straight-through penalty ``mean_j G_ij^2`` (adds 0).
        noise_strength: sigma_w: ``f += sigma_w (noise (std(f) + eps) + mean(f))`` over N.
        eps: the lift ``|f| < eps -> sign(f) eps`` (straight-through) and the std guard.
        backend: ``None`` (the Triton kernels of
            :mod:`dyna.functional.tensor_composer_delta_mix_triton` for CUDA tensors),
            ``"torch"`` or ``"triton"``; see :mod:`dyna.functional._backend`. The kernels read
            the bank twice (the Gram matrix, then the filters and their mixture) and the noise
            once; ranks above 16 run the torch path (logged at debug level).

    Returns:
        (B, N): ``sum_k pi[b, k] f[b, k]``. See :func:`delta_decorrelate_mix_ref`.
    """
    if use_triton("delta_decorrelate_mix", check_backend(backend), bank):
        from dyna.functional import tensor_composer_delta_mix_triton as kernels

        if bank.dim() == 3 and bank.shape[1] <= kernels.MAX_RANK:
            out, _, _ = kernels.decorrelate_mix(
                bank.contiguous(),
                mixing.contiguous(),
                None if noise is None else noise.contiguous(),
                repulsion,
                penalty_strength,
                noise_strength,
                eps,
                default_bgn_eps(),
            )
            return out
        logger.debug("delta_decorrelate_mix: the torch path takes shape %s", tuple(bank.shape))
    return _DecorrelateMix.apply(
        bank, mixing, noise, repulsion, penalty_strength, noise_strength, eps, default_bgn_eps()
    )


def delta_decorrelate_mix_ref(
    bank: torch.Tensor,
    mixing: torch.Tensor,
    noise: torch.Tensor | None,
    repulsion: float,
    penalty_strength: float,
    noise_strength: float,
    eps: float,
) -> torch.Tensor:
    """Literal twin of :func:`delta_decorrelate_mix` (the reference's order of operations)."""
    rank = bank.shape[1]
    gram = torch.bmm(bank, bank.transpose(1, 2))
    normalized = backward_gradient_normalization(bank)
    off_diagonal = ~torch.eye(rank, dtype=torch.bool, device=gram.device)
    gram = gram * off_diagonal
    penalty = gram.pow(2).mean(dim=-1, keepdim=True)
    filters = normalized + (penalty - penalty.detach()) * penalty_strength
    filters = torch.baddbmm(filters, gram, normalized, alpha=-repulsion)
    filters = lift_small_ref(filters, eps)
    if noise is not None:
        std, mean = torch.std_mean(filters.detach(), dim=-1, keepdim=True)
        filters = filters + (noise * (std + eps) + mean) * noise_strength
    return torch.bmm(mixing.unsqueeze(1), filters).squeeze(1)
