"""Property tests for the layers and cores of ``dyna.lib`` and ``dyna.module``.

Hyper-parameters and shapes are drawn with hypothesis; the layers are built small so that each
example costs milliseconds.
"""

import math

import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st

import dyna
from dyna.lib import CNUAttention

FLOAT_DTYPES = [torch.float32, torch.float64, torch.bfloat16]

COVERED = {
    "CNUAttention",
    "CNUs",
    "CompactSpectralMultiplier",
    "Conv2dCNU",
    "DynamicConv2DDelta",
    "DynamicConv2DMobius",
    "HORNSeqLayer",
    "HORNSeqNetwork",
    "HORNState",
    "HORNStep",
    "LinearCNU",
    "SignalStabilizationCompressor",
    "SignalStabilizationCompressorMode",
    "TensorComposerDelta",
    "TensorComposerMobius",
}

dtypes = st.sampled_from(FLOAT_DTYPES)
seeds = st.integers(0, 2**31 - 1)
scales = st.floats(-6.0, 6.0).map(lambda exponent: 10.0**exponent)


def _randn(seed, shape, dtype=torch.float64, scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * scale).to(dtype)


# ------------------------------------------------------------------------------------ SSC


@given(
    lead=st.lists(st.integers(1, 4), max_size=3).map(tuple),
    features=st.integers(1, 8),
    mode=st.sampled_from(["gating", "dampening", *dyna.SignalStabilizationCompressorMode]),
    trainable=st.booleans(),
    bgn=st.booleans(),
    dtype=dtypes,
    seed=seeds,
    scale=scales,
)
def test_compressor_keeps_shape_dtype_and_stays_finite(
    lead, features, mode, trainable, bgn, dtype, seed, scale
):
    ssc = dyna.SignalStabilizationCompressor(
        bgn_input=bgn, bgn_mid=bgn, bgn_output=bgn, mode=mode, trainable=trainable, dtype=dtype
    )
    x = _randn(seed, (*lead, features), dtype, scale).requires_grad_()
    out = ssc(x)
    assert out.shape == x.shape and out.dtype == dtype
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


@given(
    lead=st.lists(st.integers(1, 4), max_size=2).map(tuple),
    features=st.integers(1, 8),
    dampening=st.booleans(),
    leak=st.floats(0.0, 0.1),
    seed=seeds,
    scale=scales,
)
def test_compressor_matches_its_equation_in_float32(lead, features, dampening, leak, seed, scale):
    mode = "dampening" if dampening else "gating"
    ssc = dyna.SignalStabilizationCompressor(mode=mode, leak=leak, eps=1e-12)
    x = _randn(seed, (*lead, features), torch.float32, scale)
    x64 = x.double()
    leak_term = x64 * torch.tensor(leak, dtype=torch.float32).double()
    gate = torch.sigmoid(x64) + (leak_term.abs() if dampening else leak_term)
    magnitude = dyna.siglog(x).double()  # its own float32 rounding, tested on its own
    z = gate * (magnitude + leak_term)
    expected = z / torch.sqrt(z.abs().mean(-1, keepdim=True) + 1e-12)
    torch.testing.assert_close(ssc(x).double(), expected, rtol=1e-4, atol=1e-5)


def test_compressor_mode_enum_round_trips_through_its_value():
    for mode in dyna.SignalStabilizationCompressorMode:
        assert dyna.SignalStabilizationCompressorMode(mode.value) is mode
        assert dyna.SignalStabilizationCompressor(mode=mode.value).mode is mode


# ---------------------------------------------------------------------------------- CSM


@given(
    dims=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    sketch_dim=st.integers(1, 16),
    lead=st.lists(st.integers(1, 3), max_size=2).map(tuple),
    table_seed=st.integers(0, 1000),
    seed=seeds,
    factor=st.floats(-3.0, 3.0),
    dtype=dtypes,
)
def test_csm_is_linear_in_each_input_and_matches_the_functional_form(
    dims, sketch_dim, lead, table_seed, seed, factor, dtype
):
    csm = dyna.CompactSpectralMultiplier(dims, sketch_dim, seed=table_seed)
    generator = torch.Generator().manual_seed(seed)
    xs = [torch.randn(*lead, d, generator=generator, dtype=torch.float64) for d in dims]
    ys = [torch.randn(*lead, d, generator=generator, dtype=torch.float64) for d in dims]
    for hashes, signs, d in zip(csm.hashes, csm.signs, dims, strict=True):
        assert hashes.shape == (d,) and ((hashes >= 0) & (hashes < sketch_dim)).all()
        assert ((signs == 1) | (signs == -1)).all()
    estimate = csm(xs, ys)
    assert estimate.shape == lead and torch.isfinite(estimate).all()
    assert csm.features(xs).shape == (*lead, sketch_dim)
    torch.testing.assert_close(
        estimate, dyna.compact_spectral_inner(xs, ys, csm.hashes, csm.signs, sketch_dim)
    )
    exact = math.prod((x * y).sum(-1) for x, y in zip(xs, ys, strict=True))
    torch.testing.assert_close(csm.exact(xs, ys), exact)
    mode = seed % len(dims)
    other = torch.randn(*lead, dims[mode], generator=generator, dtype=torch.float64)
    mixed, single = list(xs), list(xs)
    mixed[mode] = xs[mode] + factor * other
    single[mode] = other
    torch.testing.assert_close(csm(mixed, ys), estimate + factor * csm(single, ys))
    # low precision: same shape, the inputs' dtype, finite
    low = csm([x.to(dtype) for x in xs], [y.to(dtype) for y in ys])
    assert low.dtype == dtype and low.shape == lead and torch.isfinite(low).all()


# ---------------------------------------------------------------------------- composers


@given(
    height=st.integers(1, 6),
    width=st.integers(1, 6),
    context_length=st.integers(1, 6),
    batch=st.integers(1, 3),
    rank=st.integers(1, 4),
    use_bias=st.booleans(),
    train=st.booleans(),
    dtype=dtypes,
    seed=seeds,
    scale=scales,
)
def test_delta_composer_output_shape_and_finiteness(
    height, width, context_length, batch, rank, use_bias, train, dtype, seed, scale
):
    assume(height * width >= 2)  # documented: the std over one element is undefined
    torch.manual_seed(seed)
    composer = dyna.TensorComposerDelta(
        [height, width], context_length, context_use_bias=use_bias, rank=rank, dtype=dtype
    ).train(train)
    context = _randn(seed, (batch, context_length), dtype, scale)
    out = composer(context)
    assert out.shape == (batch, height, width) and out.dtype == dtype
    assert torch.isfinite(out).all()
    if not train:  # eval mode is deterministic and treats the samples independently
        # bfloat16 may round a batch of one differently by an ulp
        tolerance = 2e-2 if dtype == torch.bfloat16 else 1e-3
        torch.testing.assert_close(composer(context[:1]), out[:1], rtol=tolerance, atol=tolerance)


@given(
    height=st.integers(1, 6),
    width=st.integers(1, 6),
    context_length=st.integers(1, 6),
    batch=st.integers(1, 3),
    n_subspaces=st.integers(1, 4),
    rank_subspace=st.integers(1, 4),
    rank_transformations=st.integers(1, 4),
    use_bias=st.booleans(),
    dtype=dtypes,
    seed=seeds,
    scale=scales,
)
def test_mobius_composer_output_shape_and_finiteness(
    height,
    width,
    context_length,
    batch,
    n_subspaces,
    rank_subspace,
    rank_transformations,
    use_bias,
    dtype,
    seed,
    scale,
):
    assume(height * width >= 2)  # documented: the std over one element is undefined
    torch.manual_seed(seed)
    composer = dyna.TensorComposerMobius(
        [height, width],
        context_length,
        context_use_bias=use_bias,
        n_subspaces=n_subspaces,
        rank_subspace=rank_subspace,
        rank_transformations=rank_transformations,
        dtype=dtype,
    )
    context = _randn(seed, (batch, context_length), dtype, scale)
    out = composer(context)
    assert out.shape == (batch, height, width) and out.dtype == dtype
    assert torch.isfinite(out).all()


@given(
    mobius=st.booleans(),
    height=st.integers(1, 5),
    width=st.integers(1, 5),
    context_length=st.integers(1, 5),
    batch=st.integers(1, 3),
    rank=st.integers(1, 3),
    train=st.booleans(),
    dtype=dtypes,
    seed=seeds,
    scale=st.floats(-3.0, 3.0).map(lambda exponent: 10.0**exponent),
)
def test_composer_gradients_are_finite_and_shaped(
    mobius, height, width, context_length, batch, rank, train, dtype, seed, scale
):
    # Ordinary context magnitudes (1e-3 to 1e3): the context and every parameter get a finite
    # gradient of its own shape and dtype, in training and in eval.
    assume(height * width >= 2)
    torch.manual_seed(seed)
    if mobius:
        composer = dyna.TensorComposerMobius(
            [height, width], context_length, n_subspaces=rank, rank_subspace=2, dtype=dtype
        )
    else:
        composer = dyna.TensorComposerDelta([height, width], context_length, rank=rank, dtype=dtype)
    composer.train(train)
    context = _randn(seed, (batch, context_length), dtype, scale).requires_grad_()
    weights = _randn(seed + 1, (batch, height, width), dtype)
    (composer(context) * weights).sum().backward()
    assert context.grad is not None and context.grad.dtype == dtype
    assert torch.isfinite(context.grad).all()
    for name, parameter in composer.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.shape == parameter.shape and parameter.grad.dtype == parameter.dtype
        assert torch.isfinite(parameter.grad).all(), name


# ---------------------------------------------------------------------- dynamic convolutions


@st.composite
def conv_geometries(draw):
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.lists(st.integers(0, 2), min_size=4, max_size=4))
    transpose = draw(st.booleans())
    output_padding = None
    if transpose:
        output_padding = tuple(
            draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation, strict=True)
        )
    height = draw(st.integers(1, 6)) + (kernel[0] - 1) * dilation[0]
    width = draw(st.integers(1, 6)) + (kernel[1] - 1) * dilation[1]
    return kernel, stride, dilation, padding, transpose, output_padding, height, width


def _expected_conv_shape(x, out_channels, kernel, stride, dilation, padding, transpose, extra):
    padded = F.pad(x, padding)
    weight_shape = (x.shape[1], out_channels) if transpose else (out_channels, x.shape[1])
    weight = torch.zeros(*weight_shape, *kernel, dtype=x.dtype)
    if transpose:
        out = F.conv_transpose2d(padded, weight, None, stride, 0, extra, 1, dilation)
    else:
        out = F.conv2d(padded, weight, None, stride, 0, dilation)
    return out.shape


def _small_dynamic_conv(geometry, mobius, in_channels, out_channels, dtype):
    """A dynamic convolution of the drawn geometry with small composers (context length 4)."""
    kernel, stride, dilation, padding, transpose, output_padding, _, _ = geometry
    assume(in_channels * out_channels * kernel[0] * kernel[1] >= 2)
    common = dict(
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        transpose=transpose,
        output_padding=output_padding,
        dtype=dtype,
    )
    if mobius:
        return dyna.DynamicConv2DMobius(
            in_channels, out_channels, 4, n_subspaces=2, rank_subspace=2, **common
        )
    return dyna.DynamicConv2DDelta(in_channels, out_channels, 4, rank=2, **common)


@given(
    geometry=conv_geometries(),
    mobius=st.booleans(),
    in_channels=st.integers(1, 3),
    out_channels=st.integers(1, 3),
    batch=st.integers(1, 3),
    shared_context=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=seeds,
)
def test_dynamic_conv_output_shape_equals_the_static_convolution(
    geometry, mobius, in_channels, out_channels, batch, shared_context, dtype, seed
):
    kernel, stride, dilation, padding, transpose, output_padding, height, width = geometry
    torch.manual_seed(seed)
    conv = _small_dynamic_conv(geometry, mobius, in_channels, out_channels, dtype)
    if not mobius:
        conv.eval()
    x = _randn(seed, (batch, in_channels, height, width), dtype)
    context = _randn(seed + 1, (1 if shared_context else batch, 4), dtype)
    out = conv(x, context)
    expected = _expected_conv_shape(
        x, out_channels, kernel, stride, dilation, padding, transpose, output_padding
    )
    assert out.shape == expected and out.dtype == dtype
    assert torch.isfinite(out).all()


@given(
    geometry=conv_geometries(),
    mobius=st.booleans(),
    in_channels=st.integers(1, 3),
    out_channels=st.integers(1, 3),
    batch=st.integers(1, 3),
    shared_context=st.booleans(),
    train=st.booleans(),
    dtype=dtypes,
    seed=seeds,
)
def test_dynamic_conv_gradients_are_finite_and_shaped(
    geometry, mobius, in_channels, out_channels, batch, shared_context, train, dtype, seed
):
    height, width = geometry[-2:]
    torch.manual_seed(seed)
    conv = _small_dynamic_conv(geometry, mobius, in_channels, out_channels, dtype).train(train)
    x = _randn(seed, (batch, in_channels, height, width), dtype).requires_grad_()
    context = _randn(seed + 1, (1 if shared_context else batch, 4), dtype).requires_grad_()
    out = conv(x, context)
    (out * _randn(seed + 2, out.shape, dtype)).sum().backward()
    for name, tensor in [("x", x), ("context", context), *conv.named_parameters()]:
        assert tensor.grad is not None, name
        assert tensor.grad.shape == tensor.shape and tensor.grad.dtype == tensor.dtype, name
        assert torch.isfinite(tensor.grad).all(), name


# ----------------------------------------------------------------------------------- CNUs


@st.composite
def cnu_banks(draw):
    q, d, m, u = (draw(st.integers(1, 4)) for _ in range(4))
    m = max(m, 1)
    delta = draw(st.integers(1, m))
    psi_fn = draw(st.sampled_from(["identity", "sign"]))
    upd_k = draw(st.sampled_from([None, "ad_hoc_WTA", "grad_WTA"]))
    # winner-take-all memories need a key update rule
    upd_m = draw(st.sampled_from([None, "WTA"])) if upd_k else None
    return dict(q=q, d=d, m=m, u=u, delta=delta, psi_fn=psi_fn, upd_m=upd_m, upd_k=upd_k)


@given(bank=cnu_banks(), batch=st.integers(1, 5), dtype=dtypes, seed=seeds, scale=scales)
def test_cnu_attention_is_a_softmax_over_distinct_top_delta_keys(bank, batch, dtype, seed, scale):
    torch.manual_seed(seed)
    cnu = dyna.CNUs(**bank, dtype=dtype).eval()
    x = _randn(seed, (batch, bank["d"]), dtype, scale)
    attention = cnu.attention(x)
    assert isinstance(attention, CNUAttention)
    shape = (batch, bank["q"], bank["delta"])
    assert attention.weights.shape == attention.indices.shape == shape
    assert attention.responses.shape == shape and attention.indices.dtype == torch.int64
    tolerance = 1e-2 if dtype == torch.bfloat16 else 1e-5
    sums = attention.weights.double().sum(-1)
    torch.testing.assert_close(sums, torch.ones_like(sums), rtol=tolerance, atol=tolerance)
    assert (attention.weights >= 0).all()
    assert ((attention.indices >= 0) & (attention.indices < bank["m"])).all()
    distinct = attention.indices.sort(-1).values.diff(dim=-1)
    assert (distinct > 0).all()
    # cosine similarities, the winner first
    assert (attention.responses.abs() <= 1 + tolerance).all()
    assert (attention.responses[..., :1] >= attention.responses - tolerance).all()
    # the blend lies inside the convex hull of the selected memories
    blended = cnu.blend(attention).detach()
    assert blended.shape == (batch, bank["q"], bank["u"])
    selected = cnu.M.detach()[torch.arange(bank["q"]).view(1, -1, 1), attention.indices]
    slack = 1e-2 if dtype == torch.bfloat16 else 1e-5
    assert (blended <= selected.amax(2) + slack).all()
    assert (blended >= selected.amin(2) - slack).all()
    out = cnu(x)
    assert out.shape == (batch, bank["q"], bank["u"]) and torch.isfinite(out).all()


@given(bank=cnu_banks(), batch=st.integers(1, 5), seed=seeds)
def test_cnu_training_steps_keep_keys_unit_norm(bank, batch, seed):
    torch.manual_seed(seed)
    cnu = dyna.CNUs(**bank, dtype=torch.float64).train()
    for step in range(3):
        out = cnu(_randn(seed + step, (batch, bank["d"])))
        assert out.shape == (batch, bank["q"], bank["u"]) and torch.isfinite(out).all()
    norms = cnu.K.detach().norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


@given(
    in_features=st.integers(1, 5),
    out_features=st.integers(1, 5),
    key_mem_units=st.integers(1, 4),
    bias=st.booleans(),
    shared_keys=st.booleans(),
    unbatched=st.booleans(),
    batch=st.integers(1, 4),
    dtype=dtypes,
    seed=seeds,
)
def test_linear_cnu_output_shape(
    in_features, out_features, key_mem_units, bias, shared_keys, unbatched, batch, dtype, seed
):
    torch.manual_seed(seed)
    layer = dyna.LinearCNU(
        in_features,
        out_features,
        bias=bias,
        shared_keys=shared_keys,
        key_mem_units=key_mem_units,
        delta=min(2, key_mem_units),
        dtype=dtype,
    ).eval()
    shape = (in_features,) if unbatched else (batch, in_features)
    out = layer(_randn(seed, shape, dtype))
    assert out.shape == (*shape[:-1], out_features) and out.dtype == dtype
    assert torch.isfinite(out).all()


@given(
    geometry=st.tuples(
        st.integers(1, 3),  # kernel
        st.integers(1, 2),  # stride
        st.integers(0, 2),  # padding
        st.integers(1, 2),  # dilation
    ),
    channels=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 2)),
    size=st.integers(0, 4),
    unbatched=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=seeds,
)
def test_conv2d_cnu_output_shape_equals_nn_conv2d(geometry, channels, size, unbatched, dtype, seed):
    kernel, stride, padding, dilation = geometry
    groups, in_per_group, out_per_group = channels
    in_channels, out_channels = groups * in_per_group, groups * out_per_group
    side = size + (kernel - 1) * dilation + 1
    torch.manual_seed(seed)
    layer = dyna.Conv2dCNU(
        in_channels,
        out_channels,
        kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        key_mem_units=2,
        delta=2,
        dtype=dtype,
    ).eval()
    reference = torch.nn.Conv2d(
        in_channels, out_channels, kernel, stride, padding, dilation, groups, dtype=dtype
    )
    shape = (in_channels, side, side) if unbatched else (2, in_channels, side, side)
    x = _randn(seed, shape, dtype)
    out = layer(x)
    assert out.shape == reference(x).shape and out.dtype == dtype
    assert torch.isfinite(out).all()


# ----------------------------------------------------------------------------------- HORN


@given(
    n_units=st.integers(1, 5),
    lead=st.lists(st.integers(1, 3), max_size=2).map(tuple),
    dtype=dtypes,
    seed=seeds,
    gamma=st.floats(0.0, 0.2),
)
def test_horn_step_module_equals_the_functional_step(n_units, lead, dtype, seed, gamma):
    step = dyna.HORNStep(n_units, gamma=gamma, dtype=dtype)
    drive, x, y = (_randn(seed + i, (*lead, n_units), dtype) for i in range(3))
    x_new, y_new = step(drive, (x, y))
    assert x_new.shape == y_new.shape == drive.shape and x_new.dtype == dtype
    compute = torch.float32 if dtype == torch.bfloat16 else dtype
    expected = dyna.horn_step(
        drive.to(compute),
        x.to(compute),
        y.to(compute),
        step.alpha.to(compute),
        step.omega.to(compute),
        step.gamma.to(compute),
        step.v.to(compute),
        step.dt,
    )
    torch.testing.assert_close(x_new, expected[0].to(dtype))
    torch.testing.assert_close(y_new, expected[1].to(dtype))


@st.composite
def horn_layers(draw):
    n_input, n_hidden = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    use_delay = draw(st.booleans())
    delay = None
    if use_delay:
        delay = draw(
            st.lists(
                st.lists(st.integers(0, 3), min_size=n_hidden, max_size=n_hidden),
                min_size=n_hidden,
                max_size=n_hidden,
            )
        )
    options = dict(
        bias=draw(st.booleans()) and not use_delay,
        paper=draw(st.booleans()),
        gamma=draw(st.floats(0.0, 0.2)),
        dt=draw(st.floats(0.1, 1.0)),
    )
    return n_input, n_hidden, delay, options


@given(
    layer_args=horn_layers(),
    steps=st.integers(1, 12),
    batch=st.integers(1, 3),
    dtype=dtypes,
    seed=seeds,
)
def test_horn_layer_shapes_batch_first_unbatched_and_chunked_runs_agree(
    layer_args, steps, batch, dtype, seed
):
    n_input, n_hidden, delay, options = layer_args
    torch.manual_seed(seed)
    layer = dyna.HORNSeqLayer(n_input, n_hidden, delay=delay, dtype=dtype, **options)
    sequence = _randn(seed, (steps, batch, n_input), dtype)
    out, y_seq, state = layer(sequence, return_velocity=True)
    assert isinstance(state, dyna.HORNState)
    assert out.shape == y_seq.shape == (steps, batch, n_hidden) and out.dtype == dtype
    assert state.x.shape == state.y.shape == (batch, n_hidden)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(state.x, out[-1])
    torch.testing.assert_close(state.y, y_seq[-1])
    layer.batch_first = True
    out_bf, _ = layer(sequence.transpose(0, 1))
    torch.testing.assert_close(out_bf, out.transpose(0, 1))
    layer.batch_first = False
    out_single, _ = layer(sequence[:, 0])
    assert out_single.shape == (steps, n_hidden)
    torch.testing.assert_close(out_single, out[:, 0])
    # carrying the state across two calls is the same as one call over the whole sequence
    # (a bfloat16 layer rounds the carried state to bfloat16 between the calls)
    split = steps // 2
    first, middle = layer(sequence[:split])
    second, _ = layer(sequence[split:], middle)
    tolerance = {"rtol": 3e-2, "atol": 1e-3} if dtype == torch.bfloat16 else {}
    torch.testing.assert_close(torch.cat([first, second]), out, **tolerance)


@given(
    n_input=st.integers(1, 3),
    hidden=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    n_output=st.integers(1, 4),
    readout=st.sampled_from(["last", "mean"]),
    steps=st.integers(1, 10),
    batch=st.integers(1, 3),
    dtype=dtypes,
    seed=seeds,
)
def test_horn_network_logits_shape(n_input, hidden, n_output, readout, steps, batch, dtype, seed):
    torch.manual_seed(seed)
    net = dyna.HORNSeqNetwork(n_input, hidden, n_output, readout=readout, dtype=dtype)
    sequence = _randn(seed, (steps, batch, n_input), dtype)
    logits = net(sequence)
    assert logits.shape == (batch, n_output) and logits.dtype == dtype
    assert torch.isfinite(logits).all()
    single = net(sequence[:, :1].squeeze(1))
    assert single.shape == (n_output,)
    tolerance = 2e-2 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(single, logits[0], rtol=tolerance, atol=tolerance)
