"""Tests for ``dyna.train.eval_noise.noisy_splits``: the inputs of ``dyna eval --noise``."""

import math

import pytest
import torch

from dyna.data.split import Split
from dyna.train.eval_noise import noisy_splits

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# torch's float64 standard-normal stream of a CPU generator seeded with 0 (torch 2.x), the
# draw every level of seed 0 scales.
SEED_0_DRAW = [
    [1.5409961082440433, -0.2934289057609464, -2.1787893820745574],
    [0.5684312772806678, -1.084522342424021, -1.3985953953708767],
]


def _split(dtype=torch.float32, device="cpu") -> Split:
    inputs = torch.arange(6, dtype=torch.float64).reshape(2, 3, 1).div(8).to(dtype)
    return Split(inputs.to(device), torch.tensor([3, 7], device=device))


def test_levels_scale_one_draw_hand_checked():
    clean = Split(torch.zeros(2, 3, dtype=torch.float64), torch.tensor([0, 1]))
    low, high = noisy_splits(clean, [0.5, 2.0], seed=0)
    draw = torch.tensor(SEED_0_DRAW, dtype=torch.float64)
    torch.testing.assert_close(low.inputs, 0.5 * draw, rtol=0, atol=0)
    torch.testing.assert_close(high.inputs, 2.0 * draw, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtype_device_labels_and_float64_arithmetic(dtype, device):
    clean = _split(dtype, device)
    levels = noisy_splits(clean, (0.1, 0.2, 0.4), seed=3)
    draw = torch.randn(2, 3, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for sigma, noisy in zip((0.1, 0.2, 0.4), levels, strict=True):
        assert noisy.inputs.dtype == dtype and noisy.inputs.device == clean.inputs.device
        assert noisy.inputs.shape == clean.inputs.shape
        # The labels are the clean split's tensor itself, not a copy.
        assert noisy.labels is clean.labels
        # Sum in float64, one rounding to the inputs' dtype at the end.
        expected = (clean.inputs.double().cpu() + sigma * draw).to(dtype)
        torch.testing.assert_close(noisy.inputs.cpu(), expected, rtol=0, atol=0)


def test_levels_differ_only_in_scale():
    clean = Split(torch.rand(64, 10, 1, dtype=torch.float64), torch.zeros(64, dtype=torch.long))
    low, mid, high = noisy_splits(clean, [0.1, 0.2, 0.4], seed=11)
    base = low.inputs - clean.inputs
    torch.testing.assert_close(mid.inputs - clean.inputs, 2 * base, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(high.inputs - clean.inputs, 4 * base, rtol=1e-12, atol=1e-15)


def test_draw_is_standard_normal_and_not_clipped():
    clean = Split(torch.zeros(200, 100, 1), torch.zeros(200, dtype=torch.long))
    (noisy,) = noisy_splits(clean, [1.0], seed=5)
    noise = noisy.inputs.double()
    # 20,000 samples: the mean is within 4 standard errors of 0 and the std within 2 % of 1.
    assert abs(float(noise.mean())) < 4 / math.sqrt(noise.numel())
    assert abs(float(noise.std()) - 1.0) < 0.02
    # Pixels in [0, 1] plus noise leave that range: no clipping.
    assert float(noise.min()) < -3 and float(noise.max()) > 3


def test_sigma_zero_returns_the_clean_split_and_empty_gives_nothing():
    clean = _split()
    zero, noisy, zero_again = noisy_splits(clean, [0, 0.3, 0.0], seed=0)
    assert zero is clean and zero_again is clean
    assert not torch.equal(noisy.inputs, clean.inputs)
    assert noisy_splits(clean, [], seed=0) == []
    # Nothing to perturb, so even integer inputs are fine without levels.
    integer = Split(torch.zeros(2, 3, dtype=torch.long), torch.tensor([0, 1]))
    assert noisy_splits(integer, [], seed=0) == []


def test_seed_reproduces_and_different_seeds_differ():
    clean = _split()
    first = noisy_splits(clean, [0.2], seed=42)[0].inputs
    again = noisy_splits(clean, [0.2], seed=42)[0].inputs
    other = noisy_splits(clean, [0.2], seed=43)[0].inputs
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    # The global generator is neither read nor advanced.
    torch.manual_seed(0)
    state = torch.get_rng_state()
    noisy_splits(clean, [0.2], seed=42)
    assert torch.equal(torch.get_rng_state(), state)
    # A level's noise does not depend on the other levels asked for.
    alone = noisy_splits(clean, [0.4], seed=42)[0].inputs
    with_others = noisy_splits(clean, [0.1, 0.4], seed=42)[1].inputs
    assert torch.equal(alone, with_others)


@pytest.mark.parametrize(
    ("sigmas", "error", "match"),
    [
        ([0.1, -0.1], ValueError, r"sigmas must be finite and >= 0, got -0\.1"),
        ([math.nan], ValueError, "sigmas must be finite"),
        ([math.inf], ValueError, "sigmas must be finite"),
        ([True], TypeError, "sigmas must hold real numbers, got bool"),
        (["0.1"], TypeError, "sigmas must hold real numbers, got str"),
        ([torch.tensor(0.1)], TypeError, "sigmas must hold real numbers, got Tensor"),
        ([None], TypeError, "sigmas must hold real numbers, got NoneType"),
        (0.1, TypeError, "sigmas must be a sequence of real numbers, got float"),
        ("0.1", TypeError, "sigmas must be a sequence of real numbers, got str"),
        (torch.tensor([0.1]), TypeError, "sigmas must be a sequence .* got Tensor"),
    ],
)
def test_bad_sigmas_name_the_argument(sigmas, error, match):
    with pytest.raises(error, match=match):
        noisy_splits(_split(), sigmas, seed=0)


@pytest.mark.parametrize(
    ("seed", "error", "match"),
    [
        (-1, ValueError, "seed must be >= 0, got -1"),
        (2**64, ValueError, r"seed must be < 2\*\*64"),
        (1.0, TypeError, "seed must be an int, got float"),
        (True, TypeError, "seed must be an int, got bool"),
        ("0", TypeError, "seed must be an int, got str"),
    ],
)
def test_bad_seed_names_the_argument(seed, error, match):
    with pytest.raises(error, match=match):
        noisy_splits(_split(), [0.1], seed=seed)


def test_integer_inputs_and_non_split_are_type_errors():
    integer = Split(torch.zeros(2, 3, dtype=torch.uint8), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match=r"split inputs must be floating point, got dtype"):
        noisy_splits(integer, [0.1], seed=0)
    with pytest.raises(TypeError, match="split must be a Split, got Tensor"):
        noisy_splits(torch.zeros(2, 3), [0.1], seed=0)
    # The largest seed torch's generator takes works.
    assert len(noisy_splits(_split(), [0.1], seed=2**64 - 1)) == 1


def test_the_old_module_name_is_a_deprecated_alias():
    import importlib
    import sys

    sys.modules.pop("dyna.train.noise", None)
    with pytest.warns(DeprecationWarning, match=r"dyna\.train\.eval_noise"):
        old = importlib.import_module("dyna.train.noise")
    assert old.noisy_splits is noisy_splits
