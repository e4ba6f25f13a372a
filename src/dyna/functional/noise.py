"""Noise injection for data augmentation: ``noisein`` (replacement) and ``noiseover`` (additive).

Both draw Gaussian noise with the mean and standard deviation of the **whole** input tensor
(all samples together), read as Python floats, exactly as the reference DyNA implementation,
so that seeded results are bit-identical to it in float32 and float64. The host
synchronisation this needs is accepted: these are augmentation functions, not layer hot paths.
"""

from __future__ import annotations

import math

import torch

from dyna._validation import check_floating_tensor, check_real


def _global_statistics(x: torch.Tensor) -> tuple[float, float]:
    detached = x.detach()
    mean = float(detached.mean())
    std = float(detached.std())
    if not (math.isfinite(mean) and math.isfinite(std)):
        raise ValueError(
            "x must be finite and have at least 2 elements to estimate the noise statistics, "
            f"got mean {mean} and std {std}"
        )
    return mean, std


def noisein(x: torch.Tensor, rate: float) -> torch.Tensor:
    """Replace a fraction ``rate`` of each sample's elements by Gaussian noise.

    ``x`` is viewed as (B, N). For each sample, ``k = int(N * rate)`` positions are drawn
    uniformly **with replacement** (so at most k distinct elements change) and replaced by
    values from ``N(mean(x), std(x))``, the statistics taken over the whole tensor.

    Draw order (part of the behaviour, as in the reference): first the noise, shape (B, k), in
    the default dtype on ``x.device``; then the positions, shape (B, k), from the CPU default
    generator. The gradient is 1 at untouched elements and ``1 - multiplicity`` at chosen ones
    (0 if chosen once, -1 if twice, ...).

    Args:
        x: floating tensor of shape (B, ...) with at least 2 dimensions; flatten to (B, N) first
            if needed.
        rate: fraction of elements to replace per sample; ``rate <= 0`` returns ``x`` itself,
            ``rate > 1`` is allowed (k may exceed N).

    Returns:
        Tensor of ``x``'s shape and dtype (every floating dtype works; the reference fails for
        bfloat16 and float16).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> noisein(torch.arange(12.0).reshape(2, 6), 0.5)
        tensor([[11.0561,  1.0000,  2.0000,  4.4420, -2.3557,  5.0000],
                [ 0.4573,  7.0000,  7.5495,  9.0000, 10.0000, 11.0000]])
    """
    check_floating_tensor("x", x)
    if x.dim() < 2:
        raise ValueError(
            f"x must have at least 2 dimensions (B, ...), got shape {tuple(x.shape)}; "
            "flatten to (B, N) first"
        )
    rate = check_real("rate", rate)
    if rate <= 0 or x.numel() == 0:
        return x
    flat = x.flatten(1)
    batch, features = flat.shape
    count = int(features * rate)
    mean, std = _global_statistics(x)
    noise = torch.empty((batch, count), device=x.device).normal_(mean, std)
    positions = torch.randint(0, features, (batch, count))
    positions = (positions + torch.arange(batch).unsqueeze(1) * features).flatten().to(x.device)
    flat_x = flat.reshape(-1)
    # Replacement values with torch's type promotion (x's dtype and the default dtype), then
    # cast to x's dtype so that the index-put works for bfloat16 and float16 as well.
    replacement = (-flat_x[positions] + noise.flatten()).to(x.dtype)
    delta = torch.zeros_like(flat_x).index_put((positions,), replacement)
    return x + delta.view_as(x)


def noiseover(x: torch.Tensor, rate: float) -> torch.Tensor:
    """Add Gaussian noise scaled by ``rate``: ``x + rate * eps``, ``eps ~ N(mean(x), std(x))``.

    The statistics are those of the whole tensor, so the noise is **not zero-mean**: it shifts
    the output by about ``rate * mean(x)`` (kept from the reference). The gradient is the
    identity.

    Args:
        x: floating tensor with at least one dimension.
        rate: noise scale; ``rate <= 0`` returns ``x`` itself.

    Returns:
        Tensor of ``x``'s shape and dtype.

    Example:
        >>> x = torch.randn(1000, 100) * 2 + 3
        >>> bool(abs((noiseover(x, 0.1) - x).mean() - 0.3) < 0.01)
        True
    """
    check_floating_tensor("x", x, min_dim=1)
    rate = check_real("rate", rate)
    if rate <= 0 or x.numel() == 0:
        return x
    mean, std = _global_statistics(x)
    return x + rate * torch.empty_like(x).normal_(mean, std)
