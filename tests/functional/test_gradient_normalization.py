"""Tests for ``dyna.functional.gradient_normalization``: backward gradient normalisation (BGN)."""

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dyna.functional import backward_gradient_normalization
from dyna.functional.gradient_normalization import (
    BackwardGradientNormalization,
    backward_gradient_normalization_multiplicity,
)
from tests.golden import assert_golden

FLOAT_DTYPES = [torch.float32, torch.float64, torch.bfloat16]
SHAPES = [(7,), (3, 5), (2, 3, 4), (0,), (0, 3), (3, 0)]


def _normalised_gradient(
    upstream: torch.Tensor | list, dtype: torch.dtype, eps: float | None = None
) -> torch.Tensor:
    """The gradient BGN returns for ``upstream`` (through a leaf of the same shape and dtype)."""
    upstream = torch.as_tensor(upstream, dtype=dtype)
    leaf = torch.zeros(upstream.shape, dtype=dtype, requires_grad=True)
    backward_gradient_normalization(leaf, eps).backward(upstream)
    assert leaf.grad.dtype == dtype and leaf.grad.shape == upstream.shape
    return leaf.grad


def _formula(upstream: torch.Tensor, eps: float) -> torch.Tensor:
    """In float64: per slice of axis 0 (>= 2-D) to norm sqrt(n); 1-D to unit norm."""
    upstream = upstream.to(torch.float64)
    if upstream.dim() == 1:
        return upstream / (torch.linalg.vector_norm(upstream) + eps)
    flat = upstream.reshape(upstream.shape[0], -1)
    norms = torch.linalg.vector_norm(flat, dim=1, keepdim=True)
    return (flat / (norms + eps) * math.sqrt(flat.shape[1])).reshape(upstream.shape)


# ---------------------------------------------------------------------------------------------
# Golden values: reference DyNA at commit 01c17ea (torch 2.13, CPU)
# ---------------------------------------------------------------------------------------------

GOLDEN = [
    # (upstream g, dtype, eps, result)
    ([[3.0, 4.0]], torch.float32, None, [[0.8485279679, 1.1313705444]]),
    (
        [[3.0, 4.0], [0.0, 1e-3]],
        torch.float32,
        None,
        [[0.8485279679, 1.1313705444], [0.0, 1.4128006697]],
    ),
    ([[1.0] * 3] * 2, torch.float32, 1.0, [[0.6339745522] * 3] * 2),
    ([3.0, 4.0], torch.float32, None, [0.5999999046, 0.7999998331]),
    ([[3.0, 4.0]], torch.bfloat16, None, [[0.8515625, 1.1328125]]),
    (
        [[[1.0, 2.0], [3.0, 4.0]], [[0.5, 0.0], [0.0, 0.0]]],
        torch.float64,
        None,
        [
            [[0.3651483050, 0.7302966100], [1.0954449150, 1.4605932200]],
            [[1.9999960000, 0.0], [0.0, 0.0]],
        ],
    ),
]


@pytest.mark.parametrize(("upstream", "dtype", "eps", "expected"), GOLDEN)
def test_golden_values(upstream, dtype, eps, expected):
    assert_golden(_normalised_gradient(upstream, dtype, eps), expected, dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_golden_zero_gradient_stays_zero(dtype):
    # Reference DyNA at commit 01c17ea (torch 2.13, CPU): zeros(2, 3) -> zeros.
    gradient = _normalised_gradient(torch.zeros(2, 3), dtype)
    assert torch.equal(gradient, torch.zeros(2, 3, dtype=dtype))
    # A zero slice next to a non-zero one stays zero too.
    upstream = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    gradient = _normalised_gradient(upstream, dtype)
    assert torch.equal(gradient[0], torch.zeros(2, dtype=dtype))
    assert_golden(gradient, _formula(upstream, 1e-6).tolist(), dtype)


# ---------------------------------------------------------------------------------------------
# The formula
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4), (4, 1), (1, 6), (2, 2, 2, 3)])
@pytest.mark.parametrize("eps", [None, 0.0, 1e-3, 2.5])
def test_slices_of_axis_zero_normalised_to_sqrt_n(shape, eps):
    generator = torch.Generator().manual_seed(0)
    upstream = torch.randn(shape, generator=generator, dtype=torch.float64) * 7
    gradient = _normalised_gradient(upstream, torch.float64, eps)
    used_eps = 1e-6 if eps is None else eps
    torch.testing.assert_close(gradient, _formula(upstream, used_eps), rtol=1e-12, atol=1e-15)
    slice_norms = torch.linalg.vector_norm(gradient.reshape(shape[0], -1), dim=1)
    upstream_norms = torch.linalg.vector_norm(upstream.reshape(shape[0], -1), dim=1)
    n = math.prod(shape[1:])
    expected_norms = math.sqrt(n) * upstream_norms / (upstream_norms + used_eps)
    torch.testing.assert_close(slice_norms, expected_norms, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("eps", [None, 0.0, 0.5])
def test_one_dimensional_gradient_scaled_to_unit_norm(eps):
    # Kept on purpose from the reference: the whole 1-D gradient gets unit norm, not sqrt(n).
    upstream = torch.tensor([3.0, -4.0, 12.0, 0.0, 1.0], dtype=torch.float64)
    gradient = _normalised_gradient(upstream, torch.float64, eps)
    used_eps = 1e-6 if eps is None else eps
    norm = float(torch.linalg.vector_norm(upstream))  # 13.0384...
    torch.testing.assert_close(gradient, upstream / (norm + used_eps), rtol=1e-12, atol=0.0)
    if eps == 0.0:
        torch.testing.assert_close(
            torch.linalg.vector_norm(gradient), torch.tensor(1.0, dtype=torch.float64)
        )
    # The same values as one row of a 2-D tensor are scaled to sqrt(5) instead.
    row = _normalised_gradient(upstream.unsqueeze(0), torch.float64, eps)
    torch.testing.assert_close(row[0], gradient * math.sqrt(5), rtol=1e-12, atol=0.0)


def test_eps_none_reads_class_attribute_at_call_time(monkeypatch):
    assert BackwardGradientNormalization.eps == 1e-6
    monkeypatch.setattr(BackwardGradientNormalization, "eps", 1.0)
    # Reference DyNA at commit 01c17ea (torch 2.13, CPU): ones(2, 3) with eps = 1.
    assert_golden(
        _normalised_gradient(torch.ones(2, 3), torch.float32),
        [[0.6339745522] * 3] * 2,
        torch.float32,
    )
    # The attribute is read when the function is called, not when the gradient flows back.
    leaf = torch.zeros(2, 3, requires_grad=True)
    out = backward_gradient_normalization(leaf)
    monkeypatch.setattr(BackwardGradientNormalization, "eps", 1e-6)
    out.backward(torch.ones(2, 3))
    assert_golden(leaf.grad, [[0.6339745522] * 3] * 2, torch.float32)
    # An explicit eps wins over the attribute.
    monkeypatch.setattr(BackwardGradientNormalization, "eps", 1.0)
    gradient = _normalised_gradient(torch.ones(2, 3), torch.float64, 0.0)
    torch.testing.assert_close(gradient, torch.ones(2, 3, dtype=torch.float64))


@pytest.mark.parametrize("eps", [0.0, 1e-6, 0.5, 3, 100.0])
def test_eps_used_as_given(eps):
    upstream = torch.tensor([[3.0, 4.0], [6.0, 8.0]], dtype=torch.float64)
    gradient = _normalised_gradient(upstream, torch.float64, eps)
    expected = torch.tensor(
        [[3.0 / (5.0 + eps), 4.0 / (5.0 + eps)], [6.0 / (10.0 + eps), 8.0 / (10.0 + eps)]],
        dtype=torch.float64,
    ) * math.sqrt(2)
    torch.testing.assert_close(gradient, expected, rtol=1e-13, atol=0.0)


def test_bfloat16_gradient_close_to_float32_formula():
    generator = torch.Generator().manual_seed(3)
    upstream = torch.randn(4, 3, 5, generator=generator).to(torch.bfloat16)
    gradient = _normalised_gradient(upstream, torch.bfloat16)
    expected = _formula(upstream, 1e-6)
    assert_golden(gradient, expected.tolist(), torch.bfloat16)


def test_gradient_is_loss_scale_invariant_and_flows_to_earlier_leaves():
    weight = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, 4.0]], dtype=torch.float64)
    gradients = []
    for scale in (1.0, 1e3, 1e-3):
        leaf = weight.clone().requires_grad_(True)
        out = backward_gradient_normalization(leaf * 2.0)
        (scale * (out**2).sum()).backward()
        gradients.append(leaf.grad)
    # d/d(leaf) = 2 * BGN(2 * out); the slice norms are 2 * sqrt(3) whatever the scale.
    norms = torch.linalg.vector_norm(gradients[0], dim=1)
    torch.testing.assert_close(norms, torch.full((2,), 2 * math.sqrt(3), dtype=torch.float64))
    torch.testing.assert_close(gradients[1], gradients[0], rtol=1e-6, atol=0.0)
    torch.testing.assert_close(gradients[2], gradients[0], rtol=1e-3, atol=0.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 4), min_size=1, max_size=4).flatmap(
        lambda shape: st.tuples(
            st.just(tuple(shape)),
            st.lists(
                st.integers(-1000, 1000),
                min_size=math.prod(shape),
                max_size=math.prod(shape),
            ),
        )
    ),
    st.sampled_from([0.0, 1e-6, 0.1]),
)
def test_slice_norms_property(shape_and_values, eps):
    shape, values = shape_and_values
    # With eps = 0 an all-zero slice gives 0/0 (as in the reference); eps > 0 covers zeros.
    assume(eps > 0 or all(values))
    upstream = torch.tensor(values, dtype=torch.float64).reshape(shape) / 100
    gradient = _normalised_gradient(upstream, torch.float64, eps)
    torch.testing.assert_close(gradient, _formula(upstream, eps), rtol=1e-12, atol=1e-15)
    rows = 1 if len(shape) == 1 else shape[0]
    flat_gradient = gradient.reshape(rows, -1)
    flat_upstream = upstream.reshape(rows, -1)
    target = 1.0 if len(shape) == 1 else math.sqrt(flat_upstream.shape[1])
    for gradient_row, upstream_row in zip(flat_gradient, flat_upstream, strict=True):
        upstream_norm = float(torch.linalg.vector_norm(upstream_row))
        if upstream_norm == 0.0:
            assert not torch.any(gradient_row)  # zeros stay zero (eps > 0) ...
            continue
        # ... and otherwise the direction is kept and the norm is target * |g| / (|g| + eps).
        norm = float(torch.linalg.vector_norm(gradient_row))
        assert norm == pytest.approx(target * upstream_norm / (upstream_norm + eps), rel=1e-12)
        torch.testing.assert_close(
            gradient_row * upstream_norm / norm, upstream_row, rtol=1e-12, atol=1e-15
        )


# ---------------------------------------------------------------------------------------------
# Forward pass, dtypes and shapes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_identity_dtype_and_shape_preserved(dtype, shape):
    x = torch.randn(shape, dtype=torch.float64).to(dtype).requires_grad_(True)
    out = backward_gradient_normalization(x)
    assert out.dtype == dtype and out.shape == x.shape
    assert torch.equal(out.detach(), x.detach())
    assert out.data_ptr() == x.data_ptr() or x.numel() == 0  # a view, no copy
    upstream = (torch.randn(shape, dtype=torch.float64) * 10).to(dtype)
    out.backward(upstream)
    assert x.grad.dtype == dtype and x.grad.shape == x.shape
    assert torch.isfinite(x.grad).all()
    if x.numel() and dtype != torch.bfloat16:
        assert_golden(x.grad, _formula(upstream, 1e-6).tolist(), dtype)


def test_non_contiguous_input():
    base = torch.randn(4, 6, dtype=torch.float64)
    x = base.t().requires_grad_(True)  # (6, 4), non-contiguous
    assert not x.is_contiguous()
    upstream = torch.randn(6, 4, dtype=torch.float64).t().contiguous().t()
    backward_gradient_normalization(x).backward(upstream)
    torch.testing.assert_close(x.grad, _formula(upstream, 1e-6), rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_x",
    [[1.0, 2.0], 1.0, None, torch.tensor([1, 2]), torch.tensor([True]), torch.tensor([1j])],
)
def test_rejects_x_of_wrong_type(bad_x):
    with pytest.raises(TypeError, match="x"):
        backward_gradient_normalization(bad_x)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_rejects_zero_dimensional_x_at_call_time(dtype):
    # Deviation from the reference: the reference fails later, in backward, with an IndexError.
    x = torch.tensor(1.0, dtype=dtype, requires_grad=True)
    with pytest.raises(ValueError, match="x"):
        backward_gradient_normalization(x)


@pytest.mark.parametrize("bad_eps", [True, False, "1e-6", torch.tensor(1e-6), [1e-6], 1j])
def test_rejects_eps_of_wrong_type(bad_eps):
    with pytest.raises(TypeError, match="eps"):
        backward_gradient_normalization(torch.ones(2, 3), bad_eps)


@pytest.mark.parametrize("bad_eps", [-1e-6, -1, math.nan, math.inf, -math.inf])
def test_rejects_eps_of_wrong_value(bad_eps):
    with pytest.raises(ValueError, match="eps"):
        backward_gradient_normalization(torch.ones(2, 3), bad_eps)


def test_rejects_bad_class_attribute_eps(monkeypatch):
    monkeypatch.setattr(BackwardGradientNormalization, "eps", -1.0)
    with pytest.raises(ValueError, match="eps"):
        backward_gradient_normalization(torch.ones(2, 3))


def test_multiplicity_one_is_bgn():
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    g = torch.randn(3, 4, 5, dtype=torch.float64)
    a = x.clone().requires_grad_()
    b = x.clone().requires_grad_()
    backward_gradient_normalization_multiplicity(a, 1).backward(g)
    backward_gradient_normalization(b).backward(g)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-14, atol=0)


def test_multiplicity_formula():
    g = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=torch.float64)
    x = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    backward_gradient_normalization_multiplicity(x, 4, eps=0.0).backward(g)
    # g * sqrt(n L) / (||g|| / sqrt(L)) with n = 2, L = 4: rows of norm sqrt(n) * L = 4 sqrt(2).
    expected = g / g.norm(dim=1, keepdim=True) * math.sqrt(2) * 4
    torch.testing.assert_close(x.grad, expected, rtol=1e-14, atol=0)
