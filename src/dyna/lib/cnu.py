"""The core of Continual Neural Units (CNUs): keys, memories, top-δ attention, online key updates.

A bank of q units, each with m unit-norm keys (size d) and m memories (size u). An input x is
projected by ψ and normalised, z = n̂(ψ(x)); its cosine similarities to the keys R = z Kᵀ select
the top-δ keys per unit, whose softmax

    α = softmax(γ_α / √d · r),    r = top-δ of R

blends the matching memories into per-sample weights W[i, j] = Σ_a α[i, j, a] M[j, idx[i, j, a]].
With ``upd_k="ad_hoc_WTA"`` the keys are a buffer learnt online in training mode: each winning
key moves by β_k z and is renormalised (competitive learning), usage μ and age η are counted,
and (with ``scramble``) a unit whose loosest batch match is below τ_α replaces its oldest
under-used key by that input and warm-starts its memory from the winner's. With
``upd_m="WTA"`` only the winning memory receives gradient.

Matches unaiverse 0.1.31 (``unaiverse.modules.cnu.cnus.CNUs``) to the bit, including its
quirks: with a batch of one only the winner's response is refreshed after the key update
(positions 1..δ-1 keep their pre-update values and a scrambled key can appear twice), a batch of
more than one recomputes the whole top-δ, and training-mode calls update the state even under
``torch.no_grad()`` (use ``eval()`` to freeze it). Reference: Tiezzi, Marullo, Becattini,
Melacci, "Continual Neural Computation", ECML-PKDD 2024.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dyna._validation import (
    check_bool,
    check_floating_dtype,
    check_floating_tensor,
    check_positive_int,
    check_real,
)
from dyna.functional._backend import check_backend, use_triton
from dyna.functional._backend import logger as backend_logger
from dyna.functional.cnu import PSI_MODES, cnu_blend_weights, psi

logger = logging.getLogger("dyna.cnu")

UPD_M_MODES = (None, "WTA")
UPD_K_MODES = (None, "ad_hoc_WTA", "grad_WTA")
# Most keys per unit the fused key-path kernel takes (one register tile of keys).
FUSED_KEY_LIMIT = 256


class CNUAttention(NamedTuple):
    """Top-δ attention of a batch over the keys of every unit, each of shape (b, q, k).

    ``responses`` are cosine similarities (slot 0 the winner's), ``indices`` the selected keys
    (int64) and ``weights`` their softmax.
    """

    responses: torch.Tensor
    indices: torch.Tensor
    weights: torch.Tensor


def counter_dtype(dtype: torch.dtype) -> torch.dtype:
    """Counters (μ, η, key_counter) are integers held in floats: bfloat16/float16 count exactly
    only up to 256/2048, so they are kept in float32 for those layers."""
    return torch.float32 if torch.finfo(dtype).bits < 32 else dtype


class CNUs(nn.Module):
    """A bank of q Continual Neural Units producing per-sample weights.

    Args:
        q: number of units, each with its own keys and memories (default 1).
        d: key size, the length of ψ(x) (default 2).
        m: keys (= memories) per unit (default 3).
        u: size of one memory, the weight vector a unit generates (default 4).
        delta: keys blended per unit, the top-δ; clamped to m (default 3).
        gamma_alpha: multiplies the similarities, over √d, before the softmax (default 0.1).
        tau_alpha: scrambling threshold on the winner's cosine similarity (default 0.5).
        tau_mu: a key is under-used while its win count μ < tau_mu (default 100).
        tau_eta: a key is old when its age η >= tau_eta (default 100).
        upd_m: ``None`` (every selected memory gets gradient) or ``"WTA"`` (only the winner's;
            default).
        upd_k: ``"ad_hoc_WTA"`` (keys are a buffer learnt online; default), ``"grad_WTA"`` or
            ``None`` (keys are a Parameter learnt by the optimiser; renormalised at every call).
        beta_k: step of the online key update (default 0.001).
        psi_fn: ψ, one of ``"identity"`` (default), ``"sign"``, ``"resize1d"``, ``"resize2d"``,
            ``"resize2d_sign"``.
        scramble: replace old under-used keys by poorly matched inputs (ad_hoc_WTA only;
            default False).
        debug: count the pre-update winners of every call in the ``key_counter`` buffer and log
            scrambling at DEBUG level to the ``dyna.cnu`` logger (default False).
        device: device of the parameters and buffers.
        dtype: dtype of the floating parameters and buffers (default: torch's default dtype);
            the counters stay float32 for bfloat16/float16.
        backend: ``None`` (default: Triton kernels for CUDA tensors where the layer has them),
            ``"torch"`` or ``"triton"``; see :mod:`dyna.functional._backend`. It chooses the
            key path (with ``upd_k="ad_hoc_WTA"`` and ``debug`` off: attention, top-δ and the
            online step as one kernel) and the layers' output blend.

    Parameters and buffers (names and shapes as the reference, so state dicts load both ways):
    ``M`` (q, m, u) Parameter; ``K`` (q, m, d), a buffer with ad_hoc_WTA, else a Parameter;
    ``mu``, ``eta`` (q, m) buffers with ad_hoc_WTA, else None; ``key_counter`` (q, m) when
    ``debug``; ``scrambling_count`` (q,) int64, never reset.

    Shape:
        - Input: (b, ...) as ψ expects (identity and sign flatten everything after the batch).
        - Output: (b, q, u).

    Example:
        >>> cnu = CNUs(q=2, d=4, m=5, u=3, delta=2)
        >>> cnu(torch.randn(8, 4)).shape
        torch.Size([8, 2, 3])
    """

    # Registered in __init__; declared for type checkers. mu and eta are None when the keys are
    # a Parameter, and key_counter exists only in debug mode: no code path reads them then.
    K: torch.Tensor
    mu: torch.Tensor
    eta: torch.Tensor
    key_counter: torch.Tensor
    scrambling_count: torch.Tensor

    def __init__(
        self,
        q: int = 1,
        d: int = 2,
        m: int = 3,
        u: int = 4,
        delta: int = 3,
        gamma_alpha: float = 0.1,
        tau_alpha: float = 0.5,
        tau_mu: float = 100,
        tau_eta: float = 100,
        upd_m: str | None = "WTA",
        upd_k: str | None = "ad_hoc_WTA",
        beta_k: float = 0.001,
        psi_fn: str = "identity",
        scramble: bool = False,
        debug: bool = False,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        self.backend = check_backend(backend)
        self.q = check_positive_int("q", q)
        self.d = check_positive_int("d", d)
        self.m = check_positive_int("m", m)
        self.u = check_positive_int("u", u)
        self.delta = min(check_positive_int("delta", delta), self.m)
        for name, number in (
            ("gamma_alpha", gamma_alpha),
            ("tau_alpha", tau_alpha),
            ("tau_mu", tau_mu),
            ("tau_eta", tau_eta),
            ("beta_k", beta_k),
        ):
            check_real(name, number)
        # Kept as given, not converted to float: the repr shows the user's value (tau_mu=100) as
        # the reference's does, and every use is float arithmetic either way.
        self.gamma_alpha = gamma_alpha
        self.tau_alpha = tau_alpha
        self.tau_mu = tau_mu
        self.tau_eta = tau_eta
        if upd_m not in UPD_M_MODES:
            raise ValueError(f"upd_m must be None or 'WTA', got {upd_m!r}")
        if upd_k not in UPD_K_MODES:
            raise ValueError(f"upd_k must be None, 'ad_hoc_WTA' or 'grad_WTA', got {upd_k!r}")
        if upd_m == "WTA" and upd_k is None:
            raise ValueError("upd_m='WTA' needs upd_k 'ad_hoc_WTA' or 'grad_WTA', got upd_k=None")
        self.upd_m = upd_m
        self.upd_k = upd_k
        self.beta_k = beta_k
        if psi_fn not in PSI_MODES:
            raise ValueError(f"psi_fn must be one of {list(PSI_MODES)}, got {psi_fn!r}")
        self.psi_fn = psi_fn
        self.scramble = check_bool("scramble", scramble)
        self.debug = check_bool("debug", debug)
        if self.scramble and upd_k != "ad_hoc_WTA":
            warnings.warn(
                f"scramble=True has no effect with upd_k={upd_k!r} (only with 'ad_hoc_WTA')",
                UserWarning,
                stacklevel=2,
            )
        dtype = check_floating_dtype("dtype", dtype) or torch.get_default_dtype()
        factory_kwargs: dict[str, Any] = {"device": device, "dtype": dtype}
        counter_kwargs: dict[str, Any] = {"device": device, "dtype": counter_dtype(dtype)}
        shape = (self.q, self.m)

        self.M = nn.Parameter(torch.empty(self.q, self.m, self.u, **factory_kwargs))
        if self.online_keys:
            self.register_buffer("K", torch.empty(self.q, self.m, self.d, **factory_kwargs))
            self.register_buffer("mu", torch.empty(shape, **counter_kwargs))
            self.register_buffer("eta", torch.empty(shape, **counter_kwargs))
        else:
            self.K = nn.Parameter(torch.empty(self.q, self.m, self.d, **factory_kwargs))
            self.register_buffer("mu", None)
            self.register_buffer("eta", None)
        if self.debug:
            self.register_buffer("key_counter", torch.zeros(shape, **counter_kwargs))
        self.register_buffer(
            "scrambling_count", torch.zeros(self.q, device=device, dtype=torch.int64)
        )
        self.reset_parameters()

    @property
    def online_keys(self) -> bool:
        """Whether the keys are learnt online (``upd_k="ad_hoc_WTA"``), not by gradient."""
        return self.upd_k == "ad_hoc_WTA"

    # ------------------------------------------------------------------ initialisation

    def reset_parameters(self) -> None:
        """Draw unit keys, then memories, and reset μ and η (``scrambling_count`` is kept).

        Keys are U(±1/√d) normalised to unit length, then memories U(±1/√u) (layers override
        ``_reset_memories``); same order of random draws as the reference.
        """
        self._reset_keys()
        self._reset_memories()
        self._reset_counters()

    @torch.no_grad()
    def _reset_keys(self) -> None:
        bound = 1.0 / math.sqrt(self.d)
        nn.init.uniform_(self.K, -bound, bound)
        self.K.copy_(F.normalize(self.K, p=2.0, dim=2, eps=1e-12))

    @torch.no_grad()
    def _reset_memories(self) -> None:
        bound = 1.0 / math.sqrt(self.u)
        nn.init.uniform_(self.M, -bound, bound)

    @torch.no_grad()
    def _reset_counters(self) -> None:
        if self.mu is not None:
            self.mu.zero_()
        if self.eta is not None:
            self.eta.fill_(self.tau_eta)

    def reset_counter(self) -> None:
        """Zero ``key_counter`` (debug mode only; otherwise nothing to do)."""
        if self.debug:
            with torch.no_grad():
                self.key_counter.zero_()

    # ------------------------------------------------------------------ attention

    def _check_input(self, x: object) -> torch.Tensor:
        x = check_floating_tensor("x", x)
        if x.dim() < 2:
            raise ValueError(
                f"x must have a batch dimension and at least 2 dimensions, got shape "
                f"{tuple(x.shape)}"
            )
        if x.dtype != self.M.dtype:
            raise TypeError(f"x must have the module's dtype {self.M.dtype}, got {x.dtype}")
        return x

    def _scale(self) -> float:
        # Computed in Python double first, then multiplied into the tensor: the reference's
        # order (γ·r/√d in tensor arithmetic differs by up to one ulp).
        return self.gamma_alpha / math.sqrt(self.d)

    def _softmax(self, responses: torch.Tensor) -> torch.Tensor:
        # α = softmax(s·r) over the k selected responses, written out: torch.softmax on CPU
        # opens a parallel region even for a few dozen values, which costs milliseconds when
        # the cores are busy (measured 20 ms for a (4, 1, 3) tensor on a loaded 2-core
        # machine, against 4 µs for these three ops). Equal to it to rounding.
        logits = self._scale() * responses
        exponentials = torch.exp(logits - logits.amax(dim=2, keepdim=True))
        return exponentials / exponentials.sum(dim=2, keepdim=True)

    def _top_k(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        responses = torch.matmul(z, self.K.view(self.q * self.m, self.d).t())
        responses = responses.view(-1, self.q, self.m)
        return torch.topk(responses, k=self.delta, dim=2, largest=True, sorted=True)

    def attention(self, x: torch.Tensor) -> CNUAttention:
        """Select and weight the top-δ keys of every unit for each sample of ``x``.

        In training mode with ``upd_k="ad_hoc_WTA"`` this is one online step: scrambling (if
        enabled), the pull of the winning keys towards ψ(x), the refresh of the responses and
        the usage/age counters, all before the returned attention is computed.

        Shape:
            - Input: (b, ...).
            - Output: three (b, q, k) tensors, k = ``delta``.
        """
        x = self._check_input(x)
        b, q, k = x.shape[0], self.q, self.delta
        if b == 0:
            # The reference fails on an empty batch; nothing to match, nothing to update.
            empty = x.new_empty(0, q, k)
            return CNUAttention(empty, torch.empty_like(empty, dtype=torch.int64), empty)
        if self.online_keys:
            # No gradient reaches the layers below through key matching.
            x = x.detach()
        else:
            # Cosine similarity needs unit keys; the optimiser moves them off the sphere. The
            # storage is replaced, not written, as in the reference (a graph built before this
            # call keeps the keys it saw).
            self.K.data = F.normalize(self.K.data, p=2.0, dim=2, eps=1e-12)
        z = psi(x, self.psi_fn, key_size=self.d, normalize=True)
        if self._use_fused_key_step(z):
            return self._fused_key_step(z)
        responses, indices = self._top_k(z)
        if self.debug:
            with torch.no_grad():
                winners = indices[..., 0].t()
                self.key_counter.scatter_add_(
                    1, winners, torch.ones_like(winners, dtype=self.key_counter.dtype)
                )
        if self.training and self.online_keys:
            # The online step recomputes the weights from the refreshed responses.
            with torch.no_grad():
                return CNUAttention(*self._update_keys_and_counters(z, responses, indices))
        return CNUAttention(responses, indices, self._softmax(responses))

    def _use_fused_key_step(self, z: torch.Tensor) -> bool:
        if not self.online_keys or not use_triton("cnu_key_step", self.backend, z):
            return False
        if self.debug or self.m > FUSED_KEY_LIMIT:
            # The kernel holds a unit's keys in one tile and does not count debug wins.
            backend_logger.debug(
                "cnu_key_step: debug=%s, m = %d (at most %d fused) runs on the torch path",
                self.debug,
                self.m,
                FUSED_KEY_LIMIT,
            )
            return False
        return True

    def _fused_key_step(self, z: torch.Tensor) -> CNUAttention:
        """The attention and, in training, the online step as one Triton kernel.

        Same results as the torch path to rounding (same indices, counters equal); see
        :mod:`dyna.functional.cnu_key_triton`. The torch path below is the specification.
        """
        from dyna.functional import cnu_key_triton

        with torch.no_grad():
            responses, indices, weights = cnu_key_triton.cnu_key_step(
                z.contiguous(),
                self.K,
                self.M,
                self.mu,
                self.eta,
                self.scrambling_count,
                self.delta,
                self._scale(),
                float(self.beta_k),
                float(self.tau_alpha),
                float(self.tau_mu),
                float(self.tau_eta),
                self.training,
                self.scramble,
            )
        return CNUAttention(responses.to(z.dtype), indices, weights.to(z.dtype))

    def _update_keys_and_counters(
        self, z: torch.Tensor, responses: torch.Tensor, indices: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, q, d = z.shape[0], self.q, self.d
        # A (q, b) view of the winners: rewriting it rewrites indices[..., 0] (the b = 1 path
        # keeps these indices).
        winners = indices[..., 0].t()
        if self.scramble:
            self._scramble(z, responses, winners)
        # Winner pull, paper Eq. 6: in-place scatter-add, one batch element after the other
        # (summing the contributions first differs in the last bit).
        steps = self.beta_k * z
        if q == 1:
            # Same additions in the same order, a quarter of the time: index_add_ adds whole
            # rows, scatter_add_ reads an index per element.
            self.K[0].index_add_(0, winners[0], steps)
        else:
            self.K.scatter_add_(
                1, winners.reshape(q, b, 1).expand(q, b, d), steps.view(1, b, d).expand(q, b, d)
            )
        if b == 1:
            # Only the winning keys are renormalised and only their responses refreshed; the
            # other δ-1 responses stay as they were (the reference's stale responses).
            index = winners.reshape(q, 1, 1).expand(q, 1, d)
            keys = F.normalize(self.K.gather(1, index), p=2.0, dim=2, eps=1e-12)
            self.K.scatter_(1, index, keys)
            responses[:, :, 0] = torch.matmul(z, keys.view(q, d).t())
        else:
            self.K.copy_(F.normalize(self.K, p=2.0, dim=2, eps=1e-12))
            responses, indices = self._top_k(z)
            winners = indices[..., 0].t()
        weights = self._softmax(responses)
        self.eta.scatter_(1, winners, 0.0)
        self.mu.scatter_add_(1, winners, torch.ones_like(winners, dtype=self.mu.dtype))
        self.eta += b
        return responses, indices, weights

    def _scramble(self, z: torch.Tensor, responses: torch.Tensor, winners: torch.Tensor) -> None:
        q, m, d, u = self.q, self.m, self.d, self.u
        # Per unit: the batch element whose best match is loosest, and the weak keys.
        worst, element = torch.min(responses[..., 0], dim=0)
        weak = torch.logical_and(self.mu < self.tau_mu, self.eta >= self.tau_eta)
        scrambled = torch.logical_and(worst < self.tau_alpha, torch.any(weak, dim=1))
        # Branch-free (no host synchronisation): units that do not scramble keep their values.
        self.scrambling_count += scrambled
        candidate = torch.max(self.eta * weak.to(self.eta.dtype), dim=1)[1]
        scrambled_q1 = scrambled.view(q, 1)
        key_index = candidate.view(q, 1, 1).expand(q, 1, d)
        new_keys = z.gather(0, element.view(q, 1).expand(q, d)).view(q, 1, d)
        self.K.scatter_(
            1,
            key_index,
            torch.where(scrambled_q1.view(q, 1, 1), new_keys, self.K.gather(1, key_index)),
        )
        element_winner = winners.gather(1, element.view(q, 1))
        # Warm start: the candidate's memory becomes a copy of the winner's. A unit that does
        # not scramble copies its candidate's memory onto itself, so one row copy serves every
        # unit. Rows of the flat (q·m, u) view are copied whole: a gather/scatter with a
        # (q, 1, u) index costs 20x more (an index per element of the large memory rows).
        # Scrambling is rare, and the copy reads and writes whole memories (a layer's weight
        # matrix each with shared keys): on the CPU, where reading the flag costs no device
        # synchronisation, a call in which no unit scrambles skips it (it would copy every
        # candidate's memory onto itself).
        if self.M.device.type != "cpu" or torch.compiler.is_compiling() or bool(scrambled.any()):
            source = torch.where(scrambled_q1, element_winner, candidate.view(q, 1))
            unit_offsets = torch.arange(0, q * m, m, device=source.device)
            flat_memories = self.M.view(q * m, u)
            flat_memories.index_copy_(
                0,
                unit_offsets + candidate,
                flat_memories.index_select(0, unit_offsets + source.view(q)),
            )
        winners.scatter_(
            1, element.view(q, 1), torch.where(scrambled_q1, candidate.view(q, 1), element_winner)
        )
        candidate_q1 = candidate.view(q, 1)
        self.mu.scatter_(
            1, candidate_q1, torch.where(scrambled_q1, 0.0, self.mu.gather(1, candidate_q1))
        )
        if self.debug and logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "scrambling: units %s replaced keys %s with batch elements %s",
                scrambled.nonzero().flatten().tolist(),
                candidate[scrambled].tolist(),
                element[scrambled].tolist(),
            )

    # ------------------------------------------------------------------ blend

    def blend_weights(self, attention: CNUAttention) -> torch.Tensor:
        """The attention weights as the blend uses them: with ``upd_m="WTA"`` and
        ``upd_k="grad_WTA"`` the non-winning weights pass no gradient."""
        weights = attention.weights
        if self.upd_m == "WTA" and self.upd_k == "grad_WTA" and self.delta > 1:
            weights = torch.cat([weights[..., :1], weights[..., 1:].detach()], dim=2)
        return weights

    def blend(self, attention: CNUAttention) -> torch.Tensor:
        """Blend the selected memories into per-sample weights W (b, q, u)."""
        return cnu_blend_weights(
            self.M, attention.indices, self.blend_weights(attention), wta=self.upd_m == "WTA"
        )

    def compute_weights(self, x: torch.Tensor) -> torch.Tensor:
        """One online step: ``blend(attention(x))``, the per-sample weights (b, q, u)."""
        return self.blend(self.attention(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.compute_weights(x)

    def extra_repr(self) -> str:
        text = (
            f"q={self.q}, d={self.d}, m={self.m}, u={self.u}, delta={self.delta}, "
            f"gamma_alpha={self.gamma_alpha}, tau_alpha={self.tau_alpha}, tau_mu={self.tau_mu}, "
            f"tau_eta={self.tau_eta}, upd_m={self.upd_m!r}, upd_k={self.upd_k!r}, "
            f"beta_k={self.beta_k}, psi_fn={self.psi_fn!r}, scramble={self.scramble}"
        )
        text += ", debug=True" if self.debug else ""
        return text + (f", backend={self.backend!r}" if self.backend is not None else "")
