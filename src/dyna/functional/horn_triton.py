# Triton kernels: only their tl.constexpr parameters carry annotations (Triton reads them).
# mypy: disable-error-code="no-untyped-def"
"""Triton kernels for the HORN scan: the recurrence over time, forward and backward, on chip.

Same maths and interface as :class:`dyna.functional.horn.HORNScan` (see its docstring): the
forward runs

    a_t = tanh(drive_t + r_t + feedback * x_{t-1})
    y_t = retention * y_{t-1} - spring * x_{t-1} + gain * a_t,   x_t = x_{t-1} + dt * y_t

with r_t = W yhat(t-1) or, with delays, r_i(t) = sum_j W_ij yhat_j(t-1-d_ij); the backward runs
the adjoint recurrence of ``HORNScan.backward`` in reverse time. Only the sequential part is a
kernel: every program owns a tile of BLOCK_B batch rows and walks all T steps, so the T-step
loop costs one launch instead of thousands. What is parallel over time stays in torch around
the kernels (the input projection before, the weight and per-unit coefficient gradients after,
each one large matmul or reduction), as FlashRNN and mamba's selective scan do.

Two kernel families, chosen by the hidden size n:

- registers (no delays, n padded to a power of two <= ``REGISTER_PATH_MAX_UNITS``): the
  recurrent weight and the tile's positions and velocities stay in registers for the whole
  scan; the next step's drive is loaded before the current step's maths.
- tiled (larger n, and every delayed scan): the state of the tile lives in the output buffers.
  Each step loops over BLOCK_N output columns and BLOCK_K inputs, reading weight tiles from
  L1/L2 and the previous velocities from the buffer the previous step wrote, with a CTA barrier
  between steps. Any n runs: nothing is sized by n but the loop counts. With delays the
  recurrent term gathers yhat_j(t-1-d_ij) per (row, i, j) from a unit-major (time, unit, batch)
  velocity buffer, coalesced along the batch, and the backward gathers the later steps'
  pre-activation adjoints the same way.

Where the threshold lies (figures from ptxas for sm_90, triton 3.5; no GPU timing went into
them). The register path keeps W on chip and y in registers, so a step costs one product, a
layout exchange through shared memory and the elementwise maths, with no global round trip and
no CTA-wide barrier on the state; the tiled path rereads y and weight tiles from L1/L2 every
step. Registers are the limit: the (N_PAD, N_PAD) float32 weight is 16 KB at 64 and 64 KB at
128, a quarter of an SM's 256 KB register file, and 256 KB at 256, the whole of it. At N_PAD =
128 the register kernels compile without spilling at 16 warps (at most 128 registers a thread,
about 80 KB of shared memory for the layout exchanges, so two programs fit an SM); 8 warps
spill with a bfloat16 weight in TF32. Hence ``REGISTER_PATH_MAX_UNITS = 128`` and the warp band
of ``_register_warp_range``. Occupancy: a program owns 16 batch rows, the smallest ``tl.dot``
side, and walks all T steps; programs of one batch cannot split n between them without a
grid-wide barrier every step, so (784, 64, 64) runs 4 programs on 4 of the H200's 132 SMs and a
step's latency, not throughput, sets the time. Wider batch tiles would only halve that count;
more warps per program (up to 16) split the same 16 x n product finer and shorten the step,
which is what the autotuner chooses between. From B = 16 * 132 rows on, every SM is busy.

Precision. Everything accumulates in float32 and the buffers the backward reads are float32;
the outputs come back in the input dtype. float32 products use ``input_precision="ieee"`` (full
float32 on the FMA units, as torch's matmul with TF32 off), or ``"tf32"`` when
``torch.backends.cuda.matmul.allow_tf32`` is set. IEEE is kept rather than "tf32x3" (three TF32
tensor-core products, about float32 accuracy): the product is a 16-row tile, so the scan is
bound by each step's latency, where three chained MMAs per K slice are unlikely to beat FMA by
much (untimed), and with the forward's product carried between steps (see
``_forward_registers_kernel``) IEEE compiles without spilling; the kernels then agree with the
torch path to 1e-5 relative on the GPU too. Import this module only when a kernel runs: it
imports triton, and Triton reads ``TRITON_INTERPRET`` when the kernels are defined."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import triton
import triton.language as tl

from dyna.functional._autograd import first_order_backward
from dyna.functional._backend import dot_precision, prepare_interpreter, triton_interpreting
from dyna.functional.horn import _previous_sum

prepare_interpreter()

# Padded n up to which the register kernels run; above it the tiled kernels (see the module
# docstring: a (256, 256) float32 weight alone would fill a whole SM's register file).
REGISTER_PATH_MAX_UNITS = 128


def _padded_units(n_units: int) -> int:
    """n padded to a power of two of at least 16, the smallest tl.dot operand side."""
    return max(16, triton.next_power_of_2(n_units))


# ---------------------------------------------------------------------------------------------
# Shared device functions
# ---------------------------------------------------------------------------------------------


@triton.jit
def _tanh(x):
    # (1 - e) / (1 + e) with e = exp(-2|x|) loses relative accuracy near zero, where 1 - e
    # cancels; below |x| = 0.3 the odd Taylor series to x^11 is exact to 2e-9 relative.
    magnitude = tl.abs(x)
    decay = tl.exp(-2.0 * magnitude)
    large = (1.0 - decay) / (1.0 + decay)
    square = x * x
    series = -0.0088632355 * square + 0.0218694885
    series = series * square - 0.0539682540
    series = series * square + 0.1333333333
    series = series * square - 0.3333333333
    small = x + x * square * series
    return tl.where(magnitude < 0.3, small, tl.where(x < 0.0, -large, large))


@triton.jit
def _dense_product(
    acc,
    vector_ptr,
    matrix_ptr,
    row_offsets,
    row_mask,
    units,
    unit_mask,
    n_units,
    valid,
    PRECISION: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """acc + vector[rows, :] @ matrix[:, units], K-tiled; ``vector_ptr`` points at one step."""
    source_base = tl.arange(0, BLOCK_K)
    for source_start in range(0, n_units, BLOCK_K):
        sources = source_start + source_base
        source_mask = sources < n_units
        vector = tl.load(
            vector_ptr + row_offsets + sources[None, :],
            mask=row_mask[:, None] & source_mask[None, :] & valid,
            other=0.0,
        )
        matrix = tl.load(
            matrix_ptr + sources[:, None] * n_units + units[None, :],
            mask=source_mask[:, None] & unit_mask[None, :],
            other=0.0,
        ).to(tl.float32)
        acc = tl.dot(vector, matrix, acc=acc, input_precision=PRECISION)
    return acc


@triton.jit
def _delayed_product(
    acc,
    buffer_ptr,
    matrix_ptr,
    delay_ptr,
    base_row,
    ROW_SIGN: tl.constexpr,
    row_limit,
    rows,
    row_mask,
    units,
    unit_mask,
    n_units,
    batch,
    step_stride,
    BLOCK_K: tl.constexpr,
):
    """acc[b, u] + sum_s matrix[u, s] * buffer[base_row + ROW_SIGN * delay[u, s], s, b].

    ``buffer`` is unit-major, (time, unit, batch): the B values a connection reads are
    contiguous, so the gather is coalesced along the batch (batch-major it would touch one
    cache line per element). Rows outside [0, row_limit) read zero. Forward: matrix = W,
    delay = D, rows L-1+t-d_ij of the velocity buffer. Backward: matrix = W^T, delay = D^T,
    rows s+d_ij of grad_pre.
    """
    source_base = tl.arange(0, BLOCK_K)
    for source_start in range(0, n_units, BLOCK_K):
        sources = source_start + source_base
        source_mask = sources < n_units
        pair_mask = unit_mask[:, None] & source_mask[None, :]
        pairs = units[:, None] * n_units + sources[None, :]
        weight = tl.load(matrix_ptr + pairs, mask=pair_mask, other=0.0).to(tl.float32)
        lag = tl.load(delay_ptr + pairs, mask=pair_mask, other=0)
        read_row = base_row + ROW_SIGN * lag
        readable = pair_mask & (read_row >= 0) & (read_row < row_limit)
        pointers = (
            buffer_ptr
            + read_row.to(tl.int64)[None, :, :] * step_stride
            + sources.to(tl.int64)[None, None, :] * batch
            + rows.to(tl.int64)[:, None, None]
        )
        values = tl.load(pointers, mask=row_mask[:, None, None] & readable[None, :, :], other=0.0)
        acc += tl.sum(values * weight[None, :, :], axis=2)
    return acc


@triton.jit
def _unit_row(pointer, units, unit_mask):
    """A per-unit coefficient as a (1, units) row; masked units read zero."""
    return tl.load(pointer + units, mask=unit_mask, other=0.0)[None, :]


@triton.jit
def _unit_coefficients(
    gain_ptr, spring_ptr, retention_ptr, feedback_ptr, units, unit_mask, HAS_FEEDBACK: tl.constexpr
):
    """gain, spring, retention and feedback of ``units``, each a (1, units) row.

    Without feedback the fourth row is ``gain`` again: the kernels' HAS_FEEDBACK branches never
    read it, and a name bound on both branches keeps one signature for the step helpers.
    """
    gain = _unit_row(gain_ptr, units, unit_mask)
    spring = _unit_row(spring_ptr, units, unit_mask)
    retention = _unit_row(retention_ptr, units, unit_mask)
    if HAS_FEEDBACK:
        feedback = _unit_row(feedback_ptr, units, unit_mask)
    else:
        feedback = gain
    return gain, spring, retention, feedback


@triton.jit
def _register_tile(weight_ptr, batch, n_units, N_PAD: tl.constexpr, BLOCK_B: tl.constexpr):
    """The register kernels' tile: (units, unit_mask, mask, offsets, weight).

    units: (N_PAD,) and its mask; mask and offsets: (BLOCK_B, N_PAD) over this program's rows of
    a (B, n) step; weight: the (N_PAD, N_PAD) float32 matrix at ``weight_ptr``, zero-padded.
    """
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    units = tl.arange(0, N_PAD)
    row_mask = rows < batch
    unit_mask = units < n_units
    mask = row_mask[:, None] & unit_mask[None, :]
    offsets = rows.to(tl.int64)[:, None] * n_units + units[None, :]
    weight = tl.load(
        weight_ptr + units[:, None] * n_units + units[None, :],
        mask=unit_mask[:, None] & unit_mask[None, :],
        other=0.0,
    ).to(tl.float32)
    return units, unit_mask, mask, offsets, weight


@triton.jit
def _batch_rows(batch, n_units, BLOCK_B: tl.constexpr):
    """The tiled kernels' rows: (rows, row_mask) of shape (BLOCK_B,), row_offsets (BLOCK_B, 1)."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_mask = rows < batch
    row_offsets = rows.to(tl.int64)[:, None] * n_units
    return rows, row_mask, row_offsets


@triton.jit
def _unit_tile(unit_start, row_mask, row_offsets, n_units, BLOCK_N: tl.constexpr):
    """BLOCK_N units from ``unit_start``: (units, unit_mask) (BLOCK_N,), mask and tile offsets
    (BLOCK_B, BLOCK_N) into a batch-major (B, n) step."""
    units = unit_start + tl.arange(0, BLOCK_N)
    unit_mask = units < n_units
    mask = row_mask[:, None] & unit_mask[None, :]
    tile = row_offsets + units[None, :]
    return units, unit_mask, mask, tile


@triton.jit
def _unit_major_tile(rows, units, batch):
    """(BLOCK_B, BLOCK_N) offsets of (rows, units) into a unit-major (n, B) step."""
    return units.to(tl.int64)[None, :] * batch + rows[:, None]


@triton.jit
def _oscillator_step(pre, x, y, gain, spring, retention, feedback, dt, HAS_FEEDBACK: tl.constexpr):
    """One step of the dynamics on a (rows, units) tile: (a_t, y_t, x_t).

    ``pre`` is drive_t + r_t; x and y are x_{t-1} and y_{t-1}; the coefficients are (1, units).
    """
    if HAS_FEEDBACK:
        pre += feedback * x
    activation = _tanh(pre)
    y = retention * y - spring * x + gain * activation
    x = x + dt * y
    return activation, y, x


@triton.jit
def _adjoint_step(
    lambda_x, lambda_y, activation, gain, spring, feedback, dt, HAS_FEEDBACK: tl.constexpr
):
    """One reverse step of the adjoint on a (rows, units) tile: (adjoint_t, grad_pre_t, lambda_x).

    adjoint_t = lambda_y + dt*lambda_x; grad_pre_t = adjoint_t * slope_t; the returned lambda_x
    is adjoint_t*coupling_t + lambda_x, still without the output gradient grad_x[t-1].
    """
    adjoint = lambda_y + dt * lambda_x
    slope = gain * (1.0 - activation * activation)
    grad_pre = adjoint * slope
    if HAS_FEEDBACK:
        coupling = feedback * slope - spring
    else:
        coupling = -spring
    return adjoint, grad_pre, adjoint * coupling + lambda_x


# ---------------------------------------------------------------------------------------------
# Forward kernels
# ---------------------------------------------------------------------------------------------


@triton.jit
def _forward_registers_kernel(
    drive_ptr,
    weight_t_ptr,
    gain_ptr,
    spring_ptr,
    retention_ptr,
    feedback_ptr,
    x0_ptr,
    y0_ptr,
    positions_ptr,
    velocities_ptr,
    activations_ptr,
    steps,
    batch,
    n_units,
    step_stride,
    dt,
    HAS_FEEDBACK: tl.constexpr,
    PRECISION: tl.constexpr,
    N_PAD: tl.constexpr,
    BLOCK_B: tl.constexpr,
):
    """No delays, small n: W^T, x and y of BLOCK_B rows in registers for all T steps.

    Writes positions[t] = x_{t+1}, velocities[t + 1] = y_{t+1} (row 0 holds y0, written by the
    caller) and activations[t] = a_{t+1}, all float32.
    """
    units, unit_mask, mask, offsets, weight_t = _register_tile(
        weight_t_ptr, batch, n_units, N_PAD, BLOCK_B
    )
    gain, spring, retention, feedback = _unit_coefficients(
        gain_ptr, spring_ptr, retention_ptr, feedback_ptr, units, unit_mask, HAS_FEEDBACK
    )
    x = tl.load(x0_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    y = tl.load(y0_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    drive_next = tl.load(drive_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    # W y_{t-1} is formed at the end of the step that wrote y_{t-1} and carried into step t,
    # not taken with acc=drive at the top of step t: with the velocity entering the loop as a
    # dot operand, ptxas (sm_90, triton 3.5) gave the float32 FMA product of n = 64 a 3-5 KB
    # stack frame and kilobytes of spills at 2-4 warps; carried as a product it needs 100-230
    # registers and no local memory at 2-16 warps (n = 64). The last step's product goes unused.
    recurrent = tl.dot(y, weight_t, input_precision=PRECISION)
    for step in range(steps):
        drive_now = drive_next
        # The next step's drive does not depend on the recurrence: load it before this step's
        # maths so that its global latency hides behind them.
        following = tl.minimum(step + 1, steps - 1)
        drive_next = tl.load(
            drive_ptr + tl.cast(following, tl.int64) * step_stride + offsets,
            mask=mask,
            other=0.0,
        ).to(tl.float32)
        activation, y, x = _oscillator_step(
            drive_now + recurrent, x, y, gain, spring, retention, feedback, dt, HAS_FEEDBACK
        )
        recurrent = tl.dot(y, weight_t, input_precision=PRECISION)
        here = tl.cast(step, tl.int64) * step_stride + offsets
        tl.store(positions_ptr + here, x, mask=mask)
        tl.store(velocities_ptr + step_stride + here, y, mask=mask)
        tl.store(activations_ptr + here, activation, mask=mask)


@triton.jit
def _forward_tiled_kernel(
    drive_ptr,
    matrix_ptr,
    delay_ptr,
    gain_ptr,
    spring_ptr,
    retention_ptr,
    feedback_ptr,
    x0_ptr,
    y0_ptr,
    positions_ptr,
    velocities_ptr,
    activations_ptr,
    steps,
    batch,
    n_units,
    step_stride,
    history_length,
    dt,
    HAS_DELAY: tl.constexpr,
    HAS_FEEDBACK: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Any n, with or without delays: the tile's state is read back from the output buffers.

    ``matrix`` is W^T without delays (a dot operand [source, target]) and W with delays
    ([target, source], like ``delay``). The velocity buffer has ``history_length`` = L leading
    rows (y0 without delays; the history, oldest first, with delays) and row L + t receives
    y_{t+1}; it is (L + T, B, n) without delays and unit-major (L + T, n, B) with delays (see
    ``_delayed_product``). A barrier ends every step: the next step reads what all threads
    wrote.
    """
    rows, row_mask, row_offsets = _batch_rows(batch, n_units, BLOCK_B)
    for step in range(steps):
        step_offset = tl.cast(step, tl.int64) * step_stride
        first = step == 0
        for unit_start in range(0, n_units, BLOCK_N):
            units, unit_mask, mask, tile = _unit_tile(
                unit_start, row_mask, row_offsets, n_units, BLOCK_N
            )
            if HAS_DELAY:
                velocity_tile = _unit_major_tile(rows, units, batch)
            else:
                velocity_tile = tile
            pre = tl.load(drive_ptr + step_offset + tile, mask=mask, other=0.0).to(tl.float32)
            if HAS_DELAY:
                pre = _delayed_product(
                    pre, velocities_ptr, matrix_ptr, delay_ptr, history_length - 1 + step, -1,
                    history_length + steps, rows, row_mask, units, unit_mask, n_units, batch,
                    step_stride, BLOCK_K,
                )  # fmt: skip
                # The delayed path never reads y0 (brainmass's buffer starts empty); the
                # dynamics do, at the first step.
                y = tl.load(
                    velocities_ptr
                    + (step_offset + tl.cast(history_length - 1, tl.int64) * step_stride)
                    + velocity_tile,
                    mask=mask & (step > 0),
                    other=0.0,
                ) + tl.load(y0_ptr + tile, mask=mask & first, other=0.0).to(tl.float32)
            else:
                pre = _dense_product(
                    pre, velocities_ptr + step_offset, matrix_ptr, row_offsets, row_mask, units,
                    unit_mask, n_units, True, PRECISION, BLOCK_K,
                )  # fmt: skip
                y = tl.load(velocities_ptr + step_offset + tile, mask=mask, other=0.0)
            x = tl.load(
                positions_ptr + (step_offset - step_stride) + tile,
                mask=mask & (step > 0),
                other=0.0,
            ) + tl.load(x0_ptr + tile, mask=mask & first, other=0.0).to(tl.float32)
            gain, spring, retention, feedback = _unit_coefficients(
                gain_ptr, spring_ptr, retention_ptr, feedback_ptr, units, unit_mask, HAS_FEEDBACK
            )
            activation, y, x = _oscillator_step(
                pre, x, y, gain, spring, retention, feedback, dt, HAS_FEEDBACK
            )
            tl.store(positions_ptr + step_offset + tile, x, mask=mask)
            tl.store(
                velocities_ptr
                + (step_offset + tl.cast(history_length, tl.int64) * step_stride)
                + velocity_tile,
                y,
                mask=mask,
            )
            tl.store(activations_ptr + step_offset + tile, activation, mask=mask)
        tl.debug_barrier()


# ---------------------------------------------------------------------------------------------
# Backward kernels
# ---------------------------------------------------------------------------------------------


@triton.jit
def _backward_registers_kernel(
    grad_positions_ptr,
    grad_velocities_ptr,
    activations_ptr,
    weight_ptr,
    gain_ptr,
    spring_ptr,
    retention_ptr,
    feedback_ptr,
    grad_pre_ptr,
    adjoint_ptr,
    grad_x0_ptr,
    grad_y0_ptr,
    steps,
    batch,
    n_units,
    step_stride,
    dt,
    HAS_GRAD_POSITIONS: tl.constexpr,
    HAS_GRAD_VELOCITIES: tl.constexpr,
    HAS_FEEDBACK: tl.constexpr,
    PRECISION: tl.constexpr,
    N_PAD: tl.constexpr,
    BLOCK_B: tl.constexpr,
):
    """Adjoint recurrence without delays, small n: W, lambda_x, lambda_y in registers.

    Per step t (reverse): adjoint_t = lambda_y + dt*lambda_x; grad_pre_t = adjoint_t * slope_t;
    lambda_x <- grad_x[t-1] + adjoint_t*coupling_t + lambda_x;
    lambda_y <- grad_y[t] + adjoint_t*retention + grad_pre_t @ W.
    """
    units, unit_mask, mask, offsets, weight = _register_tile(
        weight_ptr, batch, n_units, N_PAD, BLOCK_B
    )
    gain, spring, retention, feedback = _unit_coefficients(
        gain_ptr, spring_ptr, retention_ptr, feedback_ptr, units, unit_mask, HAS_FEEDBACK
    )
    last = tl.cast(steps - 1, tl.int64) * step_stride
    if HAS_GRAD_POSITIONS:
        lambda_x = tl.load(grad_positions_ptr + last + offsets, mask=mask, other=0.0)
    else:
        lambda_x = tl.zeros((BLOCK_B, N_PAD), dtype=tl.float32)
    if HAS_GRAD_VELOCITIES:
        lambda_y = tl.load(
            grad_velocities_ptr + (last + step_stride) + offsets, mask=mask, other=0.0
        )
    else:
        lambda_y = tl.zeros((BLOCK_B, N_PAD), dtype=tl.float32)
    activation_next = tl.load(activations_ptr + last + offsets, mask=mask, other=0.0)
    for iteration in range(steps):
        step = steps - 1 - iteration
        here = tl.cast(step, tl.int64) * step_stride + offsets
        activation = activation_next
        # Prefetch the previous step's activation: it does not depend on the recurrence.
        activation_next = tl.load(
            activations_ptr + (here - step_stride), mask=mask & (step > 0), other=0.0
        )
        adjoint, grad_pre, lambda_x = _adjoint_step(
            lambda_x, lambda_y, activation, gain, spring, feedback, dt, HAS_FEEDBACK
        )
        tl.store(adjoint_ptr + here, adjoint, mask=mask)
        tl.store(grad_pre_ptr + here, grad_pre, mask=mask)
        if HAS_GRAD_POSITIONS:
            lambda_x += tl.load(
                grad_positions_ptr + (here - step_stride), mask=mask & (step > 0), other=0.0
            )
        from_dynamics = adjoint * retention
        if HAS_GRAD_VELOCITIES:
            from_dynamics += tl.load(grad_velocities_ptr + here, mask=mask, other=0.0)
        lambda_y = tl.dot(grad_pre, weight, acc=from_dynamics, input_precision=PRECISION)
    tl.store(grad_x0_ptr + offsets, lambda_x, mask=mask)
    tl.store(grad_y0_ptr + offsets, lambda_y, mask=mask)


@triton.jit
def _velocity_adjoint(
    written,
    grad_velocities_ptr,
    adjoint_ptr,
    grad_pre_ptr,
    matrix_ptr,
    delay_ptr,
    retention,
    rows,
    row_offsets,
    row_mask,
    units,
    unit_mask,
    tile,
    mask,
    steps,
    batch,
    n_units,
    step_stride,
    history_length,
    HAS_DELAY: tl.constexpr,
    HAS_GRAD_VELOCITIES: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Adjoint of the velocity written by step ``written`` (y_{written+1}; -1 means y0) from
    everything after it: the outputs, the next step's dynamics and the steps that read it.

    ``grad_pre`` is (T, B, n) without delays and unit-major (T, n, B) with delays."""
    reader = written + 1
    has_reader = reader < steps
    reader_offset = tl.cast(reader, tl.int64) * step_stride
    total = (
        tl.load(adjoint_ptr + reader_offset + tile, mask=mask & has_reader, other=0.0) * retention
    )
    if HAS_GRAD_VELOCITIES:
        total += tl.load(
            grad_velocities_ptr
            + (tl.cast(history_length + written, tl.int64) * step_stride)
            + tile,
            mask=mask,
            other=0.0,
        )
    if HAS_DELAY:
        # yhat(reader) is read by step reader + d_ij through the connection j -> i.
        total = _delayed_product(
            total, grad_pre_ptr, matrix_ptr, delay_ptr, reader, 1, steps, rows, row_mask, units,
            unit_mask, n_units, batch, step_stride, BLOCK_K,
        )  # fmt: skip
    else:
        total = _dense_product(
            total, grad_pre_ptr + reader_offset, matrix_ptr, row_offsets, row_mask, units,
            unit_mask, n_units, has_reader, PRECISION, BLOCK_K,
        )  # fmt: skip
    return total


@triton.jit
def _backward_tiled_kernel(
    grad_positions_ptr,
    grad_velocities_ptr,
    activations_ptr,
    matrix_ptr,
    delay_ptr,
    gain_ptr,
    spring_ptr,
    retention_ptr,
    feedback_ptr,
    grad_pre_ptr,
    adjoint_ptr,
    lambda_x_ptr,
    grad_y0_ptr,
    grad_history_ptr,
    steps,
    batch,
    n_units,
    step_stride,
    history_length,
    dt,
    HAS_DELAY: tl.constexpr,
    HAS_GRAD_POSITIONS: tl.constexpr,
    HAS_GRAD_VELOCITIES: tl.constexpr,
    HAS_FEEDBACK: tl.constexpr,
    HISTORY_GRAD: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Adjoint recurrence for any n, with or without delays; lambda_x lives in ``lambda_x_ptr``.

    ``matrix`` is W without delays (dot operand [target, source]) and W^T with delays (like
    ``delay`` = D^T). Each step first rebuilds lambda_y of the velocity it wrote from the later
    steps' adjoints (written before the previous barrier), then steps lambda_x; ``grad_pre``
    is unit-major (T, n, B) with delays. Ends with the
    gradient of y0 (no delays) or of the history rows (delays, if wanted); lambda_x_ptr then
    holds the gradient of x0.
    """
    rows, row_mask, row_offsets = _batch_rows(batch, n_units, BLOCK_B)
    last = tl.cast(steps - 1, tl.int64) * step_stride
    for unit_start in range(0, n_units, BLOCK_N):
        units, unit_mask, mask, tile = _unit_tile(
            unit_start, row_mask, row_offsets, n_units, BLOCK_N
        )
        if HAS_GRAD_POSITIONS:
            start = tl.load(grad_positions_ptr + last + tile, mask=mask, other=0.0)
        else:
            start = tl.zeros((BLOCK_B, BLOCK_N), dtype=tl.float32)
        tl.store(lambda_x_ptr + tile, start, mask=mask)
    tl.debug_barrier()
    for iteration in range(steps):
        step = steps - 1 - iteration
        step_offset = tl.cast(step, tl.int64) * step_stride
        for unit_start in range(0, n_units, BLOCK_N):
            units, unit_mask, mask, tile = _unit_tile(
                unit_start, row_mask, row_offsets, n_units, BLOCK_N
            )
            gain, spring, retention, feedback = _unit_coefficients(
                gain_ptr, spring_ptr, retention_ptr, feedback_ptr, units, unit_mask, HAS_FEEDBACK
            )
            lambda_y = _velocity_adjoint(
                step, grad_velocities_ptr, adjoint_ptr, grad_pre_ptr, matrix_ptr, delay_ptr,
                retention, rows, row_offsets, row_mask, units, unit_mask, tile, mask, steps, batch,
                n_units, step_stride, history_length, HAS_DELAY, HAS_GRAD_VELOCITIES, PRECISION,
                BLOCK_B, BLOCK_N, BLOCK_K,
            )  # fmt: skip
            lambda_x = tl.load(lambda_x_ptr + tile, mask=mask, other=0.0)
            activation = tl.load(activations_ptr + step_offset + tile, mask=mask, other=0.0)
            adjoint, grad_pre, lambda_x = _adjoint_step(
                lambda_x, lambda_y, activation, gain, spring, feedback, dt, HAS_FEEDBACK
            )
            tl.store(adjoint_ptr + step_offset + tile, adjoint, mask=mask)
            if HAS_DELAY:
                grad_pre_tile = _unit_major_tile(rows, units, batch)
            else:
                grad_pre_tile = tile
            tl.store(grad_pre_ptr + step_offset + grad_pre_tile, grad_pre, mask=mask)
            if HAS_GRAD_POSITIONS:
                lambda_x += tl.load(
                    grad_positions_ptr + (step_offset - step_stride) + tile,
                    mask=mask & (step > 0),
                    other=0.0,
                )
            tl.store(lambda_x_ptr + tile, lambda_x, mask=mask)
        tl.debug_barrier()
    if not HAS_DELAY:
        for unit_start in range(0, n_units, BLOCK_N):
            units, unit_mask, mask, tile = _unit_tile(
                unit_start, row_mask, row_offsets, n_units, BLOCK_N
            )
            retention = _unit_row(retention_ptr, units, unit_mask)
            grad_y0 = _velocity_adjoint(
                -1, grad_velocities_ptr, adjoint_ptr, grad_pre_ptr, matrix_ptr, delay_ptr,
                retention, rows, row_offsets, row_mask, units, unit_mask, tile, mask, steps, batch,
                n_units, step_stride, history_length, HAS_DELAY, HAS_GRAD_VELOCITIES, PRECISION,
                BLOCK_B, BLOCK_N, BLOCK_K,
            )  # fmt: skip
            tl.store(grad_y0_ptr + tile, grad_y0, mask=mask)
    if HISTORY_GRAD:
        # History row k holds yhat(-k), read by step d_ij - k; its output gradient is row
        # L - 1 - k of the velocity buffer's gradient.
        for lag in range(history_length):
            for unit_start in range(0, n_units, BLOCK_N):
                units, unit_mask, mask, tile = _unit_tile(
                    unit_start, row_mask, row_offsets, n_units, BLOCK_N
                )
                if HAS_GRAD_VELOCITIES:
                    total = tl.load(
                        grad_velocities_ptr
                        + tl.cast(history_length - 1 - lag, tl.int64) * step_stride
                        + tile,
                        mask=mask,
                        other=0.0,
                    )
                else:
                    total = tl.zeros((BLOCK_B, BLOCK_N), dtype=tl.float32)
                total = _delayed_product(
                    total, grad_pre_ptr, matrix_ptr, delay_ptr, -lag, 1, steps, rows, row_mask,
                    units, unit_mask, n_units, batch, step_stride, BLOCK_K,
                )  # fmt: skip
                tl.store(
                    grad_history_ptr + tl.cast(lag, tl.int64) * step_stride + tile,
                    total,
                    mask=mask,
                )


# ---------------------------------------------------------------------------------------------
# Launch configurations
# ---------------------------------------------------------------------------------------------


def _grid(batch: int):
    return lambda meta: (triton.cdiv(batch, meta["BLOCK_B"]),)


def _keep_fitting_tiles(configs: list, named_args: dict, **kwargs: Any) -> list:
    """Drop tile shapes wider than padded n (they only add masked lanes); keep at least one."""
    padded = _padded_units(int(named_args.get("n_units", kwargs.get("n_units", 1))))
    fitting = [
        config
        for config in configs
        if config.kwargs["BLOCK_N"] <= padded and config.kwargs["BLOCK_K"] <= padded
    ]
    if fitting:
        return fitting
    smallest = min(configs, key=lambda config: config.kwargs["BLOCK_N"] * config.kwargs["BLOCK_K"])
    return [smallest]


def _register_warp_range(padded_units: int) -> tuple[int, int]:
    """Warps a register-path program may have at padded n: (fewest, most).

    Fewest, N_PAD / 8: with fewer threads the (N_PAD, N_PAD) weight they hold crowds out the
    rest (ptxas, sm_90: 4 warps at N_PAD = 64 take 254-255 registers and spill 8 bytes with a
    bfloat16 weight in TF32; 8 warps at 128 spill 40). Most, max(8, N_PAD / 8): beyond it a
    thread holds only a few of the 16 x N_PAD outputs and extra warps add barrier and
    layout-exchange traffic. So 4-8 warps up to N_PAD = 32, 8 at 64, 16 at 128.
    """
    return max(1, padded_units // 8), max(8, padded_units // 8)


def _keep_spill_free_warps(configs: list, named_args: dict, **kwargs: Any) -> list:
    """Register-path configurations within :func:`_register_warp_range`; keep at least one."""
    fewest, most = _register_warp_range(int(kwargs["N_PAD"]))
    fitting = [config for config in configs if fewest <= config.num_warps <= most]
    if fitting:
        return fitting
    return [min(configs, key=lambda config: abs(config.num_warps - fewest))]


def _config(num_warps: int, **tiles: int) -> triton.Config:
    # Without a register limit ptxas sometimes caps a kernel far below the 255 a thread may have
    # (80-128 registers at 8 warps) and spills a few bytes; naming the most the SM allows for
    # this many threads lets it use them (the 65536-register file over 32 * num_warps threads).
    registers = min(255, 65536 // (32 * num_warps))
    return triton.Config(tiles, num_warps=num_warps, num_stages=1, maxnreg=registers)


# Every configuration below compiles without spilling for sm_90 (triton 3.5's ptxas) in float32
# and bfloat16, with "ieee" and "tf32" products, at n in {16, 32, 64, 100, 128, 256, 1024},
# with and without delays; tests/functional/test_kernels_compile.py checks the benchmark
# shapes. Dropped for spilling: register programs of 1-2 warps (up to 1.3 KB), dense tiles of
# 16 x 64 x 64 at 4 warps and of 32 x 64 x 64 or 32 x 128 x 32 at 8 warps (255 registers,
# 300-800 bytes), and every delayed tile of 8 rows or with 16 x 32 x 16 at 8 warps or 16 x 16
# x 16 at 4 warps (4-48 bytes; some only with a bfloat16 weight, one batch size or one history
# flag: ptxas spills these few bytes at 72-128 registers, so only a compile finds them).
# Small lists: autotuning runs once per shape and counts in the first call's time. The
# interpreter gets one configuration (autotuning it would only cost time).
if triton_interpreting():
    _REGISTER_CONFIGS = [_config(4, BLOCK_B=16)]
    _DENSE_TILED_CONFIGS = [_config(4, BLOCK_B=16, BLOCK_N=16, BLOCK_K=16)]
    _DELAYED_CONFIGS = [_config(4, BLOCK_B=8, BLOCK_N=16, BLOCK_K=16)]
else:
    # 16 rows, the smallest tl.dot side, give the most programs for a batch (see the module
    # docstring on occupancy); more warps split the same tile's product finer.
    _REGISTER_CONFIGS = [_config(w, BLOCK_B=16) for w in (4, 8, 16)]
    _DENSE_TILED_CONFIGS = [
        _config(8, BLOCK_B=16, BLOCK_N=64, BLOCK_K=64),
        _config(8, BLOCK_B=16, BLOCK_N=128, BLOCK_K=32),
        _config(4, BLOCK_B=16, BLOCK_N=64, BLOCK_K=32),
        _config(4, BLOCK_B=16, BLOCK_N=32, BLOCK_K=32),
    ]
    # The delayed gathers are contiguous along the batch: wider batch tiles coalesce better,
    # 16 rows give more programs for small batches (8-row tiles would give more still, but
    # spill). A gather holds BLOCK_B x BLOCK_N x BLOCK_K values with 64-bit addresses, 32-64
    # of them per thread.
    _DELAYED_CONFIGS = [
        _config(8, BLOCK_B=16, BLOCK_N=16, BLOCK_K=32),
        _config(4, BLOCK_B=16, BLOCK_N=16, BLOCK_K=32),
        _config(8, BLOCK_B=32, BLOCK_N=32, BLOCK_K=16),
        _config(4, BLOCK_B=32, BLOCK_N=16, BLOCK_K=16),
    ]

# PRECISION is a key: a configuration tuned for one product precision is not reused for the
# other when allow_tf32 changes between calls.
_TUNING_KEYS = ["n_units", "batch", "HAS_FEEDBACK", "PRECISION"]


def _autotuned(kernel: Any, configs: list[triton.Config], prune: Callable[..., list]) -> Any:
    """``kernel`` autotuned over ``configs`` per tuning key, ``prune`` dropping configs first."""
    return triton.autotune(
        configs, key=_TUNING_KEYS, prune_configs_by={"early_config_prune": prune}
    )(kernel)


_forward_registers = _autotuned(
    _forward_registers_kernel, _REGISTER_CONFIGS, _keep_spill_free_warps
)
_backward_registers = _autotuned(
    _backward_registers_kernel, _REGISTER_CONFIGS, _keep_spill_free_warps
)
_forward_dense_tiled = _autotuned(_forward_tiled_kernel, _DENSE_TILED_CONFIGS, _keep_fitting_tiles)
_backward_dense_tiled = _autotuned(
    _backward_tiled_kernel, _DENSE_TILED_CONFIGS, _keep_fitting_tiles
)
_forward_delayed = _autotuned(_forward_tiled_kernel, _DELAYED_CONFIGS, _keep_fitting_tiles)
_backward_delayed = _autotuned(_backward_tiled_kernel, _DELAYED_CONFIGS, _keep_fitting_tiles)


def _uses_registers(n_units: int, delayed: bool) -> bool:
    return not delayed and _padded_units(n_units) <= REGISTER_PATH_MAX_UNITS


# ---------------------------------------------------------------------------------------------
# The autograd Function
# ---------------------------------------------------------------------------------------------


class HORNScanTriton(torch.autograd.Function):
    """:class:`dyna.functional.horn.HORNScan` with its two recurrences as Triton kernels.

    Same inputs and outputs (the coefficients may be float32 for a bfloat16 drive; the outputs
    are in the drive's dtype). The weight gradient and the per-unit coefficient gradients are
    formed from the saved float32 buffers with a few large torch ops, as in ``HORNScan``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        drive: torch.Tensor,
        weight: torch.Tensor,
        gain: torch.Tensor,
        spring: torch.Tensor,
        retention: torch.Tensor,
        feedback: torch.Tensor | None,
        x0: torch.Tensor,
        y0: torch.Tensor,
        history: torch.Tensor | None,
        delay: torch.Tensor | None,
        dt: float,
        length: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)
        steps, batch, n_units = drive.shape
        work = torch.float32
        ctx.input_dtypes = (
            drive.dtype,
            gain.dtype,
            None if feedback is None else feedback.dtype,
            None if history is None else history.dtype,
        )
        drive = drive.contiguous()
        x0 = x0.contiguous()
        y0 = y0.contiguous()
        gain, spring, retention = (c.to(work).contiguous() for c in (gain, spring, retention))
        feedback_work = None if feedback is None else feedback.to(work).contiguous()
        positions = drive.new_empty((steps, batch, n_units), dtype=work)
        activations = drive.new_empty((steps, batch, n_units), dtype=work)
        if delay is None:
            velocities = drive.new_empty((length + steps, batch, n_units), dtype=work)
            velocities[0].copy_(y0)
        else:
            # Unit-major (time, unit, batch) for the kernels' coalesced delayed gathers.
            velocities = drive.new_empty((length + steps, n_units, batch), dtype=work)
            if history is None:
                velocities[:length].zero_()
            else:
                velocities[:length].copy_(history.flip(0).transpose(1, 2))
        common = {
            "steps": steps,
            "batch": batch,
            "n_units": n_units,
            "step_stride": batch * n_units,
            "dt": float(dt),
            "HAS_FEEDBACK": feedback is not None,
            "PRECISION": dot_precision(),
        }
        feedback_arg = gain if feedback_work is None else feedback_work  # unread if None
        coefficients = (gain, spring, retention, feedback_arg)
        outputs = (positions, velocities, activations)
        delay_work = None
        if _uses_registers(n_units, delay is not None):
            _forward_registers[_grid(batch)](
                drive, weight.t().contiguous(), *coefficients, x0, y0, *outputs,
                N_PAD=_padded_units(n_units), **common,
            )  # fmt: skip
        elif delay is None:
            _forward_dense_tiled[_grid(batch)](
                drive, weight.t().contiguous(), drive, *coefficients, x0, y0, *outputs,
                history_length=length, HAS_DELAY=False, **common,
            )  # fmt: skip
        else:
            delay_work = delay.to(device=drive.device, dtype=torch.int32).contiguous()
            _forward_delayed[_grid(batch)](
                drive, weight.contiguous(), delay_work, *coefficients, x0, y0, *outputs,
                history_length=length, HAS_DELAY=True, **common,
            )  # fmt: skip
            velocities = velocities.transpose(1, 2).contiguous()
        ctx.save_for_backward(
            weight, gain, spring, retention, feedback_work, x0, y0, delay_work, positions,
            velocities, activations,
        )  # fmt: skip
        ctx.dt = float(dt)
        ctx.length = length
        return positions.to(drive.dtype), velocities.to(drive.dtype)

    @staticmethod
    @first_order_backward("horn_scan", "horn_scan_ref")
    def backward(ctx: Any, grad_positions: torch.Tensor, grad_velocities: torch.Tensor) -> tuple:
        (weight, gain, spring, retention, feedback, x0, y0, delay) = ctx.saved_tensors[:8]
        positions, velocities, activations = ctx.saved_tensors[8:]
        steps, batch, n_units = positions.shape
        length = ctx.length
        needs = ctx.needs_input_grad
        work = torch.float32
        delayed = delay is not None
        # Outputs nobody used arrive as None (set_materialize_grads(False)): the kernels skip
        # their loads instead of reading zero tensors.
        grad_x_seq = None if grad_positions is None else grad_positions.to(work).contiguous()
        grad_v_seq = None if grad_velocities is None else grad_velocities.to(work).contiguous()
        # Unit-major (T, n, B) with delays, for the kernel's coalesced gathers.
        grad_pre = activations.new_empty(
            (steps, n_units, batch) if delayed else (steps, batch, n_units)
        )
        adjoint = torch.empty_like(activations)
        grad_x0 = positions.new_empty((batch, n_units))
        grad_y0 = positions.new_empty((batch, n_units)) if not delayed else None
        history_grad = delayed and bool(needs[8])
        grad_history = positions.new_empty((length, batch, n_units)) if history_grad else None
        common = {
            "steps": steps,
            "batch": batch,
            "n_units": n_units,
            "step_stride": batch * n_units,
            "dt": ctx.dt,
            "HAS_GRAD_POSITIONS": grad_x_seq is not None,
            "HAS_GRAD_VELOCITIES": grad_v_seq is not None,
            "HAS_FEEDBACK": feedback is not None,
            "PRECISION": dot_precision(),
        }
        # Unread placeholders where an input is absent (its flag is off).
        grad_x_arg = activations if grad_x_seq is None else grad_x_seq
        grad_v_arg = activations if grad_v_seq is None else grad_v_seq
        feedback_arg = gain if feedback is None else feedback
        coefficients = (gain, spring, retention, feedback_arg)
        if _uses_registers(n_units, delayed):
            _backward_registers[_grid(batch)](
                grad_x_arg, grad_v_arg, activations, weight.contiguous(), *coefficients,
                grad_pre, adjoint, grad_x0, grad_y0, N_PAD=_padded_units(n_units), **common,
            )  # fmt: skip
        elif not delayed:
            _backward_dense_tiled[_grid(batch)](
                grad_x_arg, grad_v_arg, activations, weight.contiguous(), activations,
                *coefficients, grad_pre, adjoint, grad_x0, grad_y0, grad_x0,
                history_length=length, HAS_DELAY=False, HISTORY_GRAD=False, **common,
            )  # fmt: skip
        else:
            _backward_delayed[_grid(batch)](
                grad_x_arg, grad_v_arg, activations, weight.t().contiguous(),
                delay.t().contiguous(), *coefficients, grad_pre, adjoint, grad_x0, grad_x0,
                grad_x0 if grad_history is None else grad_history,
                history_length=length, HAS_DELAY=True, HISTORY_GRAD=history_grad, **common,
            )  # fmt: skip
            grad_pre = grad_pre.transpose(1, 2).contiguous()

        grad_weight = None
        if needs[1]:
            flat_grad_pre = grad_pre.view(steps * batch, n_units).t()
            if not delayed:
                # sum_t grad_pre_t^T y_{t-1}: one matmul over all steps and rows.
                previous = velocities[:-1].reshape(steps * batch, n_units)
                grad_weight = flat_grad_pre.mm(previous)
            else:
                # sum_t grad_pre_i(t) yhat_j(t-1-d_ij): one matmul per lag over the shifted
                # velocity window, then each connection picks its own lag.
                per_lag = grad_pre.new_empty((length, n_units, n_units))
                for lag in range(length):
                    start = length - 1 - lag
                    window = velocities[start : start + steps].view(steps * batch, n_units)
                    torch.mm(flat_grad_pre, window, out=per_lag[lag])
                grad_weight = per_lag.gather(0, delay.to(torch.int64).unsqueeze(0)).squeeze(0)
            grad_weight = grad_weight.to(weight.dtype)
        dims = (0, 1)
        x0_work = x0.to(work)
        if delayed:
            # The dynamics' y_{t-1}: y0, then the velocities the scan wrote.
            previous_y_sum = _previous_sum(adjoint, velocities[length:], y0.to(work), dims)
        else:
            previous_y_sum = (adjoint * velocities[:-1]).sum(dims)
        grad_gain = (adjoint * activations).sum(dims) if needs[2] else None
        grad_spring = -_previous_sum(adjoint, positions, x0_work, dims) if needs[3] else None
        grad_retention = previous_y_sum if needs[4] else None
        grad_feedback = _previous_sum(grad_pre, positions, x0_work, dims) if needs[5] else None
        if needs[7]:
            grad_y0 = adjoint[0] * retention if delayed else grad_y0
        drive_dtype, coefficient_dtype, feedback_dtype, history_dtype = ctx.input_dtypes
        return (
            grad_pre.to(drive_dtype) if needs[0] else None,
            grad_weight,
            None if grad_gain is None else grad_gain.to(coefficient_dtype),
            None if grad_spring is None else grad_spring.to(coefficient_dtype),
            None if grad_retention is None else grad_retention.to(coefficient_dtype),
            None if grad_feedback is None else grad_feedback.to(feedback_dtype),
            grad_x0.to(x0.dtype) if needs[6] else None,
            grad_y0.to(y0.dtype) if needs[7] and grad_y0 is not None else None,
            None if grad_history is None else grad_history.to(history_dtype),
            None,
            None,
            None,
        )
