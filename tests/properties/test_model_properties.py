"""Property tests for the ready-made classifiers of ``dyna.models``.

Random options, sizes and dtypes give finite logits of shape (B, n_output) in the model's dtype;
each sample's logits depend on that sample only; a state_dict copied into a model built from
another seed reproduces the logits; bad input fails with ValueError or TypeError.
"""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import dyna.models

COVERED = {
    "DynamicConvClassifier",
    "RecurrentClassifier",
    "StaticConvClassifier",
    "matched_static_channels",
    "static_parameter_count",
}

FLOAT_DTYPES = [torch.float32, torch.float64, torch.bfloat16]

dtypes = st.sampled_from(FLOAT_DTYPES)
seeds = st.integers(0, 2**31 - 1)


def _rand(seed, shape, dtype):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)


def _copy_into_fresh(factory, model, seed):
    torch.manual_seed(seed + 1)
    copy = factory()
    copy.load_state_dict(model.state_dict())
    return copy


# ------------------------------------------------------------------------ RecurrentClassifier


@given(
    cell=st.sampled_from(["rnn", "gru", "lstm", "GRU", "Lstm"]),
    n_input=st.integers(1, 4),
    n_hidden=st.integers(1, 8),
    n_output=st.integers(1, 5),
    num_layers=st.integers(1, 3),
    batch=st.integers(1, 4),
    steps=st.integers(1, 6),
    dtype=dtypes,
    seed=seeds,
)
def test_recurrent_classifier_gives_finite_logits_per_sample(
    cell, n_input, n_hidden, n_output, num_layers, batch, steps, dtype, seed
):
    torch.manual_seed(seed)

    def factory():
        return dyna.models.RecurrentClassifier(
            n_input, n_hidden, n_output, cell=cell, num_layers=num_layers, dtype=dtype
        )

    model = factory()
    assert model.cell == cell.lower() and f"num_layers={num_layers}" in repr(model)
    x = _rand(seed, (batch, steps, n_input), dtype)
    logits = model(x)
    assert logits.shape == (batch, n_output) and logits.dtype == dtype
    assert torch.isfinite(logits).all()
    if dtype == torch.float64:
        # No mixing across the batch: the last sample alone gives the same logits.
        torch.testing.assert_close(model(x[-1:]), logits[-1:], rtol=1e-10, atol=1e-12)
    # Non-contiguous input (a transposed (T, B, n) tensor) gives exactly the same logits.
    strided = x.transpose(0, 1).contiguous().transpose(0, 1)
    assert torch.equal(model(strided), logits)
    torch.testing.assert_close(_copy_into_fresh(factory, model, seed)(x), logits)


@given(
    n_input=st.integers(1, 4),
    bad=st.sampled_from(["width", "empty_sequence", "rank", "integer", "not_a_tensor"]),
)
def test_recurrent_classifier_rejects_bad_input(n_input, bad):
    model = dyna.models.RecurrentClassifier(n_input, 3, 2, cell="gru")
    inputs = {
        "width": torch.zeros(2, 3, n_input + 1),
        "empty_sequence": torch.zeros(2, 0, n_input),
        "rank": torch.zeros(3, n_input),
        "integer": torch.zeros(2, 3, n_input, dtype=torch.int64),
        "not_a_tensor": [[[0.0] * n_input]],
    }
    # nn.GRU itself raises RuntimeError for the first two; the model names its input instead.
    with pytest.raises((ValueError, TypeError), match="input"):
        model(inputs[bad])


# ---------------------------------------------------------------------- DynamicConvClassifier


@given(
    in_channels=st.integers(1, 3),
    n_output=st.integers(1, 5),
    channels=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    context_length=st.integers(1, 6),
    kind=st.sampled_from(["mobius", "delta", "Delta"]),
    pool=st.booleans(),
    batch=st.integers(1, 3),
    size=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    dtype=dtypes,
    seed=seeds,
)
def test_dynamic_conv_classifier_gives_finite_logits_per_sample(
    in_channels, n_output, channels, context_length, kind, pool, batch, size, dtype, seed
):
    torch.manual_seed(seed)
    if pool:
        # The 2x2 max-pool needs at least two pixels each way.
        size = (max(size[0], 2), max(size[1], 2))

    def factory():
        return dyna.models.DynamicConvClassifier(
            in_channels, n_output, channels, context_length, kind=kind, pool=pool, dtype=dtype
        )

    model = factory()
    assert model.kind == kind.lower() and f"pool={pool}" in repr(model)
    # The Delta composer documents its temperature ``extras`` as float32 when built from
    # ``dtype_weights``, which is how the classifier builds it.
    assert all(
        p.dtype == dtype for name, p in model.named_parameters() if not name.endswith("extras")
    )
    x = _rand(seed, (batch, in_channels, *size), dtype)
    logits = model(x)
    assert logits.shape == (batch, n_output) and logits.dtype == dtype
    assert torch.isfinite(logits).all()
    # The Delta composer adds noise to its filters in training mode: compare in eval mode.
    model.eval()
    logits = model(x)
    assert logits.shape == (batch, n_output) and torch.isfinite(logits).all()
    if dtype == torch.float64:
        # Kernels are generated per image: the last image alone gives the same logits.
        torch.testing.assert_close(model(x[-1:]), logits[-1:], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(_copy_into_fresh(factory, model, seed).eval()(x), logits)


def _conv_classifier_bad_calls(kind):
    def forward(input):
        if kind == "static":
            return dyna.models.StaticConvClassifier(channels=(2, 3))(input)
        return dyna.models.DynamicConvClassifier(channels=(2, 3), context_length=2, kind=kind)(
            input
        )

    model = (
        dyna.models.StaticConvClassifier if kind == "static" else dyna.models.DynamicConvClassifier
    )
    return {
        "channels": lambda: forward(torch.zeros(2, 3, 8, 8)),
        "dtype": lambda: forward(torch.zeros(2, 1, 8, 8, dtype=torch.float64)),
        "too_small_to_pool": lambda: forward(torch.zeros(2, 1, 1, 1)),
        "not_a_tensor": lambda: forward([[[[0.0]]]]),
        "integer_dtype": lambda: model(dtype=torch.int64),
        "bool_dtype": lambda: model(dtype=torch.bool),
    }


@pytest.mark.parametrize("kind", ["mobius", "delta", "static"])
@pytest.mark.parametrize("bad", sorted(_conv_classifier_bad_calls("static")))
def test_conv_classifiers_reject_bad_input(kind, bad):
    # Each of these used to fail deep in torch (RuntimeError or AttributeError).
    with pytest.raises((ValueError, TypeError), match=r"input|dtype"):
        _conv_classifier_bad_calls(kind)[bad]()


# ----------------------------------------------------------------------- StaticConvClassifier


@given(
    in_channels=st.integers(1, 3),
    n_output=st.integers(1, 5),
    channels=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    pool=st.booleans(),
    batch=st.integers(1, 3),
    size=st.tuples(st.integers(2, 9), st.integers(2, 9)),
    dtype=dtypes,
    seed=seeds,
)
def test_static_conv_classifier_gives_finite_logits_and_counts_its_parameters(
    in_channels, n_output, channels, pool, batch, size, dtype, seed
):
    torch.manual_seed(seed)

    def factory():
        return dyna.models.StaticConvClassifier(
            in_channels, n_output, channels, pool=pool, dtype=dtype
        )

    model = factory()
    assert f"channels={channels}" in repr(model)
    # The closed form counts exactly the trainable parameters.
    assert dyna.models.static_parameter_count(in_channels, n_output, channels) == sum(
        p.numel() for p in model.parameters()
    )
    x = _rand(seed, (batch, in_channels, *size), dtype)
    logits = model(x)
    assert logits.shape == (batch, n_output) and logits.dtype == dtype
    assert torch.isfinite(logits).all()
    if dtype == torch.float64:
        torch.testing.assert_close(model(x[-1:]), logits[-1:], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(_copy_into_fresh(factory, model, seed)(x), logits)


@given(
    target=st.integers(1, 200_000),
    in_channels=st.integers(1, 3),
    n_output=st.integers(1, 10),
    channels=st.tuples(st.integers(1, 8), st.integers(1, 16)),
)
def test_matched_static_channels_is_the_closest_width(target, in_channels, n_output, channels):
    first, second = dyna.models.matched_static_channels(target, in_channels, n_output, channels)
    ratio = channels[1] / channels[0]
    assert first >= 1 and second == max(1, round(first * ratio))

    def miss(width):
        pair = (width, max(1, round(width * ratio)))
        return abs(dyna.models.static_parameter_count(in_channels, n_output, pair) - target)

    # No other width (the neighbours, and the smallest) comes closer to the target.
    for other in {1, first - 1, first + 1} - {0}:
        assert miss(first) <= miss(other)
