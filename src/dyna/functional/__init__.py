"""Stateless differentiable functions: signed logarithms, gradient normalisation, noise, errors."""

from dyna.functional.gradient_normalization import backward_gradient_normalization
from dyna.functional.horn import delay_steps, horn_scan, horn_scan_ref, horn_step
from dyna.functional.log_proportional_error import log_proportional_error
from dyna.functional.noise import noisein, noiseover
from dyna.functional.siglog import siglog, siglog_parametric

__all__ = [
    "backward_gradient_normalization",
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
