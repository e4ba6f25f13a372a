"""Deprecated alias of :mod:`dyna.train.eval_noise` (renamed: kept for one release)."""

import warnings

from dyna.train.eval_noise import noisy_splits

warnings.warn(
    "dyna.train.noise is deprecated and will be removed in the next release: import "
    "dyna.train.eval_noise instead",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["noisy_splits"]
