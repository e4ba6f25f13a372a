"""Hand-optimised stages of the Mobius composer, each beside its plain ``*_ref`` twin.

The fast versions give the same numbers as the reference DyNA implementation (to rounding) and
the same gradients, without materialising its large intermediates; the ``*_ref`` functions
transcribe the reference literally and are the specification the tests compare against.

- :func:`mobius_latent_expansion`: the expansion of the transformations to ``L`` identical
  copies followed by a magnitude-weighted average, computed without the copies (the ``L``
  copies only scale the backward gradient normalisation, see
  :func:`~dyna.functional.gradient_normalization.backward_gradient_normalization_multiplicity`).
- :func:`mobius_projection`: ``out[b, h, w] = sum_c Re(u[b, c, h] v[b, c, w] conj(p[c, h, w]))``
  without materialising the (B, C, H, W) complex products.
"""

from __future__ import annotations

from typing import Any

import torch

from dyna.functional._backend import check_backend, logger, use_triton
from dyna.functional.gradient_normalization import (
    backward_gradient_normalization,
    backward_gradient_normalization_multiplicity,
)


def mobius_latent_expansion(
    re: torch.Tensor, im: torch.Tensor, latent_dim: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Magnitude-weighted average over ``latent_dim`` identical copies, without the copies.

    The reference expands (B, T, C, R) transformations to L copies, applies BGN to the expanded
    tensors, and averages directions weighted by magnitude over the copies. With the copies
    identical this is ``A = L re' / (L mag + eps) * mag`` (likewise for im) with
    ``mag = sqrt(re'^2 + im'^2 + eps)`` and ``re' = BGN_L(re)`` the BGN of L virtual copies, which
    reproduces the reference's forward (to rounding) and every gradient, including the factor
    L in the gradient scale.

    Args:
        re, im: (B, T, C, R) real and imaginary parts.
        latent_dim: the number of copies L.
        eps: the composer's eps (under the root and in the weighted average).

    Returns:
        (A_re, A_im), each (B, T, C, R).
    """
    re = backward_gradient_normalization_multiplicity(re, latent_dim)
    im = backward_gradient_normalization_multiplicity(im, latent_dim)
    magnitude = (re * re + im * im + eps).sqrt()
    # mag / (L mag + eps), shared by both parts
    weight = magnitude / (magnitude * latent_dim + eps) * latent_dim
    return re * weight, im * weight


def mobius_latent_expansion_ref(
    re: torch.Tensor, im: torch.Tensor, latent_dim: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Literal twin of :func:`mobius_latent_expansion`: materialises the L copies."""
    re = re.unsqueeze(3).expand(-1, -1, -1, latent_dim, -1)
    im = im.unsqueeze(3).expand(-1, -1, -1, latent_dim, -1)
    re = backward_gradient_normalization(re)
    im = backward_gradient_normalization(im)
    cos_theta = re / (re**2 + im**2 + eps).sqrt()
    sin_theta = im / (re**2 + im**2 + eps).sqrt()
    magnitude = (re**2 + im**2 + eps).sqrt()
    cos_weighted = (cos_theta * magnitude).sum(dim=3) / (magnitude.sum(dim=3) + eps)
    sin_weighted = (sin_theta * magnitude).sum(dim=3) / (magnitude.sum(dim=3) + eps)
    magnitude_mean = magnitude.mean(dim=3)
    return cos_weighted * magnitude_mean, sin_weighted * magnitude_mean


def mobius_projection(
    u: torch.Tensor,
    v: torch.Tensor,
    plane_re: torch.Tensor,
    plane_im: torch.Tensor,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """``out[b, h, w] = sum_c Re(u[b, c, h] v[b, c, w] conj(p[c, h, w]))``.

    Args:
        u: (B, C, H, 2) complex as (re, im) on the last axis.
        v: (B, C, W, 2).
        plane_re, plane_im: (C, H, W) the unit projection planes p.
        backend: ``None`` (the Triton kernels of
            :mod:`dyna.functional.tensor_composer_mobius_triton` for CUDA tensors), ``"torch"``
            or ``"triton"``; see :mod:`dyna.functional._backend`. The kernels take inputs of
            one dtype with W <= 1024; other cases run the torch path (logged at debug level).

    Returns:
        (B, H, W). Expanding the product, ``out = sum_c sum_{j in 4 terms} U_j[b,c,h]
        V_j[b,c,w] K_j[c,h,w]``; the sum over c runs one subspace at a time so that no
        (B, C, H, W) product is stored for the backward pass.
    """
    backend = check_backend(backend)
    if use_triton("mobius_projection", backend, u):
        same_dtype = v.dtype == plane_re.dtype == plane_im.dtype == u.dtype
        if same_dtype and v.shape[2] <= 1024:
            from dyna.functional import tensor_composer_mobius_triton as kernels

            return kernels.mobius_projection(
                u.contiguous(), v.contiguous(), plane_re.contiguous(), plane_im.contiguous()
            )
        logger.debug(
            "mobius_projection: the torch path takes dtypes %s/%s/%s/%s or width %d (> 1024)",
            u.dtype,
            v.dtype,
            plane_re.dtype,
            plane_im.dtype,
            v.shape[2],
        )
    return _MobiusProjection.apply(u, v, plane_re, plane_im)


class _MobiusProjection(torch.autograd.Function):
    """One subspace at a time, each as rank-2 outer products (batched matrix products).

    Per subspace c, ``Re(u v) = [u_re, -u_im] @ [v_re; v_im]`` and
    ``Im(u v) = [u_re, u_im] @ [v_im; v_re]`` are (B, H, W) products with an inner size of 2,
    and ``out += Re(u v) p_re + Im(u v) p_im``. The backward forms ``g p_re`` and ``g p_im`` once
    per subspace and contracts them with u and v by matrix products; only the planes' gradient
    needs the (B, H, W) products again.
    """

    @staticmethod
    def forward(
        ctx: Any, u: torch.Tensor, v: torch.Tensor, plane_re: torch.Tensor, plane_im: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(u, v, plane_re, plane_im)
        batch, subspaces, height = u.shape[:3]
        width = v.shape[2]
        # (B, C, H, 2): left factors of Re(u v) and Im(u v); (B, C, 2, W): the right factor.
        left_re = torch.stack((u[..., 0], -u[..., 1]), dim=-1)
        right = v.transpose(2, 3)
        right_swapped = right.flip(2)
        out = u.new_zeros(batch, height, width)
        for c in range(subspaces):
            real = torch.bmm(left_re[:, c], right[:, c])
            imag = torch.bmm(u[:, c], right_swapped[:, c])
            out.addcmul_(real, plane_re[c]).addcmul_(imag, plane_im[c])
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        u, v, plane_re, plane_im = ctx.saved_tensors
        subspaces = u.shape[1]
        need_u, need_v = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_planes = ctx.needs_input_grad[2] or ctx.needs_input_grad[3]
        grad_u = torch.empty_like(u) if need_u else None
        grad_v = torch.empty_like(v) if need_v else None
        grad_plane_re = torch.empty_like(plane_re) if need_planes else None
        grad_plane_im = torch.empty_like(plane_im) if need_planes else None
        left_re = torch.stack((u[..., 0], -u[..., 1]), dim=-1)  # (B, C, H, 2)
        left_im_t = u.transpose(2, 3).flip(2)  # (B, C, 2, H): rows (u_im, u_re)
        left_re_t = left_re.transpose(2, 3)  # rows (u_re, -u_im)
        right = v.transpose(2, 3)  # (B, C, 2, W): rows (v_re, v_im)
        right_swapped = right.flip(2)  # rows (v_im, v_re)
        v_conj = torch.stack((v[..., 0], -v[..., 1]), dim=-1)  # (B, C, W, 2)
        v_swapped = v.flip(-1)  # (B, C, W, 2): columns (v_im, v_re)
        for c in range(subspaces):
            weighted_re = grad * plane_re[c]  # g p_re (B, H, W)
            weighted_im = grad * plane_im[c]
            if grad_u is not None:
                # d/du_re = sum_w g (v_re p_re + v_im p_im)
                # d/du_im = sum_w g (v_re p_im - v_im p_re)
                grad_u[:, c] = torch.bmm(weighted_re, v_conj[:, c]).add_(
                    torch.bmm(weighted_im, v_swapped[:, c])
                )
            if grad_v is not None:
                # d/dv_re = sum_h g (u_re p_re + u_im p_im)
                # d/dv_im = sum_h g (u_re p_im - u_im p_re)
                grad_v[:, c] = (
                    torch.bmm(left_re_t[:, c], weighted_re)
                    .add_(torch.bmm(left_im_t[:, c], weighted_im))
                    .transpose(1, 2)
                )
            if grad_plane_re is not None and grad_plane_im is not None:
                real = torch.bmm(left_re[:, c], right[:, c])
                imag = torch.bmm(u[:, c], right_swapped[:, c])
                # vecdot reduces over the batch in one vectorised pass; einsum would run it as
                # a batched product of H*W tiny (1, B) x (B, 1) matrices, ~15x slower on CPU.
                grad_plane_re[c] = torch.linalg.vecdot(real, grad, dim=0)
                grad_plane_im[c] = torch.linalg.vecdot(imag, grad, dim=0)
        return grad_u, grad_v, grad_plane_re, grad_plane_im


def mobius_projection_ref(
    u: torch.Tensor, v: torch.Tensor, plane_re: torch.Tensor, plane_im: torch.Tensor
) -> torch.Tensor:
    """Literal twin of :func:`mobius_projection` (the reference's outer products)."""
    w_re = torch.einsum("bch,bcw->bchw", u[..., 0], v[..., 0]) - torch.einsum(
        "bch,bcw->bchw", u[..., 1], v[..., 1]
    )
    w_im = torch.einsum("bch,bcw->bchw", u[..., 0], v[..., 1]) + torch.einsum(
        "bch,bcw->bchw", u[..., 1], v[..., 0]
    )
    return (w_re * plane_re + w_im * plane_im).sum(dim=1)
