"""Additive Gaussian input noise for robustness evaluations (``dyna eval --noise``).

Not to be confused with :mod:`dyna.functional.noise`, noise injection for data augmentation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from dyna._validation import check_int
from dyna.data.split import Split


def noisy_splits(split: Split, sigmas: Sequence[float], seed: int) -> list[Split]:
    """Copies of ``split`` with ``sigma * z`` added to the inputs, one per ``sigma``.

    ``z`` is one standard-normal draw of the inputs' shape from a CPU generator seeded with
    ``seed``, shared by every level: the levels differ only in scale (common random numbers),
    so a curve over ``sigmas`` is not blurred by a fresh draw per level, and two models
    evaluated with the same seed see exactly the same noise. Inputs are not clipped.

    Args:
        split: the clean split; its inputs must be floating point.
        sigmas: noise standard deviations, finite and >= 0 (0 returns the clean inputs).
        seed: seed of the noise draw, an int in [0, 2**64).

    Returns:
        One :class:`Split` per sigma, on the inputs' device and dtype; labels are shared.

    Example:
        >>> clean = Split(torch.zeros(2, 3, 1), torch.tensor([0, 1]))
        >>> low, high = noisy_splits(clean, [0.1, 0.2], seed=0)
        >>> torch.allclose(2 * low.inputs, high.inputs)
        True
    """
    if not isinstance(split, Split):
        raise TypeError(f"split must be a Split, got {type(split).__name__}")
    seed = check_int("seed", seed, minimum=0)
    if seed >= 2**64:  # the range of torch.Generator.manual_seed
        raise ValueError(f"seed must be < 2**64, got {seed}")
    if isinstance(sigmas, (str, bytes)) or not isinstance(sigmas, Sequence):
        raise TypeError(f"sigmas must be a sequence of real numbers, got {type(sigmas).__name__}")
    levels = []
    for sigma in sigmas:
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)):
            raise TypeError(f"sigmas must hold real numbers, got {type(sigma).__name__}")
        if not math.isfinite(sigma) or sigma < 0:
            raise ValueError(f"sigmas must be finite and >= 0, got {sigma!r}")
        levels.append(float(sigma))
    if levels and not split.inputs.is_floating_point():
        raise TypeError(f"split inputs must be floating point, got dtype {split.inputs.dtype}")
    if not levels:
        return []
    generator = torch.Generator().manual_seed(seed)
    draw = torch.randn(split.inputs.shape, generator=generator, dtype=torch.float64)
    draw = draw.to(device=split.inputs.device)
    return [
        Split((split.inputs.double() + sigma * draw).to(split.inputs.dtype), split.labels)
        if sigma > 0
        else split
        for sigma in levels
    ]
