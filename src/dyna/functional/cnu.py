"""Stateless maths of Continual Neural Units: the key projections ψ and the memory blends.

ψ maps a layer input to a key-space vector of length ``key_size`` (identity, sign, 1-D linear
resampling, bilinear down-scaling of an image, and its sign), optionally L2-normalised row-wise,
exactly as unaiverse 0.1.31 (``unaiverse.modules.cnu.psi``) computes it, with ``ValueError``
instead of its assertions.

The blends turn top-δ attention (indices ``idx`` and weights α, each (b, q, k)) over a bank
of memories ``M`` (q, m, u) into weights or layer outputs:

    W[i, j] = Σ_a α[i, j, a] · M[j, idx[i, j, a]]                     (cnu_blend_weights)
    o[i]    = W[i] viewed as (out, in [+ 1]) applied to [x_i, 1]       (cnu_linear)

With ``wta=True`` only the first (winning) slot passes gradient to ``M``; the other slots use
sg(M), as the reference's winner-take-all memory update does. ``cnu_linear`` computes the layer
output in output space, o_i = Σ_a α_ia · (M[idx_ia] x̃_i), never building per-sample weight
matrices; ``cnu_linear_ref`` is its plain twin, which materialises them like the reference.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dyna._validation import check_bool, check_floating_tensor, check_positive_int
from dyna.functional._autograd import first_order_backward
from dyna.functional._backend import check_backend, logger, use_triton

PSI_MODES = ("identity", "sign", "resize1d", "resize2d", "resize2d_sign")


def resize1d(x: torch.Tensor, key_size: int) -> torch.Tensor:
    """Resample each row of ``x`` (b, n) to length ``key_size`` by linear interpolation.

    Rows already of length ``key_size`` are returned unchanged (the same tensor, no copy).

    Args:
        x: input of shape (b, n).
        key_size: output length, >= 1.

    Shape:
        - Input: (b, n).
        - Output: (b, key_size).
    """
    check_floating_tensor("x", x)
    key_size = check_positive_int("key_size", key_size)
    if x.dim() != 2:
        raise ValueError(f"resize1d needs a 2-D input x (b, n), got shape {tuple(x.shape)}")
    if x.shape[1] == key_size:
        return x
    return F.interpolate(x.unsqueeze(1), size=key_size, mode="linear").squeeze(1)


def resize2d_size(shape: tuple[int, ...], key_size: int) -> tuple[int, int]:
    """The (height, width) that ``resize2d`` scales a (b, c, h, w) input to.

    The spatial budget per channel is s = key_size // c; the width keeps the aspect ratio,
    w' = max(1, round(sqrt(s / (h w)) w)) (Python's round, half to even), and h' = s // w'.
    Raises ``ValueError`` when the budget cannot hold one row (h' = 0).
    """
    _, c, h, w = shape
    spatial = key_size // c
    width = max(1, round(math.sqrt(float(spatial) / float(w * h)) * w))
    height = spatial // width
    if height == 0:
        raise ValueError(
            f"key_size {key_size} is too small for resize2d of an input of shape {tuple(shape)}: "
            f"{spatial} values per channel cannot hold a row of width {width}"
        )
    return height, width


def resize2d(x: torch.Tensor, key_size: int) -> torch.Tensor:
    """Scale each (c, h, w) map of ``x`` bilinearly so that it fills about ``key_size`` values.

    The maps are scaled to ``resize2d_size`` (same for every channel), flattened channel-major
    and, when the per-channel budget is not filled exactly, zero-padded on the right up to
    ``key_size``. If the budget is filled but ``key_size`` is not a multiple of c, the result is
    shorter than ``key_size`` (``psi`` then rejects it), as in the reference.

    Args:
        x: input of shape (b, c, h, w), c >= 1.
        key_size: target length, >= 1.

    Shape:
        - Input: (b, c, h, w).
        - Output: (b, key_size) or (b, c·h'·w').
    """
    check_floating_tensor("x", x)
    key_size = check_positive_int("key_size", key_size)
    if x.dim() != 4 or x.shape[1] < 1:
        raise ValueError(
            f"resize2d needs a 4-D input x (b, c, h, w) with c >= 1, got shape {tuple(x.shape)}"
        )
    height, width = resize2d_size(tuple(x.shape), key_size)
    out = F.interpolate(x, size=(height, width), mode="bilinear").flatten(start_dim=1)
    if height * width < key_size // x.shape[1]:
        padding = key_size - out.shape[1]
        out = torch.cat([out, out.new_zeros(out.shape[0], padding)], dim=1)
    return out


def psi(x: torch.Tensor, mode: str, key_size: int, normalize: bool = True) -> torch.Tensor:
    """Project a batch of layer inputs onto the key space of a CNU.

    Args:
        x: input with the batch first, at least 2-D (``resize1d`` needs exactly 2-D,
            ``resize2d``/``resize2d_sign`` exactly 4-D).
        mode: ``"identity"`` (flatten), ``"sign"`` (sign of the flattened input, sign(0) = 0),
            ``"resize1d"``, ``"resize2d"`` or ``"resize2d_sign"``.
        key_size: length of the projection; the chosen mode must produce exactly this length.
        normalize: divide each row by max(‖row‖₂, 1e-12) (default True).

    Shape:
        - Input: (b, ...).
        - Output: (b, key_size).

    Example:
        >>> psi(torch.tensor([[3.0, 4.0]]), "identity", 2)
        tensor([[0.6000, 0.8000]])
    """
    check_floating_tensor("x", x)
    if mode not in PSI_MODES:
        raise ValueError(f"psi_fn must be one of {list(PSI_MODES)}, got {mode!r}")
    key_size = check_positive_int("key_size", key_size)
    check_bool("normalize", normalize)
    if x.dim() < 2:
        raise ValueError(
            f"x must have a batch dimension and at least 2 dimensions, got shape {tuple(x.shape)}"
        )
    if mode == "identity":
        out = x.flatten(start_dim=1)
    elif mode == "sign":
        out = torch.sign(x.flatten(start_dim=1))
    elif mode == "resize1d":
        out = resize1d(x, key_size)
    elif mode == "resize2d":
        out = resize2d(x, key_size)
    else:
        out = torch.sign(resize2d(x, key_size))
    if out.shape[1] != key_size:
        raise ValueError(
            f"psi_fn {mode!r} maps an input of shape {tuple(x.shape)} to {out.shape[1]} values, "
            f"but the key size is {key_size}"
        )
    if normalize:
        out = F.normalize(out, p=2.0, dim=1, eps=1e-12)
    return out


def _check_blend_inputs(
    memories: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor
) -> None:
    check_floating_tensor("M", memories)
    check_floating_tensor("weights", weights)
    if memories.dim() != 3:
        raise ValueError(f"M must have shape (q, m, u), got {tuple(memories.shape)}")
    if not isinstance(indices, torch.Tensor) or indices.dtype != torch.int64:
        raise TypeError("indices must be an int64 tensor of shape (b, q, k)")
    if (
        indices.dim() != 3
        or indices.shape != weights.shape
        or indices.shape[1] != memories.shape[0]
    ):
        raise ValueError(
            f"indices and weights must both have shape (b, q, k) with q = {memories.shape[0]}, "
            f"got {tuple(indices.shape)} and {tuple(weights.shape)}"
        )


def cnu_blend_weights(
    memories: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor, *, wta: bool = False
) -> torch.Tensor:
    """Blend the selected memories of every unit into per-sample weights.

    Same arithmetic as the reference (the selected rows, then a batched matmul with the
    attention weights), so the result is bit-identical to it.

    Args:
        memories: ``M`` of shape (q, m, u).
        indices: selected memories, int64 (b, q, k); slot 0 is the winner.
        weights: attention weights α of shape (b, q, k).
        wta: only slot 0 passes gradient to ``M`` (winner-take-all); default False.

    Shape:
        - Output: (b, q, u).
    """
    _check_blend_inputs(memories, indices, weights)
    check_bool("wta", wta)
    b, q, k = indices.shape
    # Advanced indexing reads the same rows as the reference's gather from M broadcast to
    # (b, q, m, u), but its backward accumulates into (q, m, u): the gather's would build a
    # (b, q, m, u) gradient first.
    unit = torch.arange(q, device=indices.device).view(1, q, 1)
    if not wta:
        selected = memories[unit, indices]
        return torch.matmul(weights.view(b, q, 1, k), selected).squeeze(2)
    winner = memories[unit, indices[..., 0:1]]
    blended = (weights[..., 0:1].view(b, q, 1, 1) * winner).squeeze(2)
    others = memories.detach()[unit, indices[..., 1:]]
    return blended + torch.matmul(weights[..., 1:].view(b, q, 1, k - 1), others).squeeze(2)


def _check_linear_inputs(x, memories, indices, weights, bias):
    check_floating_tensor("x", x)
    _check_blend_inputs(memories, indices, weights)
    check_bool("bias", bias)
    if x.dim() != 2 or x.shape[0] != indices.shape[0]:
        raise ValueError(
            f"x must have shape (b, in_features) with b = {indices.shape[0]}, got {tuple(x.shape)}"
        )
    per_row = x.shape[1] + (1 if bias else 0)
    if memories.shape[2] % per_row:
        raise ValueError(
            f"the memory size {memories.shape[2]} is not a multiple of in_features"
            f"{' + 1' if bias else ''} = {per_row}"
        )
    return per_row, memories.shape[2] // per_row


def cnu_linear_ref(
    x: torch.Tensor,
    memories: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor,
    *,
    bias: bool,
    wta: bool = False,
) -> torch.Tensor:
    """Plain twin of :func:`cnu_linear`: materialise per-sample weights, then a batched matmul.

    The blended memory of unit j is laid out row-major as ``rows`` rows of
    ``in_features [+ 1]`` (weights, then the bias column), with rows = u / (in_features [+ 1]);
    the layer has q·rows outputs. This is the reference ``LinearCNU.forward``.

    Shape:
        - x: (b, in_features); memories (q, m, u); indices, weights (b, q, k).
        - Output: (b, q·rows).
    """
    per_row, rows = _check_linear_inputs(x, memories, indices, weights, bias)
    b = x.shape[0]
    blended = cnu_blend_weights(memories, indices, weights, wta=wta)
    blended = blended.reshape(b, memories.shape[0] * rows, per_row)
    matrix = blended[:, :, :-1] if bias else blended
    out = torch.matmul(matrix, x.unsqueeze(2)).squeeze(2)
    if bias:
        out = out + blended[:, :, -1]
    return out


def _layout(
    indices: torch.Tensor, memories: int, trainable_slots: int
) -> tuple[torch.Tensor, list[int], list[int]]:
    """Sort the b·k (sample, slot) pairs by memory, the trainable slots first in each group.

    Returns the stable permutation ``order`` of the flat pairs (pair i·k + a is sample i, slot
    a) and, per memory, the size of its group and how many of its pairs lead it from a
    trainable slot, as Python ints: memory t owns the sorted positions start_t .. start_t +
    size_t − 1, its trainable pairs the first ``head_t`` of them. One sort and one count serve
    the forward product, ∂x and ∂M (whose pairs are then a prefix of every group, with no
    second sort or gather); reading the counts is the one host synchronisation of the blend.
    """
    b, _, k = indices.shape
    flat = indices.reshape(b * k)
    if trainable_slots < k:
        # Key 2t for memory t's trainable pairs, 2t + 1 for its others.
        keys = indices.reshape(b, k) * 2
        keys[:, trainable_slots:] += 1
        keys = keys.view(b * k)
        counts = torch.bincount(keys, minlength=2 * memories).view(memories, 2).tolist()
        heads = [head for head, _ in counts]
        sizes = [head + rest for head, rest in counts]
    else:
        keys = flat
        sizes = torch.bincount(flat, minlength=memories).tolist()
        heads = sizes
    return torch.argsort(keys, stable=True), sizes, heads


class _OutputSpaceBlend(torch.autograd.Function):
    """o_i = Σ_a α_ia · (M[idx_ia] x̃_i) with an explicit backward, x̃_i = [x_i, 1] with a bias.

    M is viewed as (q, m, r, p), p = in_features [+ 1]: unit j's memory t holds r output rows.
    The layer input x comes in without its bias column; ∂x is returned without it too. Two
    strategies, same numbers up to rounding:

    - ``dense``: all q·m·r memory outputs in one GEMM, then a gather of the k selected ones
      (m·b·P products, no host synchronisation, graph-capturable);
    - ``grouped`` (q = 1 only): the b·k (sample, slot) pairs are sorted by memory once (see
      :func:`_layout`) and each memory in use multiplies its own contiguous group of inputs,
      one GEMM per memory written in place into the sorted output (the bias column written
      straight into the sorted inputs, no padded copy of x): exactly k·b·P products, no
      padding to the busiest memory, one host synchronisation for the group sizes. The
      backward runs two loops over the memories, one GEMM each: ∂x from the whole group, then
      ∂M from its trainable head (the winners' pairs under winner-take-all); memories with no
      trainable pair get a zero gradient without a GEMM. The α-weighted outputs are summed
      per sample from the sorted order, and the backward stays in it: the pair order, the
      sorted inputs, weights and outputs are saved from the forward, so it gathers only the
      output gradient, and ∂x is taken against the weight columns into a contiguous buffer
      that one ``index_add_`` unsorts.

    Backward, with G_ia = α_ia g_i: ∂α_ia = g_i · (M[idx_ia] x̃_i); ∂x̃_i = Σ_a M[idx_ia]ᵀ G_ia;
    ∂M[idx_ia] += G_ia x̃_iᵀ for the slots a < ``trainable_slots`` only (1 under winner-take-all).
    """

    @staticmethod
    def forward(ctx, x, memories, indices, weights, rows, trainable_slots, grouped, bias):
        b, n = x.shape
        q, m, _ = memories.shape
        k = indices.shape[2]
        p = n + 1 if bias else n
        ctx.rows, ctx.trainable_slots, ctx.grouped, ctx.bias = rows, trainable_slots, grouped, bias
        ctx.k = k
        if grouped:
            order, sizes, heads = _layout(indices, m, trainable_slots)
            # Pair i·k + a belongs to sample i.
            pair_samples = torch.div(order, k, rounding_mode="floor")
            sorted_inputs = x.new_empty(b * k, p)
            torch.index_select(x, 0, pair_samples, out=sorted_inputs[:, :n])
            if bias:
                sorted_inputs[:, n].fill_(1.0)
            sorted_outputs = x.new_empty(b * k, rows)
            # One GEMM per memory in use; a Python loop over m memories, never over the batch.
            blocks = memories.reshape(m, rows, p).transpose(1, 2).unbind(0)
            for block, inputs, outputs in zip(
                blocks, sorted_inputs.split(sizes), sorted_outputs.split(sizes), strict=True
            ):
                if inputs.shape[0]:
                    torch.mm(inputs, block, out=outputs)
            # The α-weighted outputs are summed per sample straight from the sorted order: one
            # contiguous index_add_, no unsorted copy of the memory outputs.
            sorted_weights = weights.reshape(b * k).index_select(0, order).unsqueeze(1)
            out = x.new_zeros(b, rows).index_add_(0, pair_samples, sorted_outputs * sorted_weights)
            ctx.layout = sizes, heads
            ctx.save_for_backward(
                memories, sorted_weights, sorted_outputs, order, pair_samples, sorted_inputs
            )
            return out
        x_tilde = F.pad(x, (0, 1), value=1.0) if bias else x
        all_outputs = torch.mm(x_tilde, memories.reshape(q * m * rows, p).t())
        all_outputs = all_outputs.view(b, q, m, rows)
        selected = torch.gather(all_outputs, 2, indices.unsqueeze(-1).expand(b, q, k, rows))
        ctx.save_for_backward(memories, weights, selected, indices, x_tilde)
        # k is small: a broadcast product and sum beat a batched GEMM of (1, k) x (k, rows).
        out = (weights.unsqueeze(-1) * selected).sum(2)
        return out.reshape(b, q * rows)

    @staticmethod
    @first_order_backward("cnu_linear", "cnu_linear_ref")
    def backward(ctx, grad_out):
        if ctx.grouped:
            return _OutputSpaceBlend._grouped_backward(ctx, grad_out)
        return _OutputSpaceBlend._dense_backward(ctx, grad_out)

    @staticmethod
    def _dense_backward(ctx, grad_out):
        memories, weights, selected, indices, x_tilde = ctx.saved_tensors
        rows, trainable_slots = ctx.rows, ctx.trainable_slots
        n = ctx.needs_input_grad
        b, q, k, _ = selected.shape
        _, m, u = memories.shape
        p = x_tilde.shape[1]
        grad_out = grad_out.reshape(b, q, 1, rows)
        grad_weights = (selected * grad_out).sum(-1) if n[3] else None
        slot_grads = weights.unsqueeze(-1) * grad_out  # G: (b, q, k, rows)
        # The bias column's gradient belongs to no input: ∂x is taken without it.
        in_features = p - 1 if ctx.bias else p
        grad_x = grad_memories = None
        trainable = slot_grads
        if trainable_slots < k:
            trainable = slot_grads.clone()
            trainable[:, :, trainable_slots:] = 0
        flat_memories = memories.reshape(q * m * rows, p)
        index = indices.unsqueeze(-1).expand(b, q, k, rows)
        if n[0]:
            all_grads = slot_grads.new_zeros(b, q, m, rows).scatter_add_(2, index, slot_grads)
            grad_x = torch.mm(all_grads.view(b, q * m * rows), flat_memories[:, :in_features])
        if n[1]:
            if trainable is slot_grads and grad_x is not None:
                all_trainable = all_grads
            else:
                all_trainable = trainable.new_zeros(b, q, m, rows)
                all_trainable.scatter_add_(2, index, trainable)
            grad_memories = torch.mm(all_trainable.view(b, q * m * rows).t(), x_tilde)
            grad_memories = grad_memories.reshape(q, m, u)
        return grad_x, grad_memories, None, grad_weights, None, None, None, None

    @staticmethod
    def _grouped_backward(ctx, grad_out):
        memories, sorted_weights, sorted_outputs, order, pair_samples, sorted_inputs = (
            ctx.saved_tensors
        )
        n = ctx.needs_input_grad
        sizes, heads = ctx.layout
        _, m, u = memories.shape
        pairs, p = sorted_inputs.shape
        rows = sorted_outputs.shape[1]
        b, k = grad_out.shape[0], ctx.k
        in_features = p - 1 if ctx.bias else p
        # Everything stays in the forward's sorted order: the output gradient is gathered once.
        sorted_grad_out = grad_out.reshape(b, rows).index_select(0, pair_samples)
        grad_weights = grad_x = grad_memories = None
        if n[3]:
            sorted_grad_weights = torch.linalg.vecdot(sorted_outputs, sorted_grad_out)
            grad_weights = torch.empty_like(sorted_grad_weights).index_copy_(
                0, order, sorted_grad_weights
            )
            grad_weights = grad_weights.view(b, 1, k)
        sorted_grads = sorted_grad_out * sorted_weights  # G, (b·k, rows)
        blocks = memories.reshape(m, rows, p)[:, :, :in_features].unbind(0)
        if n[0]:
            # ∂x̃ without the bias column: the GEMM reads the block's first in_features
            # columns, so the unsorting index_add_ below reads a contiguous source (a strided
            # one is several times slower).
            sorted_input_grads = sorted_inputs.new_empty(pairs, in_features)
            input_grads = sorted_input_grads.split(sizes)
        if n[1]:
            grad_memories = memories.new_empty(m, rows, p)
        grad_splits = sorted_grads.split(sizes)
        # Two loops rather than one with both GEMMs per memory: the first only reads the
        # memories, the second only writes their gradient (a few per cent less time for the
        # blend at m = 16, δ = 2 in interleaved runs, little more than their noise).
        if n[0]:
            for block, grads, out, size in zip(
                blocks, grad_splits, input_grads, sizes, strict=True
            ):
                if size:
                    torch.mm(grads, block, out=out)
        if grad_memories is not None:
            for memory, (grads, inputs, head) in enumerate(
                zip(grad_splits, sorted_inputs.split(sizes), heads, strict=True)
            ):
                if head:
                    torch.mm(grads[:head].t(), inputs[:head], out=grad_memories[memory])
                else:
                    grad_memories[memory].zero_()
        if n[0]:
            grad_x = sorted_input_grads.new_zeros(b, in_features)
            grad_x.index_add_(0, pair_samples, sorted_input_grads)
        if grad_memories is not None:
            grad_memories = grad_memories.reshape(1, m, u)
        return grad_x, grad_memories, None, grad_weights, None, None, None, None


def cnu_linear(
    x: torch.Tensor,
    memories: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor,
    *,
    bias: bool,
    wta: bool = False,
    strategy: str = "auto",
    backend: str | None = None,
) -> torch.Tensor:
    """Output of a CNU linear layer, blended in output space: o_i = Σ_a α_ia (M[idx_ia] x̃_i).

    Same result and gradients as :func:`cnu_linear_ref` (up to rounding: the sums are taken in
    another order) without per-sample weight matrices. ``strategy`` picks how the selected
    memory outputs are computed:

    - ``"dense"``: every memory's output with one GEMM, m·b·P products (P = q·u), then a gather;
    - ``"grouped"`` (shared keys, q = 1): the (sample, slot) pairs grouped by memory, one GEMM
      per memory in use, k·b·P products, one host synchronisation for the group sizes;
    - ``"auto"`` (default): grouped when q = 1, m > k and not compiling (it then does fewer
      products than dense, k·b·P against m·b·P); dense otherwise.

    ``backend`` picks between these torch paths and the Triton gather-GEMM
    (:mod:`dyna.functional.cnu_triton`: the pairs sorted by memory on the device, one kernel
    for the forward, two for the backward, k·b·P products, no host synchronisation), as
    :mod:`dyna.functional._backend` describes. The kernel takes shared keys (q = 1) with
    memories in x's dtype; other cases run the torch path (logged at debug level). The
    ``strategy`` only applies to the torch path.

    Args:
        x: input (b, in_features).
        memories: ``M`` (q, m, u), u a multiple of in_features [+ 1].
        indices: selected memories, int64 (b, q, k); slot 0 is the winner.
        weights: attention weights α (b, q, k).
        bias: the last entry of every memory row is a bias.
        wta: only slot 0 passes gradient to ``M`` (default False).
        strategy: ``"auto"``, ``"dense"`` or ``"grouped"``.
        backend: ``None`` (the kernel for CUDA tensors), ``"torch"`` or ``"triton"``.

    Shape:
        - Output: (b, q·rows), rows = u / (in_features [+ 1]).
    """
    if strategy not in ("auto", "dense", "grouped"):
        raise ValueError(f"strategy must be 'auto', 'dense' or 'grouped', got {strategy!r}")
    backend = check_backend(backend)
    _, rows = _check_linear_inputs(x, memories, indices, weights, bias)
    q, m, _ = memories.shape
    k = indices.shape[2]
    trainable_slots = 1 if wta else k
    if use_triton("cnu_linear", backend, x):
        if q == 1 and memories.dtype == x.dtype:
            from dyna.functional import cnu_triton

            out = cnu_triton.cnu_blend(
                x.contiguous(), memories, indices, weights.to(x.dtype), trainable_slots, bias
            )[0]
            return out
        logger.debug(
            "cnu_linear: the torch path takes q = %d (the kernel needs shared keys, q = 1) "
            "or memories of dtype %s with x of dtype %s",
            q,
            memories.dtype,
            x.dtype,
        )
    if strategy == "grouped" and q != 1:
        raise ValueError(f"strategy 'grouped' needs q = 1 (shared keys), got q = {q}")
    if strategy == "auto":
        grouped = q == 1 and m > k and not torch.compiler.is_compiling()
    else:
        grouped = strategy == "grouped"
    if weights.dtype != x.dtype:
        weights = weights.to(x.dtype)
    return _OutputSpaceBlend.apply(
        x, memories, indices, weights, rows, trainable_slots, grouped, bias
    )
