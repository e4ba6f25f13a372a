"""Hand-optimised stages of the tensor composers, each beside its plain ``*_ref`` twin.

The composers of :mod:`dyna.lib` (``TensorComposerDelta``, ``TensorComposerMobius``) spend their
time in a few element-wise stages over batch-sized 2-D fields. The fast versions here give the
same numbers as the reference DyNA implementation (to rounding) and the same gradients, with
fewer passes over memory; the ``*_ref`` functions transcribe the reference literally and are
the specification the tests compare against.

- :func:`delta_oriented_fields`: steps "lerp, affine, orientation, projection" of the Delta
  composer, ``w = Re(v_value * conj(v_orient / |v_orient|))`` with
  ``v = beta + (z1 + c (z2 - z1)) s``. The per-sample complex coefficients are constant over the
  field, so ``v`` is one batched matrix product of the coefficients with the parameter fields.
- :func:`mobius_latent_expansion`: the Mobius composer's expansion of the transformations to
  ``L`` identical copies followed by a magnitude-weighted average, computed without the copy
  (the ``L`` copies only scale the backward gradient normalisation, see
  :func:`backward_gradient_normalization_multiplicity`).
- :func:`mobius_projection`: ``out[b, h, w] = sum_c Re(u[b, c, h] v[b, c, w] conj(p[c, h, w]))``
  without materialising the (B, C, H, W) complex products.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import library as op_registry

from dyna.functional._autograd import first_order_backward
from dyna.functional.gradient_normalization import _default_eps, backward_gradient_normalization
from dyna.functional.siglog import _apply_sign, _siglog_eps, siglog

# ----------------------------------------------------------------------------- BGN with copies


class _GradientNormalizationMultiplicity(torch.autograd.Function):
    """BGN of a tensor standing for ``multiplicity`` identical copies of itself."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, multiplicity: int, eps: float) -> torch.Tensor:
        ctx.multiplicity = multiplicity
        ctx.eps = eps
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        dims = tuple(range(1, grad_output.dim()))
        numel = math.prod(grad_output.shape[1:])
        root = math.sqrt(ctx.multiplicity)
        norm = torch.linalg.vector_norm(grad_output, dim=dims, keepdim=True)
        eps = grad_output.new_full((1,), ctx.eps)
        return grad_output / (norm / root + eps) * math.sqrt(numel * ctx.multiplicity), None, None


def backward_gradient_normalization_multiplicity(
    x: torch.Tensor, multiplicity: int, eps: float | None = None
) -> torch.Tensor:
    """BGN of ``x`` as if ``x`` were copied ``multiplicity`` times along a new axis.

    Identity forward. Backward, per slice b along axis 0 with n = numel(g[b]) and L the
    multiplicity: ``g'[b] = g[b] * sqrt(n L) / (||g[b]|| / sqrt(L) + eps)``, which is the sum
    over the copies of ``backward_gradient_normalization`` applied to the expanded tensor when
    every copy receives ``g / L``. ``multiplicity = 1`` is plain BGN (for x with >= 2 dims).

    Args:
        x: floating tensor of shape (B, ...), at least 2-D.
        multiplicity: number of virtual copies L >= 1.
        eps: as for :func:`backward_gradient_normalization` (``None``: its class default).
    """
    if eps is None:
        eps = _default_eps()
    return _GradientNormalizationMultiplicity.apply(x, multiplicity, eps)


# ----------------------------------------------------------------------------- noise


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


# ----------------------------------------------------------------------------- Delta composer


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
    modulation: torch.Tensor, weights: torch.Tensor, eps: float
) -> torch.Tensor:
    """Per-sample filter bank of the Delta composer before its stabiliser.

    Args:
        modulation: (B, r, 3, 2, 2) per-sample complex coefficients: axis 2 is the role
            (0 lerp factor c - 0.5, 1 bias beta, 2 scale s - 1), axis 3 the part (0 value,
            1 orientation), axis 4 (re, im).
        weights: (1, r, 2, 2, H, W, 2) filter bank: pair (z1, z2), part, H, W, (re, im).
        eps: added to |v_orient|^2 under the square root.

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
    coefficients = coefficients.permute(1, 2, 3, 0, 4).reshape(rank * 2, 2 * batch, 4)
    bias = modulation[:, :, 1].permute(1, 2, 3, 0).reshape(rank * 2, 2 * batch, 1)
    # (r, pair, part, H, W, comp) -> (r, part, (pair, comp), H*W)
    fields = weights[0].permute(0, 2, 1, 5, 3, 4).reshape(rank * 2, 4, n)
    v = torch.baddbmm(bias, coefficients, fields).view(rank, 2, 2, batch, n)
    return _OrientedValue.apply(v, eps, _default_eps()).view(batch, rank, height, width)


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


def _compressor_constants(dtype: torch.dtype, eps: float, leak: float) -> tuple[float, float]:
    """The compressor's per-dtype (eps, leak): float16/float64 use the smallest normal number."""
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
        value = _apply_sign(x, x.abs().add_(math.e).add_(siglog_eps).log_().sub_(1.0))
        value.add_(leak_term)
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
        magnitude = x.abs()
        exponent = torch.where(magnitude < 1.0, magnitude, 0.0).sqrt_().add_(1.0)
        surrogate = magnitude.pow_(exponent).add_(1.0).reciprocal_().add_(ctx.leak)
        gate_slope = torch.addcmul(sigmoid, sigmoid, sigmoid, value=-1.0).add_(ctx.leak)
        grad_x = surrogate.mul_(gate).addcmul_(gate_slope, value).mul_(grad_z)
        return normalize(grad_x), None, None, None, None  # input BGN


def stabilize(x: torch.Tensor, eps: float, leak: float = 1e-3) -> torch.Tensor:
    """The Delta composer's signal stabilisation compressor, fused.

    Equals ``SignalStabilizationCompressor(bgn_input=True, bgn_mid=True, bgn_output=True,
    mode="gating", trainable=False, leak=leak, eps=eps)(x)`` (see :func:`stabilize_ref`), with
    its per-dtype constants, in one forward pass and a hand-written backward.

    Args:
        x: (B, ..., W) floating; normalised over the last axis, BGN per sample.
        eps: added under the square root (float32/bfloat16; float16/float64 use the dtype's
            smallest normal number).
        leak: leak coefficient (likewise replaced by sqrt(smallest normal)).
    """
    eps, leak = _compressor_constants(x.dtype, eps, leak)
    return _Stabilize.apply(x, eps, leak, _default_eps(), _siglog_eps())


def stabilize_ref(x: torch.Tensor, eps: float, leak: float = 1e-3) -> torch.Tensor:
    """Literal twin of :func:`stabilize` (the compressor's autograd formula)."""
    eps, leak = _compressor_constants(x.dtype, eps, leak)
    x = backward_gradient_normalization(x)
    leak_term = x * leak
    z = (torch.sigmoid(x) + leak_term) * (siglog(x) + leak_term)
    z = backward_gradient_normalization(z)
    z = z * torch.rsqrt(z.abs().mean(dim=-1, keepdim=True) + eps)
    return backward_gradient_normalization(z)


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

    Returns:
        (B, N): ``sum_k pi[b, k] f[b, k]``. See :func:`delta_decorrelate_mix_ref`.
    """
    return _DecorrelateMix.apply(
        bank, mixing, noise, repulsion, penalty_strength, noise_strength, eps, _default_eps()
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


# ----------------------------------------------------------------------------- Mobius composer


def mobius_latent_expansion(
    re: torch.Tensor, im: torch.Tensor, latent_dim: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Magnitude-weighted average over ``latent_dim`` identical copies, without the copies.

    The reference expands (B, T, C, R) transformations to L copies, applies BGN to the expanded
    tensors, and averages directions weighted by magnitude over the copies. With the copies
    identical this is ``A = L re' / (L mag + eps) * mag`` (likewise for im) with
    ``mag = sqrt(re'^2 + im'^2 + eps)`` and ``re' = BGN_L(re)`` the BGN of L virtual copies, which
    reproduces the reference's forward (to rounding) and every gradient, including the factor
    L in the gradient scale.

    Args:
        re, im: (B, T, C, R) real and imaginary parts.
        latent_dim: the number of copies L.
        eps: the composer's eps (under the root and in the weighted average).

    Returns:
        (A_re, A_im), each (B, T, C, R).
    """
    re = backward_gradient_normalization_multiplicity(re, latent_dim)
    im = backward_gradient_normalization_multiplicity(im, latent_dim)
    magnitude = (re * re + im * im + eps).sqrt()
    # mag / (L mag + eps), shared by both parts
    weight = magnitude / (magnitude * latent_dim + eps) * latent_dim
    return re * weight, im * weight


def mobius_latent_expansion_ref(
    re: torch.Tensor, im: torch.Tensor, latent_dim: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Literal twin of :func:`mobius_latent_expansion`: materialises the L copies."""
    re = re.unsqueeze(3).expand(-1, -1, -1, latent_dim, -1)
    im = im.unsqueeze(3).expand(-1, -1, -1, latent_dim, -1)
    re = backward_gradient_normalization(re)
    im = backward_gradient_normalization(im)
    cos_theta = re / (re**2 + im**2 + eps).sqrt()
    sin_theta = im / (re**2 + im**2 + eps).sqrt()
    magnitude = (re**2 + im**2 + eps).sqrt()
    cos_weighted = (cos_theta * magnitude).sum(dim=3) / (magnitude.sum(dim=3) + eps)
    sin_weighted = (sin_theta * magnitude).sum(dim=3) / (magnitude.sum(dim=3) + eps)
    magnitude_mean = magnitude.mean(dim=3)
    return cos_weighted * magnitude_mean, sin_weighted * magnitude_mean


def mobius_projection(
    u: torch.Tensor, v: torch.Tensor, plane_re: torch.Tensor, plane_im: torch.Tensor
) -> torch.Tensor:
    """``out[b, h, w] = sum_c Re(u[b, c, h] v[b, c, w] conj(p[c, h, w]))``.

    Args:
        u: (B, C, H, 2) complex as (re, im) on the last axis.
        v: (B, C, W, 2).
        plane_re, plane_im: (C, H, W) the unit projection planes p.

    Returns:
        (B, H, W). Expanding the product, ``out = sum_c sum_{j in 4 terms} U_j[b,c,h]
        V_j[b,c,w] K_j[c,h,w]``; the sum over c runs one subspace at a time so that no
        (B, C, H, W) product is stored for the backward pass.
    """
    return _MobiusProjection.apply(u, v, plane_re, plane_im)


class _MobiusProjection(torch.autograd.Function):
    """One subspace at a time, each as rank-2 outer products (batched matrix products).

    Per subspace c, ``Re(u v) = [u_re, -u_im] @ [v_re; v_im]`` and
    ``Im(u v) = [u_re, u_im] @ [v_im; v_re]`` are (B, H, W) products with an inner size of 2,
    and ``out += Re(u v) p_re + Im(u v) p_im``. The backward forms ``g p_re`` and ``g p_im`` once
    per subspace and contracts them with u and v by matrix products; only the planes' gradient
    needs the (B, H, W) products again.
    """

    @staticmethod
    def forward(
        ctx: Any, u: torch.Tensor, v: torch.Tensor, plane_re: torch.Tensor, plane_im: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(u, v, plane_re, plane_im)
        batch, subspaces, height = u.shape[:3]
        width = v.shape[2]
        # (B, C, H, 2): left factors of Re(u v) and Im(u v); (B, C, 2, W): the right factor.
        left_re = torch.stack((u[..., 0], -u[..., 1]), dim=-1)
        right = v.transpose(2, 3)
        right_swapped = right.flip(2)
        out = u.new_zeros(batch, height, width)
        for c in range(subspaces):
            real = torch.bmm(left_re[:, c], right[:, c])
            imag = torch.bmm(u[:, c], right_swapped[:, c])
            out.addcmul_(real, plane_re[c]).addcmul_(imag, plane_im[c])
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        u, v, plane_re, plane_im = ctx.saved_tensors
        subspaces = u.shape[1]
        need_u, need_v = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_planes = ctx.needs_input_grad[2] or ctx.needs_input_grad[3]
        grad_u = torch.empty_like(u) if need_u else None
        grad_v = torch.empty_like(v) if need_v else None
        grad_plane_re = torch.empty_like(plane_re) if need_planes else None
        grad_plane_im = torch.empty_like(plane_im) if need_planes else None
        left_re = torch.stack((u[..., 0], -u[..., 1]), dim=-1)  # (B, C, H, 2)
        left_im_t = u.transpose(2, 3).flip(2)  # (B, C, 2, H): rows (u_im, u_re)
        left_re_t = left_re.transpose(2, 3)  # rows (u_re, -u_im)
        right = v.transpose(2, 3)  # (B, C, 2, W): rows (v_re, v_im)
        right_swapped = right.flip(2)  # rows (v_im, v_re)
        v_conj = torch.stack((v[..., 0], -v[..., 1]), dim=-1)  # (B, C, W, 2)
        v_swapped = v.flip(-1)  # (B, C, W, 2): columns (v_im, v_re)
        for c in range(subspaces):
            weighted_re = grad * plane_re[c]  # g p_re (B, H, W)
            weighted_im = grad * plane_im[c]
            if grad_u is not None:
                # d/du_re = sum_w g (v_re p_re + v_im p_im)
                # d/du_im = sum_w g (v_re p_im - v_im p_re)
                grad_u[:, c] = torch.bmm(weighted_re, v_conj[:, c]).add_(
                    torch.bmm(weighted_im, v_swapped[:, c])
                )
            if grad_v is not None:
                # d/dv_re = sum_h g (u_re p_re + u_im p_im)
                # d/dv_im = sum_h g (u_re p_im - u_im p_re)
                grad_v[:, c] = (
                    torch.bmm(left_re_t[:, c], weighted_re)
                    .add_(torch.bmm(left_im_t[:, c], weighted_im))
                    .transpose(1, 2)
                )
            if grad_plane_re is not None and grad_plane_im is not None:
                real = torch.bmm(left_re[:, c], right[:, c])
                imag = torch.bmm(u[:, c], right_swapped[:, c])
                # vecdot reduces over the batch in one vectorised pass; einsum would run it as
                # a batched product of H*W tiny (1, B) x (B, 1) matrices, ~15x slower on CPU.
                grad_plane_re[c] = torch.linalg.vecdot(real, grad, dim=0)
                grad_plane_im[c] = torch.linalg.vecdot(imag, grad, dim=0)
        return grad_u, grad_v, grad_plane_re, grad_plane_im


def mobius_projection_ref(
    u: torch.Tensor, v: torch.Tensor, plane_re: torch.Tensor, plane_im: torch.Tensor
) -> torch.Tensor:
    """Literal twin of :func:`mobius_projection` (the reference's outer products)."""
    w_re = torch.einsum("bch,bcw->bchw", u[..., 0], v[..., 0]) - torch.einsum(
        "bch,bcw->bchw", u[..., 1], v[..., 1]
    )
    w_im = torch.einsum("bch,bcw->bchw", u[..., 0], v[..., 1]) + torch.einsum(
        "bch,bcw->bchw", u[..., 1], v[..., 0]
    )
    return (w_re * plane_re + w_im * plane_im).sum(dim=1)
