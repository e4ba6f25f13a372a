"""Harmonic-oscillator recurrent networks (HORN): the oscillator step, the layer, the network.

Every unit is a damped harmonic oscillator (position x, velocity y) driven through a tanh and
integrated with the symplectic Euler step of size h = ``dt``:

    y_t = y_{t-1} + h * (alpha * tanh(W_ih s_t + b_ih + c * r_t + v * x_{t-1})
                         - omega**2 * x_{t-1} - 2*gamma * y_{t-1})
    x_t = x_{t-1} + h * y_t

with c = ``recurrent_scale`` and r_t = W_hh y_{t-1} + b_hh, or, with integer synaptic delays,
r_i(t) = sum_j W_hh[i, j] * yhat_j(t - 1 - d_ij) (velocities before the start read zero). The
layer emits the positions; a network stacks layers (each reads the previous positions) and
reads out the last layer's final position. The numbers match brainmass 0.1.1 (``HORNStep``,
``HORNSeqLayer``, ``HORNSeqNetwork``); ``paper=True`` gives the original HORN of Effenberger,
Carvalho, Dubinin and Singer (PNAS 2025): recurrent gain 1/sqrt(n), no v, ``nn.Linear``
initialisation. States are arguments and return values, as in ``nn.RNN``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import nn

from dyna._validation import (
    check_bool,
    check_floating_dtype,
    check_floating_tensor,
    check_positive_int,
    check_real,
)
from dyna.functional._backend import check_backend
from dyna.functional.horn import horn_scan, horn_step

DYNAMICS = ("alpha", "omega", "gamma", "v")
# The smallest value of each bounded constant: an excitability, a natural frequency and a
# damping are not negative (a negative γ pumps energy in and the oscillators blow up). One rule
# for the layers and the command line, whose --set keys take their minimum from here. v, the
# amplitude feedback, has either sign.
DYNAMICS_MINIMUM = {"alpha": 0.0, "omega": 0.0, "gamma": 0.0}
DEFAULT_OMEGA = 2.0 * math.pi / 28.0  # one cycle per 28-pixel image row


class HORNState(NamedTuple):
    """State of a HORN layer between calls.

    Attributes:
        x: positions, (B, n) for batched input or (n,) for unbatched input.
        y: velocities, same shape as ``x``.
        history: ``None`` without delays (or "nothing recorded yet" with delays); otherwise the
            velocities the delayed coupling can still read, newest first: after T updates
            ``history[k]`` is the velocity y_{T-k} (zeros before the start), shape (L, B, n)
            or (L, n) with L = max(delay) + 1.
    """

    x: torch.Tensor
    y: torch.Tensor
    history: torch.Tensor | None = None


def _storage_dtype(dtype: torch.dtype | None) -> torch.dtype:
    """The dtype of the oscillator constants: float32 for low-precision layers.

    alpha, omega, gamma and dt are sensitive (omega = 0.2244 has three digits in bfloat16, which
    shifts the oscillation period), so they stay in float32 and the scan runs in float32.
    """
    dtype = dtype or torch.get_default_dtype()
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


def _check_learnable(learnable: object) -> frozenset[str]:
    if isinstance(learnable, str) or not isinstance(learnable, Iterable):
        raise TypeError(
            f"learnable must be an iterable of names from {list(DYNAMICS)}, got {learnable!r}"
        )
    names = frozenset(learnable)
    unknown = sorted(str(name) for name in names - set(DYNAMICS))
    if unknown:
        raise ValueError(f"learnable must only name {list(DYNAMICS)}, got unknown {unknown}")
    return names


def _dynamics_value(
    name: str, value: object, n_units: int, device: Any, dtype: torch.dtype
) -> torch.Tensor:
    """Validate one of alpha/omega/gamma/v and return it as a tensor (a Parameter as is)."""
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a float or a floating tensor, got dtype {value.dtype}")
        if value.shape not in ((), (1,), (n_units,)):
            raise ValueError(
                f"{name} must have shape (), (1,) or ({n_units},), got {tuple(value.shape)}"
            )
        if value.device.type != "meta":
            if not bool(torch.isfinite(value.detach()).all()):
                raise ValueError(f"{name} must be finite")
            if name in DYNAMICS_MINIMUM and bool((value.detach() < DYNAMICS_MINIMUM[name]).any()):
                raise ValueError(
                    f"{name} must be >= {DYNAMICS_MINIMUM[name]} everywhere, got minimum "
                    f"{float(value.detach().min())}"
                )
        if isinstance(value, nn.Parameter):
            return value
        return value.detach().to(device=device, dtype=dtype, copy=True)
    number = check_real(name, value, minimum=DYNAMICS_MINIMUM.get(name))
    return torch.tensor(number, dtype=dtype).to(device)


class HORNStep(nn.Module):
    """One symplectic Euler step of n damped harmonic oscillators.

    ``a = tanh(drive + v*x); y' = y + dt*(alpha*a - omega**2*x - 2*gamma*y); x' = x + dt*y'``.

    Args:
        n_units: number of oscillators n.
        alpha: excitability >= 0 (default 0.04): a float or a tensor of shape (), (1,) or (n,).
        omega: natural frequency >= 0 (default 2*pi/28); the step uses omega**2.
        gamma: damping >= 0 (default 0.01); the step uses 2*gamma.
        v: amplitude feedback inside the tanh, of either sign (default 0.0).
        dt: integration step h, a positive finite float (default 1.0).
        learnable: names from {"alpha", "omega", "gamma", "v"} to make ``nn.Parameter`` s; the
            others are persistent buffers. A value that is already an ``nn.Parameter`` is
            registered as is (shared, learnable) whatever ``learnable`` says.
        device: device of the dynamics tensors.
        dtype: dtype of the layer (bfloat16/float16 layers keep the dynamics in float32).

    Shape:
        - drive: (..., n).
        - state: a pair (x, y), each (..., n), or None for zeros.
        - Output: the new (x, y), each (..., n).

    Example:
        >>> step = HORNStep(3)
        >>> x, y = step(torch.ones(3))
        >>> x
        tensor([0.0305, 0.0305, 0.0305])
    """

    # Registered in __init__ as parameters or buffers; declared for type checkers.
    alpha: torch.Tensor
    omega: torch.Tensor
    gamma: torch.Tensor
    v: torch.Tensor

    def __init__(
        self,
        n_units: int,
        alpha: float | torch.Tensor = 0.04,
        omega: float | torch.Tensor = DEFAULT_OMEGA,
        gamma: float | torch.Tensor = 0.01,
        v: float | torch.Tensor = 0.0,
        dt: float = 1.0,
        learnable: Iterable[str] = (),
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.n_units = check_positive_int("n_units", n_units)
        self.dt = check_real("dt", dt, minimum=0.0, strictly_greater=True)
        check_floating_dtype("dtype", dtype)
        learnable = _check_learnable(learnable)
        storage = _storage_dtype(dtype)
        values = {"alpha": alpha, "omega": omega, "gamma": gamma, "v": v}
        # Construction values on the CPU, outside the module's tensors, so reset_parameters
        # can restore them even after device="meta" -> to_empty().
        self._initial_values: dict[str, torch.Tensor] = {}
        for name, raw in values.items():
            tensor = _dynamics_value(name, raw, self.n_units, device, storage)
            if isinstance(raw, torch.Tensor) and raw.device.type != "meta":
                self._initial_values[name] = raw.detach().to("cpu", storage, copy=True)
            elif not isinstance(raw, torch.Tensor):
                self._initial_values[name] = torch.tensor(float(raw), dtype=storage)
            if isinstance(tensor, nn.Parameter):
                self.register_parameter(name, tensor)
            elif name in learnable:
                self.register_parameter(name, nn.Parameter(tensor))
            else:
                self.register_buffer(name, tensor)
        self.learnable = tuple(
            name for name in DYNAMICS if isinstance(getattr(self, name), nn.Parameter)
        )

    def reset_parameters(self) -> None:
        """Restore alpha, omega, gamma and v to their construction values."""
        with torch.no_grad():
            for name, initial in self._initial_values.items():
                getattr(self, name).copy_(initial)

    def forward(
        self, drive: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        check_floating_tensor("drive", drive, min_dim=1)
        if drive.shape[-1] != self.n_units:
            raise ValueError(
                f"drive must have {self.n_units} features in its last dimension, "
                f"got shape {tuple(drive.shape)}"
            )
        if state is None:
            x = y = torch.zeros_like(drive)
        else:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise TypeError("state must be a pair (x, y) of tensors or None")
            x, y = state
            for name, tensor in (("state x", x), ("state y", y)):
                check_floating_tensor(name, tensor)
                if tensor.shape != drive.shape:
                    raise ValueError(
                        f"{name} must have the shape of drive {tuple(drive.shape)}, "
                        f"got {tuple(tensor.shape)}"
                    )
        compute = _compute_dtype(drive.dtype)
        alpha, omega, gamma, v = (getattr(self, name).to(compute) for name in DYNAMICS)
        x_new, y_new = horn_step(
            drive.to(compute), x.to(compute), y.to(compute), alpha, omega, gamma, v, self.dt
        )
        return x_new.to(drive.dtype), y_new.to(drive.dtype)

    def extra_repr(self) -> str:
        def describe(name: str) -> str:
            tensor = getattr(self, name)
            if tensor.numel() == 1 and tensor.device.type != "meta":
                return f"{name}={float(tensor.detach().reshape(())):.6g}"
            return f"{name}=tensor{tuple(tensor.shape)}"

        parts = [f"{self.n_units}", *(describe(name) for name in DYNAMICS), f"dt={self.dt}"]
        if self.learnable:
            parts.append(f"learnable={self.learnable}")
        return ", ".join(parts)


# The delayed coupling keeps max(delay) + 1 velocities per sequence (the history of the state,
# and the scan's working buffer); a delay whose history would take more than this per sequence
# is refused at construction instead of failing at the first forward with an allocation of
# terabytes. 1 GiB is max(delay) = 8 million steps at n = 32 in float32.
MAX_HISTORY_BYTES = 2**30


def _format_bytes(count: int) -> str:
    """``count`` bytes in binary units, e.g. ``29.1 TiB``."""
    value, unit = float(count), "bytes"
    for larger in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"


def _check_history_size(max_delay: int, n_hidden: int, dtype: torch.dtype | None) -> None:
    """Refuse a largest delay whose velocity history would exceed MAX_HISTORY_BYTES."""
    itemsize = _compute_dtype(_storage_dtype(dtype)).itemsize
    needed = (max_delay + 1) * n_hidden * itemsize
    if needed > MAX_HISTORY_BYTES:
        raise ValueError(
            f"delay must be at most {MAX_HISTORY_BYTES // (n_hidden * itemsize) - 1} steps at "
            f"n_hidden = {n_hidden}: the largest, {max_delay} steps, needs a velocity history "
            f"of (max(delay) + 1) x n_hidden = {_format_bytes(needed)} per sequence in the batch"
        )


def _parse_delay(delay: object, n_hidden: int) -> torch.Tensor | None:
    if delay is None:
        return None
    if isinstance(delay, torch.Tensor):
        tensor = delay.detach()
    else:
        if not isinstance(delay, (list, tuple)):
            raise TypeError(
                f"delay must be None, an integer tensor or a nested list of ints, "
                f"got {type(delay).__name__}"
            )
        try:
            tensor = torch.tensor(delay)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError("delay must be a nested list of ints") from None
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise TypeError(
            f"delay must hold integers (steps; convert times with delay_steps), "
            f"got dtype {tensor.dtype}"
        )
    if tensor.shape != (n_hidden, n_hidden):
        raise ValueError(
            f"delay must have shape ({n_hidden}, {n_hidden}), got {tuple(tensor.shape)}"
        )
    tensor = tensor.to("cpu", torch.int64)
    if bool((tensor < 0).any()):
        raise ValueError(f"delay must be >= 0 steps, got minimum {int(tensor.min())}")
    return tensor


def _is_nonzero(value: object) -> bool:
    if isinstance(value, nn.Parameter):
        return True  # learnable: not the paper model even if it starts at zero
    if isinstance(value, torch.Tensor):
        return value.device.type == "meta" or bool((value.detach() != 0).any())
    return value != 0


class HORNSeqLayer(nn.Module):
    """A layer of n damped harmonic oscillators run over a sequence (HORN).

    Per step: drive_t = W_ih s_t + b_ih + recurrent_scale * r_t, then the :class:`HORNStep`
    update; the output is the position sequence x_1..x_T. Without delays
    r_t = W_hh y_{t-1} + b_hh; with ``delay`` (steps) r_i = sum_j W_hh[i, j] y_j(t-1-d_ij), where
    velocities before the start (including the initial one) read zero unless a history is passed.

    Args:
        n_input: input features per step.
        n_hidden: number of oscillators n.
        alpha: excitability (default 0.04), see :class:`HORNStep`.
        omega: natural frequency (default 2*pi/28), see :class:`HORNStep`.
        gamma: damping (default 0.01), see :class:`HORNStep`.
        v: amplitude feedback inside the tanh (default 0.0), see :class:`HORNStep`.
        learnable: dynamics to make ``nn.Parameter`` s (default ()), see :class:`HORNStep`.
        dt: integration step h (default 1.0).
        delay: None (default) or an integer (n, n) tensor / nested list of lags in steps;
            ``delay[i, j]`` is the lag from source j to target i. Use :func:`delay_steps` to
            convert times. With delays ``h2h`` has no bias. The layer keeps max(delay) + 1
            velocities per sequence: a delay whose history would exceed ``MAX_HISTORY_BYTES``
            (1 GiB) per sequence is refused.
        bias: biases in ``i2h`` and, without delays, ``h2h`` (default True).
        recurrent_scale: multiplies the whole recurrent term (default 1.0, brainmass;
            1/sqrt(n) is the original HORN).
        batch_first: input and output as (B, T, features) (default False); states are (B, n).
        device: factory argument: where parameters and buffers live.
        dtype: factory argument: the dtype of parameters and buffers.
        paper: the original HORN (default False): recurrent_scale = 1/sqrt(n), requires v = 0
            and initialises like ``nn.Linear`` instead of N(0, 2/fan_in) with zero biases.
        backend: implementation of the scan, see :func:`dyna.functional.horn_scan`: None
            (default: the Triton kernels for CUDA tensors when triton imports, the torch loop
            otherwise), ``"torch"`` or ``"triton"``.

    Shape:
        - input: (T, B, n_input), (B, T, n_input) if batch_first, or unbatched (T, n_input).
        - state: None or a :class:`HORNState` with x, y of shape (B, n) or (n,) and history
          (L, B, n) or (L, n), L = max(delay) + 1.
        - Output: x_seq (T, B, n) / (B, T, n) / (T, n); with ``return_velocity`` also y_seq of
          the same shape; and the final :class:`HORNState`.

    Example:
        >>> layer = HORNSeqLayer(1, 32)
        >>> x_seq, state = layer(torch.rand(784, 8, 1))
        >>> x_seq.shape, state.x.shape
        (torch.Size([784, 8, 32]), torch.Size([8, 32]))
    """

    # Registered in __init__; None for a layer without delays.
    delay: torch.Tensor | None
    max_delay: int | None

    def __init__(
        self,
        n_input: int,
        n_hidden: int,
        alpha: float | torch.Tensor = 0.04,
        omega: float | torch.Tensor = DEFAULT_OMEGA,
        gamma: float | torch.Tensor = 0.01,
        v: float | torch.Tensor = 0.0,
        dt: float = 1.0,
        delay: torch.Tensor | Sequence | None = None,
        bias: bool = True,
        recurrent_scale: float = 1.0,
        batch_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        learnable: Iterable[str] = (),
        paper: bool = False,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        factory_kwargs: dict[str, Any] = {"device": device, "dtype": dtype}
        self.n_input = check_positive_int("n_input", n_input)
        self.n_hidden = check_positive_int("n_hidden", n_hidden)
        self.backend = check_backend(backend)
        self.bias = check_bool("bias", bias)
        self.batch_first = check_bool("batch_first", batch_first)
        self.paper = check_bool("paper", paper)
        scale = check_real("recurrent_scale", recurrent_scale)
        check_floating_dtype("dtype", dtype)
        learnable = tuple(_check_learnable(learnable))
        delay_steps = _parse_delay(delay, self.n_hidden)
        if delay_steps is not None:
            _check_history_size(int(delay_steps.max()), self.n_hidden, dtype)
        if self.paper:
            if scale != 1.0:
                raise ValueError(
                    f"recurrent_scale conflicts with paper=True (which sets 1/sqrt(n_hidden)), "
                    f"got {scale}"
                )
            if _is_nonzero(v) or "v" in learnable:
                raise ValueError("v must be 0 (and not learnable) with paper=True")
            scale = 1.0 / math.sqrt(self.n_hidden)
        self.recurrent_scale = scale
        self.i2h = nn.Linear(self.n_input, self.n_hidden, bias=self.bias, **factory_kwargs)
        self.h2h = nn.Linear(
            self.n_hidden, self.n_hidden, bias=self.bias and delay_steps is None, **factory_kwargs
        )
        self.horn = HORNStep(
            self.n_hidden, alpha, omega, gamma, v, dt, learnable, device=device, dtype=dtype
        )
        self._initial_delay = delay_steps
        if delay_steps is None:
            self.register_buffer("delay", None)
            self.max_delay = None
        else:
            self.register_buffer("delay", delay_steps.to(device=device))
            self.max_delay = int(delay_steps.max())
            self.register_load_state_dict_post_hook(HORNSeqLayer._after_load)
        self.reset_parameters()

    @property
    def dt(self) -> float:
        return self.horn.dt

    @staticmethod
    def _after_load(module: HORNSeqLayer, incompatible_keys: Any) -> None:
        # The history length is a Python int so the forward needs no host sync.
        delay = module.delay
        if delay is not None and delay.device.type != "meta":
            if bool((delay < 0).any()):
                raise ValueError("delay loaded from the state dict must be >= 0 steps")
            _check_history_size(int(delay.max()), module.n_hidden, module.i2h.weight.dtype)
            module.max_delay = int(delay.max())

    def reset_parameters(self) -> None:
        """Initialise the projections and restore the dynamics (and delays) given at construction.

        brainmass (default): weights N(0, 2/fan_in), biases zero. ``paper=True``: ``nn.Linear``
        defaults, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases.
        """
        for linear in (self.i2h, self.h2h):
            if self.paper:
                linear.reset_parameters()
            else:
                nn.init.kaiming_normal_(linear.weight, mode="fan_in", nonlinearity="relu")
                if linear.bias is not None:
                    nn.init.zeros_(linear.bias)
        self.horn.reset_parameters()
        if self._initial_delay is not None and self.delay is not None:
            with torch.no_grad():
                self.delay.copy_(self._initial_delay)
            self.max_delay = int(self._initial_delay.max())

    def _check_state(
        self, state: object, batch_shape: tuple[int, ...], dtype: torch.dtype
    ) -> HORNState:
        if not isinstance(state, tuple) or len(state) != 3:
            raise TypeError(
                f"state must be a HORNState(x, y, history) or None, got {type(state).__name__}"
            )
        state = HORNState(*state)
        expected = (*batch_shape, self.n_hidden)
        for name, tensor in (("state.x", state.x), ("state.y", state.y)):
            check_floating_tensor(name, tensor)
            if tensor.dtype != dtype:
                raise TypeError(f"{name} must have dtype {dtype}, got {tensor.dtype}")
            if tuple(tensor.shape) != expected:
                raise ValueError(f"{name} must have shape {expected}, got {tuple(tensor.shape)}")
        if state.history is not None:
            if self.delay is None or self.max_delay is None:
                raise ValueError("state.history must be None for a layer without delays")
            check_floating_tensor("state.history", state.history)
            if state.history.dtype != dtype:
                raise TypeError(f"state.history must have dtype {dtype}, got {state.history.dtype}")
            length = self.max_delay + 1
            if tuple(state.history.shape) != (length, *expected):
                raise ValueError(
                    f"state.history must have shape {(length, *expected)} "
                    f"(L = max(delay) + 1 = {length}), got {tuple(state.history.shape)}"
                )
        return state

    def forward(
        self,
        input: torch.Tensor,
        state: HORNState | None = None,
        return_velocity: bool = False,
    ) -> tuple[torch.Tensor, HORNState] | tuple[torch.Tensor, torch.Tensor, HORNState]:
        check_floating_tensor("input", input)
        if input.dim() not in (2, 3):
            raise ValueError(
                f"input must have shape (T, B, {self.n_input}), (B, T, {self.n_input}) with "
                f"batch_first, or (T, {self.n_input}); got {tuple(input.shape)}"
            )
        if input.shape[-1] != self.n_input:
            raise ValueError(
                f"input must have {self.n_input} features in its last dimension, "
                f"got shape {tuple(input.shape)}"
            )
        dtype = self.i2h.weight.dtype
        if input.dtype != dtype:
            raise TypeError(f"input must have the layer's dtype {dtype}, got {input.dtype}")
        unbatched = input.dim() == 2
        if unbatched:
            sequence = input.unsqueeze(1)
        else:
            sequence = input.transpose(0, 1) if self.batch_first else input
        steps, batch = sequence.shape[0], sequence.shape[1]
        batch_shape = () if unbatched else (batch,)
        if state is not None:
            state = self._check_state(state, batch_shape, dtype)

        compute = _compute_dtype(dtype)
        shape = (batch, self.n_hidden)
        if state is None:
            x0 = y0 = sequence.new_zeros(shape, dtype=compute)
            history = None
        else:
            x0 = state.x.reshape(shape).to(compute)
            y0 = state.y.reshape(shape).to(compute)
            history = state.history
            if history is not None:
                history = history.reshape(-1, *shape).to(compute)

        # The whole input projection in one matmul, with the recurrent bias folded into it.
        weight_ih = self.i2h.weight.to(compute)
        bias: torch.Tensor | None = self.i2h.bias
        if self.h2h.bias is not None:
            recurrent_bias = self.recurrent_scale * self.h2h.bias
            bias = recurrent_bias if bias is None else bias + recurrent_bias
        drive = F.linear(
            sequence.to(compute), weight_ih, None if bias is None else bias.to(compute)
        )
        feedback: torch.Tensor | None = self.horn.v
        if (
            feedback is not None
            and not feedback.requires_grad
            and feedback.device.type == "cpu"
            and not torch.compiler.is_compiling()
            and not bool(feedback.any())
        ):
            # A fixed zero v: skip the term (one op per step less). Checked on every call, so
            # in-place edits of the buffer count; on the CPU the check costs no device sync.
            feedback = None
        x_seq, y_seq, history_out = horn_scan(
            drive,
            self.h2h.weight.to(compute),
            None,
            self.horn.alpha,
            self.horn.omega,
            self.horn.gamma,
            feedback,
            self.horn.dt,
            x0,
            y0,
            recurrent_scale=self.recurrent_scale,
            delay=self.delay,
            history=history,
            max_delay=self.max_delay,
            backend=self.backend,
        )
        if steps == 0:
            x_last, y_last = x0, y0
        else:
            x_last, y_last = x_seq[-1], y_seq[-1]

        def layout(sequence_out: torch.Tensor) -> torch.Tensor:
            sequence_out = sequence_out.to(dtype)
            if unbatched:
                return sequence_out.squeeze(1)
            return sequence_out.transpose(0, 1) if self.batch_first else sequence_out

        state_shape = (*batch_shape, self.n_hidden)
        final = HORNState(
            x_last.to(dtype).reshape(state_shape),
            y_last.to(dtype).reshape(state_shape),
            None
            if history_out is None
            else history_out.to(dtype).reshape(history_out.shape[0], *state_shape),
        )
        if return_velocity:
            return layout(x_seq), layout(y_seq), final
        return layout(x_seq), final

    def extra_repr(self) -> str:
        parts = [f"{self.n_input}, {self.n_hidden}", f"dt={self.dt}"]
        if self.delay is not None:
            parts.append(f"delay=({self.n_hidden}, {self.n_hidden}) max {self.max_delay}")
        if not self.bias:
            parts.append("bias=False")
        parts.append(f"recurrent_scale={self.recurrent_scale:.6g}")
        if self.batch_first:
            parts.append("batch_first=True")
        if self.paper:
            parts.append("paper=True")
        if self.backend is not None:
            parts.append(f"backend={self.backend!r}")
        return ", ".join(parts)


def _per_layer(name: str, value: object, n_layers: int) -> list:
    """One value per layer: a list/tuple must have one entry per layer, anything else repeats."""
    if isinstance(value, (list, tuple)):
        if len(value) != n_layers:
            raise ValueError(
                f"{name} given per layer must have {n_layers} entries (one per layer), "
                f"got {len(value)}"
            )
        return list(value)
    return [value] * n_layers


class HORNSeqNetwork(nn.Module):
    """Stacked HORN layers with a linear readout.

    Layer l reads the position sequence of layer l-1 (layer 1 reads the input); the readout
    ``h2o`` maps the last layer's final position x_T (``readout='last'``, brainmass and the
    paper) or its time average (``readout='mean'``) to ``n_output`` logits. The dynamics
    arguments take one value for every layer or a Python list/tuple with one entry per layer
    (per-unit values are tensors; an ``nn.Parameter`` given once is shared by all layers).

    Args:
        n_input: input features per step.
        n_hidden: oscillators per layer, an int (one layer) or a list of ints.
        n_output: readout features.
        alpha: as in :class:`HORNSeqLayer`; one for all layers, or a list/tuple per layer.
        omega: as in :class:`HORNSeqLayer`; one for all layers, or a list/tuple per layer.
        gamma: as in :class:`HORNSeqLayer`; one for all layers, or a list/tuple per layer.
        v: as in :class:`HORNSeqLayer`; one for all layers, or a list/tuple per layer.
        delay: as in :class:`HORNSeqLayer`; one for all layers, or a list/tuple per layer.
        recurrent_scale: as in :class:`HORNSeqLayer`; one for all layers, or a list/tuple per layer.
        dt: as in :class:`HORNSeqLayer`, the same for every layer.
        bias: as in :class:`HORNSeqLayer`, the same for every layer.
        batch_first: as in :class:`HORNSeqLayer`, the same for every layer.
        device: as in :class:`HORNSeqLayer`, the same for every layer.
        dtype: as in :class:`HORNSeqLayer`, the same for every layer.
        learnable: as in :class:`HORNSeqLayer`, the same for every layer.
        paper: as in :class:`HORNSeqLayer`, the same for every layer.
        readout: ``'last'`` (default) or ``'mean'``.
        backend: as in :class:`HORNSeqLayer`, the same for every layer (default None).

    Shape:
        - input: (T, B, n_input), (B, T, n_input) if batch_first, or unbatched (T, n_input).
        - Output: logits (B, n_output), or (n_output,) for unbatched input.

    Example:
        >>> net = HORNSeqNetwork(1, [32, 16], 10)
        >>> net(torch.rand(784, 4, 1)).shape
        torch.Size([4, 10])
    """

    def __init__(
        self,
        n_input: int,
        n_hidden: int | Sequence[int],
        n_output: int,
        alpha: Any = 0.04,
        omega: Any = DEFAULT_OMEGA,
        gamma: Any = 0.01,
        v: Any = 0.0,
        dt: float = 1.0,
        delay: Any = None,
        bias: bool = True,
        recurrent_scale: Any = 1.0,
        batch_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        learnable: Iterable[str] = (),
        paper: bool = False,
        readout: str = "last",
        backend: str | None = None,
    ) -> None:
        super().__init__()
        factory_kwargs: dict[str, Any] = {"device": device, "dtype": dtype}
        self.n_input = check_positive_int("n_input", n_input)
        self.backend = check_backend(backend)
        if isinstance(n_hidden, (list, tuple)):
            if not n_hidden:
                raise ValueError("n_hidden must name at least one layer, got an empty list")
            sizes = [check_positive_int("n_hidden", size) for size in n_hidden]
        else:
            sizes = [check_positive_int("n_hidden", n_hidden)]
        self.n_hidden = sizes
        self.n_output = check_positive_int("n_output", n_output)
        if not isinstance(readout, str):
            raise TypeError(f"readout must be a str, got {type(readout).__name__}")
        if readout not in ("last", "mean"):
            raise ValueError(f"readout must be 'last' or 'mean', got {readout!r}")
        self.readout = readout
        self.paper = check_bool("paper", paper)
        self.batch_first = check_bool("batch_first", batch_first)
        n_layers = len(sizes)
        per_layer = {
            name: _per_layer(name, value, n_layers)
            for name, value in (
                ("alpha", alpha),
                ("omega", omega),
                ("gamma", gamma),
                ("v", v),
                ("delay", delay),
                ("recurrent_scale", recurrent_scale),
            )
        }
        layers = []
        inputs = self.n_input
        for index, size in enumerate(sizes):
            layers.append(
                HORNSeqLayer(
                    inputs,
                    size,
                    **{name: values[index] for name, values in per_layer.items()},
                    dt=dt,
                    bias=bias,
                    batch_first=batch_first,
                    learnable=learnable,
                    paper=paper,
                    backend=self.backend,
                    **factory_kwargs,
                )
            )
            inputs = size
        self.layers = nn.ModuleList(layers)
        self.h2o = nn.Linear(sizes[-1], self.n_output, **factory_kwargs)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise every layer and the readout (like the input projections)."""
        for layer in self.layers:
            cast(HORNSeqLayer, layer).reset_parameters()  # nn.ModuleList items are typed Module
        if self.paper:
            self.h2o.reset_parameters()
        else:
            nn.init.kaiming_normal_(self.h2o.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(self.h2o.bias)

    def hidden_sequences(self, input: torch.Tensor) -> list[torch.Tensor]:
        """Position sequences of every layer, each in the input's layout."""
        return self._run(input)[0]

    def _run(self, input: torch.Tensor) -> tuple[list[torch.Tensor], HORNState]:
        sequences = []
        sequence = input
        state: HORNState  # set by the loop: the network has at least one layer
        for layer in self.layers:
            sequence, state = layer(sequence)
            sequences.append(sequence)
        return sequences, state

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        sequences, state = self._run(input)
        if self.readout == "last":
            features = state.x
        else:
            time_axis = 1 if (self.batch_first and input.dim() == 3) else 0
            last = sequences[-1]
            if last.shape[time_axis] == 0:
                features = state.x  # no steps: the (zero) initial position
            else:
                features = last.mean(dim=time_axis)
        return self.h2o(features)

    def extra_repr(self) -> str:
        description = (
            f"n_input={self.n_input}, n_hidden={self.n_hidden}, n_output={self.n_output}, "
            f"readout={self.readout!r}"
        )
        if self.backend is not None:
            description += f", backend={self.backend!r}"
        return description
