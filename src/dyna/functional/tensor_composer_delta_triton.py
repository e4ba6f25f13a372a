# Triton kernels annotate only their compile-time constants (tl.constexpr).
# mypy: disable-error-code="no-untyped-def"
"""Triton kernels of the Delta composer's field synthesis and orientation, forward and backward.

Per sample b, filter k and part p (0 value, 1 orientation) the complex field is synthesised
from four fixed real fields F[k, p] = (z1_re, z1_im, z2_re, z2_im) and per-sample real
coefficients C[b, k, p, comp] (four weights and a bias per component):

    v[b, k, p, comp, n] = Σ_j C[b, k, p, comp, j] F[k, p, j, n] + C[b, k, p, comp, 4]
    out[b, k, n] = Re(v_value conj(o)),    o = v_orient / sqrt(|v_orient|² + eps)

with a backward gradient normalisation (BGN, per sample over k, n and both components) of the
gradient reaching o. The (B, k, 2, 2, N) fields v are never stored:

- forward: one program per (b, k, column tile) synthesises both parts and writes ``out``;
- backward, first kernel: per (b, k, tile) the partial energy Σ g² |v_value|² of the BGN norm;
- backward, second kernel: one program per (k, column tile) walks the batch, recomputes v,
  forms the four gradient components of v, accumulates the fields' gradient over the batch in
  registers and writes the coefficients' gradient as per-tile partial sums (no atomics: the
  results are deterministic).

Everything is computed in float32. :func:`dyna.functional.delta_oriented_fields_ref` is the
specification; the coefficients come from the per-sample modulation in torch.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from dyna.functional._backend import prepare_interpreter

prepare_interpreter()

_BLOCK_N = 256


@triton.jit
def _synthesise(coefficient_ptr, field_ptr, columns_ok, n, part: tl.constexpr):
    """(re, im) of v for one part: coefficient_ptr at C[b, k], field_ptr at F[k] + columns."""
    f0 = tl.load(field_ptr + (part * 4 + 0) * n, mask=columns_ok, other=0.0).to(tl.float32)
    f1 = tl.load(field_ptr + (part * 4 + 1) * n, mask=columns_ok, other=0.0).to(tl.float32)
    f2 = tl.load(field_ptr + (part * 4 + 2) * n, mask=columns_ok, other=0.0).to(tl.float32)
    f3 = tl.load(field_ptr + (part * 4 + 3) * n, mask=columns_ok, other=0.0).to(tl.float32)
    re_ptr = coefficient_ptr + part * 10
    im_ptr = re_ptr + 5
    re = (
        tl.load(re_ptr).to(tl.float32) * f0
        + tl.load(re_ptr + 1).to(tl.float32) * f1
        + tl.load(re_ptr + 2).to(tl.float32) * f2
        + tl.load(re_ptr + 3).to(tl.float32) * f3
        + tl.load(re_ptr + 4).to(tl.float32)
    )
    im = (
        tl.load(im_ptr).to(tl.float32) * f0
        + tl.load(im_ptr + 1).to(tl.float32) * f1
        + tl.load(im_ptr + 2).to(tl.float32) * f2
        + tl.load(im_ptr + 3).to(tl.float32) * f3
        + tl.load(im_ptr + 4).to(tl.float32)
    )
    return re, im, f0, f1, f2, f3


@triton.jit
def _oriented_kernel(coefficient_ptr, field_ptr, out_ptr, rank, n, eps, BLOCK_N: tl.constexpr):
    sample_filter = tl.program_id(0).to(tl.int64)  # b * rank + k
    columns = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    columns_ok = columns < n
    coefficients = coefficient_ptr + sample_filter * 20
    fields = field_ptr + (sample_filter % rank) * 8 * n + columns
    value_re, value_im, _, _, _, _ = _synthesise(coefficients, fields, columns_ok, n, 0)
    orient_re, orient_im, _, _, _, _ = _synthesise(coefficients, fields, columns_ok, n, 1)
    inverse_norm = 1.0 / tl.sqrt(orient_re * orient_re + orient_im * orient_im + eps)
    out = (value_re * orient_re + value_im * orient_im) * inverse_norm
    tl.store(out_ptr + sample_filter * n + columns, out, mask=columns_ok)


@triton.jit
def _energy_kernel(
    grad_ptr, coefficient_ptr, field_ptr, energy_ptr, rank, n, tiles, BLOCK_N: tl.constexpr
):
    sample_filter = tl.program_id(0).to(tl.int64)
    tile = tl.program_id(1)
    columns = tile * BLOCK_N + tl.arange(0, BLOCK_N)
    columns_ok = columns < n
    coefficients = coefficient_ptr + sample_filter * 20
    fields = field_ptr + (sample_filter % rank) * 8 * n + columns
    value_re, value_im, _, _, _, _ = _synthesise(coefficients, fields, columns_ok, n, 0)
    grad = tl.load(grad_ptr + sample_filter * n + columns, mask=columns_ok, other=0.0)
    grad = grad.to(tl.float32)
    energy = tl.sum(grad * grad * (value_re * value_re + value_im * value_im), axis=0)
    tl.store(energy_ptr + sample_filter * tiles + tile, energy)


@triton.jit
def _store_coefficient_grad(partial_ptr, grad_re, grad_im, f0, f1, f2, f3, part: tl.constexpr):
    """Σ_n of one part's gradient against its fields (and alone, for the bias)."""
    re_ptr = partial_ptr + part * 10
    tl.store(re_ptr, tl.sum(grad_re * f0, axis=0))
    tl.store(re_ptr + 1, tl.sum(grad_re * f1, axis=0))
    tl.store(re_ptr + 2, tl.sum(grad_re * f2, axis=0))
    tl.store(re_ptr + 3, tl.sum(grad_re * f3, axis=0))
    tl.store(re_ptr + 4, tl.sum(grad_re, axis=0))
    tl.store(re_ptr + 5, tl.sum(grad_im * f0, axis=0))
    tl.store(re_ptr + 6, tl.sum(grad_im * f1, axis=0))
    tl.store(re_ptr + 7, tl.sum(grad_im * f2, axis=0))
    tl.store(re_ptr + 8, tl.sum(grad_im * f3, axis=0))
    tl.store(re_ptr + 9, tl.sum(grad_im, axis=0))


@triton.jit
def _oriented_backward_kernel(
    grad_ptr,
    coefficient_ptr,
    field_ptr,
    bgn_scale_ptr,
    grad_coefficient_ptr,
    grad_field_ptr,
    batch,
    rank,
    n,
    tiles,
    eps,
    BLOCK_N: tl.constexpr,
):
    k = tl.program_id(0).to(tl.int64)
    tile = tl.program_id(1)
    columns = tile * BLOCK_N + tl.arange(0, BLOCK_N)
    columns_ok = columns < n
    fields = field_ptr + k * 8 * n + columns
    # The fields' gradient, rows (part, j), accumulated over the batch.
    g00 = tl.zeros((BLOCK_N,), dtype=tl.float32)
    g01 = tl.zeros((BLOCK_N,), dtype=tl.float32)
    g02 = tl.zeros((BLOCK_N,), dtype=tl.float32)
    g03 = tl.zeros((BLOCK_N,), dtype=tl.float32)
    g10 = tl.zeros((BLOCK_N,), dtype=tl.float32)
    g11 = tl.zeros((BLOCK_N,), dtype=tl.float32)
    g12 = tl.zeros((BLOCK_N,), dtype=tl.float32)
    g13 = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for sample in range(batch):
        sample_filter = sample * rank + k
        coefficients = coefficient_ptr + sample_filter * 20
        value_re, value_im, v0, v1, v2, v3 = _synthesise(coefficients, fields, columns_ok, n, 0)
        orient_re, orient_im, o0, o1, o2, o3 = _synthesise(coefficients, fields, columns_ok, n, 1)
        grad = tl.load(grad_ptr + sample_filter * n + columns, mask=columns_ok, other=0.0)
        grad = grad.to(tl.float32)
        inverse_norm = 1.0 / tl.sqrt(orient_re * orient_re + orient_im * orient_im + eps)
        out = (value_re * orient_re + value_im * orient_im) * inverse_norm
        # d w / d value = o; the orientation's gradient g value, BGN-scaled, through
        # o = orient rho: rho (value - o w) g scale.
        grad_rho = grad * inverse_norm
        grad_value_re = grad_rho * orient_re
        grad_value_im = grad_rho * orient_im
        grad_rho_scaled = grad_rho * tl.load(bgn_scale_ptr + sample).to(tl.float32)
        rho_w = inverse_norm * out
        grad_orient_re = (value_re - orient_re * rho_w) * grad_rho_scaled
        grad_orient_im = (value_im - orient_im * rho_w) * grad_rho_scaled
        partial = grad_coefficient_ptr + (sample_filter * tiles + tile) * 20
        _store_coefficient_grad(partial, grad_value_re, grad_value_im, v0, v1, v2, v3, 0)
        _store_coefficient_grad(partial, grad_orient_re, grad_orient_im, o0, o1, o2, o3, 1)
        re_ptr = coefficients
        im_ptr = coefficients + 5
        g00 += grad_value_re * tl.load(re_ptr) + grad_value_im * tl.load(im_ptr)
        g01 += grad_value_re * tl.load(re_ptr + 1) + grad_value_im * tl.load(im_ptr + 1)
        g02 += grad_value_re * tl.load(re_ptr + 2) + grad_value_im * tl.load(im_ptr + 2)
        g03 += grad_value_re * tl.load(re_ptr + 3) + grad_value_im * tl.load(im_ptr + 3)
        re_ptr = coefficients + 10
        im_ptr = coefficients + 15
        g10 += grad_orient_re * tl.load(re_ptr) + grad_orient_im * tl.load(im_ptr)
        g11 += grad_orient_re * tl.load(re_ptr + 1) + grad_orient_im * tl.load(im_ptr + 1)
        g12 += grad_orient_re * tl.load(re_ptr + 2) + grad_orient_im * tl.load(im_ptr + 2)
        g13 += grad_orient_re * tl.load(re_ptr + 3) + grad_orient_im * tl.load(im_ptr + 3)
    out_fields = grad_field_ptr + k * 8 * n + columns
    tl.store(out_fields, g00, mask=columns_ok)
    tl.store(out_fields + n, g01, mask=columns_ok)
    tl.store(out_fields + 2 * n, g02, mask=columns_ok)
    tl.store(out_fields + 3 * n, g03, mask=columns_ok)
    tl.store(out_fields + 4 * n, g10, mask=columns_ok)
    tl.store(out_fields + 5 * n, g11, mask=columns_ok)
    tl.store(out_fields + 6 * n, g12, mask=columns_ok)
    tl.store(out_fields + 7 * n, g13, mask=columns_ok)


def _block(n: int) -> int:
    return min(_BLOCK_N, max(16, triton.next_power_of_2(n)))


@torch.library.custom_op("dyna::delta_oriented_value", mutates_args=())
def oriented_value(
    coefficients: torch.Tensor, fields: torch.Tensor, eps: float, bgn_eps: float
) -> torch.Tensor:
    """``Re(v_value conj(v_orient / |v_orient|_eps))`` of the synthesised fields, one kernel.

    ``bgn_eps`` is the orientation BGN's eps, kept for the backward.

    Shape:
        - coefficients: (B, r, 2, 2, 5) (part, component, four field weights and a bias);
          fields: (r, 2, 4, N) (part, (z1_re, z1_im, z2_re, z2_im)); both contiguous.
        - Output: (B, r, N) in the coefficients' dtype.
    """
    batch, rank = coefficients.shape[:2]
    n = fields.shape[-1]
    out = torch.empty(batch, rank, n, device=coefficients.device, dtype=torch.float32)
    if out.numel():
        block = _block(n)
        _oriented_kernel[(batch * rank, triton.cdiv(n, block))](
            coefficients, fields, out, rank, n, eps, BLOCK_N=block
        )
    return out.to(coefficients.dtype)


@oriented_value.register_fake
def _oriented_value_fake(coefficients, fields, eps, bgn_eps):
    return coefficients.new_empty(coefficients.shape[0], coefficients.shape[1], fields.shape[-1])


@torch.library.custom_op("dyna::delta_oriented_value_backward", mutates_args=())
def oriented_value_backward(
    grad: torch.Tensor, coefficients: torch.Tensor, fields: torch.Tensor, eps: float, bgn_eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of :func:`oriented_value` for (coefficients, fields), BGN on the orientation."""
    batch, rank = coefficients.shape[:2]
    n = fields.shape[-1]
    grad = grad.contiguous()
    block = _block(n)
    tiles = triton.cdiv(n, block)
    energy = torch.empty(batch, rank * tiles, device=grad.device, dtype=torch.float32)
    _energy_kernel[(batch * rank, tiles)](
        grad, coefficients, fields, energy, rank, n, tiles, BLOCK_N=block
    )
    # BGN of the gradient reaching o (g value), per sample over r, N and both components.
    bgn_scale = math.sqrt(2 * rank * n) / (energy.sum(dim=1).sqrt() + bgn_eps)
    partial = torch.empty(batch, rank, tiles, 20, device=grad.device, dtype=torch.float32)
    grad_fields = torch.empty(fields.shape, device=grad.device, dtype=torch.float32)
    _oriented_backward_kernel[(rank, tiles)](
        grad,
        coefficients,
        fields,
        bgn_scale,
        partial,
        grad_fields,
        batch,
        rank,
        n,
        tiles,
        eps,
        BLOCK_N=block,
    )
    grad_coefficients = partial.sum(dim=2).view(coefficients.shape)
    return grad_coefficients.to(coefficients.dtype), grad_fields.to(fields.dtype)


@oriented_value_backward.register_fake
def _oriented_value_backward_fake(grad, coefficients, fields, eps, bgn_eps):
    return torch.empty_like(coefficients), torch.empty_like(fields)


def _setup_context(ctx, inputs, output):
    coefficients, fields, eps, bgn_eps = inputs
    ctx.save_for_backward(coefficients, fields)
    ctx.constants = (eps, bgn_eps)


def _backward(ctx, grad):
    coefficients, fields = ctx.saved_tensors
    grad_coefficients, grad_fields = oriented_value_backward(
        grad, coefficients, fields, *ctx.constants
    )
    return grad_coefficients, grad_fields, None, None


oriented_value.register_autograd(_backward, setup_context=_setup_context)
