# Triton kernels annotate only their compile-time constants (tl.constexpr).
# mypy: disable-error-code="no-untyped-def"
"""Triton kernels of the Delta composer's stabiliser (:func:`~dyna.functional.stabilize`).

For x of shape (B, ..., W), viewed as rows of W, with ``l = leak x``:

    z = (sigmoid(x) + l) (siglog(x) + l),    s = (mean_w |z| + eps)^(-1/2),    y = z s

with backward gradient normalisation (BGN) per sample at the input, after the gate and at the
output. The forward is one kernel over blocks of whole rows; it saves only x. The backward
recomputes z and s from x in one kernel over the same blocks. The three BGNs are per-sample
scalars, and with the gradient g reaching y the chain is

    G = g s − s³/(2W) (Σ_w g z) sign(z),    D = (1/(|x|^p + 1) + leak) gate + (gate' ) value
    ∂x = G D · k,    k = c sqrt(n) / (c ||G D|| + ε),    c = a sqrt(n) / (a ||G|| + ε),
    a = sqrt(n) / (||g|| + ε)

(n the elements per sample, ε the BGN eps, norms per sample, 1/(|x|^p + 1) siglog's surrogate
slope, gate' = sigmoid (1 − sigmoid) + leak), so the kernel writes G D and the row sums of g²,
G² and (G D)²; the per-sample factor k is a few (B,)-sized torch ops and one multiply. No
atomics; everything is computed in float32. :func:`dyna.functional.stabilize_ref` is the
specification.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from dyna.functional._backend import prepare_interpreter

prepare_interpreter()

# Rows are held whole: wider rows run the torch path.
MAX_WIDTH = 4096
# Elements one program holds per tensor (rows x padded width).
_BLOCK_ELEMENTS = 2048


@triton.jit
def _stabilizer_terms(x, leak, siglog_eps):
    """(sigmoid, gate, value, z) of the compressor at x (float32 blocks)."""
    sigmoid = tl.sigmoid(x)
    leak_term = x * leak
    gate = sigmoid + leak_term
    # siglog: s(x) (ln(|x| + e + eps) - 1) with s(0) = -1; e and eps added one after the other.
    log_term = tl.log(tl.abs(x) + 2.718281828459045 + siglog_eps) - 1.0
    value = tl.where(x > 0, log_term, -log_term) + leak_term
    return sigmoid, gate, value, gate * value


@triton.jit
def _stabilized_rows(
    x_ptr, rows, width, eps, leak, siglog_eps, BLOCK_R: tl.constexpr, BLOCK_W: tl.constexpr
):
    """The compressor over this program's BLOCK_R rows of width W.

    Returns row (BLOCK_R,), row_ok, inside and offsets (BLOCK_R, BLOCK_W), x, sigmoid, gate,
    value, z (zero outside) as float32 (BLOCK_R, BLOCK_W) and scale 1 / sqrt(mean_w |z| + eps)
    (BLOCK_R,).
    """
    row = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = row < rows
    column = tl.arange(0, BLOCK_W)
    inside = row_ok[:, None] & (column < width)[None, :]
    offsets = row[:, None] * width + column[None, :]
    x = tl.load(x_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
    sigmoid, gate, value, z = _stabilizer_terms(x, leak, siglog_eps)
    z = tl.where(inside, z, 0.0)
    scale = 1.0 / tl.sqrt(tl.sum(tl.abs(z), axis=1) / width + eps)
    return row, row_ok, inside, offsets, x, sigmoid, gate, value, z, scale


@triton.jit
def _stabilize_kernel(
    x_ptr,
    out_ptr,
    rows,
    width,
    eps,
    leak,
    siglog_eps,
    BLOCK_R: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    _, _, inside, offsets, _, _, _, _, z, scale = _stabilized_rows(
        x_ptr, rows, width, eps, leak, siglog_eps, BLOCK_R, BLOCK_W
    )
    tl.store(out_ptr + offsets, z * scale[:, None], mask=inside)


@triton.jit
def _stabilize_backward_kernel(
    grad_ptr,
    x_ptr,
    chain_ptr,
    sums_ptr,
    rows,
    width,
    eps,
    leak,
    siglog_eps,
    BLOCK_R: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    row, row_ok, inside, offsets, x, sigmoid, gate, value, z, scale = _stabilized_rows(
        x_ptr, rows, width, eps, leak, siglog_eps, BLOCK_R, BLOCK_W
    )
    grad = tl.load(grad_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
    # y = z s: dz = g s - s^3 / (2 W) sum_w(g z) sign(z)
    weighted = tl.sum(grad * z, axis=1) * scale * scale * scale * (-0.5 / width)
    sign = tl.where(z > 0, 1.0, tl.where(z < 0, -1.0, 0.0))
    grad_z = grad * scale[:, None] + weighted[:, None] * sign
    # z = gate * value: siglog's surrogate slope 1 / (|x|^p + 1), p = 1 + sqrt(|x|) below one.
    magnitude = tl.abs(x)
    # |x|^p through exp2/log2 where 0 < |x| < 1 (0^p = 0; p = 1 from one on).
    fractional = (magnitude < 1.0) & (magnitude > 0.0)
    exponent = 1.0 + tl.sqrt(magnitude)
    power = tl.exp2(exponent * tl.log2(tl.where(fractional, magnitude, 1.0)))
    power = tl.where(fractional, power, tl.where(magnitude >= 1.0, magnitude, 0.0))
    value_slope = 1.0 / (power + 1.0) + leak
    gate_slope = sigmoid - sigmoid * sigmoid + leak
    chain = grad_z * (value_slope * gate + gate_slope * value)
    chain = tl.where(inside, chain, 0.0)
    tl.store(chain_ptr + offsets, chain, mask=inside)
    sums = sums_ptr + row * 3
    tl.store(sums, tl.sum(grad * grad, axis=1), mask=row_ok)
    tl.store(sums + 1, tl.sum(grad_z * grad_z, axis=1), mask=row_ok)
    tl.store(sums + 2, tl.sum(chain * chain, axis=1), mask=row_ok)


def _blocks(width: int) -> tuple[int, int, int]:
    """(rows, padded width, warps) of one program: 8 elements per thread and tensor at most."""
    block_w = max(16, triton.next_power_of_2(width))
    block_r = max(1, _BLOCK_ELEMENTS // block_w)
    return block_r, block_w, max(4, min(32, block_r * block_w // 256))


def _launch(
    kernel: triton.JITFunction,
    tensors: tuple[torch.Tensor, ...],
    rows: int,
    width: int,
    *scalars: float,
) -> None:
    """Run a row kernel of this module over ``rows`` rows of ``width`` (one launch).

    The kernel takes the tensors, then the rows, the width and the scalars (eps, leak,
    siglog_eps), then BLOCK_R and BLOCK_W.
    """
    block_r, block_w, warps = _blocks(width)
    kernel[(triton.cdiv(rows, block_r),)](
        *tensors, rows, width, *scalars, BLOCK_R=block_r, BLOCK_W=block_w, num_warps=warps
    )


@torch.library.custom_op("dyna::stabilize", mutates_args=())
def stabilize(
    x: torch.Tensor, eps: float, leak: float, bgn_eps: float, siglog_eps: float
) -> torch.Tensor:
    """The compressor's forward, ``z / sqrt(mean_w |z| + eps)``, in one kernel.

    ``bgn_eps`` is the BGNs' eps, kept for the backward.

    Shape:
        - x: (B, ..., W) contiguous, W <= ``MAX_WIDTH``.
        - Output: like x, in x's dtype.
    """
    width = x.shape[-1]
    rows = x.numel() // width if width else 0
    out = torch.empty(x.shape, device=x.device, dtype=torch.float32)
    if rows:
        _launch(_stabilize_kernel, (x, out), rows, width, eps, leak, siglog_eps)
    return out.to(x.dtype)


@stabilize.register_fake
def _stabilize_fake(x, eps, leak, bgn_eps, siglog_eps):
    return torch.empty_like(x)


@torch.library.custom_op("dyna::stabilize_backward", mutates_args=())
def stabilize_backward(
    grad: torch.Tensor, x: torch.Tensor, eps: float, leak: float, bgn_eps: float, siglog_eps: float
) -> torch.Tensor:
    """Gradient of :func:`stabilize` with its three per-sample BGNs (see the module docstring)."""
    batch, width = x.shape[0], x.shape[-1]
    rows = x.numel() // width if width else 0
    if not rows:
        return torch.zeros_like(x)
    grad = grad.contiguous()
    chain = torch.empty(x.shape, device=x.device, dtype=torch.float32)
    sums = torch.empty(rows, 3, device=x.device, dtype=torch.float32)
    _launch(_stabilize_backward_kernel, (grad, x, chain, sums), rows, width, eps, leak, siglog_eps)
    norms = sums.view(batch, -1, 3).sum(dim=1).sqrt()  # per sample: ||g||, ||G||, ||G D||
    root = math.sqrt(rows // batch * width)
    output_scale = root / (norms[:, 0] + bgn_eps)
    mid_scale = output_scale * root / (output_scale * norms[:, 1] + bgn_eps)
    input_scale = mid_scale * root / (mid_scale * norms[:, 2] + bgn_eps)
    chain.mul_(input_scale.view(batch, *([1] * (x.dim() - 1))))
    return chain.to(x.dtype)


@stabilize_backward.register_fake
def _stabilize_backward_fake(grad, x, eps, leak, bgn_eps, siglog_eps):
    return torch.empty_like(x)


def _setup_context(ctx, inputs, output):
    x, eps, leak, bgn_eps, siglog_eps = inputs
    ctx.save_for_backward(x)
    ctx.constants = (eps, leak, bgn_eps, siglog_eps)


def _backward(ctx, grad):
    (x,) = ctx.saved_tensors
    eps, leak, bgn_eps, siglog_eps = ctx.constants
    return stabilize_backward(grad, x, eps, leak, bgn_eps, siglog_eps), None, None, None, None


stabilize.register_autograd(_backward, setup_context=_setup_context)
