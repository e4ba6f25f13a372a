"""Harmonic-oscillator recurrent network (HORN) dynamics: one step and the scan over time.

Every unit is a damped harmonic oscillator with position x and velocity y, driven through a
tanh and integrated with the semi-implicit (symplectic) Euler step of size h = ``dt``:

    y_t = y_{t-1} + h * (alpha * tanh(u_t + v * x_{t-1}) - omega**2 * x_{t-1} - 2*gamma * y_{t-1})
    x_t = x_{t-1} + h * y_t

In a sequence layer the drive is u_t = I_t + s * r_t with I_t the input projection and r_t the
recurrent term, W_hh y_{t-1} + b_hh without delays, or with integer synaptic delays d_ij

    r_i(t) = sum_j W_hh[i, j] * yhat_j(t - 1 - d_ij),   yhat(k) = y_k for k >= 1,

where yhat(k) for k <= 0 comes from a history of earlier velocities (zeros when none is given:
the initial velocity is never read by the delayed path). This matches brainmass 0.1.1
(``HORNStep``, ``HORNSeqLayer``); with s = 1/sqrt(n) and v = 0 it is the original HORN of
Effenberger et al. (PNAS 2025).

:func:`horn_scan` is the fast path: a ``torch.autograd.Function`` whose forward runs a few fused
ops per step and whose backward runs the adjoint recurrence in one reverse loop.
:func:`horn_scan_ref` is its plain twin, written step by step in the canonical order, and is the
specification the fast path is tested against.
"""

from __future__ import annotations

from typing import Any

import torch

from dyna._validation import check_floating_tensor, check_real
from dyna.functional._autograd import first_order_backward
from dyna.functional._backend import check_backend, logger, use_triton


def _check_delay(delay: object, n_units: int) -> torch.Tensor:
    if not isinstance(delay, torch.Tensor):
        raise TypeError(f"delay must be an integer torch.Tensor, got {type(delay).__name__}")
    if delay.is_floating_point() or delay.is_complex() or delay.dtype == torch.bool:
        raise TypeError(
            f"delay must have an integer dtype (steps; convert times with delay_steps), "
            f"got {delay.dtype}"
        )
    if delay.shape != (n_units, n_units):
        raise ValueError(f"delay must have shape ({n_units}, {n_units}), got {tuple(delay.shape)}")
    return delay


def _check_step_inputs(drive: object, x: object, y: object, dt: object) -> float:
    drive = check_floating_tensor("drive", drive)
    for name, value in (("x", x), ("y", y)):
        tensor = check_floating_tensor(name, value)
        if tensor.shape != drive.shape:
            raise ValueError(
                f"{name} must have the shape of drive {tuple(drive.shape)}, "
                f"got {tuple(tensor.shape)}"
            )
    return check_real("dt", dt, minimum=0.0, strictly_greater=True)


def _check_scan_inputs(
    drive: object,
    weight: object,
    bias: object,
    dt: object,
    x0: object,
    y0: object,
    delay: object,
) -> float:
    """Shapes and types of a scan's tensors (no host synchronisation); returns ``dt``."""
    drive = check_floating_tensor("drive", drive)
    if drive.dim() != 3:
        raise ValueError(f"drive must have shape (T, B, n), got {tuple(drive.shape)}")
    _, batch, n_units = drive.shape
    expected: dict[str, tuple[int, ...]] = {
        "weight": (n_units, n_units),
        "x0": (batch, n_units),
        "y0": (batch, n_units),
    }
    if bias is not None:
        expected["bias"] = (n_units,)
    values = {"weight": weight, "bias": bias, "x0": x0, "y0": y0}
    for name, shape in expected.items():
        tensor = check_floating_tensor(name, values[name])
        if tensor.shape != shape:
            raise ValueError(
                f"{name} must have shape {shape} for drive of shape {tuple(drive.shape)}, "
                f"got {tuple(tensor.shape)}"
            )
    dt = check_real("dt", dt, minimum=0.0, strictly_greater=True)
    if delay is not None:
        _check_delay(delay, n_units)
        if bias is not None:
            raise ValueError("bias must be None when delay is given (the delayed path has none)")
    return dt


def _history_length(delay: torch.Tensor | None, max_delay: int | None) -> int:
    """Velocities a scan keeps readable: max(delay) + 1 with delays, 1 without.

    Reading max(delay) synchronises with the device; a caller that knows it passes
    ``max_delay``.
    """
    if delay is None:
        return 1
    return (int(delay.max()) if max_delay is None else max_delay) + 1


def horn_step(
    drive: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    alpha: torch.Tensor | float,
    omega: torch.Tensor | float,
    gamma: torch.Tensor | float,
    v: torch.Tensor | float | None,
    dt: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One symplectic HORN step in the canonical evaluation order.

    ``a = tanh(drive + v*x); y' = y + dt*(alpha*a - omega**2*x - (2*gamma)*y); x' = x + dt*y'``.

    Args:
        drive: everything that enters the tanh except ``v * x``, shape (..., n).
        x: positions, same shape as ``drive``.
        y: velocities, same shape as ``drive``.
        alpha: excitability, a float or a tensor that broadcasts to (n,).
        omega: natural frequency, a float or a tensor that broadcasts to (n,).
        gamma: damping, a float or a tensor that broadcasts to (n,).
        v: amplitude feedback inside the tanh, or None (no feedback term).
        dt: the integration step h.

    Returns:
        The new ``(x, y)``, each of the shape of ``drive``.
    """
    dt = _check_step_inputs(drive, x, y, dt)
    return _step(drive, x, y, alpha, omega, gamma, v, dt)


def _step(drive, x, y, alpha, omega, gamma, v, dt):
    """:func:`horn_step` without the argument checks, for the loops that call it per step."""
    pre = drive if v is None else drive + v * x
    activation = torch.tanh(pre)
    y_new = y + dt * (alpha * activation - (omega * omega) * x - (2.0 * gamma) * y)
    x_new = x + dt * y_new
    return x_new, y_new


def horn_scan_ref(
    drive: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    alpha: torch.Tensor | float,
    omega: torch.Tensor | float,
    gamma: torch.Tensor | float,
    v: torch.Tensor | float | None,
    dt: float,
    x0: torch.Tensor,
    y0: torch.Tensor,
    *,
    recurrent_scale: float = 1.0,
    delay: torch.Tensor | None = None,
    history: torch.Tensor | None = None,
    max_delay: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Plain step-by-step HORN scan: the specification of :func:`horn_scan` in code.

    Same arguments and results as :func:`horn_scan`; each step is :func:`horn_step` on the drive
    ``drive_t + recurrent_scale * r_t`` and ordinary autograd differentiates it.
    """
    dt = _check_scan_inputs(drive, weight, bias, dt, x0, y0, delay)
    n_units = drive.shape[-1]
    x, y = x0, y0
    xs, ys = [], []
    if delay is None:
        for drive_t in drive.unbind(0):
            recurrent = torch.nn.functional.linear(y, weight, bias)
            x, y = _step(drive_t + recurrent_scale * recurrent, x, y, alpha, omega, gamma, v, dt)
            xs.append(x)
            ys.append(y)
        history_out = None
    else:
        length = _history_length(delay, max_delay)
        if history is None:
            history = drive.new_zeros((length, *x0.shape))
        # Chronological list of readable velocities, oldest first: the last entry is yhat(t-1).
        readable = list(history.flip(0).unbind(0))
        lag_rows = length - 1 - delay  # row of the stacked window that lag d_ij reads
        columns = torch.arange(n_units, device=drive.device).expand(n_units, n_units)
        for drive_t in drive.unbind(0):
            window = torch.stack(readable[-length:], dim=-2)  # (..., L, n)
            delayed = window[..., lag_rows, columns]  # (..., n_i, n_j) = yhat_j(t-1-d_ij)
            recurrent = (delayed * weight).sum(-1)
            x, y = _step(drive_t + recurrent_scale * recurrent, x, y, alpha, omega, gamma, v, dt)
            xs.append(x)
            ys.append(y)
            readable.append(y)
        history_out = torch.stack(readable[-length:][::-1], dim=0)
    if xs:
        return torch.stack(xs), torch.stack(ys), history_out
    empty = drive.new_empty((0, *x0.shape))
    return empty, empty, history_out


def _update_in_place(
    pre: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    gain: torch.Tensor,
    spring: torch.Tensor,
    retention: torch.Tensor,
    feedback: torch.Tensor | None,
    dt: float,
    x_out: torch.Tensor,
    y_out: torch.Tensor,
    a_out: torch.Tensor,
) -> None:
    """One step of the fast scans from the pre-activation without ``v * x``, written in place.

    ``a = tanh(pre + feedback * x); y' = retention * y - spring * x + gain * a; x' = x + dt * y'``
    into ``a_out``, ``y_out``, ``x_out`` (``pre`` is overwritten). Any layout: the coefficients
    broadcast against the state.
    """
    if feedback is not None:
        pre.addcmul_(feedback, x)
    torch.tanh(pre, out=a_out)
    torch.mul(y, retention, out=y_out)
    y_out.addcmul_(x, spring, value=-1.0).addcmul_(a_out, gain)
    torch.add(x, y_out, alpha=dt, out=x_out)


def _delay_rows(delay: torch.Tensor, length: int, reading: bool) -> torch.Tensor:
    """Row indices into a (L * n, B) window of a unit-major (time, unit, batch) buffer.

    The delayed path runs with the batch innermost so that every connection's delayed values are
    one contiguous row of B numbers: gathering n^2 rows is a memory copy, several times faster
    than gathering n^2 * B scattered scalars. With ``reading`` the entry (i, j) is the row of
    yhat_j(t - 1 - d_ij) in the window of the last L velocities (row ``L - 1 - d_ij``, unit j);
    otherwise the entry (j, i) is the row of the adjoint of the step that reads yhat_j(s) through
    the connection j -> i, in the window of the L steps from s on (row ``d_ij``, unit i).
    """
    n_units = delay.shape[0]
    units = torch.arange(n_units, device=delay.device).view(1, n_units)
    if reading:
        lag_rows = (length - 1) - delay  # (n_i, n_j): L - 1 - d_ij
    else:
        lag_rows = delay.t()  # (n_j, n_i): d_ij
    return (lag_rows * n_units + units).reshape(-1)


def _delayed_forward(
    drive: torch.Tensor,
    weight: torch.Tensor,
    coefficients: tuple[torch.Tensor, ...],
    feedback: torch.Tensor | None,
    x0: torch.Tensor,
    y0: torch.Tensor,
    history: torch.Tensor | None,
    delay: torch.Tensor,
    dt: float,
    length: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The delayed scan in unit-major layout: positions, velocity buffer, activations.

    Shapes (T, n, B), (L + T, n, B) and (T, n, B); the buffer's row L - 1 + k holds yhat(k).
    """
    gain, spring, retention = (c.unsqueeze(1) for c in coefficients)
    if feedback is not None:
        feedback = feedback.unsqueeze(1)
    drive = drive.transpose(1, 2).contiguous()
    steps, n_units, batch = drive.shape
    positions = drive.new_empty(steps, n_units, batch)
    velocities = drive.new_empty(length + steps, n_units, batch)
    activations = drive.new_empty(steps, n_units, batch)
    if history is None:
        velocities[:length].zero_()
    else:
        velocities[:length] = history.flip(0).transpose(1, 2)
    rows = _delay_rows(delay, length, reading=True)
    weight_column = weight.unsqueeze(-1)  # (n_i, n_j, 1)
    products = drive.new_empty(n_units, n_units, batch)
    x, y = x0.t(), y0.t()
    outputs = zip(
        drive.unbind(0),
        positions.unbind(0),
        velocities[length:].unbind(0),
        activations.unbind(0),
        strict=True,
    )
    for step, (drive_t, x_out, y_out, a_out) in enumerate(outputs):
        # Y[i, j, :] = yhat_j(t - 1 - d_ij) for every connection, then sum_j W[i, j] Y[i, j, :]:
        # O(B n^2) per step, like the dense matmul.
        window = velocities[step : step + length].view(length * n_units, batch)
        delayed = window.index_select(0, rows).view(n_units, n_units, batch)
        pre = torch.mul(delayed, weight_column, out=products).sum(1).add_(drive_t)
        _update_in_place(pre, x, y, gain, spring, retention, feedback, dt, x_out, y_out, a_out)
        x, y = x_out, y_out
    return positions, velocities, activations


def _previous_sum(
    weights: torch.Tensor, sequence: torch.Tensor, initial: torch.Tensor, dims: tuple[int, int]
) -> torch.Tensor:
    """sum_t weights_t * sequence_{t-1} with sequence_{-1} = initial, without concatenating.

    ``dims`` are the (time, batch) dimensions of ``weights``; ``initial`` has no time dimension.
    """
    total = (weights[0] * initial).sum(dims[1] - 1)
    if weights.shape[0] > 1:
        total = total + (weights[1:] * sequence[:-1]).sum(dims)
    return total


def _delayed_backward(
    ctx: Any, grad_positions: torch.Tensor, grad_velocities: torch.Tensor
) -> tuple:
    """Adjoint recurrence of :func:`_delayed_forward`, in the same unit-major layout."""
    (weight, gain, spring, retention, feedback, x0, y0, delay) = ctx.saved_tensors[:8]
    positions, velocities, activations = ctx.saved_tensors[8:]
    dt, length = ctx.dt, ctx.length
    steps, n_units, batch = positions.shape
    gain_c, spring_c, retention_c = (c.unsqueeze(1) for c in (gain, spring, retention))
    feedback_c = None if feedback is None else feedback.unsqueeze(1)
    if grad_positions is None:
        grad_positions = torch.zeros_like(positions)
    else:
        grad_positions = grad_positions.transpose(1, 2).contiguous()
    if grad_velocities is not None:
        grad_velocities = grad_velocities.transpose(1, 2).contiguous()

    slope = activations.square().neg_().add_(1.0).mul_(gain_c)
    # d x_t-coupling of each step's adjoint, -k + v * slope, for all steps at once.
    coupling = -spring_c if feedback_c is None else (slope * feedback_c).sub_(spring_c)
    adjoint = torch.empty_like(activations)
    # Gradient arriving at x_{t-1} from the outputs, for every step t (none for x0).
    grad_previous_x = (torch.zeros_like(grad_positions[0]), *grad_positions[:-1].unbind(0))
    # Adjoint of every step's pre-activation, padded by L zero rows on both sides so that the
    # steps reading yhat(s) (steps s + d, d < L, 0-based) are one contiguous window.
    padded_pre = activations.new_zeros(steps + 2 * length, n_units, batch)
    grad_pre = padded_pre[length : length + steps]
    rows = _delay_rows(delay, length, reading=False)
    weight_t_column = weight.t().unsqueeze(-1)  # (n_j, n_i, 1)
    grad_weight_t = weight.new_zeros(n_units, n_units)  # (n_j, n_i)
    products = activations.new_empty(n_units, n_units, batch)

    def read_back(start: int, velocity: torch.Tensor | None) -> torch.Tensor:
        """Adjoint reaching yhat(s) through the delayed coupling (window from padded row start);
        accumulates the weight gradient of those reads for the velocity value ``velocity``."""
        later = padded_pre[start : start + length].view(length * n_units, batch)
        readers = later.index_select(0, rows).view(n_units, n_units, batch)  # [j, i, b]
        if velocity is not None:
            grad_weight_t.add_(torch.mul(readers, velocity.unsqueeze(1), out=products).sum(-1))
        return torch.mul(readers, weight_t_column, out=products).sum(1)  # (n_j, B)

    lambda_x = grad_positions[-1]
    lambda_y_dynamics = torch.zeros_like(lambda_x)
    for step in range(steps - 1, -1, -1):
        # Adjoint of y_{step+1}: external + dynamics of the next step + the steps that read it.
        lambda_y = read_back(length + step + 1, velocities[length + step])
        lambda_y.add_(lambda_y_dynamics)
        if grad_velocities is not None:
            lambda_y.add_(grad_velocities[length + step])
        adjoint_t = torch.add(lambda_y, lambda_x, alpha=dt, out=adjoint[step])
        torch.mul(adjoint_t, slope[step], out=grad_pre[step])
        step_coupling = coupling if feedback_c is None else coupling[step]
        lambda_x = torch.addcmul(grad_previous_x[step], adjoint_t, step_coupling).add_(lambda_x)
        lambda_y_dynamics = adjoint_t * retention_c
    # History rows hold yhat(0), yhat(-1), ...: read by the first steps.
    history_rows = []
    for lag in range(length):
        value = velocities[length - 1 - lag] if ctx.history_given else None
        history_rows.append(read_back(length - lag, value))
    grad_history = None
    needs = ctx.needs_input_grad
    if needs[8]:
        grad_history = torch.stack(history_rows)
        if grad_velocities is not None:
            grad_history.add_(grad_velocities[:length].flip(0))
        grad_history = grad_history.transpose(1, 2)

    dims = (0, 2)
    y_sequence = velocities[length:]
    return (
        grad_pre.transpose(1, 2) if needs[0] else None,
        grad_weight_t.t() if needs[1] else None,
        (adjoint * activations).sum(dims) if needs[2] else None,
        -_previous_sum(adjoint, positions, x0.t(), dims) if needs[3] else None,
        _previous_sum(adjoint, y_sequence, y0.t(), dims) if needs[4] else None,
        _previous_sum(grad_pre, positions, x0.t(), dims) if needs[5] else None,
        lambda_x.t() if needs[6] else None,
        lambda_y_dynamics.t() if needs[7] else None,
        grad_history,
        None,
        None,
        None,
    )


class HORNScan(torch.autograd.Function):
    """Fast HORN scan with the adjoint recurrence as its backward.

    Inputs (all in one floating dtype): ``drive`` (T, B, n) with the recurrent bias folded in;
    ``weight`` (n, n) already multiplied by the recurrent scale; the per-unit coefficients
    ``gain = dt*alpha``, ``spring = dt*omega**2``, ``retention = 1 - 2*gamma*dt`` and
    ``feedback = v`` (or None); ``x0``, ``y0`` (B, n); ``history`` (L, B, n) newest first or
    None; ``delay`` (n, n) int64 or None; ``dt``; the history length L = max(delay) + 1 (1
    without delays). Outputs: the positions (T, B, n) and a chronological velocity buffer
    (L + T, B, n) whose row L - 1 + k holds yhat(k) (row 0 = y0 without delays).

    Step: ``y' = retention*y - spring*x + gain*tanh(drive + W yhat + feedback*x); x' = x + dt*y'``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        drive: torch.Tensor,
        weight: torch.Tensor,
        gain: torch.Tensor,
        spring: torch.Tensor,
        retention: torch.Tensor,
        feedback: torch.Tensor | None,
        x0: torch.Tensor,
        y0: torch.Tensor,
        history: torch.Tensor | None,
        delay: torch.Tensor | None,
        dt: float,
        length: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.set_materialize_grads(False)
        if delay is not None:
            positions, velocities, activations = _delayed_forward(
                drive,
                weight,
                (gain, spring, retention),
                feedback,
                x0,
                y0,
                history,
                delay,
                dt,
                length,
            )
            ctx.save_for_backward(
                weight, gain, spring, retention, feedback, x0, y0, delay, positions,
                velocities, activations,
            )  # fmt: skip
            ctx.dt = dt
            ctx.length = length
            ctx.history_given = history is not None
            # Back to the caller's (time, batch, unit) layout, contiguous as nn.RNN's outputs.
            return positions.transpose(1, 2).contiguous(), velocities.transpose(1, 2).contiguous()
        drive = drive.contiguous()
        steps, batch, n_units = drive.shape
        positions = drive.new_empty(steps, batch, n_units)
        velocities = drive.new_empty(1 + steps, batch, n_units)
        activations = drive.new_empty(steps, batch, n_units)
        velocities[0] = y0
        x, y = x0, y0
        outputs = zip(
            drive.unbind(0),
            positions.unbind(0),
            velocities[1:].unbind(0),
            activations.unbind(0),
            strict=True,
        )
        weight_t = weight.t()
        for drive_t, x_out, y_out, a_out in outputs:
            # One addmm for input + bias + recurrent term; the rest in place in the outputs.
            pre = torch.addmm(drive_t, y, weight_t)
            _update_in_place(pre, x, y, gain, spring, retention, feedback, dt, x_out, y_out, a_out)
            x, y = x_out, y_out
        ctx.save_for_backward(
            weight,
            gain,
            spring,
            retention,
            feedback,
            x0,
            y0,
            delay,
            positions,
            velocities,
            activations,
        )
        ctx.dt = dt
        return positions, velocities

    @staticmethod
    @first_order_backward("horn_scan", "horn_scan_ref")
    def backward(ctx: Any, grad_positions: torch.Tensor, grad_velocities: torch.Tensor) -> tuple:
        if ctx.saved_tensors[7] is not None:
            return _delayed_backward(ctx, grad_positions, grad_velocities)
        (weight, gain, spring, retention, feedback, x0, _, _) = ctx.saved_tensors[:8]
        positions, velocities, activations = ctx.saved_tensors[8:]
        dt = ctx.dt
        n_units = positions.shape[-1]
        # Outputs nobody used arrive as None (set_materialize_grads(False)): no zero tensors.
        if grad_positions is None:
            grad_positions = torch.zeros_like(positions)
        grad_positions = grad_positions.contiguous()
        if grad_velocities is None:
            grad_y_rows = (None,) * positions.shape[0]
            lambda_y = torch.zeros_like(positions[0])
        else:
            grad_velocities = grad_velocities.contiguous()
            grad_y_rows = grad_velocities[:-1].unbind(0)
            lambda_y = grad_velocities[-1]

        # d pre / d (gain-scaled) activation, for all steps at once: gain * (1 - a^2).
        slope = activations.square().neg_().add_(1.0).mul_(gain)
        # d x_t-coupling of each step's adjoint, -k + v * slope, for all steps at once.
        if feedback is None:
            coupling = (-spring).expand_as(slope)
        else:
            coupling = (slope * feedback).sub_(spring)
        grad_pre = torch.empty_like(activations)
        adjoint = torch.empty_like(activations)  # yhat_t: adjoint of y_t inside step t
        # Gradient arriving at x_{t-1} from the outputs, for every step t (none for x0).
        grad_previous_x = (torch.zeros_like(grad_positions[0]), *grad_positions[:-1].unbind(0))

        lambda_x = grad_positions[-1]
        rows = zip(
            adjoint.unbind(0),
            grad_pre.unbind(0),
            slope.unbind(0),
            coupling.unbind(0),
            grad_previous_x,
            grad_y_rows,
            strict=True,
        )
        for adjoint_t, grad_pre_t, slope_t, coupling_t, grad_x_prev, grad_y_prev in reversed(
            list(rows)
        ):
            torch.add(lambda_y, lambda_x, alpha=dt, out=adjoint_t)
            torch.mul(adjoint_t, slope_t, out=grad_pre_t)
            new_lambda_x = torch.addcmul(grad_x_prev, adjoint_t, coupling_t).add_(lambda_x)
            if grad_y_prev is None:
                new_lambda_y = torch.addmm(adjoint_t * retention, grad_pre_t, weight)
            else:
                new_lambda_y = torch.addcmul(grad_y_prev, adjoint_t, retention)
                new_lambda_y.addmm_(grad_pre_t, weight)
            lambda_x, lambda_y = new_lambda_x, new_lambda_y
        # All weight-gradient terms at once: sum_t grad_pre_t^T y_{t-1}.
        grad_weight = grad_pre.view(-1, n_units).t().mm(velocities[:-1].reshape(-1, n_units))
        previous_y = velocities[:-1]
        needs = ctx.needs_input_grad
        dims = (0, 1)
        grad_gain = (adjoint * activations).sum(dims) if needs[2] else None
        grad_spring = -_previous_sum(adjoint, positions, x0, dims) if needs[3] else None
        grad_retention = (adjoint * previous_y).sum(dims) if needs[4] else None
        grad_feedback = _previous_sum(grad_pre, positions, x0, dims) if needs[5] else None
        return (
            grad_pre if needs[0] else None,
            grad_weight if needs[1] else None,
            grad_gain,
            grad_spring,
            grad_retention,
            grad_feedback,
            lambda_x if needs[6] else None,
            lambda_y if needs[7] else None,
            None,
            None,
            None,
            None,
        )


def _triton_unsupported(
    drive: torch.Tensor,
    weight: torch.Tensor,
    x0: torch.Tensor,
    y0: torch.Tensor,
    history: torch.Tensor | None,
    delay: torch.Tensor | None,
) -> str | None:
    """Why the kernels cannot take these inputs, or None if they can (no host sync)."""
    tensors = {"weight": weight, "x0": x0, "y0": y0, "history": history, "delay": delay}
    for name, tensor in tensors.items():
        if tensor is not None and tensor.device != drive.device:
            return f"{name} is on {tensor.device}, drive on {drive.device}"
    for name in ("weight", "x0", "y0", "history"):
        tensor = tensors[name]
        if tensor is not None and tensor.dtype != drive.dtype:
            return f"{name} has dtype {tensor.dtype}, drive {drive.dtype}"
    return None


def _per_unit(value: torch.Tensor | float, n_units: int, like: torch.Tensor) -> torch.Tensor:
    """``value`` broadcast to (n_units,) in ``like``'s dtype and device; differentiable."""
    if not isinstance(value, torch.Tensor):
        value = torch.tensor(value, dtype=like.dtype, device=like.device)
    return torch.broadcast_to(value.to(device=like.device, dtype=like.dtype), (n_units,))


def horn_scan(
    drive: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    alpha: torch.Tensor | float,
    omega: torch.Tensor | float,
    gamma: torch.Tensor | float,
    v: torch.Tensor | float | None,
    dt: float,
    x0: torch.Tensor,
    y0: torch.Tensor,
    *,
    recurrent_scale: float = 1.0,
    delay: torch.Tensor | None = None,
    history: torch.Tensor | None = None,
    max_delay: int | None = None,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """HORN scan over time with a hand-written backward through time.

    Runs T symplectic steps with the drive ``drive_t + recurrent_scale * r_t`` where ``r_t`` is
    ``weight @ y_{t-1} + bias`` without delays, or the delayed sum
    ``r_i = sum_j weight[i, j] * yhat_j(t - 1 - delay[i, j])`` with delays (no bias then).
    Under ``torch.compile`` it runs :func:`horn_scan_ref`, which the compiler can trace.

    ``backend`` picks the implementation of the recurrence (see ``dyna.functional._backend``):
    ``None`` runs the Triton kernels (:mod:`dyna.functional.horn_triton`) for CUDA tensors in
    float32/bfloat16/float16 when ``triton`` imports and the torch loop otherwise; ``"torch"``
    always runs the torch loop; ``"triton"`` forces the kernels (CUDA tensors, or CPU tensors
    under ``TRITON_INTERPRET=1``; a ``RuntimeError`` where they cannot run at all). float64 and
    inputs the kernels do not take run the torch loop, logged at debug level on the
    ``dyna.backend`` logger. Both give the same results to float32 rounding.

    Args:
        drive: input projection for every step, (T, B, n).
        weight: recurrent weight (n, n), (out, in) layout.
        bias: recurrent bias (n,) or None; must be None with delays.
        alpha: excitability, a float or a tensor broadcastable to (n,).
        omega: natural frequency, a float or a tensor broadcastable to (n,).
        gamma: damping, a float or a tensor broadcastable to (n,).
        v: amplitude feedback (float or tensor broadcastable to (n,)), or None to skip it.
        dt: integration step h, a positive float.
        x0: initial positions, (B, n).
        y0: initial velocities, (B, n).
        recurrent_scale: multiplies the recurrent term (1.0 brainmass, 1/sqrt(n) the paper).
        delay: None or an integer (n, n) tensor of non-negative lags in steps.
        history: with delays, the readable velocities newest first, (L, B, n) with
            L = max(delay) + 1; None reads zeros before the start.
        max_delay: ``int(delay.max())`` if the caller knows it (avoids a host sync).
        backend: ``None`` (default: Triton for CUDA tensors when available), ``"torch"`` or
            ``"triton"``.

    Returns:
        ``(x_seq, y_seq, history_out)``: positions and velocities x_1..x_T, y_1..y_T, each
        (T, B, n), and with delays the history after the last step (L, B, n) (None without).
    """
    backend = check_backend(backend)
    dt = _check_scan_inputs(drive, weight, bias, dt, x0, y0, delay)
    n_units = drive.shape[-1]
    if torch.compiler.is_compiling():
        if backend == "triton":
            logger.debug("horn_scan: under torch.compile the traceable horn_scan_ref runs")
        return horn_scan_ref(
            drive, weight, bias, alpha, omega, gamma, v, dt, x0, y0,
            recurrent_scale=recurrent_scale, delay=delay, history=history, max_delay=max_delay,
        )  # fmt: skip
    scan: Any = HORNScan
    # The kernels compute in float32: their coefficients stay float32 for a low-precision drive.
    coefficient_like = drive
    # Decided before the T = 0 exit: a forced backend that cannot run fails the same way.
    if use_triton("horn_scan", backend, drive):
        reason = _triton_unsupported(drive, weight, x0, y0, history, delay)
        if reason is None:
            from dyna.functional.horn_triton import HORNScanTriton

            scan = HORNScanTriton
            coefficient_like = drive.new_empty((), dtype=torch.float32)
        else:
            logger.debug("horn_scan: the torch path runs (%s)", reason)
    history_length = _history_length(delay, max_delay)
    if drive.shape[0] == 0:
        history_out = None
        if delay is not None:
            history_out = (
                history if history is not None else drive.new_zeros((history_length, *x0.shape))
            )
        empty = drive.new_empty((0, *x0.shape))
        return empty, empty, history_out
    if bias is not None:
        drive = drive + recurrent_scale * bias
    scaled_weight = weight if recurrent_scale == 1.0 else weight * recurrent_scale
    gain = dt * _per_unit(alpha, n_units, coefficient_like)
    omega_units = _per_unit(omega, n_units, coefficient_like)
    spring = dt * (omega_units * omega_units)
    retention = 1.0 - dt * (2.0 * _per_unit(gamma, n_units, coefficient_like))
    feedback = None if v is None else _per_unit(v, n_units, coefficient_like)
    positions, velocities = scan.apply(
        drive, scaled_weight, gain, spring, retention, feedback, x0, y0, history,
        delay, dt, history_length,
    )  # fmt: skip
    if delay is None:
        return positions, velocities[1:], None
    steps = drive.shape[0]
    return (
        positions,
        velocities[history_length:],
        velocities[steps : steps + history_length].flip(0),
    )


def delay_steps(delay: torch.Tensor | float | list, dt: float) -> torch.Tensor:
    """Convert synaptic delays given in time units to whole steps: ``ceil(delay / dt)``.

    This is brainmass's rule (1.5 ms at dt = 1 ms gives 2 steps). Quotients within a relative
    tolerance of an integer count as that integer, so exact multiples survive floating-point
    error (0.3 / 0.1 gives 3, not 4). The tolerance is 1e-9, or four ulps of the delay's dtype
    when that is coarser (a float32 0.3 is 0.30000001).

    Args:
        delay: non-negative finite delays, a tensor, a number or a nested list of numbers.
        dt: the step, in the same time unit, a positive finite float.

    Returns:
        An int64 tensor of the shape of ``delay``.

    Example:
        >>> delay_steps(torch.tensor([0.3, 1.5, 2.0]), 0.1)
        tensor([ 3, 15, 20])
    """
    dt = check_real("dt", dt, minimum=0.0, strictly_greater=True)
    if isinstance(delay, torch.Tensor):
        if delay.is_complex() or delay.dtype == torch.bool:
            raise TypeError(f"delay must be a real tensor, got dtype {delay.dtype}")
        times = delay.detach().to(torch.float64)
        ulp = torch.finfo(delay.dtype).eps if delay.is_floating_point() else 0.0
    else:
        try:
            times = torch.tensor(delay, dtype=torch.float64)
            ulp = 0.0
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"delay must be a tensor, a number or a nested list of numbers, "
                f"got {type(delay).__name__}"
            ) from None
    if not bool(torch.isfinite(times).all()) or bool((times < 0).any()):
        raise ValueError("delay must be finite and >= 0")
    quotient = times / dt
    nearest = quotient.round()
    tolerance = max(1e-9, 4.0 * ulp)
    exact = (quotient - nearest).abs() <= tolerance * nearest.abs().clamp(min=1.0)
    return torch.where(exact, nearest, quotient.ceil()).to(torch.int64)
