# Triton kernels annotate only their compile-time constants (tl.constexpr).
# mypy: disable-error-code="no-untyped-def"
"""Triton kernels of the Möbius composer's projection, forward and backward.

    out[b, h, w] = Σ_c Re(u[b, c, h] v[b, c, w] conj(p[c, h, w]))
                 = Σ_c (u_re v_re − u_im v_im) p_re + (u_re v_im + u_im v_re) p_im

The (B, C, H, W) complex products are never stored: the forward runs one program per sample
and (H, W) tile with the C subspaces in its loop. The backward has two kernels:

- one program per (sample, subspace) for ∂u and ∂v: it walks the rows of the (H, W) plane in
  tiles of whole rows, reducing each row into ∂u and accumulating ∂v over the rows,
  ∂u_re = Σ_w g (v_re p_re + v_im p_im), ∂u_im = Σ_w g (v_re p_im − v_im p_re),
  ∂v_re = Σ_h g (u_re p_re + u_im p_im), ∂v_im = Σ_h g (u_re p_im − u_im p_re);
- one program per (subspace, H, W) tile for the planes, reducing over the batch,
  ∂p_re = Σ_b g (u_re v_re − u_im v_im), ∂p_im = Σ_b g (u_re v_im + u_im v_re).

No atomics: the results are deterministic. Everything is computed in float32. The forward and
the backward are one ``torch.library.custom_op`` each (``dyna::mobius_projection`` and its
backward) so that ``torch.compile`` keeps them whole.
:func:`dyna.functional.tensor_composer.mobius_projection_ref` is the specification.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from dyna.functional._backend import prepare_interpreter

prepare_interpreter()

_TILE = 32
# The ∂u/∂v kernel holds whole rows of the plane: wider planes run the torch path.
MAX_WIDTH = 1024


@triton.jit
def _load_complex(row_ptr, ok):
    """(real, imaginary) float32 of interleaved complex entries at row_ptr, zeros outside ok."""
    real = tl.load(row_ptr, mask=ok, other=0.0).to(tl.float32)
    imag = tl.load(row_ptr + 1, mask=ok, other=0.0).to(tl.float32)
    return real, imag


@triton.jit
def _plane_tile(height, width, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    """The (BLOCK_H, BLOCK_W) plane tile of programs (·, program_id(1), program_id(2)).

    Returns rows (BLOCK_H,), columns (BLOCK_W,), their masks, the tile mask and the offsets
    h·W + w (BLOCK_H, BLOCK_W) of its entries in one (H, W) plane.
    """
    rows = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    columns = tl.program_id(2) * BLOCK_W + tl.arange(0, BLOCK_W)
    rows_ok = rows < height
    columns_ok = columns < width
    inside = rows_ok[:, None] & columns_ok[None, :]
    plane_offsets = rows[:, None] * width + columns[None, :]
    return rows, columns, rows_ok, columns_ok, inside, plane_offsets


@triton.jit
def _factor_outer(u_ptr, v_ptr, slice_index, rows, columns, rows_ok, columns_ok, height, width):
    """Re and Im of u[slice, rows] v[slice, columns] (BLOCK_H, BLOCK_W), float32."""
    u_re, u_im = _load_complex(u_ptr + slice_index * height * 2 + rows * 2, rows_ok)
    v_re, v_im = _load_complex(v_ptr + slice_index * width * 2 + columns * 2, columns_ok)
    real = u_re[:, None] * v_re[None, :] - u_im[:, None] * v_im[None, :]
    imag = u_re[:, None] * v_im[None, :] + u_im[:, None] * v_re[None, :]
    return real, imag


@triton.jit
def _projection_kernel(
    u_ptr,
    v_ptr,
    plane_re_ptr,
    plane_im_ptr,
    out_ptr,
    subspaces,
    height,
    width,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    sample = tl.program_id(0).to(tl.int64)
    rows, columns, rows_ok, columns_ok, inside, plane_offsets = _plane_tile(
        height, width, BLOCK_H, BLOCK_W
    )
    accumulator = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
    for subspace in range(subspaces):
        slice_index = sample * subspaces + subspace
        real, imag = _factor_outer(
            u_ptr, v_ptr, slice_index, rows, columns, rows_ok, columns_ok, height, width
        )
        plane = subspace * height * width + plane_offsets
        p_re = tl.load(plane_re_ptr + plane, mask=inside, other=0.0).to(tl.float32)
        p_im = tl.load(plane_im_ptr + plane, mask=inside, other=0.0).to(tl.float32)
        accumulator += real * p_re + imag * p_im
    tl.store(out_ptr + sample * height * width + plane_offsets, accumulator, mask=inside)


@triton.jit
def _factor_grad_kernel(
    grad_ptr,
    u_ptr,
    v_ptr,
    plane_re_ptr,
    plane_im_ptr,
    grad_u_ptr,
    grad_v_ptr,
    subspaces,
    height,
    width,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    sample = tl.program_id(0).to(tl.int64)
    subspace = tl.program_id(1).to(tl.int64)
    slice_index = sample * subspaces + subspace
    columns = tl.arange(0, BLOCK_W)
    columns_ok = columns < width
    v_re, v_im = _load_complex(v_ptr + slice_index * width * 2 + columns * 2, columns_ok)
    grad_v_re = tl.zeros((BLOCK_W,), dtype=tl.float32)
    grad_v_im = tl.zeros((BLOCK_W,), dtype=tl.float32)
    for first_row in range(0, height, BLOCK_H):
        rows = first_row + tl.arange(0, BLOCK_H)
        rows_ok = rows < height
        inside = rows_ok[:, None] & columns_ok[None, :]
        plane_offsets = rows[:, None] * width + columns[None, :]
        grad = tl.load(
            grad_ptr + sample * height * width + plane_offsets, mask=inside, other=0.0
        ).to(tl.float32)
        plane = subspace * height * width + plane_offsets
        p_re = tl.load(plane_re_ptr + plane, mask=inside, other=0.0).to(tl.float32)
        p_im = tl.load(plane_im_ptr + plane, mask=inside, other=0.0).to(tl.float32)
        weighted_re = grad * p_re  # g p_re
        weighted_im = grad * p_im
        u_re, u_im = _load_complex(u_ptr + slice_index * height * 2 + rows * 2, rows_ok)
        grad_u_re = tl.sum(weighted_re * v_re[None, :] + weighted_im * v_im[None, :], axis=1)
        grad_u_im = tl.sum(weighted_im * v_re[None, :] - weighted_re * v_im[None, :], axis=1)
        grad_u_row = grad_u_ptr + slice_index * height * 2 + rows * 2
        tl.store(grad_u_row, grad_u_re, mask=rows_ok)
        tl.store(grad_u_row + 1, grad_u_im, mask=rows_ok)
        grad_v_re += tl.sum(weighted_re * u_re[:, None] + weighted_im * u_im[:, None], axis=0)
        grad_v_im += tl.sum(weighted_im * u_re[:, None] - weighted_re * u_im[:, None], axis=0)
    grad_v_row = grad_v_ptr + slice_index * width * 2 + columns * 2
    tl.store(grad_v_row, grad_v_re, mask=columns_ok)
    tl.store(grad_v_row + 1, grad_v_im, mask=columns_ok)


@triton.jit
def _plane_grad_kernel(
    grad_ptr,
    u_ptr,
    v_ptr,
    grad_plane_re_ptr,
    grad_plane_im_ptr,
    batch,
    subspaces,
    height,
    width,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    subspace = tl.program_id(0).to(tl.int64)
    rows, columns, rows_ok, columns_ok, inside, plane_offsets = _plane_tile(
        height, width, BLOCK_H, BLOCK_W
    )
    grad_re = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
    grad_im = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
    for sample in range(batch):
        slice_index = sample * subspaces + subspace
        real, imag = _factor_outer(
            u_ptr, v_ptr, slice_index, rows, columns, rows_ok, columns_ok, height, width
        )
        grad = tl.load(
            grad_ptr + sample * height * width + plane_offsets, mask=inside, other=0.0
        ).to(tl.float32)
        grad_re += grad * real
        grad_im += grad * imag
    plane = subspace * height * width + plane_offsets
    tl.store(grad_plane_re_ptr + plane, grad_re, mask=inside)
    tl.store(grad_plane_im_ptr + plane, grad_im, mask=inside)


def _width_block(width: int) -> int:
    return max(16, triton.next_power_of_2(width))


@torch.library.custom_op("dyna::mobius_projection", mutates_args=())
def mobius_projection(
    u: torch.Tensor, v: torch.Tensor, plane_re: torch.Tensor, plane_im: torch.Tensor
) -> torch.Tensor:
    """``out[b, h, w] = Σ_c Re(u[b, c, h] v[b, c, w] conj(p[c, h, w]))`` in one kernel.

    Shape:
        - u: (B, C, H, 2); v: (B, C, W, 2); plane_re, plane_im: (C, H, W); all contiguous,
          one dtype, W <= ``MAX_WIDTH``.
        - Output: (B, H, W) in u's dtype.
    """
    batch, subspaces, height, _ = u.shape
    width = v.shape[2]
    out = torch.empty(batch, height, width, device=u.device, dtype=torch.float32)
    if out.numel():
        grid = (batch, triton.cdiv(height, _TILE), triton.cdiv(width, _TILE))
        _projection_kernel[grid](
            u, v, plane_re, plane_im, out, subspaces, height, width, BLOCK_H=_TILE, BLOCK_W=_TILE
        )
    return out.to(u.dtype)


@mobius_projection.register_fake
def _mobius_projection_fake(u, v, plane_re, plane_im):
    return u.new_empty(u.shape[0], u.shape[2], v.shape[2])


@torch.library.custom_op("dyna::mobius_projection_backward", mutates_args=())
def mobius_projection_backward(
    grad: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    plane_re: torch.Tensor,
    plane_im: torch.Tensor,
    needs: list[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`mobius_projection` for (u, v, plane_re, plane_im).

    ``needs`` = [u or v, the planes]; the gradients not needed come back empty.
    """
    batch, subspaces, height, _ = u.shape
    width = v.shape[2]
    need_factors, need_planes = needs
    grad = grad.contiguous()
    grads = [u.new_empty(0), v.new_empty(0), plane_re.new_empty(0), plane_im.new_empty(0)]
    if need_factors:
        grad_u = torch.zeros_like(u, dtype=torch.float32)
        grad_v = torch.zeros_like(v, dtype=torch.float32)
        if batch * subspaces and height:
            _factor_grad_kernel[(batch, subspaces)](
                grad,
                u,
                v,
                plane_re,
                plane_im,
                grad_u,
                grad_v,
                subspaces,
                height,
                width,
                BLOCK_H=max(1, min(16, 4096 // _width_block(width))),
                BLOCK_W=_width_block(width),
            )
        grads[0], grads[1] = grad_u.to(u.dtype), grad_v.to(v.dtype)
    if need_planes:
        grad_re = torch.zeros_like(plane_re, dtype=torch.float32)
        grad_im = torch.zeros_like(plane_im, dtype=torch.float32)
        if subspaces * height * width:
            grid = (subspaces, triton.cdiv(height, _TILE), triton.cdiv(width, _TILE))
            _plane_grad_kernel[grid](
                grad,
                u,
                v,
                grad_re,
                grad_im,
                batch,
                subspaces,
                height,
                width,
                BLOCK_H=_TILE,
                BLOCK_W=_TILE,
            )
        grads[2], grads[3] = grad_re.to(plane_re.dtype), grad_im.to(plane_im.dtype)
    return grads[0], grads[1], grads[2], grads[3]


@mobius_projection_backward.register_fake
def _mobius_projection_backward_fake(grad, u, v, plane_re, plane_im, needs):
    need_factors, need_planes = needs
    return (
        torch.empty_like(u) if need_factors else u.new_empty(0),
        torch.empty_like(v) if need_factors else v.new_empty(0),
        torch.empty_like(plane_re) if need_planes else plane_re.new_empty(0),
        torch.empty_like(plane_im) if need_planes else plane_im.new_empty(0),
    )


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad):
    u, v, plane_re, plane_im = ctx.saved_tensors
    need = ctx.needs_input_grad
    needs = [need[0] or need[1], need[2] or need[3]]
    grad_u, grad_v, grad_re, grad_im = mobius_projection_backward(
        grad, u, v, plane_re, plane_im, needs
    )
    return (
        grad_u if need[0] else None,
        grad_v if need[1] else None,
        grad_re if need[2] else None,
        grad_im if need[3] else None,
    )


mobius_projection.register_autograd(_backward, setup_context=_setup_context)
