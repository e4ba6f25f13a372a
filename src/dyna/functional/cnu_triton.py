# Triton kernels annotate only their compile-time constants (tl.constexpr).
# mypy: disable-error-code="no-untyped-def"
"""Triton kernels of the CNU output blend: one gather-GEMM over the (sample, slot) pairs.

The blend of a shared-key CNU layer (q = 1, memories (m, rows, p), p = in_features [+ 1]) is

    o_i = Σ_a α_ia · M[idx_ia] x̃_i,    x̃_i = [x_i, 1] with a bias.

The b·k (sample, slot) pairs are sorted by memory once (a stable sort of the keys
2·idx + [slot is not trainable], so that each memory's trainable pairs lead its group). A
program of the forward kernel takes a tile of consecutive sorted pairs and, for every memory
present in the tile (usually one or two: the tile is sorted), multiplies the gathered inputs by
that memory's matrix: k·b·P products in all, the (b, k, rows, p) per-sample weights never exist
and nothing is read back to the host. The per-pair outputs (b·k, rows) are kept for the
backward (∂α is their dot product with the output gradient) and blended by one batched product.

Backward, with G_ia = α_ia g_i: ∂x̃_i = Σ_a G_ia M[idx_ia] (the same gather-GEMM, against the
untransposed memories), ∂M[t] = Σ over t's trainable pairs of G_iaᵀ x̃_i (one program per memory
and output tile, looping over its group: no atomics, deterministic), ∂α_ia = g_i · (M[idx_ia] x̃_i).

Everything is accumulated in float32. The forward and the backward are each one
``torch.library.custom_op`` (``dyna::cnu_blend``, ``dyna::cnu_blend_backward``), so
``torch.compile`` keeps them whole in its graph. Import this module only after
``TRITON_INTERPRET`` is set where the kernels should run in Triton's interpreter (CPU tensors).
:func:`dyna.functional.cnu.cnu_linear_ref` is the specification.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from dyna.functional._backend import dot_precision, prepare_interpreter, triton_interpreting

prepare_interpreter()

# Tiles: tl.dot needs every side >= 16; the masks handle the ragged edges.
_PAIRS_BLOCK = 64
_COLUMNS_BLOCK = 64
_REDUCTION_BLOCK = 32


def _dot_options(dtype: torch.dtype) -> dict[str, object]:
    """The dot's precision, and whether half-precision tiles are widened to float32 first.

    Triton's interpreter multiplies bfloat16 tiles as raw integers: there (only) the operands
    are widened, which is what the hardware's float32 accumulation computes anyway.
    """
    upcast = triton_interpreting() and dtype != torch.float32
    return {"PRECISION": "ieee" if upcast else dot_precision(dtype), "UPCAST": upcast}


@triton.jit
def _sorted_tile(sorted_keys_ptr, order_ptr, pairs, slots, BLOCK_PAIRS: tl.constexpr):
    """This program's tile of sorted pairs and the first and last memory present in it.

    Returns (valid, memory_of, pair, sample), each (BLOCK_PAIRS,), then first and last (scalars).
    """
    position = tl.program_id(0) * BLOCK_PAIRS + tl.arange(0, BLOCK_PAIRS)
    valid = position < pairs
    key = tl.load(sorted_keys_ptr + position, mask=valid, other=0)
    memory_of = key // 2
    pair = tl.load(order_ptr + position, mask=valid, other=0)
    sample = pair // slots
    first = tl.min(tl.where(valid, memory_of, 2**62), axis=0)
    last = tl.max(tl.where(valid, memory_of, -1), axis=0)
    return valid, memory_of, pair, sample, first, last


@triton.jit
def _load_inputs(x_ptr, sample, columns, pairs_ok, in_features, x_stride, HAS_BIAS: tl.constexpr):
    """x̃[sample, columns] (pairs, columns), zero outside ``pairs_ok``; 1 in the bias column."""
    inputs = tl.load(
        x_ptr + sample[:, None] * x_stride + columns[None, :],
        mask=pairs_ok[:, None] & (columns < in_features)[None, :],
        other=0.0,
    )
    if HAS_BIAS:
        # Through float32: the interpreter has no bfloat16 constants.
        bias_column = pairs_ok[:, None] & (columns == in_features)[None, :]
        inputs = tl.where(bias_column, 1.0, inputs.to(tl.float32)).to(inputs.dtype)
    return inputs


@triton.jit
def _dot(left, right, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """left @ right in float32: (M, K) by (K, N), the operands widened first under UPCAST."""
    if UPCAST:
        left, right = left.to(tl.float32), right.to(tl.float32)
    return tl.dot(left, right, input_precision=PRECISION)


@triton.jit
def _gather_mm_kernel(
    left_ptr,
    weights_ptr,
    memories_ptr,
    sorted_keys_ptr,
    order_ptr,
    outputs_ptr,
    pairs,
    left_size,
    left_stride,
    reduction,
    out_size,
    out_step,
    reduction_step,
    memory_size,
    slots,
    HAS_BIAS: tl.constexpr,
    SCALED: tl.constexpr,
    BLOCK_PAIRS: tl.constexpr,
    BLOCK_OUT: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """outputs[pair, o] = Σ_κ [α[pair]] left[sample(pair), κ] · M[memory(pair)] at (κ, o).

    The forward reads x̃ (left_size = in_features, the bias column past it) against Mᵀ
    (out_step = row_size, reduction_step = 1); the input gradient reads α g (SCALED) against M
    (out_step = 1, reduction_step = row_size). outputs is (pairs, out_size) float32.
    """
    valid, memory_of, pair, sample, first, last = _sorted_tile(
        sorted_keys_ptr, order_ptr, pairs, slots, BLOCK_PAIRS
    )
    if SCALED:
        alpha = tl.load(weights_ptr + pair, mask=valid, other=0.0).to(tl.float32)
    outs = tl.program_id(1) * BLOCK_OUT + tl.arange(0, BLOCK_OUT)
    outs_ok = outs < out_size
    result = tl.zeros((BLOCK_PAIRS, BLOCK_OUT), dtype=tl.float32)
    # The tile is sorted: it holds the pairs of a few consecutive memories, one product each.
    for memory in range(first, last + 1):
        mine = valid & (memory_of == memory)
        if tl.max(mine.to(tl.int32), axis=0) > 0:
            accumulator = tl.zeros((BLOCK_PAIRS, BLOCK_OUT), dtype=tl.float32)
            base = memories_ptr + memory * memory_size
            for start in range(0, reduction, BLOCK_K):
                step = start + tl.arange(0, BLOCK_K)
                left = _load_inputs(left_ptr, sample, step, mine, left_size, left_stride, HAS_BIAS)
                block = tl.load(
                    base + outs[None, :] * out_step + step[:, None] * reduction_step,
                    mask=(step < reduction)[:, None] & outs_ok[None, :],
                    other=0.0,
                )
                if SCALED:
                    left = (left.to(tl.float32) * alpha[:, None]).to(block.dtype)
                accumulator += _dot(left, block, PRECISION, UPCAST)
            result = tl.where(mine[:, None], accumulator, result)
    tl.store(
        outputs_ptr + pair[:, None] * out_size + outs[None, :],
        result,
        mask=valid[:, None] & outs_ok[None, :],
    )


@triton.jit
def _memory_grad_kernel(
    grad_ptr,
    weights_ptr,
    x_ptr,
    order_ptr,
    bounds_ptr,
    memory_grads_ptr,
    in_features,
    rows,
    row_size,
    slots,
    x_stride,
    HAS_BIAS: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_COLUMNS: tl.constexpr,
    BLOCK_PAIRS: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """∂M[t, r, c] = Σ over memory t's trainable pairs of α g[sample, r] x̃[sample, c]."""
    memory = tl.program_id(0).to(tl.int64)
    # The sorted keys 2t (trainable) and 2t + 1 of memory t start at bounds[2t], bounds[2t + 1].
    start = tl.load(bounds_ptr + 2 * memory)
    end = tl.load(bounds_ptr + 2 * memory + 1)
    out_rows = tl.program_id(1) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    rows_ok = out_rows < rows
    columns = tl.program_id(2) * BLOCK_COLUMNS + tl.arange(0, BLOCK_COLUMNS)
    columns_ok = columns < row_size
    accumulator = tl.zeros((BLOCK_ROWS, BLOCK_COLUMNS), dtype=tl.float32)
    for first in range(start, end, BLOCK_PAIRS):
        position = first + tl.arange(0, BLOCK_PAIRS)
        valid = position < end
        pair = tl.load(order_ptr + position, mask=valid, other=0)
        sample = pair // slots
        alpha = tl.load(weights_ptr + pair, mask=valid, other=0.0).to(tl.float32)
        grads = tl.load(
            grad_ptr + sample[None, :] * rows + out_rows[:, None],
            mask=valid[None, :] & rows_ok[:, None],
            other=0.0,
        ).to(tl.float32)
        inputs = _load_inputs(x_ptr, sample, columns, valid, in_features, x_stride, HAS_BIAS)
        scaled = (grads * alpha[None, :]).to(inputs.dtype)
        accumulator += _dot(scaled, inputs, PRECISION, UPCAST)
    tl.store(
        memory_grads_ptr
        + memory * rows * row_size
        + out_rows[:, None] * row_size
        + columns[None, :],
        accumulator,
        mask=rows_ok[:, None] & columns_ok[None, :],
    )


def _sorted_pairs(
    indices: torch.Tensor, memories: int, trainable_slots: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sort the (sample, slot) pairs by memory, trainable pairs first; on the device.

    Returns the sorted keys 2·idx + [slot >= trainable_slots] (b·k,), the stable order of the
    flat pairs (pair i·k + a is sample i, slot a) and ``bounds`` (2m + 1,): the keys 2t start at
    bounds[2t], the keys 2t + 1 at bounds[2t + 1], memory t's group ends at bounds[2t + 2].
    """
    b, _, k = indices.shape
    keys = indices.reshape(b, k) * 2
    if trainable_slots < k:
        keys[:, trainable_slots:] += 1
    sorted_keys, order = torch.sort(keys.reshape(b * k), stable=True)
    boundaries = torch.arange(2 * memories + 1, device=indices.device, dtype=sorted_keys.dtype)
    bounds = torch.searchsorted(sorted_keys, boundaries)
    return sorted_keys, order, bounds


def _gather_mm(
    left: torch.Tensor,
    weights: torch.Tensor,
    memories: torch.Tensor,
    sorted_keys: torch.Tensor,
    order: torch.Tensor,
    out_size: int,
    slots: int,
    out_step: int,
    reduction_step: int,
    bias: bool,
    scaled: bool,
    dot_options: dict[str, object],
) -> torch.Tensor:
    """Launch :func:`_gather_mm_kernel`: (pairs, out_size) float32 per-pair products.

    ``left`` is (b, left_size) with contiguous rows (x, or the output gradient when ``scaled``
    by the flat weights (b·k,)); memories is (1, m, rows·p); the reduction runs over left's
    columns, plus the bias column with ``bias``. ``dot_options`` is :func:`_dot_options`.
    """
    pairs = sorted_keys.shape[0]
    left_size = left.shape[1]
    reduction = left_size + (1 if bias else 0)
    outputs = torch.empty(pairs, out_size, device=left.device, dtype=torch.float32)
    if pairs:
        grid = (triton.cdiv(pairs, _PAIRS_BLOCK), triton.cdiv(out_size, _COLUMNS_BLOCK))
        _gather_mm_kernel[grid](
            left,
            weights,
            memories,
            sorted_keys,
            order,
            outputs,
            pairs,
            left_size,
            left.stride(0),
            reduction,
            out_size,
            out_step,
            reduction_step,
            memories.shape[2],
            slots,
            HAS_BIAS=bias,
            SCALED=scaled,
            BLOCK_PAIRS=_PAIRS_BLOCK,
            BLOCK_OUT=_COLUMNS_BLOCK,
            BLOCK_K=_REDUCTION_BLOCK,
            **dot_options,
        )
    return outputs


@torch.library.custom_op("dyna::cnu_blend", mutates_args=())
def cnu_blend(
    x: torch.Tensor,
    memories: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor,
    trainable_slots: int,
    bias: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Output blend of a shared-key CNU layer, o_i = Σ_a α_ia M[idx_ia] x̃_i, by gather-GEMM.

    Args:
        x: (b, in_features), contiguous rows.
        memories: (1, m, rows·p), p = in_features [+ 1].
        indices: int64 (b, 1, k); weights: α (b, 1, k).
        trainable_slots: slots a < trainable_slots pass gradient to the memories.
        bias: the last column of every memory row is a bias.

    Returns:
        ``(out, pair_outputs, sorted_keys, order, bounds)``: out (b, rows) in x's dtype; the
        rest are saved for the backward: the per-pair outputs M[idx_ia] x̃_i (b·k, rows) in
        float32 and the sorted layout of :func:`_sorted_pairs`.
    """
    b, in_features = x.shape
    _, m, u = memories.shape
    k = indices.shape[2]
    row_size = in_features + (1 if bias else 0)
    rows = u // row_size
    sorted_keys, order, bounds = _sorted_pairs(indices, m, trainable_slots)
    # Against Mᵀ: output row r of memory t lies at M[t, r, :], the reduction runs along p.
    pair_outputs = _gather_mm(
        x,
        weights,
        memories,
        sorted_keys,
        order,
        rows,
        k,
        row_size,
        1,
        bias,
        False,
        _dot_options(x.dtype),
    )
    # One batched product weights the k outputs of every sample.
    out = torch.bmm(weights.reshape(b, 1, k).float(), pair_outputs.view(b, k, rows))
    return out.view(b, rows).to(x.dtype), pair_outputs, sorted_keys, order, bounds


@cnu_blend.register_fake
def _cnu_blend_fake(x, memories, indices, weights, trainable_slots, bias):
    b, in_features = x.shape
    _, m, u = memories.shape
    k = indices.shape[2]
    rows = u // (in_features + (1 if bias else 0))
    return (
        x.new_empty(b, rows),
        x.new_empty(b * k, rows, dtype=torch.float32),
        indices.new_empty(b * k),
        indices.new_empty(b * k),
        indices.new_empty(2 * m + 1),
    )


@torch.library.custom_op("dyna::cnu_blend_backward", mutates_args=())
def cnu_blend_backward(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    memories: torch.Tensor,
    weights: torch.Tensor,
    pair_outputs: torch.Tensor,
    sorted_keys: torch.Tensor,
    order: torch.Tensor,
    bounds: torch.Tensor,
    bias: bool,
    needs: list[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`cnu_blend` for (x, memories, weights); empty where ``needs`` is False.

    Shape:
        - grad_out: (b, rows); returns (b, in_features), (1, m, u) and (b, 1, k).
    """
    b, in_features = x.shape
    _, m, u = memories.shape
    pairs, rows = pair_outputs.shape
    k = pairs // b if b else 1
    row_size = u // rows
    need_x, need_memories, need_weights = needs
    grad_out = grad_out.contiguous()
    flat_weights = weights.reshape(pairs).contiguous()
    dot_options = _dot_options(x.dtype)
    grad_x = x.new_empty(0)
    grad_memories = memories.new_empty(0)
    grad_weights = weights.new_empty(0)
    if need_weights:
        grad_weights = torch.bmm(pair_outputs.view(b, k, rows), grad_out.view(b, rows, 1).float())
        grad_weights = grad_weights.view(b, 1, k).to(weights.dtype)
    if need_x:
        # Against M: output column c of memory t lies at M[t, :, c], the reduction runs along rows.
        pair_grads = _gather_mm(
            grad_out,
            flat_weights,
            memories,
            sorted_keys,
            order,
            in_features,
            k,
            1,
            row_size,
            False,
            True,
            dot_options,
        )
        grad_x = pair_grads.view(b, k, in_features).sum(1).to(x.dtype)
    if need_memories:
        memory_grads = torch.empty(m, rows, row_size, device=x.device, dtype=torch.float32)
        grid = (m, triton.cdiv(rows, _COLUMNS_BLOCK), triton.cdiv(row_size, _COLUMNS_BLOCK))
        _memory_grad_kernel[grid](
            grad_out,
            flat_weights,
            x,
            order,
            bounds,
            memory_grads,
            in_features,
            rows,
            row_size,
            k,
            x.stride(0),
            HAS_BIAS=bias,
            BLOCK_ROWS=_COLUMNS_BLOCK,
            BLOCK_COLUMNS=_COLUMNS_BLOCK,
            BLOCK_PAIRS=_REDUCTION_BLOCK,
            **dot_options,
        )
        grad_memories = memory_grads.view(1, m, u).to(memories.dtype)
    return grad_x, grad_memories, grad_weights


@cnu_blend_backward.register_fake
def _cnu_blend_backward_fake(
    grad_out, x, memories, weights, pair_outputs, sorted_keys, order, bounds, bias, needs
):
    need_x, need_memories, need_weights = needs
    return (
        torch.empty_like(x) if need_x else x.new_empty(0),
        torch.empty_like(memories) if need_memories else memories.new_empty(0),
        torch.empty_like(weights) if need_weights else weights.new_empty(0),
    )


def _setup_context(ctx, inputs, output):
    x, memories, _indices, weights, _trainable_slots, bias = inputs
    _out, pair_outputs, sorted_keys, order, bounds = output
    ctx.save_for_backward(x, memories, weights, pair_outputs, sorted_keys, order, bounds)
    ctx.bias = bias


def _backward(ctx, grad_out, *_unused):
    x, memories, weights, pair_outputs, sorted_keys, order, bounds = ctx.saved_tensors
    needs = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[3]]
    grad_x, grad_memories, grad_weights = cnu_blend_backward(
        grad_out, x, memories, weights, pair_outputs, sorted_keys, order, bounds, ctx.bias, needs
    )
    return (
        grad_x if needs[0] else None,
        grad_memories if needs[1] else None,
        None,
        grad_weights if needs[2] else None,
        None,
        None,
    )


cnu_blend.register_autograd(_backward, setup_context=_setup_context)
