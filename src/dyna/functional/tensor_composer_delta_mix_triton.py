# Triton kernels annotate only their compile-time constants (tl.constexpr).
# mypy: disable-error-code="no-untyped-def"
"""Triton kernels of the Delta composer's decorrelation and mixture, forward and backward.

For the stabilised bank x (B, r, N), the mixture weights pi (B, r) and, in training, standard
normal draws e (B, r, N) (drawn in torch and passed in, so both paths see the same numbers):

    G = offdiag(x x^T),    f = lift(x - a G x),    lift(f) = sign(f) max(|f|, eps)
    f' = f + sigma (e (std_N(f) + eps) + mean_N(f)),    out[b, n] = sum_k pi[b, k] f'[b, k, n]

The Gram matrix is a reduction over N that the repulsion needs before any f exists, so x is
read twice:

- forward, first kernel: per (b, column tile) the tile's partial x x^T (no atomics: the (B,
  tiles, r, r) partials are summed in torch, deterministically);
- forward, second kernel: per (b, tile) f from x and G, the tile's ``sum_k pi_k f_k`` and, with
  noise, the tile's mean and centred sum of squares of each f_k (combined over tiles with Chan's
  formula, stable where sums of squares are not); without noise this is the output;
- forward, third kernel (noise only): ``out += sum_k sigma pi_k (std_k + eps) e_k + shift``, the
  one read of e.

The backward follows the torch path (``_DecorrelateMix`` in
:mod:`dyna.functional.tensor_composer_delta`): the filters' gradient is ``pi (x) g``, so
everything up to the bank's gradient lives on (B, r) and (B, r, r) factors. A first kernel
reduces per tile ``sum_n f_k g``, ``sum_n x_k g``, ``sum_n e_k g``, ``sum_n g`` and
``sum_n g^2``; the factors are a few small torch ops; a second kernel writes
``grad_x = c (x) g + S x`` (c the BGN-scaled coefficients, S the Gram matrix's symmetrised
gradient). Everything is computed in float32. :func:`dyna.functional.delta_decorrelate_mix_ref`
is the specification.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from dyna.functional._backend import prepare_interpreter

prepare_interpreter()

# A program holds (r, r, BLOCK_N) products for the Gram matrix and the repulsion: larger ranks
# run the torch path.
MAX_RANK = 16
# Elements of that (r, r, BLOCK_N) block, and the widest column tile.
_PRODUCT_ELEMENTS = 4096
_MAX_BLOCK_N = 256


@triton.jit
def _load_bank(x_ptr, rows, columns, rank, n):
    """x[b] at (rows, columns) as float32, zeros outside; x_ptr at x[b]."""
    inside = (rows < rank)[:, None] & (columns < n)[None, :]
    offsets = rows[:, None] * n + columns[None, :]
    return tl.load(x_ptr + offsets, mask=inside, other=0.0).to(tl.float32)


@triton.jit
def _load_square(matrix_ptr, rows, rank, BLOCK_R: tl.constexpr):
    """matrix[rows, :] (BLOCK_R, BLOCK_R) of an (r, r) matrix at matrix_ptr, zeros outside."""
    columns_r = tl.arange(0, BLOCK_R)
    inside = (rows < rank)[:, None] & (columns_r < rank)[None, :]
    return tl.load(matrix_ptr + rows[:, None] * rank + columns_r[None, :], mask=inside, other=0.0)


@triton.jit
def _lifted_filters(x, gram_ptr, rows, rank, repulsion, eps, BLOCK_R: tl.constexpr):
    """lift(x - a G x) of one tile: x (BLOCK_R, BLOCK_N) float32, gram_ptr at G[b]."""
    gram = _load_square(gram_ptr, rows, rank, BLOCK_R)
    repelled = tl.sum(gram[:, :, None] * x[None, :, :], axis=1)
    filters = x - repulsion * repelled
    # sign(f) max(|f|, eps): an exact zero (and the padding) stays zero.
    sign = tl.where(filters > 0, 1.0, tl.where(filters < 0, -1.0, 0.0))
    return sign * tl.maximum(tl.abs(filters), eps)


@triton.jit
def _filters_tile(
    x_ptr, gram_ptr, rank, n, repulsion, eps, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr
):
    """This program's tile of sample program_id(0), columns tile program_id(1).

    Returns (sample, tile, rows (BLOCK_R,), rows_ok, columns (BLOCK_N,), columns_ok, x, filters),
    x and the lifted filters (BLOCK_R, BLOCK_N) float32.
    """
    sample = tl.program_id(0).to(tl.int64)
    tile = tl.program_id(1)
    rows = tl.arange(0, BLOCK_R)
    rows_ok = rows < rank
    columns = tile * BLOCK_N + tl.arange(0, BLOCK_N)
    columns_ok = columns < n
    x = _load_bank(x_ptr + sample * rank * n, rows, columns, rank, n)
    filters = _lifted_filters(
        x, gram_ptr + sample * rank * rank, rows, rank, repulsion, eps, BLOCK_R
    )
    return sample, tile, rows, rows_ok, columns, columns_ok, x, filters


@triton.jit
def _gram_kernel(x_ptr, partial_ptr, rank, n, tiles, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr):
    sample = tl.program_id(0).to(tl.int64)
    tile = tl.program_id(1)
    rows = tl.arange(0, BLOCK_R)
    columns = tile * BLOCK_N + tl.arange(0, BLOCK_N)
    x = _load_bank(x_ptr + sample * rank * n, rows, columns, rank, n)
    partial = tl.sum(x[:, None, :] * x[None, :, :], axis=2)  # (BLOCK_R, BLOCK_R)
    columns_r = tl.arange(0, BLOCK_R)
    inside = (rows < rank)[:, None] & (columns_r < rank)[None, :]
    offsets = (sample * tiles + tile) * rank * rank + rows[:, None] * rank + columns_r[None, :]
    tl.store(partial_ptr + offsets, partial, mask=inside)


@triton.jit
def _mix_kernel(
    x_ptr,
    gram_ptr,
    mixing_ptr,
    out_ptr,
    moments_ptr,
    rank,
    n,
    tiles,
    repulsion,
    eps,
    HAS_NOISE: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    sample, tile, rows, rows_ok, columns, columns_ok, _x, filters = _filters_tile(
        x_ptr, gram_ptr, rank, n, repulsion, eps, BLOCK_R, BLOCK_N
    )
    mixing = tl.load(mixing_ptr + sample * rank + rows, mask=rows_ok, other=0.0).to(tl.float32)
    mixed = tl.sum(mixing[:, None] * filters, axis=0)
    tl.store(out_ptr + sample * n + columns, mixed, mask=columns_ok)
    if HAS_NOISE:
        # The tile's mean and centred sum of squares per filter (padding columns are zero).
        count = tl.minimum(n - tile * BLOCK_N, BLOCK_N).to(tl.float32)
        mean = tl.sum(filters, axis=1) / count
        centred = tl.where(columns_ok[None, :], filters - mean[:, None], 0.0)
        moments = moments_ptr + ((sample * tiles + tile) * rank + rows) * 2
        tl.store(moments, mean, mask=rows_ok)
        tl.store(moments + 1, tl.sum(centred * centred, axis=1), mask=rows_ok)


@triton.jit
def _noise_kernel(
    noise_ptr,
    scale_ptr,
    shift_ptr,
    out_ptr,
    rank,
    n,
    BLOCK_R: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    sample = tl.program_id(0).to(tl.int64)
    rows = tl.arange(0, BLOCK_R)
    columns = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    columns_ok = columns < n
    noise = _load_bank(noise_ptr + sample * rank * n, rows, columns, rank, n)
    scale = tl.load(scale_ptr + sample * rank + rows, mask=rows < rank, other=0.0)
    out = tl.load(out_ptr + sample * n + columns, mask=columns_ok, other=0.0)
    out += tl.sum(scale[:, None] * noise, axis=0) + tl.load(shift_ptr + sample)
    tl.store(out_ptr + sample * n + columns, out, mask=columns_ok)


@triton.jit
def _backward_sums_kernel(
    grad_ptr,
    x_ptr,
    gram_ptr,
    noise_ptr,
    sums_ptr,
    rank,
    n,
    tiles,
    repulsion,
    eps,
    HAS_NOISE: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    sample, tile, rows, rows_ok, columns, columns_ok, x, filters = _filters_tile(
        x_ptr, gram_ptr, rank, n, repulsion, eps, BLOCK_R, BLOCK_N
    )
    grad = tl.load(grad_ptr + sample * n + columns, mask=columns_ok, other=0.0).to(tl.float32)
    # Per tile, rows of (sum f g, sum x g, sum e g) over r, then sum g and sum g^2.
    sums = sums_ptr + (sample * tiles + tile) * (3 * rank + 2)
    tl.store(sums + rows, tl.sum(filters * grad[None, :], axis=1), mask=rows_ok)
    tl.store(sums + rank + rows, tl.sum(x * grad[None, :], axis=1), mask=rows_ok)
    if HAS_NOISE:
        noise = _load_bank(noise_ptr + sample * rank * n, rows, columns, rank, n)
        tl.store(sums + 2 * rank + rows, tl.sum(noise * grad[None, :], axis=1), mask=rows_ok)
    tl.store(sums + 3 * rank, tl.sum(grad, axis=0))
    tl.store(sums + 3 * rank + 1, tl.sum(grad * grad, axis=0))


@triton.jit
def _backward_bank_kernel(
    grad_ptr,
    x_ptr,
    coefficient_ptr,
    symmetric_ptr,
    grad_x_ptr,
    rank,
    n,
    BLOCK_R: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    sample = tl.program_id(0).to(tl.int64)
    rows = tl.arange(0, BLOCK_R)
    rows_ok = rows < rank
    columns = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    columns_ok = columns < n
    x = _load_bank(x_ptr + sample * rank * n, rows, columns, rank, n)
    grad = tl.load(grad_ptr + sample * n + columns, mask=columns_ok, other=0.0).to(tl.float32)
    coefficient = tl.load(coefficient_ptr + sample * rank + rows, mask=rows_ok, other=0.0)
    symmetric = _load_square(symmetric_ptr + sample * rank * rank, rows, rank, BLOCK_R)
    grad_x = coefficient[:, None] * grad[None, :] + tl.sum(
        symmetric[:, :, None] * x[None, :, :], axis=1
    )
    inside = rows_ok[:, None] & columns_ok[None, :]
    offsets = sample * rank * n + rows[:, None] * n + columns[None, :]
    tl.store(grad_x_ptr + offsets, grad_x, mask=inside)


def _blocks(rank: int, n: int) -> tuple[int, int]:
    """(BLOCK_R, BLOCK_N): the padded rank and a column tile of at most 4096 r^2-products."""
    block_r = max(2, triton.next_power_of_2(rank))
    block_n = min(_MAX_BLOCK_N, max(16, _PRODUCT_ELEMENTS // (block_r * block_r)))
    return block_r, min(block_n, max(16, triton.next_power_of_2(n)))


def _gram(x: torch.Tensor, block_r: int, block_n: int) -> torch.Tensor:
    """offdiag(x x^T) (B, r, r) float32 of a contiguous (B, r, N) bank."""
    batch, rank, n = x.shape
    tiles = triton.cdiv(n, block_n)
    partial = torch.empty(batch, tiles, rank, rank, device=x.device, dtype=torch.float32)
    _gram_kernel[(batch, tiles)](x, partial, rank, n, tiles, BLOCK_R=block_r, BLOCK_N=block_n)
    off_diagonal = ~torch.eye(rank, dtype=torch.bool, device=x.device)
    return partial.sum(dim=1).mul_(off_diagonal)


@torch.library.custom_op("dyna::delta_decorrelate_mix", mutates_args=())
def decorrelate_mix(
    raw: torch.Tensor,
    mixing: torch.Tensor,
    noise: torch.Tensor | None,
    repulsion: float,
    penalty_strength: float,
    noise_strength: float,
    eps: float,
    bgn_eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The mixture ``sum_k pi_k f'_k`` and what its backward keeps (see the module docstring).

    ``penalty_strength`` and ``bgn_eps`` act in the backward only.

    Shape:
        - raw: (B, r, N), r <= ``MAX_RANK``; mixing: (B, r); noise: (B, r, N) or None; all
          contiguous.
        - Output: (B, N) in raw's dtype; the Gram matrix offdiag(x x^T) (B, r, r) float32; the
          filters' (mean, std) over N (B, r, 2) float32, zeros without noise.
    """
    batch, rank, n = raw.shape
    out = torch.empty(batch, n, device=raw.device, dtype=torch.float32)
    statistics = torch.zeros(batch, rank, 2, device=raw.device, dtype=torch.float32)
    if out.numel() == 0:
        gram = torch.zeros(batch, rank, rank, device=raw.device, dtype=torch.float32)
        return out.to(raw.dtype), gram, statistics
    block_r, block_n = _blocks(rank, n)
    tiles = triton.cdiv(n, block_n)
    gram = _gram(raw, block_r, block_n)
    has_noise = noise is not None
    moments = torch.empty(
        batch, tiles if has_noise else 0, rank, 2, device=raw.device, dtype=torch.float32
    )
    _mix_kernel[(batch, tiles)](
        raw,
        gram,
        mixing,
        out,
        moments,
        rank,
        n,
        tiles,
        repulsion,
        eps,
        HAS_NOISE=has_noise,
        BLOCK_R=block_r,
        BLOCK_N=block_n,
    )
    if noise is not None:
        # Chan's combination of the tiles' means and centred sums of squares.
        counts = (n - torch.arange(tiles, device=raw.device) * block_n).clamp_(max=block_n)
        counts = counts.to(torch.float32).view(1, tiles, 1)
        tile_mean, tile_squares = moments.unbind(-1)  # (B, tiles, r)
        mean = (tile_mean * counts).sum(dim=1) / n
        squares = tile_squares.sum(dim=1) + ((tile_mean - mean.unsqueeze(1)).square() * counts).sum(
            dim=1
        )
        std = (squares / (n - 1)).sqrt()
        statistics = torch.stack((mean, std), dim=-1)
        mixing32 = mixing.to(torch.float32)
        scale = (std + eps) * mixing32 * noise_strength
        shift = (mean * mixing32).sum(dim=1) * noise_strength
        _noise_kernel[(batch, tiles)](
            noise, scale, shift, out, rank, n, BLOCK_R=block_r, BLOCK_N=block_n
        )
    return out.to(raw.dtype), gram, statistics


@decorrelate_mix.register_fake
def _decorrelate_mix_fake(
    raw, mixing, noise, repulsion, penalty_strength, noise_strength, eps, bgn_eps
):
    batch, rank, n = raw.shape
    return (
        raw.new_empty(batch, n),
        raw.new_empty(batch, rank, rank, dtype=torch.float32),
        raw.new_empty(batch, rank, 2, dtype=torch.float32),
    )


@torch.library.custom_op("dyna::delta_decorrelate_mix_backward", mutates_args=())
def decorrelate_mix_backward(
    grad: torch.Tensor,
    raw: torch.Tensor,
    mixing: torch.Tensor,
    noise: torch.Tensor | None,
    gram: torch.Tensor,
    statistics: torch.Tensor,
    repulsion: float,
    penalty_strength: float,
    noise_strength: float,
    eps: float,
    bgn_eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of :func:`decorrelate_mix` for (raw, mixing); BGN on the bank's gradient."""
    batch, rank, n = raw.shape
    if grad.numel() == 0:
        return torch.zeros_like(raw), torch.zeros_like(mixing)
    grad = grad.contiguous()
    block_r, block_n = _blocks(rank, n)
    tiles = triton.cdiv(n, block_n)
    sums = torch.zeros(batch, tiles, 3 * rank + 2, device=raw.device, dtype=torch.float32)
    has_noise = noise is not None
    _backward_sums_kernel[(batch, tiles)](
        grad,
        raw,
        gram,
        noise if noise is not None else raw,
        sums,
        rank,
        n,
        tiles,
        repulsion,
        eps,
        HAS_NOISE=has_noise,
        BLOCK_R=block_r,
        BLOCK_N=block_n,
    )
    sums = sums.sum(dim=1)
    # (B, 3r + 2) -> sum f g, sum x g, sum e g (each (B, r)), sum g, sum g^2 (each (B, 1)).
    filters_grad, projected, noise_grad, grad_sum, grad_squares = sums.split(
        (rank, rank, rank, 1, 1), dim=1
    )
    mixing32 = mixing.to(torch.float32)
    # d out / d pi_k = sum_n f'_k g, with f'_k = f_k + sigma ((std_k + eps) e_k + mean_k).
    grad_mixing = filters_grad
    if has_noise:
        mean, std = statistics.unbind(-1)
        grad_mixing = grad_mixing + noise_strength * ((std + eps) * noise_grad + mean * grad_sum)
    # As in the torch path: f = x - a G x reaches x as (pi - a G^T pi) (x) g and G as
    # -a pi (x) (x g), plus the straight-through penalty's lambda (2 / r) (pi sum_n g) G.
    coefficient = mixing32 - repulsion * torch.bmm(
        gram.transpose(1, 2), mixing32.unsqueeze(-1)
    ).squeeze(-1)
    grad_gram = torch.einsum("bi,bj->bij", mixing32, projected).mul_(-repulsion)
    grad_penalty = mixing32 * grad_sum * penalty_strength
    grad_gram.addcmul_(grad_penalty.unsqueeze(-1), gram, value=2.0 / rank)
    grad_gram.mul_(~torch.eye(rank, dtype=torch.bool, device=raw.device))
    symmetric = grad_gram + grad_gram.transpose(1, 2)
    # BGN of coefficient (x) g per sample: its norm is ||coefficient|| ||g||.
    norm = torch.linalg.vector_norm(coefficient, dim=-1, keepdim=True) * grad_squares.sqrt()
    coefficient = coefficient * (math.sqrt(rank * n) / (norm + bgn_eps))
    grad_raw = torch.empty(raw.shape, device=raw.device, dtype=torch.float32)
    _backward_bank_kernel[(batch, tiles)](
        grad,
        raw,
        coefficient.contiguous(),
        symmetric.contiguous(),
        grad_raw,
        rank,
        n,
        BLOCK_R=block_r,
        BLOCK_N=block_n,
    )
    return grad_raw.to(raw.dtype), grad_mixing.to(mixing.dtype)


@decorrelate_mix_backward.register_fake
def _decorrelate_mix_backward_fake(grad, raw, mixing, noise, gram, statistics, *constants):
    return torch.empty_like(raw), torch.empty_like(mixing)


def _setup_context(ctx, inputs, output):
    raw, mixing, noise, *constants = inputs
    _, gram, statistics = output
    ctx.save_for_backward(raw, mixing, noise, gram, statistics)
    ctx.constants = constants


def _backward(ctx, grad, grad_gram, grad_statistics):
    raw, mixing, noise, gram, statistics = ctx.saved_tensors
    grad_raw, grad_mixing = decorrelate_mix_backward(
        grad, raw, mixing, noise, gram, statistics, *ctx.constants
    )
    return grad_raw, grad_mixing, None, None, None, None, None, None


decorrelate_mix.register_autograd(_backward, setup_context=_setup_context)
