"""Tests for ``dyna.functional.horn``: the step, the fast scan against its reference twin, and
``delay_steps``."""

import math

import pytest
import torch

from dyna.functional import delay_steps, horn_scan, horn_scan_ref, horn_step

OMEGA = 2 * math.pi / 28


def test_step_package_self_test():
    # brainmass 0.1.1 self-test: h = 0.1, input 1, zero state, default dynamics.
    drive = torch.ones(3, dtype=torch.float64)
    zeros = torch.zeros(3, dtype=torch.float64)
    x, y = horn_step(drive, zeros, zeros, 0.04, OMEGA, 0.01, 0.0, 0.1)
    expected_y = torch.full((3,), 0.1 * 0.04 * math.tanh(1.0), dtype=torch.float64)
    torch.testing.assert_close(y, expected_y, rtol=0, atol=1e-15)
    torch.testing.assert_close(x, 0.1 * expected_y, rtol=0, atol=1e-15)
    assert abs(float(x[0]) - 3.0464e-4) < 5e-9  # the value brainmass's self-test prints


def test_step_hand_derived():
    # One step from a non-zero state, worked out by hand in the canonical order.
    drive = torch.tensor([0.3, -0.2], dtype=torch.float64)
    x = torch.tensor([0.5, -1.0], dtype=torch.float64)
    y = torch.tensor([0.1, 0.2], dtype=torch.float64)
    omega = torch.tensor([0.2, 0.3], dtype=torch.float64)
    v = torch.tensor([0.1, -0.1], dtype=torch.float64)
    alpha, gamma, dt = 0.5, 0.05, 0.7
    x_new, y_new = horn_step(drive, x, y, alpha, omega, gamma, v, dt)
    a = [math.tanh(0.3 + 0.05), math.tanh(-0.2 + 0.1)]
    expected_y = [
        0.1 + 0.7 * (0.5 * a[0] - 0.04 * 0.5 - 0.1 * 0.1),
        0.2 + 0.7 * (0.5 * a[1] + 0.09 * 1.0 - 0.1 * 0.2),
    ]
    expected_x = [0.5 + 0.7 * expected_y[0], -1.0 + 0.7 * expected_y[1]]
    torch.testing.assert_close(
        y_new, torch.tensor(expected_y, dtype=torch.float64), rtol=0, atol=1e-15
    )
    torch.testing.assert_close(
        x_new, torch.tensor(expected_x, dtype=torch.float64), rtol=0, atol=1e-15
    )


def _case(n, batch, steps, dtype, *, delay=None, history=False, feedback=True, seed=0):
    generator = torch.Generator().manual_seed(seed)

    def draw(*shape, scale=1.0, shift=0.0):
        return (
            (torch.randn(*shape, generator=generator, dtype=torch.float64) * scale + shift)
            .to(dtype)
            .requires_grad_()
        )

    args = {
        "drive": draw(steps, batch, n),
        "weight": draw(n, n, scale=0.6),
        "bias": None if delay is not None else draw(n, scale=0.1),
        "alpha": (torch.rand(n, generator=generator, dtype=torch.float64) + 0.2)
        .to(dtype)
        .requires_grad_(),
        "omega": (torch.rand(n, generator=generator, dtype=torch.float64) + 0.1)
        .to(dtype)
        .requires_grad_(),
        "gamma": (0.1 * torch.rand(n, generator=generator, dtype=torch.float64))
        .to(dtype)
        .requires_grad_(),
        "v": draw(n, scale=0.3) if feedback else None,
        "x0": draw(batch, n, scale=0.5),
        "y0": draw(batch, n, scale=0.5),
        "history": None,
    }
    if history:
        args["history"] = draw(int(delay.max()) + 1, batch, n, scale=0.5)
    return args


def _run(function, args, dt, scale, delay):
    return function(
        args["drive"],
        args["weight"],
        args["bias"],
        args["alpha"],
        args["omega"],
        args["gamma"],
        args["v"],
        dt,
        args["x0"],
        args["y0"],
        recurrent_scale=scale,
        delay=delay,
        history=args["history"],
    )


DELAYS = {
    "none": None,
    "zero": torch.zeros(4, 4, dtype=torch.int64),
    "mixed": torch.tensor([[0, 1, 2, 3], [3, 0, 1, 0], [2, 2, 0, 1], [5, 0, 0, 4]]),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize(
    ("delay_name", "history"),
    [("none", False), ("zero", False), ("zero", True), ("mixed", False), ("mixed", True)],
)
@pytest.mark.parametrize("feedback", [True, False])
def test_fast_scan_matches_reference(dtype, delay_name, history, feedback):
    delay = DELAYS[delay_name]
    args = _case(4, 3, 9, dtype, delay=delay, history=history, feedback=feedback)
    results = []
    for function in (horn_scan, horn_scan_ref):
        x_seq, y_seq, history_out = _run(function, args, 0.7, 0.8, delay)
        probe = torch.linspace(-1, 1, x_seq.numel(), dtype=torch.float64).reshape(x_seq.shape)
        loss = (x_seq * probe.to(dtype)).sum() + (y_seq * probe.flip(0).to(dtype)).sum()
        if history_out is not None:
            loss = (
                loss
                + (
                    history_out * torch.arange(history_out.shape[0], dtype=dtype).view(-1, 1, 1)
                ).sum()
            )
        inputs = [value for value in args.values() if value is not None]
        grads = torch.autograd.grad(loss, inputs)
        results.append((x_seq, y_seq, history_out, grads))
    tolerance = (
        {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    )
    (fast_x, fast_y, fast_h, fast_g), (ref_x, ref_y, ref_h, ref_g) = results
    torch.testing.assert_close(fast_x, ref_x, **tolerance)
    torch.testing.assert_close(fast_y, ref_y, **tolerance)
    if delay is None:
        assert fast_h is None and ref_h is None
    else:
        torch.testing.assert_close(fast_h, ref_h, **tolerance)
    for ours, expected in zip(fast_g, ref_g, strict=True):
        torch.testing.assert_close(ours, expected, **tolerance)


@pytest.mark.parametrize("delay_name", ["none", "mixed"])
@pytest.mark.parametrize("used", ["x", "y", "history"])
def test_fast_scan_gradients_of_one_output(delay_name, used):
    # Outputs nobody differentiates reach the backward as None; the others must still be right.
    delay = DELAYS[delay_name]
    if used == "history" and delay is None:
        used = "y"
    args = _case(4, 3, 8, torch.float64, delay=delay, history=delay is not None, seed=5)
    inputs = [value for value in args.values() if value is not None]
    grads = []
    for function in (horn_scan, horn_scan_ref):
        outputs = dict(
            zip(("x", "y", "history"), _run(function, args, 0.9, 1.1, delay), strict=True)
        )
        chosen = outputs[used]
        probe = torch.linspace(-1, 2, chosen.numel(), dtype=torch.float64).reshape(chosen.shape)
        grads.append(torch.autograd.grad((chosen * probe).sum(), inputs))
    for ours, expected in zip(*grads, strict=True):
        torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("delay_name", ["none", "mixed"])
def test_fast_scan_gradcheck(delay_name):
    delay = DELAYS[delay_name]
    args = _case(4, 2, 5, torch.float64, delay=delay, history=delay is not None, seed=3)
    names = [name for name, value in args.items() if value is not None]

    def function(*tensors):
        values = dict(zip(names, tensors, strict=True))
        full = {name: values.get(name) for name in args}
        x_seq, y_seq, history_out = _run(horn_scan, full, 0.6, 0.9, delay)
        outputs = (x_seq, y_seq)
        return outputs if history_out is None else (*outputs, history_out)

    assert torch.autograd.gradcheck(function, tuple(args[name] for name in names))


def test_delay_zero_reads_current_velocity_except_the_initial_one():
    # With all lags zero the delayed sum equals the dense recurrent term, except that the
    # initial velocity is never visible to the delayed path (brainmass's buffer starts at zero).
    args = _case(4, 2, 6, torch.float64, delay=DELAYS["zero"], feedback=False)
    args["y0"] = torch.zeros_like(args["y0"])
    delayed = _run(horn_scan, args, 1.0, 1.0, DELAYS["zero"])
    dense = _run(horn_scan, args, 1.0, 1.0, None)
    torch.testing.assert_close(delayed[0], dense[0], rtol=0, atol=1e-14)
    args["y0"] = torch.ones_like(args["y0"])
    delayed = _run(horn_scan, args, 1.0, 1.0, DELAYS["zero"])
    dense = _run(horn_scan, args, 1.0, 1.0, None)
    assert not torch.allclose(delayed[0], dense[0])


def test_empty_sequence():
    args = _case(4, 2, 0, torch.float64, delay=DELAYS["mixed"])
    x_seq, y_seq, history = _run(horn_scan, args, 1.0, 1.0, DELAYS["mixed"])
    assert x_seq.shape == (0, 2, 4) and y_seq.shape == (0, 2, 4)
    assert history.shape == (6, 2, 4) and not history.any()


def test_scan_errors():
    args = _case(4, 2, 3, torch.float64)
    with pytest.raises(ValueError, match="dt"):
        _run(horn_scan, args, 0.0, 1.0, None)
    with pytest.raises(TypeError, match="delay"):
        _run(horn_scan, {**args, "bias": None}, 1.0, 1.0, torch.zeros(4, 4))
    with pytest.raises(ValueError, match="delay"):
        _run(horn_scan, {**args, "bias": None}, 1.0, 1.0, torch.zeros(3, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="bias"):
        _run(horn_scan, args, 1.0, 1.0, DELAYS["zero"])
    with pytest.raises(ValueError, match="drive"):
        _run(horn_scan, {**args, "drive": args["drive"][0]}, 1.0, 1.0, None)
    with pytest.raises(TypeError, match="drive"):
        _run(horn_scan, {**args, "drive": torch.zeros(3, 2, 4, dtype=torch.int64)}, 1.0, 1.0, None)


def test_delay_steps():
    # brainmass's ceil(delay / dt), with exact multiples kept exact.
    assert delay_steps(torch.tensor([0.3, 1.5, 2.0, 0.0]), 0.1).tolist() == [3, 15, 20, 0]
    assert delay_steps([[1.5, 1.0], [0.2, 40.0]], 1.0).tolist() == [[2, 1], [1, 40]]
    assert delay_steps(0.3, 0.1).item() == 3
    assert delay_steps(torch.tensor(0.3, dtype=torch.float64), 0.1).item() == 3
    assert delay_steps(torch.tensor([1.01, 39.2]), 1.0).tolist() == [2, 40]
    assert delay_steps(torch.tensor([5, 7]), 2.0).tolist() == [3, 4]
    assert delay_steps([1.5], 1.0).dtype == torch.int64


def test_delay_steps_errors():
    with pytest.raises(ValueError, match="delay"):
        delay_steps([-1.0], 1.0)
    with pytest.raises(ValueError, match="delay"):
        delay_steps([float("nan")], 1.0)
    with pytest.raises(ValueError, match="dt"):
        delay_steps([1.0], 0.0)
    with pytest.raises(TypeError, match="dt"):
        delay_steps([1.0], "1")
    with pytest.raises(TypeError, match="delay"):
        delay_steps("1 ms", 1.0)
    with pytest.raises(TypeError, match="delay"):
        delay_steps(torch.tensor([True]), 1.0)


@pytest.mark.parametrize("scan", [horn_scan, horn_scan_ref])
@pytest.mark.parametrize(
    ("name", "value", "error", "message"),
    [
        ("weight", torch.zeros(3, 2), ValueError, r"weight must have shape \(3, 3\)"),
        ("weight", torch.zeros(3, 3, dtype=torch.int64), TypeError, "weight must have a floating"),
        ("bias", torch.zeros(2), ValueError, r"bias must have shape \(3,\)"),
        ("bias", [0.0, 0.0, 0.0], TypeError, "bias must be a torch.Tensor"),
        ("x0", torch.zeros(3, 3), ValueError, r"x0 must have shape \(2, 3\)"),
        ("y0", None, TypeError, "y0 must be a torch.Tensor"),
        ("dt", None, TypeError, "dt must be a real number"),
        ("dt", float("nan"), ValueError, "dt must be finite"),
    ],
)
def test_scan_rejects_bad_tensors_before_torch_does(scan, name, value, error, message):
    # these reached torch as RuntimeError, AttributeError or a silent broadcast before
    args = {
        "drive": torch.zeros(4, 2, 3),
        "weight": torch.zeros(3, 3),
        "bias": torch.zeros(3),
        "alpha": 0.04,
        "omega": 0.3,
        "gamma": 0.01,
        "v": 0.0,
        "dt": 1.0,
        "x0": torch.zeros(2, 3),
        "y0": torch.zeros(2, 3),
    }
    args[name] = value
    with pytest.raises(error, match=message):
        scan(*args.values())


@pytest.mark.parametrize(
    ("name", "value", "error", "message"),
    [
        ("drive", [1.0, 2.0], TypeError, "drive must be a torch.Tensor"),
        ("x", torch.zeros(3, 2), ValueError, r"x must have the shape of drive \(2, 3\)"),
        ("y", torch.zeros(2, 3, dtype=torch.int64), TypeError, "y must have a floating"),
        ("dt", 0.0, ValueError, "dt must be > 0"),
    ],
)
def test_step_rejects_bad_arguments(name, value, error, message):
    args = {"drive": torch.zeros(2, 3), "x": torch.zeros(2, 3), "y": torch.zeros(2, 3)}
    args.update(alpha=0.04, omega=0.3, gamma=0.01, v=0.0, dt=1.0)
    args[name] = value
    with pytest.raises(error, match=message):
        horn_step(*args.values())


def test_scan_ref_checks_delays_like_the_fast_path():
    args = (torch.zeros(4, 2, 3), torch.zeros(3, 3), None, 0.04, 0.3, 0.01, 0.0, 1.0)
    state = (torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(TypeError, match="delay must have an integer dtype"):
        horn_scan_ref(*args, *state, delay=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="bias must be None when delay is given"):
        horn_scan_ref(*args[:2], torch.zeros(3), *args[3:], *state, delay=torch.zeros(3, 3).long())
