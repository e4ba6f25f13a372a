"""Stateless differentiable functions: signed logarithms, gradient normalisation, noise, errors."""

from dyna.functional.compact_spectral import (
    compact_spectral_features,
    compact_spectral_inner,
    count_sketch,
)
from dyna.functional.gradient_normalization import backward_gradient_normalization
from dyna.functional.log_proportional_error import log_proportional_error
from dyna.functional.noise import noisein, noiseover
from dyna.functional.siglog import siglog, siglog_parametric

__all__ = [
    "backward_gradient_normalization",
    "compact_spectral_features",
    "compact_spectral_inner",
    "count_sketch",
    "log_proportional_error",
    "noisein",
    "noiseover",
    "siglog",
    "siglog_parametric",
]
