"""Tensor composer "Delta": one real (H, W) matrix per sample from a context vector.

A linear map of the context, gated by its own siglog, gives per-sample complex coefficients for
a bank of ``rank`` learned complex filter pairs (z1, z2): each filter is interpolated,
``l = z1 + c (z2 - z1)``, shifted and scaled, ``v = beta + l s``, separately for a "value" and an
"orientation" part, and projected, ``w = Re(v_value * conj(v_orient / |v_orient|))``. The bank is
stabilised by the signal stabilisation compressor with all three BGNs
(:func:`~dyna.functional.signal_stabilization.stabilize`), decorrelated (a repulsion between
filters built from their raw dot products, plus straight-through "penalty" gradients), and mixed
with a softmax over the rank and an extra all-zero "drain" slot:

    out[b] = sum_k pi[b, k] F[b, k],   pi = softmax(siglog(q / tau)),   tau = extras[0]

Matches the reference DyNA implementation (github.com/Sombressoul/dyna at 01c17ea) in values,
gradients, parameter names and initial values, with one fix: in ``eval()`` no noise is drawn
(the reference also perturbs the rank logits in eval mode), and one change: half-precision
parameters are computed with in float32 (closer to float64 than the reference's bfloat16
pipeline, and several times faster on the CPU). The straight-through terms, the non-zero-mean
filter noise and the non-detached std of the rank noise are kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dyna._validation import check_bool, check_floating_dtype, check_positive_int, check_real
from dyna.functional._backend import check_backend
from dyna.functional.gradient_normalization import backward_gradient_normalization
from dyna.functional.siglog import siglog
from dyna.functional.signal_stabilization import StabilizerConstants, stabilize
from dyna.functional.standard_normal import standard_normal_like
from dyna.functional.tensor_composer_delta import delta_decorrelate_mix, delta_oriented_fields
from dyna.lib._common import (
    check_context,
    check_output_shape,
    linear_without_init,
)


class TensorComposerDelta(nn.Module):
    """Context-driven bank of complex filters mixed into one (H, W) matrix per sample.

    Args:
        output_shape: (H, W) of the generated matrix, H * W >= 2.
        context_length: size Lc of the context vector.
        context_use_bias: bias in the context projection (default True).
        rank: number r of filters in the bank (default 4).
        initialization_std: std of the normal initialisation of the bank (default 1e-4).
        weights_repulsion_strength: strength of the repulsion between filters (default 0.3).
        weights_noise_strength: training-time noise on the filters (default 0.01).
        rank_noise_strength: training-time noise on the rank logits (default 0.01).
        similarity_penalty_strength: straight-through gradient of the filters' squared dot
            products (default 0.1; adds nothing in the forward pass).
        eps: numerical guard (default 1e-12; stored as max(eps, 6e-8) for float16 weights).
        dtype_weights: dtype of the projection and the bank (default bfloat16); ``dtype``, when
            given, replaces it.
        device: device of the parameters.
        dtype: see ``dtype_weights``. The temperature ``extras`` is float32 unless the module is
            converted after construction.
        backend: ``None`` (default: the Triton kernels for CUDA tensors), ``"torch"`` or
            ``"triton"``; see :mod:`dyna.functional._backend`. It picks where the weight
            generation's fused stages run; the context projection and the rank softmax are torch.

    Parameters (state_dict): ``weights`` (1, r, 2, 2, H, W, 2), ``extras`` (1,) the temperature
    (5.0), ``context_transform.weight`` (26r + 2, Lc) and ``context_transform.bias``.

    Shape:
        - Input: (B, Lc), floating.
        - Output: (B, H, W) in the input's dtype, computed in the parameters' dtype, or in
          float32 for bfloat16/float16 parameters.

    Example:
        >>> composer = TensorComposerDelta([4, 3], 5, rank=2, dtype=torch.float32).eval()
        >>> composer(torch.randn(2, 5)).shape
        torch.Size([2, 4, 3])
    """

    def __init__(
        self,
        output_shape: Sequence[int],
        context_length: int,
        context_use_bias: bool = True,
        rank: int = 4,
        initialization_std: float = 1.0e-4,
        weights_repulsion_strength: float = 0.3,
        weights_noise_strength: float = 0.01,
        rank_noise_strength: float = 0.01,
        similarity_penalty_strength: float = 0.1,
        eps: float = 1.0e-12,
        dtype_weights: torch.dtype = torch.bfloat16,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        self.backend = check_backend(backend)
        self.output_shape = check_output_shape(output_shape, min_numel=2)
        self.context_length = check_positive_int("context_length", context_length)
        self.context_use_bias = check_bool("context_use_bias", context_use_bias)
        self.rank = check_positive_int("rank", rank)
        self.initialization_std = check_real(
            "initialization_std", initialization_std, minimum=0.0, strictly_greater=True
        )
        self.weights_repulsion_strength = check_real(
            "weights_repulsion_strength", weights_repulsion_strength, minimum=0.0
        )
        self.weights_noise_strength = check_real(
            "weights_noise_strength", weights_noise_strength, minimum=0.0
        )
        self.rank_noise_strength = check_real(
            "rank_noise_strength", rank_noise_strength, minimum=0.0
        )
        self.similarity_penalty_strength = check_real(
            "similarity_penalty_strength", similarity_penalty_strength, minimum=0.0
        )
        eps = check_real("eps", eps, minimum=0.0, strictly_greater=True)
        self.dtype_weights = (
            check_floating_dtype("dtype", dtype, optional=False)
            if dtype is not None
            else check_floating_dtype("dtype_weights", dtype_weights, optional=False)
        )
        # float16 cannot represent 1e-12: the reference floors eps at 6e-8 there.
        self.eps = max(eps, 6.0e-8) if self.dtype_weights == torch.float16 else eps
        factory_kwargs: dict[str, Any] = {"device": device, "dtype": self.dtype_weights}

        # The stabiliser is the compressor with all three BGNs, gating and a fixed leak; only
        # its constants are state, and they hold no tensors.
        self.stabilizer = StabilizerConstants(eps=self.eps, leak=1.0e-3)
        self.context_transform = linear_without_init(
            self.context_length, 26 * self.rank + 2, self.context_use_bias, **factory_kwargs
        )
        self.weights = nn.Parameter(
            torch.empty(1, self.rank, 2, 2, *self.output_shape, 2, **factory_kwargs)
        )
        self.extras = nn.Parameter(
            torch.empty(1, device=device, dtype=dtype if dtype is not None else torch.float32)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as the reference does, with the same draws in the same order.

        The projection gets PyTorch's default initialisation (consuming its draws), then a
        Xavier-uniform weight; the bank is N(0, initialization_std^2); the temperature 5.0.
        """
        self.context_transform.reset_parameters()
        nn.init.xavier_uniform_(self.context_transform.weight)
        nn.init.normal_(self.weights, mean=0.0, std=self.initialization_std)
        with torch.no_grad():
            self.extras.fill_(5.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_context(x, self.context_length)
        input_dtype = x.dtype
        weights: torch.Tensor = self.weights
        batch = x.shape[0]
        rank = self.rank
        height, width = self.output_shape
        if batch == 0:
            return x.new_zeros(0, height, width)
        # Half-precision parameters are computed with in float32: a half-precision pipeline
        # only adds roundings (the reference's bfloat16 results are 3-10 % off its float64
        # ones), and the float32 kernels are several times faster on the CPU. Gradients reach
        # the parameters in their own dtype through the casts.
        storage_dtype = weights.dtype
        compute_dtype = (
            torch.float32 if storage_dtype in (torch.bfloat16, torch.float16) else storage_dtype
        )
        weights = weights.to(compute_dtype)
        x = x.to(compute_dtype)
        bias = self.context_transform.bias
        projected = F.linear(
            x,
            self.context_transform.weight.to(compute_dtype),
            None if bias is None else bias.to(compute_dtype),
        )
        n_active = 13 * rank + 1
        gated = projected[:, :n_active] * siglog(projected[:, n_active:])
        modulation = gated[:, : 12 * rank].reshape(batch, rank, 3, 2, 2)

        # Filter bank (B, r, H, W), stabilised along W.
        bank = delta_oriented_fields(modulation, weights, self.eps, backend=self.backend)
        # The compressor's maths in one fused autograd node.
        bank = stabilize(bank, self.stabilizer.eps, self.stabilizer.leak, backend=self.backend)
        bank = bank.reshape(batch, rank, height * width)

        # Rank weights over the r filters and the zero drain slot (logit + 1/sqrt(r)).
        logits = gated[:, 12 * rank :]
        drain_shift = torch.zeros(rank + 1, dtype=logits.dtype, device=logits.device)
        drain_shift[rank] = 1.0 / math.sqrt(rank)
        logits = logits + drain_shift
        noise = None
        if self.training:
            # Both draws in the reference's order (filters, then rank logits) in one call, in
            # the parameters' dtype as the reference draws them.
            noise, logits_noise = standard_normal_like(
                bank.new_empty(bank.shape, dtype=storage_dtype),
                logits.new_empty(logits.shape, dtype=storage_dtype),
            )
            noise, logits_noise = noise.to(compute_dtype), logits_noise.to(compute_dtype)
            logits_std = logits.std(dim=-1, keepdim=True).add(self.eps)
            logits = logits + logits_noise * logits_std * self.rank_noise_strength
        probabilities = torch.softmax(logits, dim=-1)
        entropy = -(probabilities * probabilities.add(self.eps).log()).sum(dim=-1, keepdim=True)
        logits = logits + (entropy - entropy.detach())
        mixing = torch.softmax(siglog(logits / self.extras[0]), dim=-1)
        mixing = backward_gradient_normalization(mixing)

        # Decorrelation (a repulsion built from the Gram matrix of the raw bank, applied after
        # its BGN), eps lift, filter noise and the mixture; the drain slot holds zeros, so
        # only the r filters contribute.
        repulsion_scale = self.weights_repulsion_strength / math.sqrt(rank) / max(rank - 1, 1)
        out = delta_decorrelate_mix(
            bank,
            mixing[:, :rank],
            noise,
            repulsion_scale,
            self.similarity_penalty_strength,
            self.weights_noise_strength,
            self.eps,
            backend=self.backend,
        )
        return out.view(batch, height, width).to(input_dtype)

    def extra_repr(self) -> str:
        return (
            f"output_shape={list(self.output_shape)}, context_length={self.context_length}, "
            f"rank={self.rank}, context_use_bias={self.context_use_bias}, "
            f"weights_repulsion_strength={self.weights_repulsion_strength}, "
            f"weights_noise_strength={self.weights_noise_strength}, "
            f"rank_noise_strength={self.rank_noise_strength}, "
            f"similarity_penalty_strength={self.similarity_penalty_strength}, "
            f"initialization_std={self.initialization_std}, eps={self.eps}, "
            f"dtype_weights={self.dtype_weights}"
        ) + (f", backend={self.backend!r}" if self.backend is not None else "")
