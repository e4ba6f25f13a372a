"""Tests for ``dyna.module.LinearCNU`` and ``dyna.module.Conv2dCNU``."""

import math

import pytest
import torch
import torch.nn.functional as F

from dyna.module import Conv2dCNU, LinearCNU
from tests.golden import assert_golden

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# Golden trace 1, computed with the reference (unaiverse 0.1.31, float64): defaults (WTA +
# ad_hoc_WTA) with scrambling, shared keys; SGD lr 0.5 on the mean squared error.
TRACE1_STEPS = [
    ([[0.6, 0.8]], [[1.0]]),
    ([[-0.8, 0.6]], [[-1.0]]),
    ([[0.5, 0.9]], [[0.5]]),
    ([[1.0, 0.1], [-0.2, -1.0]], [[0.0], [2.0]]),
]
TRACE1 = [
    {
        "out": [0.46],
        "dx": [0.324, -0.864],
        "K": [0.6, 0.8, 0.0, 1.0, -1.0, 0.0],
        "M": [-0.0550262581, 1.1266316558, 0.4082895698, -0.3, 0.8, 0.0, 0.2, 0.2, -0.5],
        "mu": [1, 0, 0],
        "eta": [1, 4, 4],
        "scrambling_count": [1],
    },
    {
        "out": [-0.54],
        "dx": [0.184, 0.184],
        "K": [0.6, 0.8, -0.8, 0.6, -1.0, 0.0],
        "M": [
            -0.0550262581,
            1.1266316558,
            0.4082895698,
            0.4782417809,
            -0.0086813357,
            -0.8478022261,
            0.2,
            0.2,
            -0.5,
        ],
        "mu": [1, 1, 0],
        "eta": [2, 1, 5],
        "scrambling_count": [2],
    },
    {
        "out": [1.2313420702],
        "dx": [-0.0171148279, 1.5129906975],
        "K": [0.5816913891, 0.8134095696, -0.8, 0.6, -1.0, 0.0],
        "M": [
            -0.3909884027,
            0.5218997956,
            -0.2636347194,
            0.4782417809,
            -0.0086813357,
            -0.8478022261,
            0.2,
            0.2,
            -0.5,
        ],
        "mu": [2, 1, 0],
        "eta": [1, 2, 6],
        "scrambling_count": [2],
    },
    {
        "out": [-0.5865101801, -0.7433392776],
        "dx": [0.2122012427, -0.2967760114, -0.5617546717, -0.5388527434],
        "K": [0.6836942503, 0.7297685743, -0.8, 0.6, -0.1961161351, -0.9805806757],
        "M": [
            -0.1122153531,
            0.5497771006,
            0.0151383303,
            0.4782417809,
            -0.0086813357,
            -0.8478022261,
            -0.0696305305,
            -1.1481526527,
            0.8481526527,
        ],
        "mu": [3, 1, 1],
        "eta": [2, 4, 2],
        "scrambling_count": [3],
    },
]
TRACE1_EVAL = ([[0.3, -0.7]], [1.569351058])

# Golden trace 2, same reference: vanilla blend, keys learnt by gradient, unshared keys, no
# bias. K.grad before the SGD step; K (off the unit sphere) and M after it.
TRACE2_STEPS = [
    ([[0.6, 0.8], [-1.0, 0.2]], [[1.0, 0.0], [0.0, 1.0]]),
    ([[0.3, -0.9], [0.7, 0.7]], [[-1.0, 0.5], [0.5, 0.5]]),
]
TRACE2 = [
    {
        "out": [0.3295961253, 0.5451679881, 0.0050149016, -0.3287297932],
        "dx": [0.3260711339, -0.1968998406, -0.2671943478, -0.2439261902],
        "K.grad": [
            0.0473102577,
            0.0630803436,
            -0.0481524076,
            -0.0629119136,
            0.0008421499,
            -0.00016843,
            0.0084921758,
            0.0356709404,
            -0.0243713319,
            -0.0324951092,
            0.0158791561,
            -0.0031758312,
        ],
        "K": [
            0.9763448712,
            -0.0315401718,
            0.0240762038,
            1.0314559568,
            -0.7075278561,
            -0.7070225662,
            0.7028606933,
            0.689271311,
            0.7192924471,
            -0.6908592266,
            -1.0079395781,
            0.0015879156,
        ],
        "M": [
            0.5364263595,
            -0.2014315206,
            -0.2355320955,
            0.885445559,
            0.2009200425,
            0.1998159915,
            0.9171630511,
            -0.1039103109,
            -0.0032027847,
            -1.0042703797,
            0.0720820871,
            0.4655835826,
        ],
    },
    {
        "out": [0.0788283078, 0.8609891863, 0.3508698201, 0.49421301],
        "dx": [0.5316203863, -0.0427098688, 0.0000522775, -0.0394703383],
        "K.grad": [
            0.0627871727,
            -0.15558922,
            -0.0081930745,
            -0.0081930745,
            -0.0545940982,
            0.1637822945,
            -0.0004088098,
            -0.0004088098,
            0.0069541351,
            -0.0192271659,
            -0.0065453253,
            0.0196359758,
        ],
        "K": [
            0.9680850367,
            0.0455071178,
            0.0274321411,
            1.003824225,
            -0.6800622718,
            -0.7887452986,
            0.7141796367,
            0.7003753615,
            0.7177406815,
            -0.6830948394,
            -0.9967260964,
            -0.0082425823,
        ],
        "M": [
            0.5139856367,
            -0.0848270372,
            -0.2217548927,
            0.8992227617,
            0.154769221,
            0.3382684561,
            0.9181161286,
            -0.1029572334,
            -0.0293450351,
            -0.9256050456,
            0.0712097943,
            0.4682004611,
        ],
    },
]


def trace1_layer(dtype):
    layer = LinearCNU(
        2, 1, key_mem_units=3, delta=2, gamma_alpha=4.0, tau_alpha=0.95, tau_mu=2, tau_eta=3,
        beta_k=0.2, scramble=True, dtype=dtype,
    )  # fmt: skip
    with torch.no_grad():
        layer.K.copy_(torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]], dtype=torch.float64))
        layer.M.copy_(
            torch.tensor(
                [[[0.5, -0.25, 0.1], [-0.3, 0.8, 0.0], [0.2, 0.2, -0.5]]], dtype=torch.float64
            )
        )
    return layer


def trace2_layer(dtype):
    layer = LinearCNU(
        2, 2, bias=False, shared_keys=False, key_mem_units=3, delta=2, gamma_alpha=4.0,
        upd_m=None, upd_k=None, dtype=dtype,
    )  # fmt: skip
    with torch.no_grad():
        layer.K.copy_(
            torch.tensor(
                [[[2.0, 0], [0, 1], [-1, -1]], [[1, 1], [0.5, -0.5], [-3, 0]]], dtype=torch.float64
            )
        )
        layer.M.copy_(
            torch.tensor(
                [[[0.5, -0.25], [-0.3, 0.8], [0.2, 0.2]], [[1, 0], [0, -1], [0.4, 0.4]]],
                dtype=torch.float64,
            )
        )
    return layer


def check_trace_value(actual, expected, dtype):
    if dtype == torch.float64:
        assert_golden(actual, expected, dtype)
    else:
        # The reference's own float32 run agrees with the float64 trace to 1e-7.
        expected = torch.tensor(expected, dtype=torch.float64)
        torch.testing.assert_close(actual.detach().double(), expected, rtol=0, atol=1e-6)


def run_trace(layer, steps, expected, dtype):
    optimiser = torch.optim.SGD(layer.parameters(), lr=0.5)
    for (x_values, target), record in zip(steps, expected, strict=True):
        x = torch.tensor(x_values, dtype=dtype, requires_grad=True)
        optimiser.zero_grad()
        out = layer(x)
        F.mse_loss(out, torch.tensor(target, dtype=dtype)).backward()
        check_trace_value(out.flatten(), record["out"], dtype)
        check_trace_value(x.grad.flatten(), record["dx"], dtype)
        if "K.grad" in record:
            check_trace_value(layer.K.grad.flatten(), record["K.grad"], dtype)
        optimiser.step()
        for name in ("K", "M", "mu", "eta"):
            if name in record:
                check_trace_value(getattr(layer, name).flatten(), record[name], dtype)
        if "scrambling_count" in record:
            assert layer.scrambling_count.tolist() == record["scrambling_count"]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_golden_trace_1_wta_ad_hoc_with_scrambling(dtype):
    layer = trace1_layer(dtype)
    run_trace(layer, TRACE1_STEPS, TRACE1, dtype)
    state = {name: tensor.clone() for name, tensor in layer.state_dict().items()}
    layer.eval()
    x, expected = TRACE1_EVAL
    check_trace_value(layer(torch.tensor(x, dtype=dtype)).flatten(), expected, dtype)
    for name, tensor in layer.state_dict().items():
        assert torch.equal(tensor, state[name]), name


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_golden_trace_2_vanilla_gradient_keys_unshared(dtype):
    layer = trace2_layer(dtype)
    run_trace(layer, TRACE2_STEPS, TRACE2, dtype)
    assert list(layer.state_dict()) == ["M", "K", "scrambling_count"]


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    # Tiny tensors: on a busy machine a parallel region costs more than the work itself.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- LinearCNU


@pytest.mark.parametrize("shared_keys", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_memory_layout_and_initialisation(shared_keys, bias):
    layer = LinearCNU(4, 3, bias=bias, shared_keys=shared_keys, key_mem_units=2, delta=1)
    per_row = 4 + bias
    assert (layer.q, layer.m, layer.u) == ((1, 2, 3 * per_row) if shared_keys else (3, 2, per_row))
    assert layer.M.abs().max() <= 0.5  # every memory like a fresh nn.Linear(4, 3): U(±1/√4)
    # The memory of a winner is the (out, in [+ 1]) matrix, bias last, applied as nn.Linear.
    layer.eval()
    x = torch.randn(5, 4)
    attention = layer.attention(x)
    rows = layer.M.detach().reshape(layer.q, 2, -1, per_row)
    expected = torch.stack(
        [
            torch.cat([rows[j, attention.indices[i, j, 0]] for j in range(layer.q)])
            @ torch.cat([x[i], torch.ones(1)])[:per_row]
            for i in range(5)
        ]
    )
    torch.testing.assert_close(layer(x), expected)


def test_linear_delta_one_output_is_the_winners_linear_map():
    layer = LinearCNU(4, 3, key_mem_units=3, delta=1).eval()
    x = torch.randn(6, 4)
    winners = layer.attention(x).indices[:, 0, 0]
    for i in range(6):
        matrix = layer.M[0, winners[i]].detach().view(3, 5)
        torch.testing.assert_close(
            layer(x[i : i + 1])[0], matrix[:, :4] @ x[i] + matrix[:, 4], rtol=1e-6, atol=1e-6
        )


def test_linear_unbatched_and_non_contiguous_input():
    layer = LinearCNU(4, 3, key_mem_units=3, delta=2).eval()
    x = torch.randn(4, 5).t()  # non-contiguous (5, 4)
    out = layer(x)
    torch.testing.assert_close(out, layer(x.contiguous()))
    torch.testing.assert_close(layer(x[2]), out[2])
    assert layer(x[2]).shape == (3,)


def test_linear_resize1d_key():
    layer = LinearCNU(6, 2, psi_fn="resize1d", key_size=3, key_mem_units=4)
    assert layer.K.shape == (1, 4, 3)
    assert layer(torch.randn(5, 6)).shape == (5, 2)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"in_features": 0}, ValueError, "in_features must be >= 1, got 0"),
        ({"out_features": 2.5}, TypeError, "out_features must be an int, got float"),
        ({"bias": 1}, TypeError, "bias must be a bool"),
        ({"shared_keys": None}, TypeError, "shared_keys must be a bool"),
        ({"key_mem_units": 0}, ValueError, "key_mem_units must be >= 1"),
        ({"key_size": 3}, ValueError, "key_size 3 differs from in_features 4.*resize1d"),
        ({"psi_fn": "sign", "key_size": 5}, ValueError, "key_size 5 differs"),
        ({"psi_fn": "resize2d"}, ValueError, "needs 4-D input"),
        ({"psi_fn": "reduce2d"}, ValueError, "psi_fn must be one of"),
        ({"q": 2}, ValueError, "q cannot be passed"),
        ({"d": 2}, ValueError, "d cannot be passed.*key_size"),
        ({"m": 2}, ValueError, "m cannot be passed.*key_mem_units"),
        ({"u": 2}, ValueError, "u cannot be passed"),
        ({"upd_m": "WTA", "upd_k": None}, ValueError, "needs upd_k"),
        ({"dtype": torch.int32}, TypeError, "dtype must be a floating"),
    ],
)
def test_linear_bad_arguments(kwargs, error, message):
    arguments = {"in_features": 4, "out_features": 3, **kwargs}
    with pytest.raises(error, match=message):
        LinearCNU(**arguments)


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (torch.ones(2, 5), ValueError, r"x must have shape \(b, 4\) or \(4,\)"),
        (torch.ones(2, 3, 4), ValueError, "flatten leading dimensions"),
        (torch.ones(2, 4, dtype=torch.int64), TypeError, "floating-point"),
        (torch.ones(2, 4, dtype=torch.float64), TypeError, "module's dtype"),
        ("x", TypeError, "x must be a torch.Tensor"),
    ],
)
def test_linear_bad_input(x, error, message):
    with pytest.raises(error, match=message):
        LinearCNU(4, 3)(x)


def test_linear_extra_repr():
    text = repr(LinearCNU(4, 3, bias=False, shared_keys=False, key_mem_units=5, delta=2))
    assert text.startswith(
        "LinearCNU(in_features=4, out_features=3, bias=False, shared_keys=False, "
        "key_mem_units=5, q=3, d=4, m=5, u=4, delta=2, gamma_alpha=0.1"
    )


# ----------------------------------------------------------------------------- Conv2dCNU


def per_sample_conv(layer, x):
    """The reference's definition: blend the filters, then convolve each sample on its own."""
    weights = layer.compute_weights(x).reshape(x.shape[0], layer.out_channels, -1)
    kh, kw = layer.kernel_size
    outputs = []
    for i in range(x.shape[0]):
        filters = weights[i, :, : layer.in_features].reshape(
            layer.out_channels, layer.in_channels // layer.groups, kh, kw
        )
        bias = weights[i, :, -1] if layer.bias else None
        sample = x[i : i + 1]
        padding = layer.padding
        if layer.padding_mode != "zeros":
            sample = F.pad(sample, layer._pad, mode=layer.padding_mode)
            padding = 0
        outputs.append(
            F.conv2d(sample, filters, bias, layer.stride, padding, layer.dilation, layer.groups)
        )
    return torch.cat(outputs)


CONV_CASES = [
    {},
    {"groups": 2, "out_channels": 6, "in_channels": 4},
    {"groups": 2, "out_channels": 4, "in_channels": 4, "shared_keys": False, "bias": False},
    {"stride": 2, "padding": 1},
    {"padding": "same", "dilation": 2},
    {"padding": "valid"},
    {"padding": 2, "padding_mode": "reflect", "dilation": 2},
    {"padding": "same", "padding_mode": "circular", "stride": 2},
    {"padding": (1, 2), "padding_mode": "replicate", "kernel_size": (3, 5)},
    {"psi_fn": "identity", "key_size": 4 * 9 * 9},
    {"psi_fn": "resize2d_sign", "key_size": (4, 3, 3)},
]


@pytest.mark.parametrize("delta", [1, 2])
@pytest.mark.parametrize(
    "case", CONV_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items())
)
def test_conv_matches_per_sample_convolution(case, delta):
    arguments = {"in_channels": 4, "out_channels": 3, "kernel_size": 3, "key_mem_units": 4}
    arguments.update(case)
    torch.manual_seed(0)
    layer = Conv2dCNU(**arguments, delta=delta).eval()
    x = torch.randn(3, arguments["in_channels"], 9, 9, requires_grad=True)
    out = layer(x)
    expected_layer = per_sample_conv(layer, x)
    torch.testing.assert_close(out, expected_layer, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(out)
    grads = torch.autograd.grad((out * grad).sum(), (x, layer.M))
    expected = torch.autograd.grad((expected_layer * grad).sum(), (x, layer.M))
    for ours, reference in zip(grads, expected, strict=True):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    if arguments.get("padding") != "same" or arguments.get("stride", 1) == 1:
        # Same output size as nn.Conv2d with this geometry.
        geometry = {
            name: arguments[name]
            for name in ("stride", "padding", "dilation", "groups", "padding_mode")
            if name in arguments
        }
        conv = torch.nn.Conv2d(
            arguments["in_channels"], arguments["out_channels"], arguments["kernel_size"],
            **geometry,
        )  # fmt: skip
        assert out.shape == conv(x).shape


def test_conv_defaults_and_unbatched_non_contiguous_input():
    layer = Conv2dCNU(3, 4, 3, padding=1, key_mem_units=3).eval()
    assert layer.psi_fn == "resize2d" and layer.d == 75 and layer.in_features == 27
    assert layer.M.shape == (1, 3, 4 * 28) and layer.M.abs().max() <= 1 / math.sqrt(112)
    x = torch.randn(3, 8, 8).transpose(1, 2)  # non-contiguous
    out = layer(x)
    assert out.shape == (4, 8, 8)
    torch.testing.assert_close(out, layer(x.contiguous().unsqueeze(0))[0])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"kernel_size": 0}, ValueError, "kernel_size must be an int >= 1"),
        ({"stride": (1, 0)}, ValueError, "stride must be an int >= 1"),
        ({"dilation": (1, 2, 3)}, ValueError, "dilation must be an int >= 1 or a pair"),
        ({"padding": -1}, ValueError, "padding must be an int >= 0"),
        ({"padding": "full"}, ValueError, "padding must be an int, a pair, 'same' or 'valid'"),
        ({"padding": "same", "stride": 2}, ValueError, "padding='same' needs stride 1"),
        ({"padding_mode": "mirror"}, ValueError, "padding_mode must be"),
        ({"groups": 2}, ValueError, "groups 2 must divide in_channels 3"),
        ({"psi_fn": "resize1d"}, ValueError, "needs 2-D input"),
        ({"key_size": (3, 0)}, ValueError, "key_size must be >= 1"),
        ({"d": 5}, ValueError, "d cannot be passed"),
        ({"bias": "yes"}, TypeError, "bias must be a bool"),
    ],
)
def test_conv_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        Conv2dCNU(**{"in_channels": 3, "out_channels": 4, "kernel_size": 3, **kwargs})


@pytest.mark.parametrize(
    ("layer_kwargs", "x", "error", "message"),
    [
        ({}, torch.ones(2, 4, 8, 8), ValueError, r"x must have shape \(b, 3, h, w\)"),
        ({}, torch.ones(8, 8), ValueError, r"x must have shape"),
        ({"psi_fn": "identity"}, torch.ones(2, 3, 8, 8), ValueError, "192 values, but the key"),
        ({"key_size": 61}, torch.ones(1, 3, 7, 9), ValueError, "60 values, but the key size is 61"),
        ({"key_size": 3}, torch.ones(1, 3, 3, 100), ValueError, "key_size 3 is too small"),
    ],
)
def test_conv_bad_input(layer_kwargs, x, error, message):
    layer = Conv2dCNU(3, 4, 3, **layer_kwargs)
    with pytest.raises(error, match=message):
        layer(x)


def test_conv_extra_repr():
    text = repr(Conv2dCNU(3, 4, 3, padding="same", key_mem_units=3))
    assert text.startswith(
        "Conv2dCNU(in_channels=3, out_channels=4, kernel_size=(3, 3), stride=(1, 1), "
        "padding='same', padding_mode='zeros', dilation=(1, 1), groups=1, bias=True, "
        "shared_keys=True, key_mem_units=3, in_features=27, q=1, d=75, m=3, u=112"
    )


# ----------------------------------------------------------------------------- conventions


def make_layers(device=None, dtype=None):
    # The first uses the grouped blend (shared keys, m > δ), the others the dense one.
    return [
        LinearCNU(6, 3, key_mem_units=5, delta=2, scramble=True, device=device, dtype=dtype),
        LinearCNU(
            6, 3, shared_keys=False, key_mem_units=4, upd_m=None, upd_k="grad_WTA", device=device,
            dtype=dtype,
        ),
        Conv2dCNU(3, 4, 3, padding=1, key_mem_units=3, delta=2, device=device, dtype=dtype),
    ]  # fmt: skip


def layer_input(layer, device="cpu", dtype=torch.float32):
    shape = (5, 6) if isinstance(layer, LinearCNU) else (2, 3, 7, 7)
    generator = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_layers_in_every_dtype_on_every_device(device, dtype):
    for layer in make_layers(device, dtype):
        for name, tensor in layer.state_dict().items():
            assert tensor.device.type == device, name
        assert layer.M.dtype == dtype and layer.K.dtype == dtype
        x = layer_input(layer, device, dtype).requires_grad_()
        out = layer(x)
        assert out.dtype == dtype and out.device.type == device
        out.float().square().sum().backward()
        assert x.grad.dtype == dtype and layer.M.grad.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_layers_agree_with_float64(dtype):
    tolerance = {torch.float32: 1e-5, torch.bfloat16: 5e-2}[dtype]
    for index, layer in enumerate(make_layers()):
        layer.eval()
        exact = make_layers(dtype=torch.float64)[index].eval()
        exact.load_state_dict(layer.state_dict())
        layer = layer.to(dtype)
        x = layer_input(layer, dtype=dtype)
        expected = exact(x.double())
        error = (layer(x).double() - expected).norm() / expected.norm()
        assert error <= tolerance, f"{type(layer).__name__}: {error:.2e}"


def test_meta_device_then_to_empty_and_reset_parameters():
    for layer in make_layers(device="meta"):
        assert all(t.device.type == "meta" for t in layer.state_dict().values())
        layer = layer.to_empty(device="cpu")
        layer.reset_parameters()
        torch.testing.assert_close(layer.K.norm(dim=2), torch.ones(layer.q, layer.m))
        assert torch.isfinite(layer(layer_input(layer))).all()


def test_state_dict_round_trip_after_training():
    for index, layer in enumerate(make_layers()):
        optimiser = torch.optim.SGD(layer.parameters(), lr=0.1)
        for _ in range(3):
            optimiser.zero_grad()
            layer(layer_input(layer)).square().sum().backward()
            optimiser.step()
        copy = make_layers()[index]
        copy.load_state_dict(layer.state_dict())
        x = layer_input(layer)
        torch.testing.assert_close(copy.eval()(x), layer.eval()(x))
        for name, tensor in copy.state_dict().items():
            assert torch.equal(tensor, layer.state_dict()[name]), name


def test_reset_parameters_reinitialises_like_construction():
    torch.manual_seed(5)
    layer = LinearCNU(6, 3, key_mem_units=4)
    first = {name: tensor.clone() for name, tensor in layer.state_dict().items()}
    layer(torch.randn(4, 6)).sum().backward()
    torch.manual_seed(5)
    layer.reset_parameters()
    for name, tensor in layer.state_dict().items():
        assert torch.equal(tensor, first[name]), name


@pytest.mark.parametrize("training", [False, True])
def test_layers_compile_as_one_graph(training):
    for layer in make_layers():
        layer.train(training)
        compiled = torch.compile(layer, backend="eager", fullgraph=True)
        x = layer_input(layer)
        out = compiled(x)
        out.sum().backward()
        assert layer.M.grad is not None


PAIRS = [(None, "ad_hoc_WTA"), (None, "grad_WTA"), (None, None), ("WTA", "ad_hoc_WTA")]
PAIRS.append(("WTA", "grad_WTA"))


@pytest.mark.parametrize(("upd_m", "upd_k"), PAIRS)
@pytest.mark.parametrize("delta", [1, 3])
@pytest.mark.parametrize("shared_keys", [True, False])
def test_linear_output_space_blend_equals_weights_then_product(shared_keys, delta, upd_m, upd_k):
    torch.manual_seed(2)
    layer = LinearCNU(
        5, 4, shared_keys=shared_keys, key_mem_units=7, delta=delta, gamma_alpha=3.0,
        upd_m=upd_m, upd_k=upd_k, dtype=torch.float64,
    ).eval()  # fmt: skip
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(6, 4, dtype=torch.float64)
    parameters = [x, *layer.parameters()]
    out = layer(x)
    ours = torch.autograd.grad((out * grad).sum(), parameters, allow_unused=True)
    weights = layer.compute_weights(x).reshape(6, 4, 6)
    expected = (weights[:, :, :5] @ x.unsqueeze(2)).squeeze(2) + weights[:, :, 5]
    reference = torch.autograd.grad((expected * grad).sum(), parameters, allow_unused=True)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    for mine, theirs in zip(ours, reference, strict=True):
        if theirs is None:
            assert mine is None or torch.all(mine == 0)
        else:
            torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-12)


def test_conv_input_smaller_than_the_dilated_kernel_is_a_value_error():
    # it reached conv2d and failed there with a RuntimeError before
    layer = Conv2dCNU(2, 2, 3, padding=0, key_mem_units=2)
    with pytest.raises(ValueError, match=r"x is too small: its padded size \(2, 5\)"):
        layer(torch.ones(1, 2, 2, 5))
    same = Conv2dCNU(2, 2, 3, padding="same", padding_mode="reflect", key_mem_units=2)
    assert same(torch.ones(1, 2, 2, 2)).shape == (1, 2, 2, 2)
