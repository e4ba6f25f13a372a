"""Stateless differentiable functions: signed logarithms, gradient normalisation, noise, errors."""

from typing import Any

from dyna._deprecation import CNU_PROJECTIONS as _CNU_PROJECTIONS
from dyna._deprecation import moved_attribute
from dyna.functional.cnu import cnu_blend_weights, cnu_linear, cnu_linear_ref
from dyna.functional.compact_spectral import (
    compact_spectral_features,
    compact_spectral_inner,
    count_sketch,
)
from dyna.functional.gradient_normalization import backward_gradient_normalization
from dyna.functional.horn import delay_steps, horn_scan, horn_scan_ref, horn_step
from dyna.functional.log_proportional_error import log_proportional_error
from dyna.functional.noise import noisein, noiseover
from dyna.functional.siglog import siglog, siglog_parametric

__all__ = [
    "backward_gradient_normalization",
    "cnu_blend_weights",
    "cnu_linear",
    "cnu_linear_ref",
    "compact_spectral_features",
    "compact_spectral_inner",
    "count_sketch",
    "delay_steps",
    "horn_scan",
    "horn_scan_ref",
    "horn_step",
    "log_proportional_error",
    "noisein",
    "noiseover",
    "siglog",
    "siglog_parametric",
]


def __getattr__(name: str) -> Any:
    # The CNU key projections that were exported here keep working for one release.
    return moved_attribute(__name__, name, _CNU_PROJECTIONS)
