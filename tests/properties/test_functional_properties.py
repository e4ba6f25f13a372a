"""Property tests for the stateless functions of ``dyna.functional``.

Every test draws shapes, hyper-parameters and a seed with hypothesis, builds the tensors from
the seed (cheaper to shrink than element-wise strategies) and checks a documented invariant.
"""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import dyna
from dyna.functional import cnu

FLOAT_DTYPES = [torch.float32, torch.float64, torch.bfloat16]

# Names of dyna exports these tests cover; tests/properties/test_coverage_properties.py checks
# that the union over the property modules is every export.
COVERED = {
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
    "psi",
    "resize1d",
    "resize2d",
    "siglog",
    "siglog_parametric",
}

dtypes = st.sampled_from(FLOAT_DTYPES)
seeds = st.integers(0, 2**31 - 1)
shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)
# log-uniform magnitudes from 1e-6 to 1e6: small, ordinary and large signals
scales = st.floats(-6.0, 6.0).map(lambda exponent: 10.0**exponent)


def _randn(seed, shape, dtype=torch.float64, scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * scale).to(dtype)


# ------------------------------------------------------------------------------------ siglog


@given(shape=shapes, dtype=dtypes, seed=seeds, scale=scales)
def test_siglog_is_odd_finite_and_keeps_shape(shape, dtype, seed, scale):
    x = _randn(seed, shape, dtype, scale)
    x = torch.where(x == 0, torch.ones_like(x), x)  # s(0) = -1: oddness holds off zero
    y = dyna.siglog(x)
    assert y.shape == x.shape and y.dtype == dtype
    assert torch.isfinite(y).all()
    assert torch.equal(dyna.siglog(-x), -y)
    # the magnitude is ln(|x| + e + 1e-4) - 1 >= ln(e) - 1 = 0 (it rounds to 0 for small |x|
    # in bfloat16), with the sign of x
    assert (y.double() * x.double() >= 0).all()


@given(n=st.integers(2, 64), seed=seeds, scale=scales)
def test_siglog_is_monotone_with_a_positive_bounded_surrogate_gradient(n, seed, scale):
    x = _randn(seed, (n,), scale=scale).sort().values.requires_grad_()
    y = dyna.siglog(x)
    assert (y.diff() >= 0).all()
    y.sum().backward()
    # the surrogate 1 / (|x|**p + 1) lies in (0, 1]
    assert (x.grad > 0).all() and (x.grad <= 1).all()


@given(
    shape=shapes,
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=seeds,
    scale=scales,
    alpha=st.floats(1e-3, 1e3),
)
def test_siglog_parametric_is_odd_monotone_and_matches_its_formula(
    shape, dtype, seed, scale, alpha
):
    x = _randn(seed, shape, dtype, scale)
    x = torch.where(x == 0, torch.ones_like(x), x)
    y = dyna.siglog_parametric(x, alpha)
    assert y.shape == x.shape and y.dtype == dtype and torch.isfinite(y).all()
    assert torch.equal(dyna.siglog_parametric(-x, alpha), -y)
    # a Python alpha goes through the default dtype first, as in the reference
    m = math.e * float(torch.tensor(alpha, dtype=torch.float32))
    expected = torch.sign(x.double()) * (torch.log(x.double().abs() + m) - math.log(m))
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(y.double(), expected, rtol=tolerance, atol=tolerance)
    ordered = dyna.siglog_parametric(x.flatten().sort().values, alpha)
    assert (ordered.diff() >= 0).all()


@given(shape=shapes, seed=seeds, scale=scales)
def test_siglog_parametric_bfloat16_is_finite(shape, seed, scale):
    x = _randn(seed, shape, torch.bfloat16, scale)
    y = dyna.siglog_parametric(x)
    assert y.shape == x.shape and y.dtype == torch.bfloat16 and torch.isfinite(y).all()


# ------------------------------------------------------------ backward gradient normalisation


@given(shape=shapes, dtype=dtypes, seed=seeds, scale=scales, eps=st.floats(0.0, 1.0))
def test_backward_gradient_normalization_is_identity_and_rescales_every_slice(
    shape, dtype, seed, scale, eps
):
    x = _randn(seed, shape, dtype).requires_grad_()
    out = dyna.backward_gradient_normalization(x, eps)
    assert torch.equal(out, x) and out.dtype == dtype
    upstream = _randn(seed + 1, shape, dtype, scale)
    out.backward(upstream)
    g = upstream.double()
    if g.dim() == 1:
        norm, numel = g.norm(), 1
    else:
        norm = g.flatten(1).norm(dim=1).view(-1, *([1] * (g.dim() - 1)))
        numel = math.prod(shape[1:])
    # eps is added in the gradient's dtype, as the reference does
    eps_rounded = torch.tensor(eps, dtype=dtype).double()
    expected = g / (norm + eps_rounded) * math.sqrt(numel)
    tolerance = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 3e-2}[dtype]
    torch.testing.assert_close(x.grad.double(), expected, rtol=tolerance, atol=tolerance)
    if eps == 0.0:
        slice_norms = x.grad.double().flatten(1).norm(dim=1) if g.dim() > 1 else x.grad.norm()
        torch.testing.assert_close(
            slice_norms,
            torch.full_like(slice_norms, math.sqrt(numel)),
            rtol=tolerance * 4,
            atol=0,
        )


# --------------------------------------------------------------------------------- noise


@given(
    batch=st.integers(1, 4),
    features=st.integers(2, 12),
    dtype=dtypes,
    seed=seeds,
    rate=st.floats(0.0, 2.0),
)
def test_noisein_changes_at_most_rate_n_elements_per_sample(batch, features, dtype, seed, rate):
    x = _randn(seed, (batch, features), dtype)
    torch.manual_seed(seed)
    out = dyna.noisein(x, rate)
    assert out.shape == x.shape and out.dtype == dtype and torch.isfinite(out).all()
    changed = (out != x).sum(dim=1)
    assert (changed <= int(features * rate)).all()


@given(shape=shapes, dtype=dtypes, seed=seeds)
def test_noise_with_zero_rate_is_the_identity(shape, dtype, seed):
    x = _randn(seed, (2, *shape), dtype)
    assert dyna.noisein(x, 0.0) is x
    assert dyna.noiseover(x, 0.0) is x
    assert dyna.noiseover(x, -1.0) is x


@given(shape=shapes, dtype=dtypes, seed=seeds, rate=st.floats(1e-3, 10.0))
def test_noiseover_adds_rate_times_a_draw_from_the_global_statistics(shape, dtype, seed, rate):
    x = _randn(seed, (3, *shape), dtype) * 2 + 1
    torch.manual_seed(seed)
    out = dyna.noiseover(x, rate)
    assert out.shape == x.shape and out.dtype == dtype and torch.isfinite(out).all()
    # the same seed draws the same noise: noiseover is x + rate * N(mean(x), std(x))
    torch.manual_seed(seed)
    noise = torch.empty_like(x).normal_(float(x.mean()), float(x.std()))
    torch.testing.assert_close(out, x + rate * noise)


# ------------------------------------------------------------------- log-proportional error


@given(shape=shapes, dtype=dtypes, seed=seeds, scale=scales)
def test_log_proportional_error_is_nonnegative_and_zero_at_equality(shape, dtype, seed, scale):
    x = _randn(seed, shape, dtype, scale)
    y = _randn(seed + 1, shape, dtype, scale)
    error = dyna.log_proportional_error(x, y, "none")
    assert error.shape == x.shape and error.dtype == dtype
    assert torch.isfinite(error).all() and (error >= 0).all()
    assert torch.equal(dyna.log_proportional_error(x, x, "none"), torch.zeros_like(x))
    assert dyna.log_proportional_error(x, x).item() == 0.0
    torch.testing.assert_close(dyna.log_proportional_error(x, y, "sum"), error.sum())
    torch.testing.assert_close(dyna.log_proportional_error(x, y, "mean"), error.mean())


# --------------------------------------------------------------------------- psi, resize


@given(
    batch=st.integers(1, 4),
    features=st.integers(1, 30),
    key_size=st.integers(1, 30),
    dtype=dtypes,
    seed=seeds,
    level=st.floats(-100, 100),
)
def test_resize1d_keeps_shape_and_constant_rows(batch, features, key_size, dtype, seed, level):
    x = _randn(seed, (batch, features), dtype)
    out = cnu.resize1d(x, key_size)
    assert out.shape == (batch, key_size) and out.dtype == dtype
    assert torch.isfinite(out).all()
    if key_size == features:
        assert out is x
    # linear interpolation reproduces constants and stays inside each row's range
    constant = torch.full((batch, features), level, dtype=dtype)
    torch.testing.assert_close(
        cnu.resize1d(constant, key_size), constant[:, :1].expand(-1, key_size)
    )
    slack = 1e-2 * (1 + x.abs().max()) if dtype == torch.bfloat16 else 1e-6
    assert (out <= x.max(dim=1, keepdim=True).values + slack).all()
    assert (out >= x.min(dim=1, keepdim=True).values - slack).all()


@given(
    batch=st.integers(1, 3),
    channels=st.integers(1, 3),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    per_channel=st.integers(1, 40),
    dtype=dtypes,
    seed=seeds,
)
def test_resize2d_output_length_and_zero_padding(
    batch, channels, height, width, per_channel, dtype, seed
):
    key_size = channels * per_channel
    x = _randn(seed, (batch, channels, height, width), dtype)
    try:
        out = cnu.resize2d(x, key_size)
    except ValueError as error:  # documented: the budget cannot hold one row
        assert "too small" in str(error)
        return
    assert out.dtype == dtype and out.shape[0] == batch and torch.isfinite(out).all()
    assert out.shape[1] == key_size or out.shape[1] % channels == 0
    # a constant map scales to the same constant; any padding on the right is zero
    constant = torch.full_like(x, 2.5)
    resized = cnu.resize2d(constant, key_size)
    filled = resized.shape[1] - (resized == 0).sum(dim=1)
    filled_part = resized[:, : int(filled[0])]
    torch.testing.assert_close(filled_part, torch.full_like(filled_part, 2.5))
    assert (resized[:, int(filled[0]) :] == 0).all()


@given(
    batch=st.integers(1, 4),
    inner=shapes,
    mode=st.sampled_from(["identity", "sign"]),
    normalize=st.booleans(),
    dtype=dtypes,
    seed=seeds,
    scale=scales,
)
def test_psi_rows_are_unit_norm_or_zero(batch, inner, mode, normalize, dtype, seed, scale):
    x = _randn(seed, (batch, *inner), dtype, scale)
    key_size = math.prod(inner)
    out = cnu.psi(x, mode, key_size, normalize)
    assert out.shape == (batch, key_size) and out.dtype == dtype and torch.isfinite(out).all()
    if mode == "sign" and not normalize:
        assert torch.equal(out, torch.sign(x.flatten(1)))
    if normalize:
        norms = out.double().norm(dim=1)
        tolerance = 2e-2 if dtype == torch.bfloat16 else 1e-5
        assert ((norms - 1).abs() < tolerance).all() or (norms == 0).any()
        torch.testing.assert_close(
            norms[x.flatten(1).abs().amax(dim=1) > 0],
            torch.ones_like(norms[x.flatten(1).abs().amax(dim=1) > 0]),
            rtol=tolerance,
            atol=tolerance,
        )


@given(
    batch=st.integers(1, 3),
    channels=st.integers(1, 3),
    size=st.integers(2, 8),
    mode=st.sampled_from(["resize1d", "resize2d", "resize2d_sign"]),
    seed=seeds,
)
def test_psi_resize_modes_give_key_size_columns(batch, channels, size, mode, seed):
    if mode == "resize1d":
        x = _randn(seed, (batch, size * 3))
        key_size = size
    else:
        x = _randn(seed, (batch, channels, size, size))
        key_size = channels * 4  # a 2 x 2 map per channel
    out = cnu.psi(x, mode, key_size)
    assert out.shape == (batch, key_size)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(batch, dtype=torch.float64))


# ---------------------------------------------------------------------------- CNU blends


@st.composite
def cnu_selections(draw, with_input=False):
    """Memories (q, m, u), indices of k distinct memories per unit, softmax weights."""
    seed = draw(seeds)
    q, m, b = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
    k = draw(st.integers(1, m))
    bias = draw(st.booleans())
    in_features, rows = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    u = rows * (in_features + bias) if with_input else draw(st.integers(1, 6))
    generator = torch.Generator().manual_seed(seed)
    memories = torch.randn(q, m, u, generator=generator, dtype=torch.float64)
    indices = torch.rand(b, q, m, generator=generator).argsort(dim=-1)[..., :k]
    weights = torch.randn(b, q, k, generator=generator, dtype=torch.float64).softmax(-1)
    x = torch.randn(b, in_features, generator=generator, dtype=torch.float64)
    return memories, indices, weights, x, bias, rows


@given(selection=cnu_selections(), wta=st.booleans())
def test_cnu_blend_stays_inside_the_convex_hull_of_the_selected_memories(selection, wta):
    memories, indices, weights, _, _, _ = selection
    b, q, _ = indices.shape
    blended = dyna.cnu_blend_weights(memories, indices, weights, wta=wta)
    assert blended.shape == (b, q, memories.shape[2]) and blended.dtype == memories.dtype
    selected = memories[torch.arange(q).view(1, q, 1), indices]  # (b, q, k, u)
    slack = 1e-12
    assert (blended <= selected.amax(dim=2) + slack).all()
    assert (blended >= selected.amin(dim=2) - slack).all()
    torch.testing.assert_close(blended, torch.einsum("bqk,bqku->bqu", weights, selected))


@given(
    selection=cnu_selections(with_input=True),
    wta=st.booleans(),
    strategy=st.sampled_from(["auto", "dense", "grouped"]),
)
def test_cnu_linear_equals_its_reference_in_values_and_gradients(selection, wta, strategy):
    memories, indices, weights, x, bias, rows = selection
    q = memories.shape[0]
    if strategy == "grouped" and q != 1:
        strategy = "dense"  # grouped is for shared keys (q = 1)
    inputs = [t.clone().requires_grad_() for t in (x, memories, weights)]
    twins = [t.clone().requires_grad_() for t in (x, memories, weights)]
    out = dyna.cnu_linear(
        inputs[0], inputs[1], indices, inputs[2], bias=bias, wta=wta, strategy=strategy
    )
    ref = dyna.cnu_linear_ref(twins[0], twins[1], indices, twins[2], bias=bias, wta=wta)
    assert out.shape == (x.shape[0], q * rows) and out.dtype == x.dtype
    torch.testing.assert_close(out, ref)
    upstream = torch.cos(torch.arange(out.numel(), dtype=out.dtype)).view_as(out)
    out.backward(upstream)
    ref.backward(upstream)
    for got, expected in zip(inputs, twins, strict=True):
        torch.testing.assert_close(got.grad, expected.grad)


# ------------------------------------------------------------------- compact spectral features


@st.composite
def sketch_problems(draw):
    seed = draw(seeds)
    modes = draw(st.integers(1, 3))
    dims = draw(st.lists(st.integers(1, 6), min_size=modes, max_size=modes))
    sketch_dim = draw(st.integers(1, 12))
    lead = draw(st.lists(st.integers(1, 3), max_size=2).map(tuple))
    generator = torch.Generator().manual_seed(seed)
    hashes = [torch.randint(0, sketch_dim, (d,), generator=generator) for d in dims]
    signs = [torch.randint(0, 2, (d,), generator=generator) * 2 - 1 for d in dims]
    xs = [torch.randn(*lead, d, generator=generator, dtype=torch.float64) for d in dims]
    ys = [torch.randn(*lead, d, generator=generator, dtype=torch.float64) for d in dims]
    factor = draw(st.floats(-3.0, 3.0))
    return xs, ys, hashes, signs, sketch_dim, lead, factor


@given(problem=sketch_problems())
def test_count_sketch_is_linear_and_preserves_the_norm_for_injective_hashes(problem):
    xs, ys, hashes, signs, sketch_dim, lead, factor = problem
    x, y, h, s = xs[0], ys[0], hashes[0], signs[0]
    out = dyna.count_sketch(x, h, s, sketch_dim)
    assert out.shape == (*lead, sketch_dim) and out.dtype == x.dtype
    torch.testing.assert_close(
        dyna.count_sketch(x + factor * y, h, s, sketch_dim),
        out + factor * dyna.count_sketch(y, h, s, sketch_dim),
    )
    injective = torch.randperm(sketch_dim + x.shape[-1], generator=torch.Generator())[: x.shape[-1]]
    spread = dyna.count_sketch(x, injective, s, sketch_dim + x.shape[-1])
    torch.testing.assert_close(spread.norm(dim=-1), x.norm(dim=-1))


@given(problem=sketch_problems(), mode=st.integers(0, 2))
def test_compact_spectral_maps_are_linear_in_each_input(problem, mode):
    xs, ys, hashes, signs, sketch_dim, lead, factor = problem
    mode = mode % len(xs)
    features = dyna.compact_spectral_features(xs, hashes, signs, sketch_dim)
    assert features.shape == (*lead, sketch_dim) and torch.isfinite(features).all()
    inner = dyna.compact_spectral_inner(xs, ys, hashes, signs, sketch_dim)
    assert inner.shape == lead and torch.isfinite(inner).all()
    # D^{K-1} <Phi(x), Phi(y)> is the estimate
    phi_y = dyna.compact_spectral_features(ys, hashes, signs, sketch_dim)
    scale = float(sketch_dim) ** (len(xs) - 1)
    torch.testing.assert_close(inner, scale * (features * phi_y).sum(-1))
    # exact linearity in mode k of x and of y (the estimate is a multilinear form)
    other = torch.randn_like(xs[mode])
    mixed = list(xs)
    mixed[mode] = xs[mode] + factor * other
    single = list(xs)
    single[mode] = other
    torch.testing.assert_close(
        dyna.compact_spectral_features(mixed, hashes, signs, sketch_dim),
        features + factor * dyna.compact_spectral_features(single, hashes, signs, sketch_dim),
    )
    mixed_y = list(ys)
    mixed_y[mode] = ys[mode] + factor * other
    single_y = list(ys)
    single_y[mode] = other
    torch.testing.assert_close(
        dyna.compact_spectral_inner(xs, mixed_y, hashes, signs, sketch_dim),
        inner + factor * dyna.compact_spectral_inner(xs, single_y, hashes, signs, sketch_dim),
    )


@given(problem=sketch_problems())
def test_single_mode_inner_is_exact_for_injective_hashes(problem):
    xs, ys, _, signs, _, _, _ = problem
    d = xs[0].shape[-1]
    hashes = [torch.arange(d).flip(0)]
    inner = dyna.compact_spectral_inner(xs[:1], ys[:1], hashes, signs[:1], d)
    torch.testing.assert_close(inner, (xs[0] * ys[0]).sum(-1))


# ------------------------------------------------------------------------------ HORN


@given(
    delays=st.lists(st.floats(0.0, 50.0), min_size=2, max_size=12),
    dt=st.floats(1e-3, 10.0),
)
def test_delay_steps_is_monotone_and_rounds_up(delays, dt):
    ordered = torch.tensor(sorted(delays), dtype=torch.float64)
    steps = dyna.delay_steps(ordered, dt)
    assert steps.dtype == torch.int64 and steps.shape == ordered.shape
    assert (steps.diff() >= 0).all()
    assert (steps >= 0).all()
    # ceil(delay / dt) up to a relative tolerance of 1e-9 around integers
    quotient = ordered / dt
    assert (steps.double() >= quotient - 1e-9 * quotient.clamp(min=1)).all()
    assert (steps.double() < quotient + 1).all()
    assert torch.equal(dyna.delay_steps(sorted(delays), dt), steps)


def _modified_energy(x, y, omega, dt):
    """The quadratic form that the symplectic Euler step conserves exactly without damping.

    E_h = y**2 / 2 + omega**2 x**2 / 2 - dt omega**2 x y / 2; E_h -> the oscillator energy
    y**2 / 2 + omega**2 x**2 / 2 as dt -> 0.
    """
    return 0.5 * y * y + 0.5 * omega**2 * x * x - 0.5 * dt * omega**2 * x * y


@st.composite
def free_oscillators(draw):
    """Initial states and stable steps (dt * omega <= 1.5) for n undriven oscillators."""
    seed = draw(seeds)
    n, b = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    dt = draw(st.floats(0.1, 1.0))
    omega = torch.tensor(draw(st.lists(st.floats(0.1, 1.5), min_size=n, max_size=n)))
    omega = omega.clamp(max=1.5 / dt).double()
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.randn(b, n, generator=generator, dtype=torch.float64)
    y0 = torch.randn(b, n, generator=generator, dtype=torch.float64)
    return n, b, dt, omega, x0, y0


@given(oscillators=free_oscillators(), steps=st.integers(1, 400))
def test_horn_without_damping_or_input_conserves_the_modified_energy(oscillators, steps):
    n, b, dt, omega, x0, y0 = oscillators
    drive = torch.zeros(steps, b, n, dtype=torch.float64)
    weight = torch.zeros(n, n, dtype=torch.float64)
    x_seq, y_seq, _ = dyna.horn_scan(drive, weight, None, 0.5, omega, 0.0, 0.0, dt, x0, y0)
    start = _modified_energy(x0, y0, omega, dt)
    energy = _modified_energy(x_seq, y_seq, omega, dt)
    torch.testing.assert_close(energy, start.expand_as(energy), rtol=1e-9, atol=1e-12)
    # the plain energy y**2/2 + omega**2 x**2/2 stays within O(dt * omega) of its start
    plain = 0.5 * y_seq**2 + 0.5 * omega**2 * x_seq**2
    plain_start = 0.5 * y0**2 + 0.5 * omega**2 * x0**2
    band = 1.0 / (1.0 - 0.5 * dt * omega) - 1.0
    assert ((plain - plain_start).abs() <= 2.0 * band * plain_start + 1e-12).all()


@given(oscillators=free_oscillators(), fraction=st.floats(0.1, 0.9))
def test_horn_energy_decays_with_damping_and_no_input(oscillators, fraction):
    n, b, dt, omega, x0, y0 = oscillators
    # under-damped (gamma < omega), so the energy falls like exp(-2 gamma t); long enough for
    # exp(-20), with the velocity retention 1 - 2 gamma dt kept >= 0.5
    gamma = min(fraction * float(omega.min()), 0.25 / dt)
    gamma = max(gamma, 0.01)
    steps = math.ceil(20.0 / (2.0 * gamma * dt))
    drive = torch.zeros(steps, b, n, dtype=torch.float64)
    weight = torch.zeros(n, n, dtype=torch.float64)
    x_seq, y_seq, _ = dyna.horn_scan(drive, weight, None, 0.5, omega, gamma, 0.0, dt, x0, y0)
    energy = _modified_energy(x_seq, y_seq, omega, dt)
    start = _modified_energy(x0, y0, omega, dt)
    assert torch.isfinite(energy).all()
    quarter = max(1, steps // 4)
    assert (energy[-quarter:].amax(0) < energy[:quarter].amax(0)).all()
    assert (energy[-1] < 1e-3 * start).all()


@given(
    steps=st.integers(0, 12),
    b=st.integers(1, 3),
    n=st.integers(1, 5),
    seed=seeds,
    use_bias=st.booleans(),
    use_v=st.booleans(),
    max_delay=st.integers(-1, 3),
    recurrent_scale=st.floats(0.1, 2.0),
)
def test_horn_scan_equals_its_reference_with_and_without_delays(
    steps, b, n, seed, use_bias, use_v, max_delay, recurrent_scale
):
    generator = torch.Generator().manual_seed(seed)

    def draw(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    drive, weight = draw(steps, b, n), draw(n, n) * 0.5
    x0, y0 = draw(b, n), draw(b, n)
    delay = None if max_delay < 0 else torch.randint(0, max_delay + 1, (n, n), generator=generator)
    bias = draw(n) if use_bias and delay is None else None
    args = (drive, weight, bias, 0.04, 0.3, 0.01, 0.2 if use_v else None, 0.5, x0, y0)
    fast = dyna.horn_scan(*args, recurrent_scale=recurrent_scale, delay=delay)
    ref = dyna.horn_scan_ref(*args, recurrent_scale=recurrent_scale, delay=delay)
    assert fast[0].shape == fast[1].shape == (steps, b, n)
    for got, expected in zip(fast, ref, strict=True):
        if expected is None:
            assert got is None
        else:
            torch.testing.assert_close(got, expected)
    # the last step of the scan is horn_step applied to the state before it
    if steps and delay is None:
        x_prev = x0 if steps == 1 else fast[0][-2]
        y_prev = y0 if steps == 1 else fast[1][-2]
        total = drive[-1] + recurrent_scale * (y_prev @ weight.T + (0 if bias is None else bias))
        x_last, y_last = dyna.horn_step(
            total, x_prev, y_prev, 0.04, 0.3, 0.01, 0.2 if use_v else None, 0.5
        )
        torch.testing.assert_close(fast[0][-1], x_last)
        torch.testing.assert_close(fast[1][-1], y_last)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@given(shape=shapes, seed=seeds)
def test_horn_step_keeps_shape_and_dtype(dtype, shape, seed):
    drive, x, y = (_randn(seed + i, shape, dtype) for i in range(3))
    x_new, y_new = dyna.horn_step(drive, x, y, 0.04, 0.2, 0.01, 0.0, 1.0)
    assert x_new.shape == y_new.shape == shape
    assert x_new.dtype == y_new.dtype == dtype
    assert torch.isfinite(x_new).all() and torch.isfinite(y_new).all()
