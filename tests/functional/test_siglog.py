"""Tests for ``dyna.functional.siglog``: ``siglog`` and ``siglog_parametric``."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dyna.functional import siglog, siglog_parametric
from dyna.functional.siglog import SigLog, SigLogParametric
from tests.golden import assert_golden

FLOAT_DTYPES = [torch.float32, torch.float64, torch.bfloat16]
# Up to 20 finite, normal values in [-1e6, 1e6] for the property tests.
FINITE_VALUES = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_subnormal=False),
    min_size=1,
    max_size=20,
)
SHAPES = [(7,), (3, 5), (2, 3, 4), (0,), (2, 0, 3)]


def _as_float32(value: float) -> float:
    """A Python number rounded through float32, as the default dtype does."""
    return float(torch.tensor(value, dtype=torch.float32))


def _parametric_formula(x: torch.Tensor, m: float | torch.Tensor) -> torch.Tensor:
    """f(x) = s(x) * (ln(|x| + m) - ln m) with s(0) = -1, in plain torch."""
    m = torch.as_tensor(m, dtype=x.dtype)
    sign = torch.where(x > 0, 1.0, -1.0).to(x.dtype)
    return sign * (torch.log(x.abs() + m) - torch.log(m))


def _surrogate(magnitude: float) -> float:
    """The siglog surrogate: 1 / (a^p + 1), p = 1 + sqrt(a if a < 1 else 0)."""
    exponent = 1.0 + math.sqrt(magnitude if magnitude < 1.0 else 0.0)
    return 1.0 / (magnitude**exponent + 1.0)


def _per_element_alpha_gradient(x: torch.Tensor, alpha: torch.Tensor, **kwargs) -> torch.Tensor:
    """The alpha-gradient of each output element separately (one-hot upstream gradients)."""
    y = siglog_parametric(x, alpha, **kwargs)
    rows = []
    for index in range(y.numel()):
        upstream = torch.zeros_like(y)
        upstream.view(-1)[index] = 1.0
        (gradient,) = torch.autograd.grad(y, alpha, upstream, retain_graph=True)
        rows.append(gradient.reshape(()))
    return torch.stack(rows)


# ---------------------------------------------------------------------------------------------
# siglog: golden values
# ---------------------------------------------------------------------------------------------

# Reference DyNA at commit 01c17ea (torch 2.13, CPU), float64.
SIGLOG_X = [-10.0, -1.0, -0.5, -1e-3, 0.0, 0.25, 0.5, 1.0, 2.0, 10.0, 100.0]
SIGLOG_Y = [
    -1.5430483351,
    -0.3132885813,
    -0.1688786955,
    -4.0458552952e-04,
    -3.6787267457e-05,
    0.0880169654,
    0.1688786955,
    0.3132885813,
    0.5514659079,
    1.5430483351,
    3.6319910866,
]
SIGLOG_SURROGATE = [
    0.0909090909,
    0.5,
    0.7655363712,
    0.9991968758,
    1.0,
    0.8888888889,
    0.7655363712,
    0.5,
    0.3333333333,
    0.0909090909,
    0.0099009901,
]
# True derivative 1 / (|x| + e + 1e-4) at the first three points.
SIGLOG_TRUE_DERIVATIVE = [0.0786263, 0.2689342, 0.3107152]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_siglog_golden_values_and_surrogate_gradient(dtype):
    x = torch.tensor(SIGLOG_X, dtype=dtype, requires_grad=True)
    y = siglog(x)
    y.backward(torch.ones_like(y))
    assert y.dtype == dtype and x.grad.dtype == dtype
    # float32 and bfloat16 runs are held to their own tolerance against the float64 reference.
    assert_golden(y, SIGLOG_Y, dtype)
    assert_golden(x.grad, SIGLOG_SURROGATE, dtype)


def test_siglog_golden_float32_zero_jump():
    # Reference DyNA at commit 01c17ea (torch 2.13, CPU): e and eps added one after the other.
    y = siglog(torch.tensor([0.0, 1e-30, -0.0], dtype=torch.float32))
    assert_golden(y, [-3.6716461e-05, 3.6716461e-05, -3.6716461e-05], torch.float32)


def test_siglog_golden_bfloat16():
    # Reference DyNA at commit 01c17ea (torch 2.13, CPU).
    y = siglog(torch.tensor([0.0, 1.0], dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16
    assert_golden(y, [-0.0, 0.3125], torch.bfloat16)
    assert bool(torch.signbit(y[0]))


# ---------------------------------------------------------------------------------------------
# siglog: kept-on-purpose quirks (s(0) = -1) and the surrogate gradient
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_siglog_sign_of_zero_is_negative(dtype):
    # Kept on purpose from the reference: s(0) = -1, so y(0) < 0 < y(0+) and y(-0.0) = y(0).
    tiny = torch.finfo(dtype).tiny
    y = siglog(torch.tensor([0.0, -0.0, tiny, -tiny], dtype=dtype))
    assert y[0] < 0 and y[1] < 0 and y[3] < 0
    assert y[2] > 0
    assert y[0] == y[1] == y[3] == -y[2]


def test_siglog_eps_class_attribute_read_at_call_time(monkeypatch):
    assert SigLog.eps == 1e-4
    monkeypatch.setattr(SigLog, "eps", 0.0)
    # ln(|0| + e + 0) - 1 = 0: the jump at zero vanishes (and s(0) = -1 gives -0.0).
    y = siglog(torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(y, torch.tensor([0.0, math.log(1.0 + math.e) - 1.0]).double())
    monkeypatch.setattr(SigLog, "eps", 1.0)
    y = siglog(torch.tensor([0.0], dtype=torch.float64))
    torch.testing.assert_close(
        y, torch.tensor([-(math.log(math.e + 1.0) - 1.0)], dtype=torch.float64)
    )


def test_siglog_surrogate_gradient_matches_formula_on_dense_grid():
    grid = torch.linspace(-5.0, 5.0, 20001, dtype=torch.float64)
    extra = torch.tensor(
        [0.0, -0.0, 1.0, -1.0, 1 - 1e-12, 1 + 1e-12, -(1 - 1e-12), 1e-300, 1e3, 1e6],
        dtype=torch.float64,
    )
    x = torch.cat([grid, extra]).requires_grad_(True)
    upstream = torch.linspace(-2.0, 3.0, x.numel(), dtype=torch.float64)
    siglog(x).backward(upstream)
    expected = torch.tensor([_surrogate(abs(v)) for v in x.detach().tolist()], dtype=torch.float64)
    torch.testing.assert_close(x.grad, upstream * expected, rtol=1e-12, atol=1e-15)


def test_siglog_surrogate_gradient_is_continuous_at_one():
    x = torch.tensor([1 - 1e-9, 1.0, 1 + 1e-9, -(1 - 1e-9), -(1 + 1e-9)], dtype=torch.float64)
    x.requires_grad_(True)
    siglog(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 0.5), rtol=0.0, atol=1e-8)


def test_siglog_surrogate_is_not_the_true_derivative():
    # Documented design: the surrogate is up to ~e times the true derivative near 0
    # and converges to it for large |x|.
    x = torch.tensor([-10.0, -1.0, -0.5, 0.0, 1e6], dtype=torch.float64, requires_grad=True)
    siglog(x).sum().backward()
    true_derivative = 1.0 / (x.detach().abs() + math.e + 1e-4)
    assert_golden(true_derivative[:3], SIGLOG_TRUE_DERIVATIVE, torch.float32)
    ratio = x.grad / true_derivative
    assert torch.all(ratio[:4] > 1.15)
    torch.testing.assert_close(ratio[3], torch.tensor(math.e + 1e-4, dtype=torch.float64))
    torch.testing.assert_close(ratio[4], torch.tensor(1.0, dtype=torch.float64), rtol=1e-5, atol=0)
    # The forward's own derivative (finite difference) is the true one, not the surrogate.
    away = torch.tensor([-0.5, 0.5, 2.0], dtype=torch.float64, requires_grad=True)
    assert not torch.autograd.gradcheck(siglog, (away,), raise_exception=False)


@settings(max_examples=60, deadline=None)
@given(FINITE_VALUES)
def test_siglog_odd_apart_from_zero_and_monotone(values):
    x = torch.tensor(values, dtype=torch.float64)
    nonzero = x != 0
    torch.testing.assert_close(siglog(-x)[nonzero], -siglog(x)[nonzero], rtol=0.0, atol=0.0)
    y_sorted = siglog(torch.sort(x).values)
    assert torch.all(y_sorted[1:] >= y_sorted[:-1])


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_subnormal=False))
def test_siglog_surrogate_even_and_in_unit_interval(value):
    x = torch.tensor([value, -value], dtype=torch.float64, requires_grad=True)
    siglog(x).sum().backward()
    assert x.grad[0] == x.grad[1]
    assert 0.0 < float(x.grad[0]) <= 1.0
    assert float(x.grad[0]) == pytest.approx(_surrogate(abs(value)), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# siglog: dtypes, shapes, validation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_siglog_dtype_and_shape_preserved(dtype, shape):
    x = (torch.randn(shape, dtype=torch.float64) * 5).to(dtype).requires_grad_(True)
    y = siglog(x)
    assert y.dtype == dtype and y.shape == x.shape
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert x.grad.dtype == dtype and x.grad.shape == x.shape
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    "bad_x",
    [
        [0.0, 1.0],
        1.0,
        None,
        torch.tensor([1, 2]),
        torch.tensor([True, False]),
        torch.tensor([1 + 1j]),
    ],
)
def test_siglog_rejects_bad_x(bad_x):
    with pytest.raises(TypeError, match="x"):
        siglog(bad_x)


# ---------------------------------------------------------------------------------------------
# siglog_parametric: golden values, x = [-10, -1, 0, 0.5, 1, 10], float64
# ---------------------------------------------------------------------------------------------

PARAMETRIC_X = [-10.0, -1.0, 0.0, 0.5, 1.0, 10.0]

# Reference DyNA at commit 01c17ea (torch 2.13, CPU): alpha = tensor(1/e), float64.
F_ALPHA_INV_E = [-2.3978952728, -0.6931471806, -0.0, 0.4054651081, 0.6931471806, 2.3978952728]
DX_ALPHA_INV_E = [0.0909090909, 0.5, 1.0, 0.6666666667, 0.5, 0.0909090909]
# Reference DyNA at commit 01c17ea (torch 2.13, CPU): default Python alpha through float32.
DEFAULT_M = 1.0000000248716132
F_DEFAULT_ALPHA = [-2.3978952502, -0.6931471681, -0.0, 0.4054650998, 0.6931471681, 2.3978952502]
# Reference DyNA at commit 01c17ea (torch 2.13, CPU): alpha = tensor(0.5).
F_ALPHA_HALF = [-2.1231699672, -0.5514447139, -0.0, 0.3132616875, 0.5514447139, 2.1231699672]
DX_ALPHA_HALF = [0.0880348265, 0.4238831152, 0.7357588823, 0.5378828427, 0.4238831152, 0.0880348265]
REFERENCE_DALPHA_SUM_HALF = -0.2689416245
# Ours: fixed formula, a deviation from the reference (divisor 2*alpha*h).
OURS_DALPHA_SUM_HALF = -0.5378832489
OURS_DALPHA_HALF = [1.7606971963, 0.8477667697, 0.0, -0.5378832489, -0.8477667697, -1.7606971963]
ANALYTIC_DALPHA_HALF = [
    1.7606965308,
    0.8477662305,
    -0.0,
    -0.5378828427,
    -0.8477662305,
    -1.7606965308,
]
ANALYTIC_DALPHA_SUM_HALF = -0.5378828427
# Reference DyNA at commit 01c17ea (torch 2.13, CPU): alpha = tensor(0.5), smoothing 0.01,
# smooth_grad True.
DX_SMOOTH = [0.0880348493, 0.4238856540, 0.7330653805, 0.5378880301, 0.4238856540, 0.0880348493]
REFERENCE_DALPHA_SUM_SMOOTH = -0.2689617326
# Ours: fixed formula, a deviation from the reference.
OURS_DALPHA_SUM_SMOOTH = -0.5379234651
OURS_DALPHA_SMOOTH = [
    1.7607630872,
    0.8478201529,
    0.0,
    -0.5379234651,
    -0.8478201529,
    -1.7607630872,
]
# Ours: fixed formula, a deviation from the reference: alpha = tensor(1/e), smoothing 1e-3,
# non-smooth.
OURS_DALPHA_INV_E = [2.4711662040, 1.3591417071, 0.0, -0.9060945804, -1.3591417071, -2.4711662040]


def _parametric_x(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor(PARAMETRIC_X, dtype=dtype, requires_grad=True)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_siglog_parametric_golden_alpha_inverse_e(dtype):
    x = _parametric_x(dtype)
    alpha = torch.tensor(1 / math.e, dtype=torch.float64)
    y = siglog_parametric(x, alpha)
    y.backward(torch.ones_like(y))
    assert y.dtype == dtype and x.grad.dtype == dtype
    assert_golden(y, F_ALPHA_INV_E, dtype)
    assert_golden(x.grad, DX_ALPHA_INV_E, dtype)
    assert bool(torch.signbit(y[2]))  # f(0) = -0.0


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_siglog_parametric_golden_alpha_half(dtype):
    x = _parametric_x(dtype)
    alpha = torch.tensor(0.5, dtype=dtype, requires_grad=True)
    y = siglog_parametric(x, alpha)
    y.backward(torch.ones_like(y))
    assert_golden(y, F_ALPHA_HALF, dtype)
    assert_golden(x.grad, DX_ALPHA_HALF, dtype)
    assert alpha.grad.dtype == dtype and alpha.grad.shape == ()
    if dtype == torch.float64:
        assert_golden(alpha.grad, OURS_DALPHA_SUM_HALF, dtype)
    else:
        # The central difference in float32 loses digits (reference likewise); finite only.
        assert torch.isfinite(alpha.grad)


def test_siglog_parametric_golden_alpha_gradient_per_element():
    x = torch.tensor(PARAMETRIC_X, dtype=torch.float64)
    alpha = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    assert_golden(_per_element_alpha_gradient(x, alpha), OURS_DALPHA_HALF, torch.float64)
    alpha = torch.tensor(1 / math.e, dtype=torch.float64, requires_grad=True)
    assert_golden(_per_element_alpha_gradient(x, alpha), OURS_DALPHA_INV_E, torch.float64)


def test_siglog_parametric_golden_smooth_grad():
    x = _parametric_x()
    alpha = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    y = siglog_parametric(x, alpha, smoothing=0.01, smooth_grad=True)
    y.backward(torch.ones_like(y))
    assert_golden(y, F_ALPHA_HALF, torch.float64)
    assert_golden(x.grad, DX_SMOOTH, torch.float64)
    assert_golden(alpha.grad, OURS_DALPHA_SUM_SMOOTH, torch.float64)
    alpha = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    per_element = _per_element_alpha_gradient(x.detach(), alpha, smoothing=0.01, smooth_grad=True)
    assert_golden(per_element, OURS_DALPHA_SMOOTH, torch.float64)


@pytest.mark.parametrize(
    ("kwargs", "reference_sum", "ours_sum"),
    [
        ({}, REFERENCE_DALPHA_SUM_HALF, OURS_DALPHA_SUM_HALF),
        (
            {"smoothing": 0.01, "smooth_grad": True},
            REFERENCE_DALPHA_SUM_SMOOTH,
            OURS_DALPHA_SUM_SMOOTH,
        ),
    ],
)
def test_siglog_parametric_alpha_gradient_is_reference_divided_by_alpha(
    kwargs, reference_sum, ours_sum
):
    # Deviation from the reference: the reference's divisor 2h gives alpha times the derivative.
    alpha = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    siglog_parametric(
        torch.tensor(PARAMETRIC_X, dtype=torch.float64), alpha, **kwargs
    ).sum().backward()
    # The golden numbers have 10 decimals, so reference / alpha is known to ~1e-10 absolute.
    torch.testing.assert_close(
        alpha.grad, torch.tensor(reference_sum / 0.5, dtype=torch.float64), rtol=0.0, atol=1e-10
    )
    assert_golden(alpha.grad, ours_sum, torch.float64)


def _reference_alpha_gradient(x: torch.Tensor, alpha: float, step: float) -> torch.Tensor:
    """The reference's alpha-gradient: relative step alpha*h, divisor 2h."""
    upper = _parametric_formula(x, math.e * (alpha + alpha * step))
    lower = _parametric_formula(x, math.e * (alpha - alpha * step))
    return (upper - lower) / (2.0 * step)


@pytest.mark.parametrize("alpha_value", [0.05, 0.5, 1 / math.e, 3.0])
@pytest.mark.parametrize("smooth_grad", [False, True])
def test_siglog_parametric_alpha_gradient_equals_reference_over_alpha_on_grid(
    alpha_value, smooth_grad
):
    x = torch.linspace(-20.0, 20.0, 81, dtype=torch.float64)
    alpha = torch.tensor(alpha_value, dtype=torch.float64, requires_grad=True)
    ours = _per_element_alpha_gradient(x, alpha, smoothing=1e-3, smooth_grad=smooth_grad)
    step = _as_float32(1e-3)
    reference = _reference_alpha_gradient(x, alpha_value, step)
    torch.testing.assert_close(ours, reference / alpha_value, rtol=1e-10, atol=1e-12)


def _analytic_alpha_gradient(x: torch.Tensor, alpha: float) -> torch.Tensor:
    sign = torch.where(x > 0, 1.0, -1.0).to(x.dtype)
    return sign * (math.e / (x.abs() + math.e * alpha) - 1.0 / alpha)


def test_siglog_parametric_alpha_gradient_matches_analytic_golden():
    x = torch.tensor(PARAMETRIC_X, dtype=torch.float64)
    alpha = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    assert_golden(_analytic_alpha_gradient(x, 0.5), ANALYTIC_DALPHA_HALF, torch.float64)
    ours = _per_element_alpha_gradient(x, alpha)
    torch.testing.assert_close(
        ours, torch.tensor(ANALYTIC_DALPHA_HALF, dtype=torch.float64), rtol=1e-6, atol=1e-12
    )
    siglog_parametric(x, alpha).sum().backward()
    torch.testing.assert_close(
        alpha.grad, torch.tensor(ANALYTIC_DALPHA_SUM_HALF, dtype=torch.float64), rtol=1e-6, atol=0
    )


@pytest.mark.parametrize("alpha_value", [0.01, 0.3, 1 / math.e, 1.0, 5.0, 100.0])
@pytest.mark.parametrize("smooth_grad", [False, True])
def test_siglog_parametric_alpha_gradient_matches_analytic_on_grid(alpha_value, smooth_grad):
    magnitudes = torch.logspace(-2, 3, 51, dtype=torch.float64)
    x = torch.cat([-magnitudes, magnitudes])
    analytic = _analytic_alpha_gradient(x, alpha_value)
    errors = []
    for smoothing in (1e-3, 1e-4):
        alpha = torch.tensor(alpha_value, dtype=torch.float64, requires_grad=True)
        ours = _per_element_alpha_gradient(x, alpha, smoothing=smoothing, smooth_grad=smooth_grad)
        errors.append(float(((ours - analytic) / analytic).abs().max()))
    # relative O(h^2), within 1e-6 at h = 1e-3 (the bound h^2/(1 - h^2) is approached
    # as |x| -> 0, where f ~ |x|/(e*alpha); below |x| ~ 1e-2 cancellation in float64 adds ~1e-8).
    assert errors[0] <= 1e-6
    # A ten times smaller step is far closer (about a hundred times, less float64 rounding).
    assert errors[1] <= errors[0] / 10


def test_siglog_parametric_smoothing_honoured_for_alpha_step_in_non_smooth_mode():
    # Deviation from the reference: the reference ignores `smoothing` in non-smooth mode.
    x = torch.tensor(PARAMETRIC_X, dtype=torch.float64)
    alpha_value = 0.5
    results = {}
    for smoothing in (1e-3, 0.1, 0.3):
        alpha = torch.tensor(alpha_value, dtype=torch.float64, requires_grad=True)
        results[smoothing] = _per_element_alpha_gradient(x, alpha, smoothing=smoothing)
        step = _as_float32(smoothing)
        expected = _reference_alpha_gradient(x, alpha_value, step) / alpha_value
        torch.testing.assert_close(results[smoothing], expected, rtol=1e-12, atol=1e-14)
    assert not torch.allclose(results[0.1], results[1e-3], rtol=1e-4, atol=0.0)
    assert not torch.allclose(results[0.3], results[0.1], rtol=1e-4, atol=0.0)
    # The x-gradient of the non-smooth mode does not depend on smoothing.
    x_grads = []
    for smoothing in (1e-3, 0.3):
        leaf = x.clone().requires_grad_(True)
        siglog_parametric(leaf, 0.5, smoothing=smoothing).sum().backward()
        x_grads.append(leaf.grad)
    torch.testing.assert_close(x_grads[0], x_grads[1], rtol=0.0, atol=0.0)


# ---------------------------------------------------------------------------------------------
# siglog_parametric: Python-number alpha (deviation and kept conversions)
# ---------------------------------------------------------------------------------------------


def test_siglog_parametric_default_alpha_goes_through_float32():
    # Kept on purpose from the reference: float64 x with the default alpha gives
    # m = 1.0000000248716132.
    assert _as_float32(1 / math.e) * math.e == pytest.approx(DEFAULT_M, rel=1e-15)
    x = _parametric_x()
    y = siglog_parametric(x)
    assert_golden(y, F_DEFAULT_ALPHA, torch.float64)
    # ... which is distinguishable from the exact 1/e at float64 tolerance.
    difference = (y.detach() - torch.tensor(F_ALPHA_INV_E, dtype=torch.float64)).abs().max()
    assert difference > 1e-8
    # Deviation from the reference: backward works, with the exact x-derivative 1/(|x| + m).
    y.backward(torch.ones_like(y))
    expected = 1.0 / (torch.tensor(PARAMETRIC_X, dtype=torch.float64).abs() + DEFAULT_M)
    torch.testing.assert_close(x.grad, expected, rtol=1e-12, atol=0.0)


def test_siglog_parametric_python_alpha_follows_default_dtype():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        y = siglog_parametric(torch.tensor(PARAMETRIC_X, dtype=torch.float64))
    finally:
        torch.set_default_dtype(previous)
    assert_golden(y, F_ALPHA_INV_E, torch.float64)


@pytest.mark.parametrize("alpha", [1 / math.e, 0.3, 2, None])
@pytest.mark.parametrize("smooth_grad", [False, True])
def test_siglog_parametric_python_alpha_backpropagates(alpha, smooth_grad):
    # Deviation from the reference: the reference raises in backward for a Python-number alpha.
    x = torch.tensor([-3.0, -0.2, 0.4, 2.5], dtype=torch.float64, requires_grad=True)
    y = siglog_parametric(x, alpha, smooth_grad=smooth_grad)
    y.backward(torch.ones_like(y))
    value = 1 / math.e if alpha is None else alpha
    m = math.e * _as_float32(value)
    torch.testing.assert_close(y.detach(), _parametric_formula(x.detach(), m), rtol=1e-12, atol=0)
    if smooth_grad:
        step = _as_float32(1e-3)
        expected = (
            _parametric_formula(x.detach() + step, m) - _parametric_formula(x.detach() - step, m)
        ) / (2 * step)
    else:
        expected = 1.0 / (x.detach().abs() + m)
    torch.testing.assert_close(x.grad, expected, rtol=1e-10, atol=0.0)


def test_siglog_parametric_python_alpha_in_a_larger_graph():
    weight = torch.tensor([0.5, -2.0, 3.0], dtype=torch.float64, requires_grad=True)
    loss = siglog_parametric(weight * 2.0, 0.3).pow(2).sum()
    loss.backward()
    m = math.e * _as_float32(0.3)
    inner = weight.detach() * 2.0
    expected = 2 * _parametric_formula(inner, m) * (1.0 / (inner.abs() + m)) * 2.0
    torch.testing.assert_close(weight.grad, expected, rtol=1e-12, atol=0.0)


# ---------------------------------------------------------------------------------------------
# siglog_parametric: gradcheck of the true derivatives
# ---------------------------------------------------------------------------------------------


def _away_from_zero(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    magnitude = torch.rand(shape, generator=generator, dtype=torch.float64) * 5 + 0.1
    sign = torch.where(torch.rand(shape, generator=generator) < 0.5, -1.0, 1.0).double()
    return magnitude * sign


@pytest.mark.parametrize(
    "alpha", [torch.tensor(0.5, dtype=torch.float64), torch.tensor([2.0]), 0.3, 1 / math.e]
)
@pytest.mark.parametrize("shape", [(7,), (3, 5)])
def test_siglog_parametric_gradcheck_x_non_smooth(alpha, shape):
    x = _away_from_zero(shape, seed=1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: siglog_parametric(t, alpha), (x,))


def test_siglog_parametric_gradcheck_x_and_alpha_small_step():
    # With a small relative step the alpha central difference is the derivative to ~1e-10.
    x = _away_from_zero((2, 4), seed=2).requires_grad_(True)
    alpha = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t, a: siglog_parametric(t, a, smoothing=1e-5), (x, alpha), atol=1e-7, rtol=1e-5
    )


def test_siglog_parametric_smooth_x_gradient_is_central_difference():
    x = torch.linspace(-4.0, 4.0, 41, dtype=torch.float64).requires_grad_(True)
    alpha = torch.tensor(0.8, dtype=torch.float64)
    upstream = torch.linspace(1.0, 2.0, 41, dtype=torch.float64)
    siglog_parametric(x, alpha, smoothing=0.05, smooth_grad=True).backward(upstream)
    step = _as_float32(0.05)
    m = math.e * alpha
    base = x.detach()
    expected = (_parametric_formula(base + step, m) - _parametric_formula(base - step, m)) / (
        2 * step
    )
    torch.testing.assert_close(x.grad, upstream * expected, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------------------------
# siglog_parametric: alpha shapes and dtypes, class attributes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha_shape", [(), (1,), (1, 1)])
def test_siglog_parametric_alpha_gradient_has_alpha_shape(alpha_shape):
    alpha = torch.full(alpha_shape, 0.5, dtype=torch.float64, requires_grad=True)
    siglog_parametric(torch.tensor(PARAMETRIC_X, dtype=torch.float64), alpha).sum().backward()
    assert alpha.grad.shape == alpha_shape
    assert_golden(alpha.grad.reshape(()), OURS_DALPHA_SUM_HALF, torch.float64)


def test_siglog_parametric_alpha_tensor_of_other_dtype_is_cast_and_backpropagates():
    alpha = torch.tensor(0.5, dtype=torch.float32, requires_grad=True)
    x = _parametric_x()
    y = siglog_parametric(x, alpha)
    assert y.dtype == torch.float64
    assert_golden(y, F_ALPHA_HALF, torch.float64)  # 0.5 is exact in float32
    y.sum().backward()
    assert alpha.grad.dtype == torch.float32
    assert_golden(alpha.grad, OURS_DALPHA_SUM_HALF, torch.float32)


def test_siglog_parametric_none_arguments_read_class_attributes(monkeypatch):
    assert SigLogParametric.alpha == 1 / math.e
    assert SigLogParametric.smoothing == 0.001
    assert SigLogParametric.smooth_grad is False
    monkeypatch.setattr(SigLogParametric, "alpha", 0.5)
    monkeypatch.setattr(SigLogParametric, "smoothing", 0.01)
    monkeypatch.setattr(SigLogParametric, "smooth_grad", True)
    x = _parametric_x()
    y = siglog_parametric(x, alpha=None, smoothing=None, smooth_grad=None)
    y.backward(torch.ones_like(y))
    assert_golden(y, F_ALPHA_HALF, torch.float64)
    assert_golden(x.grad, DX_SMOOTH, torch.float64)
    # With tensors for alpha, the class smoothing sets the alpha step too.
    alpha = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    siglog_parametric(x.detach(), alpha, smoothing=None, smooth_grad=None).sum().backward()
    assert_golden(alpha.grad, OURS_DALPHA_SUM_SMOOTH, torch.float64)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("smooth_grad", [False, True])
def test_siglog_parametric_dtype_and_shape_preserved(dtype, shape, smooth_grad):
    x = (torch.randn(shape, dtype=torch.float64) * 5).to(dtype).requires_grad_(True)
    alpha = torch.tensor(0.5, dtype=dtype, requires_grad=True)
    y = siglog_parametric(x, alpha, smooth_grad=smooth_grad)
    assert y.dtype == dtype and y.shape == x.shape
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert x.grad.dtype == dtype and x.grad.shape == x.shape
    assert alpha.grad.dtype == dtype and alpha.grad.shape == ()
    assert torch.isfinite(x.grad).all() and torch.isfinite(alpha.grad)
    y_python = siglog_parametric(x.detach(), 0.5, smooth_grad=smooth_grad)
    assert y_python.dtype == dtype and y_python.shape == x.shape


@settings(max_examples=50, deadline=None)
@given(
    FINITE_VALUES,
    st.floats(min_value=1e-3, max_value=1e3),
)
def test_siglog_parametric_odd_apart_from_zero_and_monotone(values, alpha_value):
    x = torch.tensor(values, dtype=torch.float64)
    alpha = torch.tensor(alpha_value, dtype=torch.float64)
    nonzero = x != 0
    torch.testing.assert_close(
        siglog_parametric(-x, alpha)[nonzero], -siglog_parametric(x, alpha)[nonzero], rtol=0, atol=0
    )
    assert torch.all(siglog_parametric(x[~nonzero], alpha) == 0)
    y_sorted = siglog_parametric(torch.sort(x).values, alpha)
    assert torch.all(y_sorted[1:] >= y_sorted[:-1])


# ---------------------------------------------------------------------------------------------
# siglog_parametric: validation of every argument
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_x", [[0.0, 1.0], 0.5, None, torch.tensor([1, 2]), torch.tensor([True]), torch.tensor([1j])]
)
def test_siglog_parametric_rejects_bad_x(bad_x):
    with pytest.raises(TypeError, match="x"):
        siglog_parametric(bad_x)


@pytest.mark.parametrize(
    "bad_alpha", [True, False, "0.5", [0.5], torch.tensor(True), torch.tensor(0.5 + 0j)]
)
def test_siglog_parametric_rejects_alpha_of_wrong_type(bad_alpha):
    with pytest.raises(TypeError, match="alpha"):
        siglog_parametric(torch.ones(3), bad_alpha)


@pytest.mark.parametrize(
    "bad_alpha",
    [
        0,
        0.0,
        -1,
        -0.5,
        math.nan,
        math.inf,
        -math.inf,
        torch.tensor(0.0),
        torch.tensor(-1.0),
        torch.tensor(math.nan),
        torch.tensor(math.inf),
        torch.tensor([0.5, 0.6]),
        torch.tensor([]),
        torch.ones(2, 2),
    ],
)
def test_siglog_parametric_rejects_alpha_of_wrong_value(bad_alpha):
    with pytest.raises(ValueError, match="alpha"):
        siglog_parametric(torch.ones(3), bad_alpha)


@settings(max_examples=30, deadline=None)
@given(st.floats(max_value=0.0) | st.just(math.nan))
def test_siglog_parametric_rejects_non_positive_alpha_property(bad_alpha):
    with pytest.raises(ValueError, match="alpha"):
        siglog_parametric(torch.ones(2), bad_alpha)
    with pytest.raises(ValueError, match="alpha"):
        siglog_parametric(torch.ones(2), torch.tensor(bad_alpha))


@pytest.mark.parametrize("bad_smoothing", [True, "0.01", torch.tensor(0.01), [0.01]])
def test_siglog_parametric_rejects_smoothing_of_wrong_type(bad_smoothing):
    with pytest.raises(TypeError, match="smoothing"):
        siglog_parametric(torch.ones(3), 0.5, bad_smoothing)


@pytest.mark.parametrize("bad_smoothing", [0, 0.0, -1e-3, math.nan, math.inf, -math.inf])
def test_siglog_parametric_rejects_smoothing_of_wrong_value(bad_smoothing):
    with pytest.raises(ValueError, match="smoothing"):
        siglog_parametric(torch.ones(3), 0.5, bad_smoothing)


@pytest.mark.parametrize("bad_smooth_grad", [1, 0, "True", 1.0, torch.tensor(True)])
def test_siglog_parametric_rejects_smooth_grad_not_bool(bad_smooth_grad):
    with pytest.raises(TypeError, match="smooth_grad"):
        siglog_parametric(torch.ones(3), 0.5, 1e-3, bad_smooth_grad)


@pytest.mark.parametrize(
    "function",
    [siglog, lambda x: siglog_parametric(x, torch.tensor(0.5, dtype=x.dtype))],
    ids=["siglog", "siglog_parametric"],
)
def test_no_silent_second_derivative(function):
    # Surrogate and finite-difference gradients have no second derivative: asking for one
    # raises instead of returning a wrong value.
    x = torch.tensor([-1.0, 0.5], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(function(x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match=r"twice|once_differentiable|does not require grad"):
        torch.autograd.grad(grad.sum(), x)
