"""Signal stabilisation compressor (SSC): a gated signed-log compressor with level normalisation.

For x of shape (..., D) and a leak term l (``x * leak``, or ``x * leak * softplus(leak_scale)``
when trainable):

    z = (sigmoid(x) + l_s) * (siglog(x) + l),    l_s = l (gating) or |l| (dampening)
    out = z / sqrt(mean(|z|, last axis) + eps)

Matches the reference DyNA implementation, including what it calls "inverse RMS" being the
square root of the mean *absolute* value (so the output magnitude grows like sqrt|z|), the
per-dtype constants (float16 and float64 replace eps by the dtype's smallest normal number and
leak by its square root; float32 and bfloat16 use the arguments), and the raw ``leak`` in the
trainable path. Optional backward gradient normalisation (BGN) at the input, after the gate,
and at the output.
"""

from __future__ import annotations

import enum

import torch
import torch.nn.functional as F
from torch import nn

from dyna._validation import check_bool, check_floating_dtype, check_floating_tensor, check_real
from dyna.functional.gradient_normalization import backward_gradient_normalization
from dyna.functional.siglog import siglog
from dyna.functional.signal_stabilization import compressor_constants


class SignalStabilizationCompressorMode(enum.Enum):
    """How the leak enters the gate: signed (``GATING``) or as a magnitude (``DAMPENING``)."""

    GATING = "gating"
    DAMPENING = "dampening"


def _parse_mode(mode: object) -> SignalStabilizationCompressorMode:
    if isinstance(mode, SignalStabilizationCompressorMode):
        return mode
    if not isinstance(mode, str):
        raise TypeError(
            f"mode must be a SignalStabilizationCompressorMode or a str, got {type(mode).__name__}"
        )
    try:
        return SignalStabilizationCompressorMode(mode)
    except ValueError:
        choices = [member.value for member in SignalStabilizationCompressorMode]
        raise ValueError(f"mode must be one of {choices}, got {mode!r}") from None


class SignalStabilizationCompressor(nn.Module):
    """Gated signed-log compressor normalised over the last axis.

    Args:
        bgn_input: apply backward gradient normalisation to the input (default False).
        bgn_mid: apply it to z before the normaliser (default False).
        bgn_output: apply it to the output (default False).
        mode: ``"gating"`` (default) or ``"dampening"``, or a
            :class:`SignalStabilizationCompressorMode` member.
        trainable: learn the leak's scale ``leak_scale`` (one parameter of shape [1], float32
            unless ``dtype`` is given, initialised to 1.0; default False).
        leak: leak coefficient, finite and >= 0 (default 1e-3); used as is in the trainable path,
            replaced by sqrt(smallest normal) for float16/float64 inputs otherwise.
        eps: added under the square root, finite and >= 0 (default 1e-12); replaced by the
            smallest normal number for float16/float64 inputs.
        device: device of ``leak_scale``.
        dtype: dtype of ``leak_scale`` (default float32).

    Shape:
        - Input: (..., D), any floating dtype, at least one dimension.
        - Output: (..., D), same dtype.

    Example:
        >>> ssc = SignalStabilizationCompressor()
        >>> ssc(torch.tensor([[-3.0, -1.0, 0.0, 0.5, 2.0]]))
        tensor([[-8.7936e-02, -2.2323e-01, -4.8666e-05,  2.7971e-01,  1.2952e+00]])
    """

    def __init__(
        self,
        bgn_input: bool = False,
        bgn_mid: bool = False,
        bgn_output: bool = False,
        mode: SignalStabilizationCompressorMode | str = "gating",
        trainable: bool = False,
        leak: float = 1e-3,
        eps: float = 1e-12,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        # The input flag keeps the reference's attribute name.
        self.input_bgn = check_bool("bgn_input", bgn_input)
        self.bgn_mid = check_bool("bgn_mid", bgn_mid)
        self.bgn_output = check_bool("bgn_output", bgn_output)
        self.mode = _parse_mode(mode)
        self.trainable = check_bool("trainable", trainable)
        self.leak = check_real("leak", leak, minimum=0.0)
        self.eps = check_real("eps", eps, minimum=0.0)
        check_floating_dtype("dtype", dtype)
        if self.trainable:
            self.leak_scale = nn.Parameter(
                torch.empty(1, device=device, dtype=dtype or torch.float32)
            )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Set ``leak_scale`` (when trainable) to 1.0."""
        if self.trainable:
            with torch.no_grad():
                self.leak_scale.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_floating_tensor("x", x, min_dim=1)
        eps, leak = compressor_constants(x.dtype, self.eps, self.leak)
        if self.input_bgn:
            x = backward_gradient_normalization(x)
        if self.trainable:
            leak_term = (x * self.leak) * F.softplus(self.leak_scale.to(x.dtype))
        else:
            leak_term = x * leak
        if self.mode is SignalStabilizationCompressorMode.GATING:
            gate_leak = leak_term
        else:
            gate_leak = leak_term.abs()
        z = (torch.sigmoid(x) + gate_leak) * (siglog(x) + leak_term)
        if self.bgn_mid:
            z = backward_gradient_normalization(z)
        z = z * torch.rsqrt(z.abs().mean(dim=-1, keepdim=True) + eps)
        if self.bgn_output:
            z = backward_gradient_normalization(z)
        return z

    def extra_repr(self) -> str:
        return (
            f"bgn_input={self.input_bgn}, bgn_mid={self.bgn_mid}, bgn_output={self.bgn_output}, "
            f"mode={self.mode.value!r}, trainable={self.trainable}, leak={self.leak}, "
            f"eps={self.eps}"
        )
