# Triton kernels annotate only their compile-time constants (tl.constexpr).
# mypy: disable-error-code="no-untyped-def"
"""One Triton kernel for the key path of a CNU step: attention, top-δ, online key update.

For every unit j (one program each) and a batch of unit-norm projected inputs z (b, d):

1. responses R = z K[j]ᵀ and their top-δ (values r, indices idx; first index on ties);
2. in training with online keys (``upd_k="ad_hoc_WTA"``):
   - scrambling (optional): the loosest element e = argmin_i r[i, 0]; when r[e, 0] < τ_α and
     some key is weak (μ < τ_μ and η >= τ_η), the key c = argmax_t η_t·weak_t takes z[e], its
     memory a copy of the winner's, μ_c = 0, the element's winner becomes c and the unit's
     ``scrambling_count`` grows by one;
   - the pull K[j, win_i] += β z_i, then the renormalisation of the winning keys (b = 1) or of
     every key (b > 1);
   - the refresh: b = 1 recomputes the winner's response only (the other slots stay stale),
     b > 1 the whole top-δ;
   - the counters: η_win = 0, μ_win += wins, η += b;
3. α = softmax(s·r) over the δ slots.

Everything stays on the device: no host synchronisation, one launch instead of some fifty
small torch ops. The phases of a program share the keys through global memory, separated by
barriers. Products and sums are float32 (the pull is summed over the batch before it is added,
so keys agree with the torch path to rounding, not bitwise). ``CNUs._update_keys_and_counters``
and ``CNUs._scramble`` (the torch path) are the specification. Import this module only after
``TRITON_INTERPRET`` is set where the kernel should run in the interpreter (CPU tensors).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from dyna.functional._backend import prepare_interpreter

prepare_interpreter()

_BATCH_BLOCK = 32
_KEY_BLOCK = 64
_MEMORY_BLOCK = 1024
# Eight warps: with four, the phases' tiles need more than 255 registers a thread and spill.
_WARPS = 8


@triton.jit
def _top_k_pass(
    z_ptr,
    keys_ptr,
    responses_ptr,
    indices_ptr,
    b,
    m,
    d,
    unit,
    units,
    COUNT_WINS: tl.constexpr,
    SLOTS: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Top-δ responses of every batch tile to unit ``unit``'s keys, stored.

    Returns ``(worst, worst_element, wins)``: without COUNT_WINS the loosest winning response
    and its sample (scalars, for scrambling); with it the wins of every key (BLOCK_M,) float32.
    """
    key_rows = tl.arange(0, BLOCK_M)
    keys_ok = key_rows < m
    worst = tl.full((), float("inf"), tl.float32)
    worst_element = tl.full((), 0, tl.int32)
    wins = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for batch_start in range(0, b, BLOCK_B):
        rows = batch_start + tl.arange(0, BLOCK_B)
        rows_ok = rows < b
        similarity = tl.zeros((BLOCK_B, BLOCK_M), dtype=tl.float32)
        for start in range(0, d, BLOCK_D):
            column = start + tl.arange(0, BLOCK_D)
            column_ok = column < d
            inputs = tl.load(
                z_ptr + rows[:, None] * d + column[None, :],
                mask=rows_ok[:, None] & column_ok[None, :],
                other=0.0,
            ).to(tl.float32)
            keys = tl.load(
                keys_ptr + (unit * m + key_rows[:, None]) * d + column[None, :],
                mask=keys_ok[:, None] & column_ok[None, :],
                other=0.0,
            ).to(tl.float32)
            similarity += tl.dot(inputs, tl.trans(keys), input_precision="ieee")
        similarity = tl.where(keys_ok[None, :], similarity, float("-inf"))
        out = (rows * units + unit) * SLOTS
        winner_value = tl.zeros((BLOCK_B,), dtype=tl.float32)
        winner_index = tl.zeros((BLOCK_B,), dtype=tl.int64)
        for slot in tl.static_range(SLOTS):
            best = tl.max(similarity, axis=1)
            # First index among equal values, as torch.topk picks on the CPU.
            chosen = tl.min(
                tl.where(similarity == best[:, None], key_rows[None, :], BLOCK_M), axis=1
            )
            tl.store(responses_ptr + out + slot, best, mask=rows_ok)
            tl.store(indices_ptr + out + slot, chosen.to(tl.int64), mask=rows_ok)
            if slot == 0:
                winner_value = best
                winner_index = chosen.to(tl.int64)
            similarity = tl.where(key_rows[None, :] == chosen[:, None], float("-inf"), similarity)
        if COUNT_WINS:
            one_hot = (winner_index[:, None] == key_rows[None, :]) & rows_ok[:, None]
            wins += tl.sum(one_hot.to(tl.float32), axis=0)
        else:
            winner_value = tl.where(rows_ok, winner_value, float("inf"))
            tile_worst = tl.min(winner_value, axis=0)
            tile_element = tl.min(tl.where(winner_value == tile_worst, rows, 2**30), axis=0)
            better = tile_worst < worst
            worst_element = tl.where(better, tile_element, worst_element)
            worst = tl.where(better, tile_worst, worst)
    return worst, worst_element, wins


@triton.jit
def _cnu_key_step_kernel(
    z_ptr,
    keys_ptr,
    memories_ptr,
    mu_ptr,
    eta_ptr,
    scrambling_count_ptr,
    responses_ptr,
    indices_ptr,
    weights_ptr,
    b,
    m,
    d,
    u,
    units,
    scale,
    beta,
    tau_alpha,
    tau_mu,
    tau_eta,
    ONLINE: tl.constexpr,
    SCRAMBLE: tl.constexpr,
    SLOTS: tl.constexpr,
    BLOCK_SLOTS: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_U: tl.constexpr,
):
    unit = tl.program_id(0).to(tl.int64)
    key_rows = tl.arange(0, BLOCK_M)
    keys_ok = key_rows < m
    slot_range = tl.arange(0, BLOCK_SLOTS)
    # Phase 1: top-δ of every batch tile; the loosest winner for scrambling.
    worst, worst_element, _unused_wins = _top_k_pass(
        z_ptr,
        keys_ptr,
        responses_ptr,
        indices_ptr,
        b,
        m,
        d,
        unit,
        units,
        False,
        SLOTS,
        BLOCK_B,
        BLOCK_M,
        BLOCK_D,
    )
    if ONLINE:
        tl.debug_barrier()
        counter_offsets = unit * m + key_rows
        if SCRAMBLE:
            mu = tl.load(mu_ptr + counter_offsets, mask=keys_ok, other=0.0).to(tl.float32)
            eta = tl.load(eta_ptr + counter_offsets, mask=keys_ok, other=0.0).to(tl.float32)
            weak = (mu < tau_mu) & (eta >= tau_eta) & keys_ok
            any_weak = tl.max(weak.to(tl.int32), axis=0) > 0
            aged = tl.where(keys_ok, eta * weak.to(tl.float32), float("-inf"))
            oldest = tl.max(aged, axis=0)
            candidate = tl.min(tl.where(aged == oldest, key_rows, BLOCK_M), axis=0).to(tl.int64)
            if (worst < tau_alpha) & any_weak:
                count = tl.load(scrambling_count_ptr + unit)
                tl.store(scrambling_count_ptr + unit, count + 1)
                winner_slot = indices_ptr + (worst_element * units + unit) * SLOTS
                previous_winner = tl.load(winner_slot)
                for start in range(0, d, BLOCK_D):
                    column = start + tl.arange(0, BLOCK_D)
                    value = tl.load(z_ptr + worst_element * d + column, mask=column < d)
                    tl.store(
                        keys_ptr + (unit * m + candidate) * d + column,
                        value.to(keys_ptr.dtype.element_ty),
                        mask=column < d,
                    )
                # Warm start: the candidate's memory becomes a copy of the winner's.
                if previous_winner != candidate:
                    for start in range(0, u, BLOCK_U):
                        column = start + tl.arange(0, BLOCK_U)
                        value = tl.load(
                            memories_ptr + (unit * m + previous_winner) * u + column,
                            mask=column < u,
                        )
                        tl.store(
                            memories_ptr + (unit * m + candidate) * u + column,
                            value,
                            mask=column < u,
                        )
                tl.store(winner_slot, candidate)
                tl.store(mu_ptr + unit * m + candidate, 0.0)
            tl.debug_barrier()
        # Phase 2: the pull of the winning keys, summed over the batch, and their new norms.
        squared_norm = tl.zeros((BLOCK_M,), dtype=tl.float32)
        wins = tl.zeros((BLOCK_M,), dtype=tl.float32)
        for start in range(0, d, BLOCK_D):
            column = start + tl.arange(0, BLOCK_D)
            column_ok = column < d
            pull = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
            for batch_start in range(0, b, BLOCK_B):
                rows = batch_start + tl.arange(0, BLOCK_B)
                rows_ok = rows < b
                winners = tl.load(
                    indices_ptr + (rows * units + unit) * SLOTS, mask=rows_ok, other=-1
                )
                one_hot = (winners[:, None] == key_rows[None, :]).to(tl.float32)
                steps = beta * tl.load(
                    z_ptr + rows[:, None] * d + column[None, :],
                    mask=rows_ok[:, None] & column_ok[None, :],
                    other=0.0,
                ).to(tl.float32)
                pull += tl.dot(tl.trans(one_hot), steps, input_precision="ieee")
                if start == 0:
                    wins += tl.sum(one_hot, axis=0)
            key_offsets = (unit * m + key_rows[:, None]) * d + column[None, :]
            key_mask = keys_ok[:, None] & column_ok[None, :]
            keys = tl.load(keys_ptr + key_offsets, mask=key_mask, other=0.0).to(tl.float32)
            keys = (keys + pull).to(keys_ptr.dtype.element_ty)
            tl.store(keys_ptr + key_offsets, keys, mask=key_mask)
            widened = keys.to(tl.float32)
            squared_norm += tl.sum(widened * widened, axis=1)
        # b = 1 renormalises only the winners, b > 1 every key (the reference's two paths).
        renormalise = keys_ok & ((wins > 0) | (b > 1))
        norm = tl.maximum(tl.sqrt(squared_norm), 1e-12)
        tl.debug_barrier()
        for start in range(0, d, BLOCK_D):
            column = start + tl.arange(0, BLOCK_D)
            key_offsets = (unit * m + key_rows[:, None]) * d + column[None, :]
            key_mask = renormalise[:, None] & (column < d)[None, :]
            keys = tl.load(keys_ptr + key_offsets, mask=key_mask, other=0.0).to(tl.float32)
            keys = keys / norm[:, None]
            tl.store(keys_ptr + key_offsets, keys.to(keys_ptr.dtype.element_ty), mask=key_mask)
        tl.debug_barrier()
        # Phase 3: refresh the responses and count the refreshed winners.
        wins = tl.zeros((BLOCK_M,), dtype=tl.float32)
        if b == 1:
            winner_slot = indices_ptr + unit * SLOTS
            winner = tl.load(winner_slot)
            response = tl.zeros((BLOCK_D,), dtype=tl.float32)
            for start in range(0, d, BLOCK_D):
                column = start + tl.arange(0, BLOCK_D)
                value = tl.load(z_ptr + column, mask=column < d, other=0.0).to(tl.float32)
                key = tl.load(
                    keys_ptr + (unit * m + winner) * d + column, mask=column < d, other=0.0
                ).to(tl.float32)
                response += value * key
            tl.store(responses_ptr + unit * SLOTS, tl.sum(response, axis=0))
            wins = (key_rows == winner).to(tl.float32)
        else:
            _unused_worst, _unused_element, wins = _top_k_pass(
                z_ptr,
                keys_ptr,
                responses_ptr,
                indices_ptr,
                b,
                m,
                d,
                unit,
                units,
                True,
                SLOTS,
                BLOCK_B,
                BLOCK_M,
                BLOCK_D,
            )
        eta = tl.load(eta_ptr + counter_offsets, mask=keys_ok, other=0.0)
        mu = tl.load(mu_ptr + counter_offsets, mask=keys_ok, other=0.0)
        eta = tl.where(wins > 0, 0.0, eta.to(tl.float32)) + b
        tl.store(eta_ptr + counter_offsets, eta.to(eta_ptr.dtype.element_ty), mask=keys_ok)
        mu = mu.to(tl.float32) + wins
        tl.store(mu_ptr + counter_offsets, mu.to(mu_ptr.dtype.element_ty), mask=keys_ok)
        tl.debug_barrier()
    # Phase 4: α = softmax(s·r) over the δ slots of every sample.
    for batch_start in range(0, b, BLOCK_B):
        rows = batch_start + tl.arange(0, BLOCK_B)
        offsets = ((rows * units + unit) * SLOTS)[:, None] + slot_range[None, :]
        mask = (rows < b)[:, None] & (slot_range < SLOTS)[None, :]
        logits = scale * tl.load(responses_ptr + offsets, mask=mask, other=0.0)
        logits = tl.where((slot_range < SLOTS)[None, :], logits, float("-inf"))
        exponentials = tl.exp(logits - tl.max(logits, axis=1)[:, None])
        weights = exponentials / tl.sum(exponentials, axis=1)[:, None]
        tl.store(weights_ptr + offsets, weights, mask=mask)


@torch.library.custom_op(
    "dyna::cnu_key_step", mutates_args=("keys", "memories", "mu", "eta", "scrambling_count")
)
def cnu_key_step(
    z: torch.Tensor,
    keys: torch.Tensor,
    memories: torch.Tensor,
    mu: torch.Tensor,
    eta: torch.Tensor,
    scrambling_count: torch.Tensor,
    delta: int,
    scale: float,
    beta: float,
    tau_alpha: float,
    tau_mu: float,
    tau_eta: float,
    online: bool,
    scramble: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Attention of a CNU bank and, with ``online``, its online key step, in one launch.

    Args:
        z: unit-norm projected inputs (b, d), contiguous, in the keys' dtype.
        keys: K (q, m, d); memories: M (q, m, u); mu, eta: counters (q, m);
            scrambling_count: int64 (q,). All contiguous; updated in place when ``online``.
        delta: slots per unit, k; scale: s = γ_α/√d.
        beta, tau_alpha, tau_mu, tau_eta: the online step's constants.
        online: run the key update (training with ``upd_k="ad_hoc_WTA"``).
        scramble: with ``online``, replace old under-used keys.

    Returns:
        ``(responses, indices, weights)``, each (b, q, k): float32 responses and weights,
        int64 indices.
    """
    b, d = z.shape
    q, m, _ = keys.shape
    u = memories.shape[2]
    responses = torch.empty(b, q, delta, device=z.device, dtype=torch.float32)
    indices = torch.empty(b, q, delta, device=z.device, dtype=torch.int64)
    weights = torch.empty_like(responses)
    key_block = max(16, triton.next_power_of_2(m))
    if b:
        _cnu_key_step_kernel[(q,)](
            z,
            keys,
            memories,
            mu,
            eta,
            scrambling_count,
            responses,
            indices,
            weights,
            b,
            m,
            d,
            u,
            q,
            scale,
            beta,
            tau_alpha,
            tau_mu,
            tau_eta,
            ONLINE=online,
            SCRAMBLE=scramble,
            SLOTS=delta,
            BLOCK_SLOTS=triton.next_power_of_2(delta),
            BLOCK_B=_BATCH_BLOCK,
            BLOCK_M=key_block,
            # Narrower column tiles for many keys keep the (keys, columns) tiles in registers.
            BLOCK_D=max(16, _KEY_BLOCK * 32 // max(32, key_block)),
            BLOCK_U=_MEMORY_BLOCK,
            num_warps=_WARPS,
        )
    return responses, indices, weights


@cnu_key_step.register_fake
def _cnu_key_step_fake(
    z,
    keys,
    memories,
    mu,
    eta,
    scrambling_count,
    delta,
    scale,
    beta,
    tau_alpha,
    tau_mu,
    tau_eta,
    online,
    scramble,
):
    b = z.shape[0]
    q = keys.shape[0]
    responses = z.new_empty(b, q, delta, dtype=torch.float32)
    return responses, z.new_empty(b, q, delta, dtype=torch.int64), torch.empty_like(responses)
