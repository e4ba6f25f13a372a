"""Tensor composer "Mobius": one real (H, W) matrix per sample from complex spaces along H and W.

The context is projected to a complex latent vector zeta (L = int(sqrt(2 Lc C)) entries), which
decodes into complex transformations: a shift and Rz control points per axis and subspace.
Learned complex "spaces" along H and W are shifted and modulated by the control points
(linearly interpolated to H, resp. W), bound by a Mobius-like product/quotient with learned
"inversions" gamma, ``U = S_i gamma`` and ``V = gamma conj(S_j) / max(|S_j|^2, asymmetry)``,
mixed over the R basis vectors of each subspace by a softmax of ``|zeta M|``, and turned into
complex outer products that are projected onto learned unit phase planes P and summed over the
C subspaces:

    out[b, h, w] = sum_c Re( u[b, c, h] v[b, c, w] conj(P[c, h, w] / |P[c, h, w]|) )

Every parameter's gradient passes a backward gradient normalisation (BGN). Matches the reference
DyNA implementation (github.com/Sombressoul/dyna at 01c17ea) in values, gradients, parameter
names and initial values; its expansion of the transformations to L identical copies (which
multiplies their gradient scale by L) is computed without the copies.
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
from dyna.functional.tensor_composer_mobius import mobius_latent_expansion, mobius_projection
from dyna.lib._common import (
    check_context,
    check_output_shape,
    linear_without_init,
)


class TensorComposerMobius(nn.Module):
    """Context-driven complex outer products projected onto learned phase planes.

    Args:
        output_shape: (H, W) of the generated matrix.
        context_length: size Lc of the context vector.
        context_use_bias: bias in the context projection (default True).
        n_subspaces: number C of independent components summed at the end (default 16).
        rank_subspace: number R of basis vectors per subspace, mixed by a softmax (default 16).
        rank_transformations: number Rz of control points per axis (default 16).
        asymmetry: lower bound of |S_j|^2 in the complex division (default 1e-4).
        eps: numerical guard (default 1e-12).
        dtype_weights: dtype of every parameter (default bfloat16); ``dtype``, when given,
            replaces it.
        device: device of the parameters.
        dtype: see ``dtype_weights``.
        backend: ``None`` (default: the Triton projection kernels for CUDA tensors), ``"torch"``
            or ``"triton"``; see :mod:`dyna.functional._backend`. It picks where the final
            projection onto the phase planes runs; the rest of the composer is torch.

    Derived: ``latent_dim`` L = int(sqrt(2 Lc C)); T = 2 + 2 Rz transformation slots.

    Parameters (state_dict): ``space_i`` (1, C, R, H, 2), ``space_j`` (1, C, R, W, 2),
    ``inversions`` (1, C, 1, 1, 2), ``direct_G_Re`` and ``direct_G_Im`` (T, C, L, R), ``w_mix``
    (L, C R, 2), ``projections`` (1, C, H, W, 2), ``context_transform.weight`` (4L, Lc) and
    ``context_transform.bias``.

    Shape:
        - Input: (B, Lc), floating.
        - Output: (B, H, W) in the input's dtype (computed in the parameters' dtype).

    Example:
        >>> composer = TensorComposerMobius([4, 3], 6, n_subspaces=2, dtype=torch.float32)
        >>> composer(torch.randn(2, 6)).shape
        torch.Size([2, 4, 3])
    """

    def __init__(
        self,
        output_shape: Sequence[int],
        context_length: int,
        context_use_bias: bool = True,
        n_subspaces: int = 16,
        rank_subspace: int = 16,
        rank_transformations: int = 16,
        asymmetry: float = 1.0e-4,
        eps: float = 1.0e-12,
        dtype_weights: torch.dtype = torch.bfloat16,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        self.backend = check_backend(backend)
        self.output_shape = check_output_shape(output_shape)
        self.context_length = check_positive_int("context_length", context_length)
        self.context_use_bias = check_bool("context_use_bias", context_use_bias)
        self.n_subspaces = check_positive_int("n_subspaces", n_subspaces)
        self.rank_subspace = check_positive_int("rank_subspace", rank_subspace)
        self.rank_transformations = check_positive_int("rank_transformations", rank_transformations)
        self.asymmetry = check_real("asymmetry", asymmetry, minimum=0.0, strictly_greater=True)
        self.eps = check_real("eps", eps, minimum=0.0, strictly_greater=True)
        self.dtype_weights = (
            check_floating_dtype("dtype", dtype, optional=False)
            if dtype is not None
            else check_floating_dtype("dtype_weights", dtype_weights, optional=False)
        )
        self.latent_dim = int(math.sqrt(self.context_length * self.n_subspaces * 2))
        factory_kwargs: dict[str, Any] = {"device": device, "dtype": self.dtype_weights}

        subspaces, rank, latent = self.n_subspaces, self.rank_subspace, self.latent_dim
        height, width = self.output_shape
        slots = 2 + 2 * self.rank_transformations
        self.context_transform = linear_without_init(
            self.context_length, 4 * latent, self.context_use_bias, **factory_kwargs
        )
        self.space_i = nn.Parameter(torch.empty(1, subspaces, rank, height, 2, **factory_kwargs))
        self.space_j = nn.Parameter(torch.empty(1, subspaces, rank, width, 2, **factory_kwargs))
        self.inversions = nn.Parameter(torch.empty(1, subspaces, 1, 1, 2, **factory_kwargs))
        self.direct_G_Re = nn.Parameter(
            torch.empty(slots, subspaces, latent, rank, **factory_kwargs)
        )
        self.direct_G_Im = nn.Parameter(
            torch.empty(slots, subspaces, latent, rank, **factory_kwargs)
        )
        self.w_mix = nn.Parameter(torch.empty(latent, subspaces * rank, 2, **factory_kwargs))
        self.projections = nn.Parameter(
            torch.empty(1, subspaces, height, width, 2, **factory_kwargs)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as the reference does, with the same draws in the same order.

        Projection: PyTorch's default; spaces and inversions U(-1, 1); ``direct_G_*``
        Xavier-uniform (Re first); ``w_mix`` 1 + 0i; ``projections``: real parts one
        Dirichlet(0.5, ..., 0.5) sample per row along W, imaginary parts N(0, 1e-3^2), drawn in
        float32 on the CPU and then cast and moved.
        """
        self.context_transform.reset_parameters()
        for space in (self.space_i, self.space_j, self.inversions):
            nn.init.uniform_(space, -1.0, 1.0)
        nn.init.xavier_uniform_(self.direct_G_Re)
        nn.init.xavier_uniform_(self.direct_G_Im)
        with torch.no_grad():
            self.w_mix[..., 0].fill_(1.0)
            self.w_mix[..., 1].fill_(0.0)
            height, width = self.output_shape
            planes = torch.empty(1, self.n_subspaces, height, width, 2, dtype=torch.float32)
            concentration = torch.full([self.n_subspaces * height, width], 0.5)
            sample = torch.distributions.Dirichlet(concentration).sample()
            planes[..., 0].copy_(sample.reshape(planes.shape[:-1]))
            planes[..., 1].normal_(0.0, 0.001)
            self.projections.copy_(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_context(x, self.context_length)
        input_dtype = x.dtype
        batch = x.shape[0]
        latent = self.latent_dim
        subspaces, rank, count = self.n_subspaces, self.rank_subspace, self.rank_transformations
        x = x.to(self.space_i.dtype)

        projected = F.linear(x, self.context_transform.weight, self.context_transform.bias)
        projected = backward_gradient_normalization(projected)
        zeta = (projected[:, : 2 * latent] * siglog(projected[:, 2 * latent :])).view(
            batch, latent, 2
        )
        zeta_re, zeta_im = zeta[..., 0], zeta[..., 1]

        # Bilinear decoding of the transformations: (B, L) x (T, C, L, R) -> (B, T, C, R).
        g_re = backward_gradient_normalization(self.direct_G_Re)
        g_im = backward_gradient_normalization(self.direct_G_Im)
        re = torch.einsum("bl,tclr->btcr", zeta_re, g_re) - torch.einsum(
            "bl,tclr->btcr", zeta_im, g_im
        )
        im = torch.einsum("bl,tclr->btcr", zeta_re, g_im) + torch.einsum(
            "bl,tclr->btcr", zeta_im, g_re
        )
        transform_re, transform_im = mobius_latent_expansion(re, im, latent, self.eps)

        # Softmax over R of |zeta M|: the mixing weights beta (B, C, R).
        mix = backward_gradient_normalization(self.w_mix)
        theta_re = zeta_re @ mix[..., 0] - zeta_im @ mix[..., 1]
        theta_im = zeta_re @ mix[..., 1] + zeta_im @ mix[..., 0]
        beta = torch.softmax(
            (theta_re * theta_re + theta_im * theta_im + self.eps)
            .sqrt()
            .view(batch, subspaces, rank),
            dim=-1,
        )

        inversions = backward_gradient_normalization(self.inversions)[0, :, :, 0]  # (C, 1, 2)
        gamma_re, gamma_im = inversions[..., 0], inversions[..., 1]  # (C, 1)

        # Rows: u = gamma * sum_R beta (S_i + shift_i) Z_i (gamma is constant over R).
        s_re, s_im = self._transform_space(
            backward_gradient_normalization(self.space_i)[0],
            transform_re[:, 0],
            transform_im[:, 0],
            transform_re[:, 2 : 2 + count],
            transform_im[:, 2 : 2 + count],
        )
        weights = beta.unsqueeze(2)  # (B, C, 1, R)
        mixed_re = torch.matmul(weights, s_re).squeeze(2)  # (B, C, H)
        mixed_im = torch.matmul(weights, s_im).squeeze(2)
        u = torch.stack(
            (
                mixed_re * gamma_re - mixed_im * gamma_im,
                mixed_re * gamma_im + mixed_im * gamma_re,
            ),
            dim=-1,
        )  # (B, C, H, 2)

        # Columns: v = gamma * sum_R beta conj(S_j) / max(|S_j|^2, asymmetry).
        s_re, s_im = self._transform_space(
            backward_gradient_normalization(self.space_j)[0],
            transform_re[:, 1],
            transform_im[:, 1],
            transform_re[:, 2 + count :],
            transform_im[:, 2 + count :],
        )
        scale = beta.unsqueeze(-1) / (s_re * s_re + s_im * s_im).clamp_min(self.asymmetry)
        mixed_re = (s_re * scale).sum(dim=2)  # (B, C, W): sum_R beta S_j / d
        mixed_im = (s_im * scale).sum(dim=2)
        v = torch.stack(
            (
                gamma_re * mixed_re + gamma_im * mixed_im,
                gamma_im * mixed_re - gamma_re * mixed_im,
            ),
            dim=-1,
        )

        planes = backward_gradient_normalization(self.projections)[0]  # (C, H, W, 2)
        inverse_modulus = torch.rsqrt((planes * planes).sum(dim=-1) + self.eps)
        out = mobius_projection(
            u,
            v,
            planes[..., 0] * inverse_modulus,
            planes[..., 1] * inverse_modulus,
            backend=self.backend,
        )
        return out.to(input_dtype)

    @staticmethod
    def _transform_space(
        space: torch.Tensor,
        shift_re: torch.Tensor,
        shift_im: torch.Tensor,
        controls_re: torch.Tensor,
        controls_im: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(S + shift) * interpolate(controls) as (re, im), each (B, C, R, N).

        space (C, R, N, 2); shift (B, C, R); controls (B, Rz, C, R). The linear interpolation
        (PyTorch's align_corners=False rule) is a product with an (Rz, N) matrix, obtained by
        interpolating the identity, so that it yields the (B, C, R, N) layout directly.
        """
        size = space.shape[2]
        count = controls_re.shape[1]
        identity = torch.eye(count, dtype=controls_re.dtype, device=controls_re.device)
        resample = F.interpolate(identity[None], size=size, mode="linear", align_corners=False)[0]
        mod_re = torch.matmul(controls_re.permute(0, 2, 3, 1), resample)
        mod_im = torch.matmul(controls_im.permute(0, 2, 3, 1), resample)
        shifted_re = space[..., 0] + shift_re.unsqueeze(-1)
        shifted_im = space[..., 1] + shift_im.unsqueeze(-1)
        out_re = shifted_re * mod_re - shifted_im * mod_im
        out_im = shifted_re * mod_im + shifted_im * mod_re
        return out_re, out_im

    def extra_repr(self) -> str:
        return (
            f"output_shape={list(self.output_shape)}, context_length={self.context_length}, "
            f"context_use_bias={self.context_use_bias}, n_subspaces={self.n_subspaces}, "
            f"rank_subspace={self.rank_subspace}, "
            f"rank_transformations={self.rank_transformations}, latent_dim={self.latent_dim}, "
            f"asymmetry={self.asymmetry}, eps={self.eps}, dtype_weights={self.dtype_weights}"
        ) + (f", backend={self.backend!r}" if self.backend is not None else "")
