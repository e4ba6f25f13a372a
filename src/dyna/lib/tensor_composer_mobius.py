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

import torch
import torch.nn.functional as F
from torch import nn

from dyna.functional._checks import check_bool, check_real
from dyna.functional.gradient_normalization import backward_gradient_normalization
from dyna.functional.siglog import siglog
from dyna.functional.tensor_composer import mobius_latent_expansion, mobius_projection
from dyna.lib._common import (
    check_context,
    check_output_shape,
    check_positive_int,
    check_weights_dtype,
    linear_without_init,
)


def _interpolate_controls(controls: torch.Tensor, size: int) -> torch.Tensor:
    """Linear interpolation (align_corners=False) of (B, 2, Rz, C, R) to (B, 2, C, R, size)."""
    batch, _, count, subspaces, rank = controls.shape
    flat = controls.permute(0, 1, 3, 4, 2).reshape(batch, 2 * subspaces * rank, count)
    resampled = F.interpolate(flat, size=size, mode="linear", align_corners=False)
    return resampled.view(batch, 2, subspaces, rank, size)


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
    ) -> None:
        super().__init__()
        self.output_shape = check_output_shape(output_shape)
        self.context_length = check_positive_int("context_length", context_length)
        self.context_use_bias = check_bool("context_use_bias", context_use_bias)
        self.n_subspaces = check_positive_int("n_subspaces", n_subspaces)
        self.rank_subspace = check_positive_int("rank_subspace", rank_subspace)
        self.rank_transformations = check_positive_int("rank_transformations", rank_transformations)
        self.asymmetry = check_real("asymmetry", asymmetry, minimum=0.0, strictly_greater=True)
        self.eps = check_real("eps", eps, minimum=0.0, strictly_greater=True)
        self.dtype_weights = check_weights_dtype(dtype if dtype is not None else dtype_weights)
        self.latent_dim = int(math.sqrt(self.context_length * self.n_subspaces * 2))
        factory_kwargs = {"device": device, "dtype": self.dtype_weights}

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
        height, width = self.output_shape
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
        transforms = torch.stack((transform_re, transform_im), dim=1)  # (B, 2, T, C, R)

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
        space_i = self._transform_space(
            backward_gradient_normalization(self.space_i),
            transforms[:, :, 0],
            transforms[:, :, 2 : 2 + count],
            height,
        )
        mixed_i = torch.einsum("bcr,bcrnk->bcnk", beta, space_i)
        u = torch.stack(
            (
                mixed_i[..., 0] * gamma_re - mixed_i[..., 1] * gamma_im,
                mixed_i[..., 0] * gamma_im + mixed_i[..., 1] * gamma_re,
            ),
            dim=-1,
        )  # (B, C, H, 2)

        # Columns: v = gamma * sum_R beta conj(S_j) / max(|S_j|^2, asymmetry).
        space_j = self._transform_space(
            backward_gradient_normalization(self.space_j),
            transforms[:, :, 1],
            transforms[:, :, 2 + count :],
            width,
        )
        squared = (space_j * space_j).sum(dim=-1).clamp_min(self.asymmetry)
        inverse_j = space_j * (beta[..., None, None] / squared[..., None])
        mixed_j = inverse_j.sum(dim=2)  # (B, C, W, 2) = sum_R beta S_j / d
        v = torch.stack(
            (
                gamma_re * mixed_j[..., 0] + gamma_im * mixed_j[..., 1],
                gamma_im * mixed_j[..., 0] - gamma_re * mixed_j[..., 1],
            ),
            dim=-1,
        )

        planes = backward_gradient_normalization(self.projections)[0]  # (C, H, W, 2)
        inverse_modulus = torch.rsqrt((planes * planes).sum(dim=-1) + self.eps)
        out = mobius_projection(
            u, v, planes[..., 0] * inverse_modulus, planes[..., 1] * inverse_modulus
        )
        return out.to(input_dtype)

    @staticmethod
    def _transform_space(
        space: torch.Tensor, shift: torch.Tensor, controls: torch.Tensor, size: int
    ) -> torch.Tensor:
        """(S + shift) * interpolate(controls): (B, C, R, size, 2) complex as (re, im).

        space (1, C, R, size, 2); shift (B, 2, C, R); controls (B, 2, Rz, C, R).
        """
        shifted = space + shift.permute(0, 2, 3, 1).unsqueeze(-2)  # (B, C, R, size, 2)
        modulation = _interpolate_controls(controls, size)  # (B, 2, C, R, size)
        mod_re, mod_im = modulation[:, 0], modulation[:, 1]
        s_re, s_im = shifted[..., 0], shifted[..., 1]
        return torch.stack((s_re * mod_re - s_im * mod_im, s_re * mod_im + s_im * mod_re), dim=-1)

    def extra_repr(self) -> str:
        return (
            f"output_shape={list(self.output_shape)}, context_length={self.context_length}, "
            f"context_use_bias={self.context_use_bias}, n_subspaces={self.n_subspaces}, "
            f"rank_subspace={self.rank_subspace}, "
            f"rank_transformations={self.rank_transformations}, latent_dim={self.latent_dim}, "
            f"asymmetry={self.asymmetry}, eps={self.eps}, dtype_weights={self.dtype_weights}"
        )
