"""Tests for ``dyna.lib.CompactSpectralMultiplier``: tables, conventions, estimates, bad input.

Seeded tables and the draw order follow the reference DyNA's CSM script (commit 01c17ea).
"""

import math

import pytest
import torch
from torch import nn

import dyna
from dyna.functional import compact_spectral_features, compact_spectral_inner
from dyna.functional.compact_spectral import compact_spectral_inner_ref
from dyna.lib import CompactSpectralMultiplier


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

# CompactSpectralMultiplier([3, 4], 8, seed=0), computed from the reference's draw order.
SEEDED_TABLES = {
    "hash_0": [4, 7, 5],
    "sign_0": [-1.0, 1.0, 1.0],
    "hash_1": [3, 7, 1, 3],
    "sign_1": [1.0, -1.0, -1.0, 1.0],
}


def _inputs(dims, batch=(5,), dtype=torch.float64, seed=0, device="cpu"):
    generator = torch.Generator().manual_seed(seed)
    xs = [torch.randn(*batch, d, generator=generator, dtype=dtype).to(device) for d in dims]
    ys = [torch.randn(*batch, d, generator=generator, dtype=dtype).to(device) for d in dims]
    return xs, ys


def _tables(module):
    return {name: buffer.tolist() for name, buffer in module.named_buffers()}


# ------------------------------------------------------------------------------------ tables


def test_seeded_tables_golden():
    module = CompactSpectralMultiplier([3, 4], 8, seed=0)
    assert _tables(module) == SEEDED_TABLES
    assert module.hash_0.dtype == torch.int64
    assert module.sign_0.dtype == torch.get_default_dtype()


def test_seed_uses_a_private_generator():
    state = torch.get_rng_state()
    first = CompactSpectralMultiplier([5, 6, 7], 32, seed=123)
    assert torch.equal(torch.get_rng_state(), state)
    second = CompactSpectralMultiplier([5, 6, 7], 32, seed=123)
    assert _tables(first) == _tables(second)
    assert _tables(CompactSpectralMultiplier([5, 6, 7], 32, seed=124)) != _tables(first)


def test_seed_none_follows_the_global_generator_in_the_scripts_order():
    # The script's data draws (seed 42, K = 4, d = 32, 10 000 trials), then its first trial's
    # tables: for each mode, randint(0, D, (d,)) then randint(0, 2, (d,)) * 2 - 1.
    torch.manual_seed(42)
    xs = [torch.randn(10_000, 32) for _ in range(4)]
    [torch.lerp(torch.randn_like(x), x, 0.5) for x in xs]
    state = torch.get_rng_state()
    expected = []
    for _ in range(4):
        expected.append(torch.randint(0, 2048, (32,)))
        expected.append(torch.randint(0, 2, (32,)) * 2 - 1)
    torch.set_rng_state(state)
    module = CompactSpectralMultiplier([32] * 4, 2048)
    buffers = [buffer for _, buffer in module.named_buffers()]
    assert len(buffers) == 8
    for buffer, table in zip(buffers, expected, strict=True):
        assert torch.equal(buffer, table.to(buffer.dtype))
    # reset_parameters draws again from the global generator, the same way.
    torch.set_rng_state(state)
    module.reset_parameters()
    for buffer, table in zip(module.buffers(), expected, strict=True):
        assert torch.equal(buffer, table.to(buffer.dtype))


def test_reset_parameters_redraws_the_seeded_tables():
    module = CompactSpectralMultiplier([3, 4], 8, seed=0)
    with torch.no_grad():
        module.hash_1.zero_()
        module.sign_0.fill_(1.0)
    module.reset_parameters()
    assert _tables(module) == SEEDED_TABLES


def test_tables_are_valid_and_cover_the_sketch():
    module = CompactSpectralMultiplier([4000], 16, seed=7)
    assert module.hash_0.min() == 0 and module.hash_0.max() == 15
    assert set(module.sign_0.tolist()) == {-1.0, 1.0}
    # Uniform hashes: every bin gets 4000/16 = 250 ± a few standard deviations (√(250·15/16)).
    counts = torch.bincount(module.hash_0, minlength=16)
    assert int((counts - 250).abs().max()) < 5 * math.sqrt(250 * 15 / 16)


# ----------------------------------------------------------------------- module conventions


def test_attributes_buffers_and_no_parameters():
    module = CompactSpectralMultiplier([3, 4, 5], 16, seed=1)
    assert module.in_features == (3, 4, 5) and module.sketch_dim == 16
    assert module.num_factors == 3 and module.seed == 1
    assert list(module.parameters()) == []
    names = [name for name, _ in module.named_buffers()]
    assert names == ["hash_0", "sign_0", "hash_1", "sign_1", "hash_2", "sign_2"]
    assert [tuple(t.shape) for t in module.hashes] == [(3,), (4,), (5,)]
    assert [tuple(t.shape) for t in module.signs] == [(3,), (4,), (5,)]


def test_int_in_features_means_one_mode():
    module = CompactSpectralMultiplier(6, 4, seed=2)
    assert module.in_features == (6,) and module.num_factors == 1
    xs, ys = _inputs((6,))
    expected = compact_spectral_inner(xs, ys, module.hashes, module.signs, 4)
    torch.testing.assert_close(module(xs, ys), expected, rtol=0, atol=0)


def test_extra_repr():
    assert repr(CompactSpectralMultiplier([3, 4], 8, seed=0)) == (
        "CompactSpectralMultiplier(in_features=(3, 4), sketch_dim=8, seed=0)"
    )
    assert "seed=None" in repr(CompactSpectralMultiplier(5, 2))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_factory_arguments(device, dtype):
    module = CompactSpectralMultiplier([3, 4], 8, seed=0, device=device, dtype=dtype)
    for name, buffer in module.named_buffers():
        assert buffer.device.type == device
        assert buffer.dtype == (torch.int64 if name.startswith("hash") else dtype)
    # Tables are drawn on the CPU, so they do not depend on the device or dtype.
    assert _tables(module) == SEEDED_TABLES


def test_meta_to_empty_reset_parameters():
    state = torch.get_rng_state()
    module = CompactSpectralMultiplier([3, 4], 8, seed=None, device="meta")
    assert torch.equal(torch.get_rng_state(), state)  # nothing drawn for meta tensors
    assert all(buffer.is_meta for buffer in module.buffers())
    seeded = CompactSpectralMultiplier([3, 4], 8, seed=0, device="meta")
    seeded.to_empty(device="cpu")
    seeded.reset_parameters()
    assert _tables(seeded) == SEEDED_TABLES


def test_to_dtype_converts_the_signs_only():
    module = CompactSpectralMultiplier([3, 4], 8, seed=0).to(torch.float64)
    assert module.sign_0.dtype == torch.float64 and module.hash_0.dtype == torch.int64
    assert _tables(module) == SEEDED_TABLES


def test_state_dict_round_trip():
    source = CompactSpectralMultiplier([3, 4, 5], 16, seed=3)
    state = source.state_dict()
    assert list(state) == ["hash_0", "sign_0", "hash_1", "sign_1", "hash_2", "sign_2"]
    target = CompactSpectralMultiplier([3, 4, 5], 16, seed=4)
    assert _tables(target) != _tables(source)
    target.load_state_dict(state, strict=True)
    assert _tables(target) == _tables(source)
    xs, ys = _inputs((3, 4, 5))
    assert torch.equal(target(xs, ys), source(xs, ys))
    # Inside a model, under the model's prefix.
    model = nn.ModuleDict({"csm": CompactSpectralMultiplier([3, 4, 5], 16, seed=5)})
    model.load_state_dict({f"csm.{key}": value for key, value in state.items()})
    assert _tables(model["csm"]) == _tables(source)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("hash_1", torch.tensor([0, 1, 8, 2]), r"hash_1 .* \[0, 8\)"),
        ("hash_0", torch.tensor([0, -1, 2]), "hash_0"),
        ("sign_1", torch.tensor([1.0, 0.0, 1.0, -1.0]), "sign_1"),
    ],
)
def test_loading_invalid_tables_raises(key, value, message):
    module = CompactSpectralMultiplier([3, 4], 8, seed=0)
    state = module.state_dict()
    state[key] = value
    with pytest.raises(ValueError, match=message):
        CompactSpectralMultiplier([3, 4], 8, seed=1).load_state_dict(state)


# --------------------------------------------------------------------------------- estimates


def test_features_forward_and_exact_match_the_functions():
    module = CompactSpectralMultiplier([3, 4, 5], 16, seed=6)
    xs, ys = _inputs((3, 4, 5), batch=(2, 3))
    features = module.features(xs)
    assert features.shape == (2, 3, 16)
    assert torch.equal(features, compact_spectral_features(xs, module.hashes, module.signs, 16))
    estimate = module(xs, ys)
    assert estimate.shape == (2, 3)
    expected = compact_spectral_inner_ref(xs, ys, module.hashes, module.signs, 16)
    torch.testing.assert_close(estimate, expected, rtol=1e-12, atol=1e-12)
    # The estimate is the scaled inner product of the features.
    from_features = (features * module.features(ys)).sum(-1) * 16**2
    torch.testing.assert_close(estimate, from_features, rtol=1e-12, atol=1e-12)
    exact = CompactSpectralMultiplier.exact(xs, ys)
    expected_exact = math.prod((x * y).sum(-1) for x, y in zip(xs, ys, strict=True))
    torch.testing.assert_close(exact, expected_exact, rtol=1e-14, atol=0)
    torch.testing.assert_close(module.exact(xs, ys), exact, rtol=0, atol=0)


def test_leading_dimensions_broadcast():
    module = CompactSpectralMultiplier([3, 4], 8, seed=0)
    xs, ys = _inputs((3, 4), batch=(4, 1))
    ys = [y[:1, 0].expand(1, 5, -1) for y in ys]  # one y per column, broadcast over rows
    estimate = module(xs, ys)
    assert estimate.shape == (4, 5)
    single = module([xs[0][2, 0], xs[1][2, 0]], [ys[0][0, 3], ys[1][0, 3]])
    torch.testing.assert_close(estimate[2, 3], single, rtol=1e-14, atol=0)
    assert module.exact(xs, ys).shape == (4, 5)


def test_gradients_flow_to_both_inputs():
    module = CompactSpectralMultiplier([3, 4], 8, seed=0)
    xs, ys = _inputs((3, 4), batch=(2,))
    xs = [x.requires_grad_() for x in xs]
    ys = [y.requires_grad_() for y in ys]
    assert torch.autograd.gradcheck(lambda a, b, c, d: module([a, b], [c, d]), (*xs, *ys))
    assert torch.autograd.gradcheck(lambda a, b: module.features([a, b]), tuple(xs))


def test_unbiased_over_independent_modules():
    """Mean over 4 000 seeds of the module estimate is within 4 standard errors of Z."""
    dims, count = (4, 5), 4000
    xs, _ = _inputs(dims, batch=(), seed=9)
    ys = [torch.lerp(torch.randn_like(x), x, 0.8) for x in xs]
    estimates = torch.stack(
        [CompactSpectralMultiplier(dims, 32, seed=seed)(xs, ys) for seed in range(count)]
    )
    exact = CompactSpectralMultiplier.exact(xs, ys)
    assert abs(estimates.mean() - exact) <= 4 * estimates.std() / math.sqrt(count)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_dtypes_and_devices(dtype, device):
    module = CompactSpectralMultiplier([6, 5], 32, seed=8, device=device, dtype=dtype)
    xs, ys = _inputs((6, 5), batch=(7,))
    rounded_x = [x.to(dtype).double() for x in xs]
    rounded_y = [y.to(dtype).double() for y in ys]
    reference = CompactSpectralMultiplier([6, 5], 32, seed=8, dtype=torch.float64)
    expected = reference(rounded_x, rounded_y)
    inputs_x = [x.to(device=device, dtype=dtype).requires_grad_() for x in xs]
    inputs_y = [y.to(device=device, dtype=dtype) for y in ys]
    estimate = module(inputs_x, inputs_y)
    assert estimate.dtype == dtype and estimate.device.type == device
    assert module.features(inputs_x).dtype == dtype
    tolerance = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2}[dtype]
    error = (estimate.detach().double().cpu() - expected).norm() / expected.norm()
    assert error < tolerance
    estimate.sum().backward()
    assert all(x.grad.dtype == dtype for x in inputs_x)


def test_bfloat16_close_to_float32():
    module = CompactSpectralMultiplier([16, 16], 256, seed=10)
    xs, ys = _inputs((16, 16), batch=(8,), dtype=torch.float32)
    ys = [torch.lerp(y, x, 0.9) for x, y in zip(xs, ys, strict=True)]
    full = module(xs, ys)
    low = module([x.bfloat16() for x in xs], [y.bfloat16() for y in ys])
    assert low.dtype == torch.bfloat16
    assert ((low.float() - full).norm() / full.norm()).item() < 2e-2


def test_inputs_of_another_dtype_than_the_signs():
    module = CompactSpectralMultiplier([3, 4], 8, seed=0, dtype=torch.float64)
    xs, ys = _inputs((3, 4), dtype=torch.float32)
    estimate = module(xs, ys)
    assert estimate.dtype == torch.float32
    expected = compact_spectral_inner(xs, ys, module.hashes, module.signs, 8)
    assert torch.equal(estimate, expected)


def test_compiles_with_fullgraph():
    torch._dynamo.reset()
    module = CompactSpectralMultiplier([3, 4, 5], 16, seed=11)
    xs, ys = _inputs((3, 4, 5), batch=(4,))
    compiled = torch.compile(module, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(xs, ys), module(xs, ys), rtol=1e-12, atol=1e-12)
    features = torch.compile(module.features, backend="eager", fullgraph=True)
    torch.testing.assert_close(features(xs), module.features(xs), rtol=1e-12, atol=1e-12)


def test_exported_from_dyna():
    assert dyna.CompactSpectralMultiplier is CompactSpectralMultiplier
    assert dyna.lib.CompactSpectralMultiplier is CompactSpectralMultiplier


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"in_features": 0}, ValueError, r"in_features\[0\] must be a positive int, got 0"),
        ({"in_features": []}, ValueError, "in_features must hold at least one"),
        ({"in_features": [3, 0]}, ValueError, r"in_features\[1\]"),
        ({"in_features": [3, 2.0]}, TypeError, r"in_features\[1\] must be a positive int"),
        ({"in_features": [3, True]}, TypeError, r"in_features\[1\]"),
        ({"in_features": "3"}, TypeError, "in_features must be"),
        ({"in_features": True}, TypeError, "in_features must be"),
        ({"in_features": 3.0}, TypeError, "in_features must be"),
        ({"sketch_dim": 0}, ValueError, "sketch_dim must be a positive int, got 0"),
        ({"sketch_dim": -4}, ValueError, "sketch_dim"),
        ({"sketch_dim": 8.0}, TypeError, "sketch_dim"),
        ({"sketch_dim": True}, TypeError, "sketch_dim"),
        ({"seed": 1.5}, TypeError, "seed must be None or an int"),
        ({"seed": True}, TypeError, "seed"),
        ({"seed": "0"}, TypeError, "seed"),
        ({"seed": 2**64}, ValueError, "seed must lie"),
        ({"dtype": torch.int64}, TypeError, "dtype must be a floating"),
        ({"dtype": "float32"}, TypeError, "dtype"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, message):
    arguments = {"in_features": [3, 4], "sketch_dim": 8, "seed": 0} | kwargs
    with pytest.raises(error, match=message):
        CompactSpectralMultiplier(**arguments)


def _bad_inputs():
    xs, ys = _inputs((3, 4))
    return {
        "xs not a sequence": (lambda m: m.features(xs[0]), TypeError, "xs must be a list"),
        "xs one mode": (lambda m: m.features(xs[:1]), ValueError, "xs must hold 2 tensors"),
        "xs three modes": (lambda m: m.features([*xs, xs[0]]), ValueError, "xs must hold 2"),
        "xs[1] size": (
            lambda m: m.features([xs[0], xs[0]]),
            ValueError,
            r"xs\[1\] must have last dimension d_1 = 4",
        ),
        "xs[0] integer": (
            lambda m: m.features([xs[0].long(), xs[1]]),
            TypeError,
            r"xs\[0\] must have a floating",
        ),
        "xs[1] not a tensor": (lambda m: m.features([xs[0], [1.0] * 4]), TypeError, r"xs\[1\]"),
        "xs dtype mix": (
            lambda m: m.features([xs[0], xs[1].float()]),
            TypeError,
            "xs must share one dtype",
        ),
        "xs[0] 0-d": (lambda m: m.features([xs[0][0, 0], xs[1]]), ValueError, r"xs\[0\]"),
        "ys count": (lambda m: m(xs, ys[:1]), ValueError, "ys must hold 2 tensors"),
        "ys[0] size": (lambda m: m(xs, [ys[1], ys[1]]), ValueError, r"ys\[0\] must have last"),
        "ys dtype": (lambda m: m(xs, [y.float() for y in ys]), TypeError, "ys must have the dtype"),
        "ys batch": (
            lambda m: m(xs, [y[:2].unsqueeze(0) for y in ys]),
            ValueError,
            "leading dimensions of xs and ys must broadcast",
        ),
        "xs batch": (
            lambda m: m.features([xs[0], xs[1][:3]]),
            ValueError,
            "leading dimensions of xs must broadcast",
        ),
        "exact count": (lambda m: m.exact(xs, ys[:1]), ValueError, "ys must hold 2"),
        "exact xs": (lambda m: m.exact(xs[0], ys), TypeError, "xs must be a list"),
    }


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_bad_inputs(case):
    call, error, message = _bad_inputs()[case]
    module = CompactSpectralMultiplier([3, 4], 8, seed=0, dtype=torch.float64)
    with pytest.raises(error, match=message):
        call(module)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
def test_inputs_on_another_device_are_rejected():
    module = CompactSpectralMultiplier([3, 4], 8, seed=0, device="cuda")
    xs, ys = _inputs((3, 4))
    with pytest.raises(ValueError, match=r"xs\[0\] must be on the module's device"):
        module(xs, ys)
