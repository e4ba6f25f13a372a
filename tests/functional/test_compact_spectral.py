"""Tests for ``dyna.functional.compact_spectral``: CountSketch, CSM features and estimator.

Golden values and the script's figures: the reference DyNA at commit 01c17ea (its CSM theory
document and ``CSM.py``, torch 2.13, CPU). The fast path (scatter-add + real FFTs) is checked
against the plain twins (explicit tensor product, explicit sketch matrix) for values and
gradients, and against the document's literal complex definition.
"""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dyna.functional import compact_spectral_features, compact_spectral_inner, count_sketch
from dyna.functional.compact_spectral import (
    compact_spectral_features_ref,
    compact_spectral_inner_ref,
    count_sketch_ref,
    multilinear_kernel,
)
from tests.golden import assert_golden


@pytest.fixture(autouse=True)
def _one_thread():
    """These inputs are tiny: with two threads, MKL's FFT hands even a 2-row transform to a
    second thread and, on a busy machine, waits a scheduler time slice for it (measured 5-15 ms
    per call instead of 2 us), which would dominate the gradient checks."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float32, torch.float64, torch.bfloat16]
# Relative tolerances of a whole tensor against a float64 computation (‖a − b‖ / ‖b‖).
RELATIVE = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 5e-3}

# The reference's deterministic example: K = 2, D = 8.
HASHES = [[1, 5, 1], [0, 7, 3, 3]]
SIGNS = [[1, -1, -1], [-1, 1, 1, -1]]
XS = [[0.5, -1.0, 2.0], [1.5, 0.25, -0.5, 1.0]]
YS = [[1.0, 0.5, -0.5], [0.5, -1.0, 2.0, 0.25]]
GOLDEN_SKETCH_X = [[0.0, -1.5, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0], [-1.5, 0, 0, -1.5, 0, 0, 0, 0.25]]
GOLDEN_PHI_X = [-0.6629126074, 0.7954951288, 0.0, 0.0, 0.8838834765, -0.5303300859, 0.0, 0.0]
GOLDEN_PHI_Y = [-0.8396893027, -0.2651650429, 0.0, 0.0, 1.1048543456, 0.0883883476, 0.0, 0.0]
GOLDEN_TENSOR_SKETCH_X = [-1.875, 2.25, 0.0, 0.0, 2.5, -1.5, 0.0, 0.0]
GOLDEN_ESTIMATE = 10.203125
GOLDEN_EXACT = 0.25

# CSM.py: K = 4, d_k = 32, D = 2048, 10 000 trials, seed 42, float32 (rerun of the reference).
SCRIPT_RMSE = 14323.492524387395
SCRIPT_BIAS = 15.375528421255796
SCRIPT_PEARSON = 0.9487576107724162
SCRIPT_NRMSE = 0.217593859822219
SCRIPT_AVG_BIAS = 1.0002335757546765


def _example(dtype=torch.float64, device="cpu", requires_grad=False):
    def tensors(rows, kind=dtype):
        return [torch.tensor(row, dtype=kind, device=device) for row in rows]

    xs = [x.requires_grad_(requires_grad) for x in tensors(XS)]
    ys = [y.requires_grad_(requires_grad) for y in tensors(YS)]
    return xs, ys, tensors(HASHES, torch.int64), tensors(SIGNS, torch.int64)


def _random_case(dims, sketch_dim, batch=(5,), dtype=torch.float64, seed=0, per_row=False):
    generator = torch.Generator().manual_seed(seed)
    xs = [torch.randn(*batch, d, generator=generator, dtype=dtype) for d in dims]
    ys = [torch.randn(*batch, d, generator=generator, dtype=dtype) for d in dims]
    table_batch = batch if per_row else ()
    hashes = [torch.randint(0, sketch_dim, (*table_batch, d), generator=generator) for d in dims]
    signs = [torch.randint(0, 2, (*table_batch, d), generator=generator) * 2 - 1 for d in dims]
    return xs, ys, hashes, signs


def _relative_error(actual, expected):
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    return float((actual - expected).norm() / expected.norm())


def _literal_features(xs, hashes, signs, sketch_dim):
    """The document's definition verbatim: IFFT(⊙_k FFT(CS_k(x_k))) with unitary complex FFTs."""
    spectrum = None
    for x, h, s in zip(xs, hashes, signs, strict=True):
        factor = torch.fft.fft(count_sketch_ref(x, h, s, sketch_dim), norm="ortho")
        spectrum = factor if spectrum is None else spectrum * factor
    return torch.fft.ifft(spectrum, norm="ortho")


# ------------------------------------------------------------------------------ golden values


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_golden_deterministic_example(dtype):
    xs, ys, hashes, signs = _example(dtype)
    for x, h, s, expected in zip(xs, hashes, signs, GOLDEN_SKETCH_X, strict=True):
        sketch = count_sketch(x, h, s, 8)
        assert sketch.dtype == dtype and sketch.shape == (8,)
        assert_golden(sketch, expected, dtype)
    phi_x = compact_spectral_features(xs, hashes, signs, 8)
    phi_y = compact_spectral_features(ys, hashes, signs, 8)
    assert phi_x.dtype == dtype and phi_x.shape == (8,)
    assert_golden(phi_x, GOLDEN_PHI_X, dtype)
    assert_golden(phi_y, GOLDEN_PHI_Y, dtype)
    assert_golden(phi_x * math.sqrt(8), GOLDEN_TENSOR_SKETCH_X, dtype)
    estimate = compact_spectral_inner(xs, ys, hashes, signs, 8)
    assert estimate.dtype == dtype and estimate.shape == ()
    assert_golden(estimate, GOLDEN_ESTIMATE, dtype)
    assert_golden(multilinear_kernel(xs, ys), GOLDEN_EXACT, dtype)


def test_golden_example_literal_complex_definition():
    xs, ys, hashes, signs = _example()
    for inputs, expected in ((xs, GOLDEN_PHI_X), (ys, GOLDEN_PHI_Y)):
        literal = _literal_features(inputs, hashes, signs, 8)
        assert literal.imag.abs().max() < 1e-15
        assert_golden(literal.real, expected, torch.float64)
    # The script's estimator: Re⟨Φ(x), Φ(y)⟩ with the conjugate, times D^{K-1}.
    literal_x = _literal_features(xs, hashes, signs, 8)
    literal_y = _literal_features(ys, hashes, signs, 8)
    assert_golden((literal_x.conj() * literal_y).sum().real * 8, GOLDEN_ESTIMATE, torch.float64)


def test_golden_example_is_the_sketch_of_the_explicit_tensor_product():
    xs, _, hashes, signs = _example()
    outer = torch.outer(xs[0], xs[1]).flatten()
    combined_hash = ((hashes[0][:, None] + hashes[1][None, :]) % 8).flatten()
    combined_sign = (signs[0][:, None] * signs[1][None, :]).flatten()
    expected = count_sketch(outer, combined_hash, combined_sign, 8)
    assert_golden(expected, GOLDEN_TENSOR_SKETCH_X, torch.float64)
    assert_golden(
        compact_spectral_features_ref(xs, hashes, signs, 8) * math.sqrt(8),
        expected.tolist(),
        torch.float64,
    )


# ------------------------------------------------------------ fast path against the plain twins


CONFIGS = [
    # (mode sizes, sketch dim)
    ((7,), 5),
    ((3, 4), 8),
    ((5, 6), 7),  # odd D: the real FFT's last bin is not a Nyquist bin
    ((3, 4, 5), 16),
    ((2, 3, 2, 3), 9),
]


@pytest.mark.parametrize("per_row", [False, True], ids=["shared", "per-row"])
@pytest.mark.parametrize(("dims", "sketch_dim"), CONFIGS, ids=str)
def test_features_equal_explicit_tensor_sketch_float64(dims, sketch_dim, per_row):
    xs, ys, hashes, signs = _random_case(dims, sketch_dim, batch=(2, 3), per_row=per_row)
    fast = compact_spectral_features(xs, hashes, signs, sketch_dim)
    plain = compact_spectral_features_ref(xs, hashes, signs, sketch_dim)
    assert fast.shape == (2, 3, sketch_dim) and fast.dtype == torch.float64
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-12 * float(plain.abs().max()))
    estimate = compact_spectral_inner(xs, ys, hashes, signs, sketch_dim)
    plain_estimate = compact_spectral_inner_ref(xs, ys, hashes, signs, sketch_dim)
    assert estimate.shape == (2, 3)
    assert _relative_error(estimate, plain_estimate) < 1e-12


@pytest.mark.parametrize(("dims", "sketch_dim"), CONFIGS[1:], ids=str)
def test_features_equal_literal_complex_definition(dims, sketch_dim):
    xs, _, hashes, signs = _random_case(dims, sketch_dim, batch=(4,))
    literal = _literal_features(xs, hashes, signs, sketch_dim)
    assert literal.imag.abs().max() < 1e-12 * literal.real.abs().max()
    fast = compact_spectral_features(xs, hashes, signs, sketch_dim)
    assert _relative_error(fast, literal.real) < 1e-12
    # float32 goes through complex64 and stays within float32 rounding of the definition.
    fast32 = compact_spectral_features([x.float() for x in xs], hashes, signs, sketch_dim)
    assert fast32.dtype == torch.float32
    assert _relative_error(fast32, literal.real) < 1e-5


@pytest.mark.parametrize("per_row", [False, True], ids=["shared", "per-row"])
def test_count_sketch_equals_explicit_sketch_matrix(per_row):
    xs, _, hashes, signs = _random_case((11,), 6, batch=(3, 4), per_row=per_row)
    fast = count_sketch(xs[0], hashes[0], signs[0], 6)
    plain = count_sketch_ref(xs[0], hashes[0], signs[0], 6)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-14)
    # Written out for one row: out[j] = Σ_{t: h(t) = j} s(t) x(t).
    row_hashes = hashes[0][1, 2] if per_row else hashes[0]
    row_signs = signs[0][1, 2] if per_row else signs[0]
    for j in range(6):
        mask = row_hashes == j
        expected = (row_signs[mask] * xs[0][1, 2][mask]).sum()
        torch.testing.assert_close(fast[1, 2, j], expected, rtol=0, atol=1e-14)


def test_leading_dimensions_broadcast_across_modes_and_tables():
    generator = torch.Generator().manual_seed(5)
    x0 = torch.randn(4, 1, 3, generator=generator, dtype=torch.float64)
    x1 = torch.randn(1, 6, 5, generator=generator, dtype=torch.float64)
    hashes = [
        torch.randint(0, 8, (3,), generator=generator),
        torch.randint(0, 8, (6, 5), generator=generator),
    ]
    signs = [torch.ones(3), torch.randint(0, 2, (6, 5), generator=generator) * 2.0 - 1]
    features = compact_spectral_features([x0, x1], hashes, signs, 8)
    assert features.shape == (4, 6, 8)
    for i, j in [(0, 0), (3, 5), (2, 1)]:
        row = compact_spectral_features(
            [x0[i, 0], x1[0, j]], [hashes[0], hashes[1][j]], [signs[0], signs[1][j]], 8
        )
        torch.testing.assert_close(features[i, j], row, rtol=0, atol=1e-14)


@settings(max_examples=40, deadline=None)
@given(
    dims=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    sketch_dim=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_property_fast_path_is_the_tensor_sketch_and_linear(dims, sketch_dim, seed):
    """Any K ≤ 3, sizes and D (odd, even, 1): fast = explicit twin; Φ is linear in each mode."""
    xs, ys, hashes, signs = _random_case(dims, sketch_dim, batch=(2,), seed=seed, per_row=True)
    fast = compact_spectral_features(xs, hashes, signs, sketch_dim)
    plain = compact_spectral_features_ref(xs, hashes, signs, sketch_dim)
    scale = max(float(plain.abs().max()), 1.0)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-12 * scale)
    mixed = [xs[0] * 2.5 - ys[0] * 0.5, *xs[1:]]
    combined = 2.5 * fast - 0.5 * compact_spectral_features(
        [ys[0], *xs[1:]], hashes, signs, sketch_dim
    )
    torch.testing.assert_close(
        compact_spectral_features(mixed, hashes, signs, sketch_dim),
        combined,
        rtol=0,
        atol=1e-11 * scale,
    )
    estimate = compact_spectral_inner(xs, ys, hashes, signs, sketch_dim)
    plain_estimate = compact_spectral_inner_ref(xs, ys, hashes, signs, sketch_dim)
    estimate_scale = max(float(plain_estimate.abs().max()), 1.0)
    torch.testing.assert_close(estimate, plain_estimate, rtol=0, atol=1e-11 * estimate_scale)


def test_single_mode_features_are_the_count_sketch():
    xs, ys, hashes, signs = _random_case((9,), 4, batch=(3,))
    features = compact_spectral_features(xs, hashes, signs, 4)
    assert torch.equal(features, count_sketch(xs[0], hashes[0], signs[0], 4))
    estimate = compact_spectral_inner(xs, ys, hashes, signs, 4)
    expected = (features * count_sketch(ys[0], hashes[0], signs[0], 4)).sum(-1)
    torch.testing.assert_close(estimate, expected, rtol=1e-15, atol=0)


# ----------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("dims", [(6,), (3, 4), (2, 3, 4)], ids=str)
@pytest.mark.parametrize("extra", [0, 5])
def test_exact_when_the_combined_hash_is_injective(dims, extra):
    """Mixed-radix hashes h_k(t) = t·Π_{j<k} d_j and D ≥ Π d_k: no collisions, Ẑ = Z for any signs.

    Each mode's sketch is then a signed copy of x_k at distinct strides, their circular
    convolution places every entry of ⊗ x_k in its own bin, and the signs square away.
    """
    sketch_dim = math.prod(dims) + extra
    xs, ys, _, signs = _random_case(dims, sketch_dim, batch=(6,), seed=3)
    strides = [math.prod(dims[:k]) for k in range(len(dims))]
    hashes = [torch.arange(d) * stride for d, stride in zip(dims, strides, strict=True)]
    estimate = compact_spectral_inner(xs, ys, hashes, signs, sketch_dim)
    exact = multilinear_kernel(xs, ys)
    torch.testing.assert_close(estimate, exact, rtol=1e-12, atol=1e-12)
    # The features hold the signed tensor product itself, scaled by D^{(1-K)/2}.
    features = compact_spectral_features(xs, hashes, signs, sketch_dim)
    assert torch.allclose(
        features.abs().sort(-1).values[:, extra:] * sketch_dim ** ((len(dims) - 1) / 2),
        _outer(xs).abs().sort(-1).values,
        rtol=1e-12,
        atol=1e-12,
    )


def _outer(xs):
    product = xs[0]
    for x in xs[1:]:
        product = (product.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2)
    return product


def _all_tables(dims, sketch_dim):
    """Every hash and sign table for the given modes, one row per combination."""
    hash_rows = list(itertools.product(range(sketch_dim), repeat=sum(dims)))
    sign_rows = list(itertools.product((-1, 1), repeat=sum(dims)))
    rows = [(h, s) for h in hash_rows for s in sign_rows]
    flat_hashes = torch.tensor([h for h, _ in rows])
    flat_signs = torch.tensor([s for _, s in rows])
    bounds = list(itertools.accumulate(dims, initial=0))
    hashes = [flat_hashes[:, a:b] for a, b in itertools.pairwise(bounds)]
    signs = [flat_signs[:, a:b] for a, b in itertools.pairwise(bounds)]
    return hashes, signs


@pytest.mark.parametrize(("dims", "sketch_dim"), [((3,), 4), ((2, 2), 3), ((2, 1, 2), 2)])
def test_exactly_unbiased_over_all_tables(dims, sketch_dim):
    """E[Ẑ] = Z exactly: the mean over every possible table (uniform hashes and signs)."""
    xs, ys, _, _ = _random_case(dims, sketch_dim, batch=(), seed=11)
    hashes, signs = _all_tables(dims, sketch_dim)
    estimates = compact_spectral_inner(xs, ys, hashes, signs, sketch_dim)
    assert estimates.shape == (sketch_dim ** sum(dims) * 2 ** sum(dims),)
    exact = multilinear_kernel(xs, ys)
    torch.testing.assert_close(estimates.mean(), exact, rtol=1e-12, atol=1e-12)
    # Not trivially so: single draws are spread out.
    assert estimates.std() > 0.1 * exact.abs()


def test_single_mode_variance_over_all_tables_is_exact():
    """Var[Ẑ] = (‖x‖²‖y‖² + Z² − 2Σ x_t² y_t²) / D for fully random hashing, over every table."""
    xs, ys, _, _ = _random_case((3,), 4, batch=(), seed=12)
    hashes, signs = _all_tables((3,), 4)
    estimates = compact_spectral_inner(xs, ys, hashes, signs, 4)
    x, y = xs[0], ys[0]
    exact = float(x @ y)
    expected = (float(x @ x) * float(y @ y) + exact**2 - 2 * float((x**2 * y**2).sum())) / 4
    assert estimates.var(correction=0).item() == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------- statistical behaviour


def _single_mode_variance(x, y, sketch_dim):
    exact = float(x @ y)
    return (float(x @ x) * float(y @ y) + exact**2 - 2 * float((x**2 * y**2).sum())) / sketch_dim


@pytest.mark.parametrize("weight", [1.0, 0.9, 0.5], ids=lambda w: f"lerp{w}")
def test_single_mode_variance_matches_the_formula(weight):
    """40 000 independent tables, d = 32, D = 64: the sample mean and variance of Ẑ.

    Bounds from the estimator's own spread: the sample mean has standard error √(V/N); the sample
    variance s² has standard error √((m₄ − s⁴)/N) with m₄ the fourth central moment (≈ 0.8 % of V
    here). Allowing 4 standard errors keeps the seeded test stable under harmless reorderings
    while a wrong variance (e.g. without the −2S/D term, or the document's heuristic product
    formula, which gives 0 at y = x) falls far outside.
    """
    count, dim, sketch_dim = 40_000, 32, 64
    generator = torch.Generator().manual_seed(2024)
    x = torch.randn(dim, generator=generator, dtype=torch.float64)
    y = torch.lerp(torch.randn(dim, generator=generator, dtype=torch.float64), x, weight)
    hashes = torch.randint(0, sketch_dim, (count, dim), generator=generator)
    signs = torch.randint(0, 2, (count, dim), generator=generator) * 2 - 1
    estimates = compact_spectral_inner([x], [y], [hashes], [signs], sketch_dim)
    exact, variance = float(x @ y), _single_mode_variance(x, y, sketch_dim)
    mean = estimates.mean().item()
    sample_variance = estimates.var(correction=0).item()
    fourth = ((estimates - mean) ** 4).mean().item()
    variance_error = math.sqrt((fourth - sample_variance**2) / count)
    assert abs(mean - exact) <= 4 * math.sqrt(variance / count)
    assert abs(sample_variance - variance) <= 4 * variance_error
    assert abs(sample_variance / variance - 1) <= 0.05
    # Sharpness: the variance without the diagonal correction is rejected by the same bound.
    without_correction = variance + 2 * float((x**2 * y**2).sum()) / sketch_dim
    assert abs(sample_variance - without_correction) > 4 * variance_error
    if weight == 1.0:
        # The document's heuristic Z²(Π(1 + ξ_k) − 1) is 0 at ρ = 1; the true variance is not.
        assert sample_variance > 4 * variance_error


@pytest.mark.parametrize("seed", range(5))
def test_three_modes_unbiased(seed):
    """K = 3, d = (8, 12, 16), D = 64, y_k = lerp(noise, x_k, 0.8), 20 000 table draws.

    |mean(Ẑ) − Z| ≤ 4 standard errors (std(Ẑ)/√N ≈ 0.3 % of Z): for an unbiased estimator this
    fails with probability ≈ 6e-5 per seed; a relative bias of 1.5 % (z ≈ 5) would fail it.
    """
    count, dims, sketch_dim = 20_000, (8, 12, 16), 64
    generator = torch.Generator().manual_seed(100 + seed)
    xs = [torch.randn(d, generator=generator, dtype=torch.float64) for d in dims]
    ys = [
        torch.lerp(torch.randn(d, generator=generator, dtype=torch.float64), x, 0.8)
        for d, x in zip(dims, xs, strict=True)
    ]
    hashes = [torch.randint(0, sketch_dim, (count, d), generator=generator) for d in dims]
    signs = [torch.randint(0, 2, (count, d), generator=generator) * 2 - 1 for d in dims]
    estimates = compact_spectral_inner(xs, ys, hashes, signs, sketch_dim)
    exact = multilinear_kernel(xs, ys).item()
    standard_error = estimates.std().item() / math.sqrt(count)
    assert abs(estimates.mean().item() - exact) <= 4 * standard_error
    # The estimator is noisy per draw (relative spread ≈ 0.4 in this regime), so the mean is sharp
    # only thanks to N.
    assert 0.1 < estimates.std().item() / abs(exact) < 1.0


def test_reproduces_the_reference_script():
    """CSM.py's figures with its draws in its order; per-trial tables batched as per-row tables.

    One randint over (trials, K, 2, d) yields the script's sequence of per-trial draws
    randint(0, D, (d,)), randint(0, 2, (d,)) (each element consumes one 32-bit draw on the CPU);
    the signs are the second draw modulo 2, which equals randint(0, 2) because D is even.
    """
    modes, dim, sketch_dim, trials = 4, 32, 2048, 10_000
    torch.manual_seed(42)
    xs = [torch.randn(trials, dim) for _ in range(modes)]
    ys = [torch.lerp(torch.randn_like(x), x, 0.5) for x in xs]
    draws = torch.randint(0, sketch_dim, (trials, modes, 2, dim))
    hashes = [draws[:, k, 0] for k in range(modes)]
    signs = [(draws[:, k, 1] % 2) * 2 - 1 for k in range(modes)]
    estimates = torch.cat(
        [
            compact_spectral_inner(
                [x[rows] for x in xs],
                [y[rows] for y in ys],
                [h[rows] for h in hashes],
                [s[rows] for s in signs],
                sketch_dim,
            )
            for rows in torch.arange(trials).chunk(4)
        ]
    )
    assert estimates.dtype == torch.float32
    truths = torch.ones(trials, dtype=torch.float64)
    for x, y in zip(xs, ys, strict=True):
        truths = truths * (x * y).sum(-1).double()
    estimates = estimates.double()
    error = estimates - truths
    rmse = error.square().mean().sqrt().item()
    pearson = torch.corrcoef(torch.stack([estimates, truths]))[0, 1].item()
    assert rmse == pytest.approx(SCRIPT_RMSE, rel=1e-5)
    assert pearson == pytest.approx(SCRIPT_PEARSON, rel=1e-5)
    assert rmse / truths.abs().mean().item() == pytest.approx(SCRIPT_NRMSE, rel=1e-5)
    avg_bias = estimates.mean().item() / truths.mean().item()
    assert avg_bias == pytest.approx(SCRIPT_AVG_BIAS, rel=1e-5)
    # A small difference of large numbers: only to ±0.05 across summation orders.
    assert error.mean().item() == pytest.approx(SCRIPT_BIAS, abs=0.05)


# -------------------------------------------------------------------------------- gradients


@pytest.mark.parametrize(("dims", "sketch_dim"), CONFIGS, ids=str)
def test_gradcheck_float64(dims, sketch_dim):
    xs, ys, hashes, signs = _random_case(dims, sketch_dim, batch=(2,))
    xs = [x.requires_grad_() for x in xs]
    ys = [y.requires_grad_() for y in ys]
    K = len(dims)

    def features(*inputs):
        return compact_spectral_features(list(inputs), hashes, signs, sketch_dim)

    def inner(*inputs):
        return compact_spectral_inner(list(inputs[:K]), list(inputs[K:]), hashes, signs, sketch_dim)

    assert torch.autograd.gradcheck(features, tuple(xs))
    assert torch.autograd.gradcheck(inner, (*xs, *ys))
    assert torch.autograd.gradcheck(
        lambda x: count_sketch(x, hashes[0], signs[0], sketch_dim), (xs[0],)
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize(("dims", "sketch_dim"), CONFIGS, ids=str)
def test_gradients_equal_the_plain_twin(dims, sketch_dim, dtype):
    xs, ys, hashes, signs = _random_case(dims, sketch_dim, batch=(3,), dtype=dtype, per_row=True)
    upstream = torch.randn(3, generator=torch.Generator().manual_seed(1), dtype=dtype)
    gradients = []
    for function in (compact_spectral_inner, compact_spectral_inner_ref):
        inputs_x = [x.detach().clone().requires_grad_() for x in xs]
        inputs_y = [y.detach().clone().requires_grad_() for y in ys]
        (function(inputs_x, inputs_y, hashes, signs, sketch_dim) * upstream).sum().backward()
        gradients.append([t.grad for t in inputs_x + inputs_y])
    for fast, plain in zip(*gradients, strict=True):
        assert fast.dtype == dtype
        assert _relative_error(fast, plain) < RELATIVE[dtype]


def test_tables_receive_no_gradient():
    xs, _, hashes, _ = _random_case((3, 4), 8)
    xs = [x.requires_grad_() for x in xs]
    signs = [torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64, requires_grad=True)]
    signs.append(torch.ones(4, dtype=torch.float64, requires_grad=True))
    features = compact_spectral_features(xs, hashes, signs, 8)
    features.square().sum().backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in xs)
    assert all(s.grad is None for s in signs)


# ------------------------------------------------------------------------- dtypes and devices


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [*DTYPES, torch.float16], ids=str)
def test_dtypes_against_float64(dtype, device):
    xs, ys, hashes, signs = _random_case((6, 5, 4), 32, batch=(7,))
    rounded_x = [x.to(dtype).double() for x in xs]  # same rounded inputs, exact maths
    rounded_y = [y.to(dtype).double() for y in ys]
    expected_features = compact_spectral_features(rounded_x, hashes, signs, 32)
    expected_estimate = compact_spectral_inner(rounded_x, rounded_y, hashes, signs, 32)
    inputs_x = [x.to(device=device, dtype=dtype).requires_grad_() for x in xs]
    inputs_y = [y.to(device=device, dtype=dtype) for y in ys]
    tables = [[t.to(device) for t in group] for group in (hashes, signs)]
    features = compact_spectral_features(inputs_x, *tables, 32)
    estimate = compact_spectral_inner(inputs_x, inputs_y, *tables, 32)
    assert features.dtype == dtype and features.device.type == device
    assert estimate.dtype == dtype and estimate.shape == (7,)
    # Low-precision inputs are computed in float32: only the final cast rounds.
    assert _relative_error(features, expected_features) < RELATIVE[dtype]
    assert _relative_error(estimate, expected_estimate) < RELATIVE[dtype]
    estimate.sum().backward()
    assert all(x.grad.dtype == dtype and x.grad.device.type == device for x in inputs_x)


def test_non_contiguous_inputs():
    xs, _, hashes, signs = _random_case((4, 6), 16, batch=(6,))
    expected = compact_spectral_features(xs, hashes, signs, 16)
    transposed = [x.t().contiguous().t() for x in xs]
    strided = [torch.stack([x, -x], dim=-1)[..., 0] for x in xs]
    for inputs in (transposed, strided):
        assert not any(t.is_contiguous() for t in inputs)
        features = compact_spectral_features(inputs, hashes, signs, 16)
        torch.testing.assert_close(features, expected, rtol=0, atol=1e-15)


def test_empty_batch():
    xs, ys, hashes, signs = _random_case((3, 4), 8, batch=(0,))
    assert compact_spectral_features(xs, hashes, signs, 8).shape == (0, 8)
    assert compact_spectral_inner(xs, ys, hashes, signs, 8).shape == (0,)


def test_compiles_with_fullgraph():
    torch._dynamo.reset()
    xs, ys, hashes, signs = _random_case((3, 4, 5), 16, batch=(4,))

    def function(x0, x1, x2, y0, y1, y2):
        return compact_spectral_inner([x0, x1, x2], [y0, y1, y2], hashes, signs, 16)

    expected = function(*xs, *ys)
    compiled = torch.compile(function, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(*xs, *ys), expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------- bad input


def _bad_calls():
    xs, ys, hashes, signs = _example()
    x, h, s = xs[0], hashes[0], signs[0]
    return {
        "x not a tensor": (lambda: count_sketch([0.5, 1.0, 2.0], h, s, 8), TypeError, "x must"),
        "x integer": (lambda: count_sketch(h, h, s, 8), TypeError, "x must have a floating"),
        "x 0-d": (lambda: count_sketch(x[0], h, s, 8), ValueError, "x must have at least 1"),
        "sketch_dim float": (lambda: count_sketch(x, h, s, 8.0), TypeError, "sketch_dim"),
        "sketch_dim bool": (lambda: count_sketch(x, h, s, True), TypeError, "sketch_dim"),
        "sketch_dim zero": (lambda: count_sketch(x, h, s, 0), ValueError, "sketch_dim"),
        "hashes list": (lambda: count_sketch(x, [1, 5, 1], s, 8), TypeError, "hashes must be"),
        "hashes int32": (
            lambda: count_sketch(x, h.int(), s, 8),
            TypeError,
            "hashes must have dtype",
        ),
        "hashes float": (lambda: count_sketch(x, h.double(), s, 8), TypeError, "hashes must have"),
        "hashes length": (
            lambda: count_sketch(x, h[:2], s, 8),
            ValueError,
            "hashes must have last",
        ),
        "hashes too big": (
            lambda: count_sketch(x, h + 3, s, 8),
            ValueError,
            r"hashes must hold.*\[0, 8\)",
        ),
        "hashes negative": (lambda: count_sketch(x, h - 2, s, 8), ValueError, "hashes must hold"),
        "hashes batch": (
            lambda: count_sketch(x.expand(2, 3), h.expand(3, 3), s, 8),
            ValueError,
            "hashes of shape",
        ),
        "signs bool": (lambda: count_sketch(x, h, s > 0, 8), TypeError, "signs must have a real"),
        "signs value": (lambda: count_sketch(x, h, s * 2, 8), ValueError, "signs must hold only"),
        "signs zero": (lambda: count_sketch(x, h, s * 0.0, 8), ValueError, "signs must hold only"),
        "signs length": (lambda: count_sketch(x, h, s[:1], 8), ValueError, "signs must have last"),
        "xs tensor": (
            lambda: compact_spectral_features(torch.stack([x, x]), hashes, signs, 8),
            TypeError,
            "xs must be a list or tuple",
        ),
        "xs empty": (
            lambda: compact_spectral_features([], [], [], 8),
            ValueError,
            "xs must hold at least",
        ),
        "xs dtype mix": (
            lambda: compact_spectral_features([xs[0], xs[1].float()], hashes, signs, 8),
            TypeError,
            r"xs\[1\] is torch.float32",
        ),
        "xs[1] integer": (
            lambda: compact_spectral_features([xs[0], hashes[1]], hashes, signs, 8),
            TypeError,
            r"xs\[1\] must have a floating",
        ),
        "hashes count": (
            lambda: compact_spectral_features(xs, hashes[:1], signs, 8),
            ValueError,
            "hashes must hold one table per mode",
        ),
        "signs count": (
            lambda: compact_spectral_features(xs, hashes, signs * 2, 8),
            ValueError,
            "signs must hold one table per mode",
        ),
        "hashes[1] wrong length": (
            lambda: compact_spectral_features(xs, [hashes[0], hashes[0]], signs, 8),
            ValueError,
            r"hashes\[1\] must have last dimension 4",
        ),
        "hashes[1] value": (
            lambda: compact_spectral_features(xs, [hashes[0], hashes[1] + 1], signs, 8),
            ValueError,
            r"hashes\[1\] must hold",
        ),
        "ys count": (
            lambda: compact_spectral_inner(xs, ys[:1], hashes, signs, 8),
            ValueError,
            "ys must hold 2 tensors",
        ),
        "ys[0] size": (
            lambda: compact_spectral_inner(xs, [ys[1], ys[1]], hashes, signs, 8),
            ValueError,
            r"ys\[0\] must have last dimension d_0 = 3",
        ),
        "ys dtype": (
            lambda: compact_spectral_inner(xs, [y.float() for y in ys], hashes, signs, 8),
            TypeError,
            "ys must have the dtype of xs",
        ),
        "ys batch": (
            lambda: compact_spectral_inner(
                xs, [y.expand(2, -1) for y in ys], [h.expand(3, -1) for h in hashes], signs, 8
            ),
            ValueError,
            r"hashes\[0\] of shape \(3, 3\) must broadcast with ys\[0\]",
        ),
        "xs batch": (
            lambda: compact_spectral_features(
                [xs[0].expand(2, -1), xs[1].expand(3, -1)], hashes, signs, 8
            ),
            ValueError,
            "leading dimensions of xs must broadcast",
        ),
        "exact ys count": (lambda: multilinear_kernel(xs, ys[:1]), ValueError, "ys must hold 2"),
    }


@pytest.mark.parametrize("case", list(_bad_calls()))
def test_bad_input_raises_naming_the_argument(case):
    call, error, message = _bad_calls()[case]
    with pytest.raises(error, match=message):
        call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
def test_tables_on_another_device_are_rejected():
    xs, _, hashes, signs = _example()
    with pytest.raises(ValueError, match=r"hashes\[0\] must be on"):
        compact_spectral_features(xs, [h.cuda() for h in hashes], signs, 8)
