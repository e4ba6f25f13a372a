"""Tests for ``dyna.functional.noise``: ``noisein`` (replacement) and ``noiseover`` (additive)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dyna.functional.noise as noise_module
from dyna.functional import noisein, noiseover

FLOAT_DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]

# Golden values: reference DyNA at commit 01c17ea (torch 2.13, CPU).
NOISEIN_SEEDED_FLOAT32 = [
    [11.0561409, 1.0, 2.0, 4.4420271, -2.3557367, 5.0],
    [0.4572926, 7.0, 7.5495081, 9.0, 10.0, 11.0],
]
NOISEIN_SEEDED_FLOAT64 = [
    [11.056140899658203, 1.0, 2.0, 4.4420270919799805, -2.35573673248291, 5.0],
    [0.4572925865650177, 7.0, 7.549508094787598, 9.0, 10.0, 11.0],
]
NOISEIN_SEEDED_GRADIENT = [[0.0, 1.0, 1.0, 0.0, 0.0, 1.0], [-1.0, 1.0, 0.0, 1.0, 1.0, 1.0]]
NOISEIN_SEEDED_NOISE = [[11.0561409, 4.4420271, -2.3557367], [7.5495081, 1.5896991, 0.4572926]]
NOISEIN_SEEDED_POSITIONS = [[0, 3, 4], [2, 0, 0]]


def _seeded_example(dtype: torch.dtype, requires_grad: bool = False) -> torch.Tensor:
    x = torch.arange(12.0, dtype=dtype).reshape(2, 6).requires_grad_(requires_grad)
    torch.manual_seed(0)
    return x


def _reproduce_draws(x: torch.Tensor, rate: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's draws: noise (B, k) in the default dtype, then positions (B, k) on CPU."""
    flat = x.detach().flatten(1)
    batch, features = flat.shape
    count = int(features * rate)
    torch.manual_seed(seed)
    noise = torch.empty((batch, count)).normal_(float(x.detach().mean()), float(x.detach().std()))
    positions = torch.randint(0, features, (batch, count))
    return noise, positions


def _multiplicity(positions: torch.Tensor, features: int) -> torch.Tensor:
    return torch.stack([torch.bincount(row, minlength=features) for row in positions])


def _check_noisein_properties(x: torch.Tensor, rate: float, seed: int) -> None:
    """Every property against the reproduced draws."""
    noise, positions = _reproduce_draws(x, rate, seed)
    batch, features = x.flatten(1).shape
    count = int(features * rate)
    assert noise.shape == positions.shape == (batch, count)

    leaf = x.detach().clone().requires_grad_(True)
    torch.manual_seed(seed)
    out = noisein(leaf, rate)
    assert out.shape == x.shape and out.dtype == x.dtype
    out.sum().backward()

    flat_x = x.detach().flatten(1)
    flat_out = out.detach().flatten(1)
    multiplicity = _multiplicity(positions, features)
    chosen = multiplicity > 0
    changed = flat_out != flat_x

    # At most k positions change per sample, and only drawn ones.
    assert torch.all(changed.sum(dim=1) <= count)
    assert not torch.any(changed & ~chosen)
    # Untouched positions are bit-equal to x.
    assert torch.equal(flat_out[~chosen], flat_x[~chosen])
    # Chosen positions hold one of the noise values drawn for them (x + (n - x), to rounding).
    ulp = torch.finfo(x.dtype).eps
    for b in range(batch):
        for j in torch.nonzero(chosen[b]).flatten().tolist():
            candidates = noise[b][positions[b] == j].to(torch.float64)
            value = flat_out[b, j].to(torch.float64)
            tolerance = 4 * ulp * (abs(float(flat_x[b, j])) + float(candidates.abs().max()))
            assert float((candidates - value).abs().min()) <= tolerance
    # Gradient of the index-put: 1 at untouched positions, 1 - multiplicity at chosen ones.
    expected_gradient = (1 - multiplicity).to(x.dtype).reshape(x.shape)
    assert torch.equal(leaf.grad, expected_gradient)


# ----------------------------------------------------------------------------- noisein golden


def test_noisein_seeded_example_float32_output_and_gradient():
    x = _seeded_example(torch.float32, requires_grad=True)
    out = noisein(x, 0.5)
    assert out.dtype == torch.float32 and out.shape == (2, 6)
    expected = torch.tensor(NOISEIN_SEEDED_FLOAT32)
    torch.testing.assert_close(out.detach(), expected, rtol=0.0, atol=1e-5 * 11.0561409)
    out.sum().backward()
    assert torch.equal(x.grad, torch.tensor(NOISEIN_SEEDED_GRADIENT))


def test_noisein_seeded_example_draws_are_the_reference_draws():
    x = _seeded_example(torch.float32)
    noise, positions = _reproduce_draws(x, 0.5, seed=0)
    torch.testing.assert_close(
        noise, torch.tensor(NOISEIN_SEEDED_NOISE), rtol=0.0, atol=1e-5 * 11.0561409
    )
    assert positions.tolist() == NOISEIN_SEEDED_POSITIONS


def test_noisein_seeded_example_float64_bit_exact():
    x = _seeded_example(torch.float64, requires_grad=True)
    out = noisein(x, 0.5)
    assert out.dtype == torch.float64
    assert torch.equal(out.detach(), torch.tensor(NOISEIN_SEEDED_FLOAT64, dtype=torch.float64))
    out.sum().backward()
    assert torch.equal(x.grad, torch.tensor(NOISEIN_SEEDED_GRADIENT, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_noisein_half_dtypes_same_positions_as_float32(dtype):
    reference = noisein(_seeded_example(torch.float32), 0.5)
    x = _seeded_example(dtype, requires_grad=True)
    out = noisein(x, 0.5)
    assert out.dtype == dtype and out.shape == (2, 6)
    changed = out.detach() != torch.arange(12.0, dtype=dtype).reshape(2, 6)
    changed_float32 = reference != torch.arange(12.0).reshape(2, 6)
    assert torch.equal(changed, changed_float32)
    # Values are the float32 ones rounded to the dtype (2e-2 of the largest magnitude).
    torch.testing.assert_close(
        out.detach().float(), reference, rtol=0.0, atol=2e-2 * reference.abs().max().item()
    )
    out.sum().backward()
    assert torch.equal(x.grad, torch.tensor(NOISEIN_SEEDED_GRADIENT, dtype=dtype))


@pytest.mark.parametrize("rate", [0.0, -0.5, -3])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_noisein_non_positive_rate_returns_x_itself(rate, dtype):
    x = torch.randn(3, 4).to(dtype)
    assert noisein(x, rate) is x


@pytest.mark.parametrize("shape", [(0, 5), (2, 0), (3, 0, 4)])
def test_noisein_empty_input_unchanged(shape):
    x = torch.empty(shape)
    out = noisein(x, 0.5)
    assert out.shape == x.shape and out.dtype == x.dtype and out.numel() == 0


# --------------------------------------------------------------------------- noisein properties


@pytest.mark.parametrize(
    ("shape", "rate", "seed"),
    [
        ((2, 6), 0.5, 0),
        ((3, 4, 5), 0.3, 1),
        ((4, 10), 1.7, 2),  # k = 17 > N: many repeats
        ((1, 50), 0.1, 3),
        ((5, 3), 0.2, 4),  # k = 0: nothing changes
        ((2, 2, 3), 0.9, 5),
        ((6, 8), 3.0, 6),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_noisein_properties(shape, rate, seed, dtype):
    generator = torch.Generator().manual_seed(1000 + seed)
    x = (torch.randn(shape, generator=generator) * 3 + 1).to(dtype)
    _check_noisein_properties(x, rate, seed)


def test_noisein_statistics_use_the_whole_tensor():
    # Row 0 is constant: per-sample statistics would give it noise N(0, 0), i.e. no change.
    x = torch.stack([torch.zeros(20), torch.full((20,), 10.0)])
    torch.manual_seed(7)
    out = noisein(x, 0.5)
    noise, positions = _reproduce_draws(x, 0.5, seed=7)
    assert torch.any(out[0] != 0.0)
    # The last write wins on CPU: every chosen position of row 0 holds its last drawn value.
    for j in positions[0].unique().tolist():
        last = noise[0][positions[0] == j][-1]
        assert out[0, j].item() == last.item()


def test_noisein_non_contiguous_equals_contiguous():
    x = torch.randn(6, 4).t()
    assert not x.is_contiguous()
    torch.manual_seed(3)
    out = noisein(x, 0.5)
    torch.manual_seed(3)
    out_contiguous = noisein(x.contiguous(), 0.5)
    # Same positions; the values may differ by rounding (the global mean is summed in another
    # order for the strided tensor).
    assert torch.equal(out != x, out_contiguous != x)
    torch.testing.assert_close(out, out_contiguous, rtol=1e-6, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 4),
    features=st.integers(2, 12),
    rate=st.floats(0.01, 2.5),
    seed=st.integers(0, 2**16),
)
def test_noisein_hypothesis_at_most_k_changes(batch, features, rate, seed):
    x = torch.randn(batch, features, generator=torch.Generator().manual_seed(seed))
    _check_noisein_properties(x, rate, seed)


# ---------------------------------------------------------------------------- noisein errors


@pytest.mark.parametrize("x", [[[1.0, 2.0], [3.0, 4.0]], 3.0, None])
def test_noisein_rejects_non_tensor_x(x):
    with pytest.raises(TypeError, match="x"):
        noisein(x, 0.5)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_noisein_rejects_integer_x(dtype):
    with pytest.raises(TypeError, match="x"):
        noisein(torch.ones(2, 3, dtype=dtype), 0.5)


@pytest.mark.parametrize("shape", [(6,), ()])
def test_noisein_rejects_x_with_fewer_than_two_dims(shape):
    with pytest.raises(ValueError, match=r"x .*flatten to \(B, N\) first"):
        noisein(torch.ones(shape), 0.5)


@pytest.mark.parametrize("rate", ["0.5", True, False, None])
def test_noisein_rejects_non_real_rate(rate):
    with pytest.raises(TypeError, match="rate"):
        noisein(torch.randn(2, 3), rate)


def test_noisein_rejects_nan_rate():
    with pytest.raises(ValueError, match="rate"):
        noisein(torch.randn(2, 3), math.nan)


# ---------------------------------------------------------------------------------- noiseover


def test_noiseover_statistics():
    # y - x has mean rate * mean(x) ~ 0.30 and std rate * std(x) ~ 0.20.
    torch.manual_seed(0)
    x = torch.randn(1000, 100) * 2 + 3
    difference = noiseover(x, 0.1) - x
    assert abs(difference.mean().item() - 0.30) < 0.003
    assert abs(difference.std().item() - 0.20) < 0.003
    # Tighter, against this x's own statistics (non-zero-mean noise, kept from the reference).
    assert abs(difference.mean().item() - 0.1 * x.mean().item()) < 0.002
    assert abs(difference.std().item() - 0.1 * x.std().item()) < 0.002


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_noiseover_reproduces_the_reference_draw(shape, dtype):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(11)).to(dtype)
    torch.manual_seed(5)
    out = noiseover(x, 0.25)
    torch.manual_seed(5)
    expected = x + 0.25 * torch.empty_like(x).normal_(float(x.mean()), float(x.std()))
    assert torch.equal(out, expected)


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4)])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_noiseover_gradient_of_sum_is_ones(shape, dtype):
    x = torch.randn(shape).to(dtype).requires_grad_(True)
    out = noiseover(x, 0.3)
    assert out.shape == x.shape and out.dtype == dtype
    assert not torch.equal(out.detach(), x.detach())
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_noiseover_gradient_passes_upstream_unchanged():
    x = torch.randn(4, 5, requires_grad=True)
    upstream = torch.randn(4, 5)
    noiseover(x, 0.7).backward(upstream)
    assert torch.equal(x.grad, upstream)


def test_noiseover_gradcheck(monkeypatch):
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    # The statistics are Python floats (no gradient through them): hold them at x's
    # values so that the finite differences see the same noise distribution as the analytic pass.
    statistics = (float(x.detach().mean()), float(x.detach().std()))
    monkeypatch.setattr(noise_module, "_global_statistics", lambda _: statistics)

    def seeded_noiseover(t):
        torch.manual_seed(0)
        return noiseover(t, 0.5)

    assert torch.autograd.gradcheck(seeded_noiseover, (x,))


@pytest.mark.parametrize("rate", [0.0, -1.0, -2])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_noiseover_non_positive_rate_returns_x_itself(rate, dtype):
    x = torch.randn(3, 4).to(dtype)
    assert noiseover(x, rate) is x


@pytest.mark.parametrize("x", [[1.0, 2.0], 2.0, None])
def test_noiseover_rejects_non_tensor_x(x):
    with pytest.raises(TypeError, match="x"):
        noiseover(x, 0.1)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_noiseover_rejects_integer_x(dtype):
    with pytest.raises(TypeError, match="x"):
        noiseover(torch.ones(4, dtype=dtype), 0.1)


def test_noiseover_rejects_zero_dim_x():
    with pytest.raises(ValueError, match="x"):
        noiseover(torch.tensor(1.0), 0.1)


@pytest.mark.parametrize("rate", ["0.1", True, None])
def test_noiseover_rejects_non_real_rate(rate):
    with pytest.raises(TypeError, match="rate"):
        noiseover(torch.randn(3), rate)


def test_noiseover_rejects_nan_rate():
    with pytest.raises(ValueError, match="rate"):
        noiseover(torch.randn(3), math.nan)
