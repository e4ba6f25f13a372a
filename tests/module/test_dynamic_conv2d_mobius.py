"""DynamicConv2DMobius: golden values of the reference DyNA at 01c17ea, equality with explicit
per-sample convolutions, the documented deviations, conventions and argument checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dyna import DynamicConv2DMobius
from tests.golden import assert_golden
from tests.recipe import context, conv_input, fill, loss, probe

F64 = torch.float64
SMALL = {"n_subspaces": 2, "rank_subspace": 3, "rank_transformations": 2}
FILLS = [
    ("weights_lib.context_transform.weight", 0.4),
    ("weights_lib.context_transform.bias", 0.1),
    ("weights_lib.space_i", 0.8),
    ("weights_lib.space_j", 0.8),
    ("weights_lib.inversions", 0.9),
    ("weights_lib.direct_G_Re", 0.4),
    ("weights_lib.direct_G_Im", 0.4),
    ("weights_lib.w_mix", 0.6),
    ("weights_lib.projections", 0.5),
    ("bias_dynamic_weights_lib", 0.05),
    ("bias_dynamic_conv", 0.3),
    ("padding_dynamic_value", 0.2),
    ("offset_dynamic_value", 0.15),
]
CASES = {
    "M1": (
        {"in_channels": 2, "out_channels": 3, "kernel_size": 3, "padding": [1, 2, 0, 1],
         "bias_static": 0.25},
        (2, 2, 6, 5), 2, (2, 3, 5, 6), 46.7689567071, -2.76746459273,
        [0.410715831323, 2.97364145585, 2.41371706493],
        [-0.61593477951, 0.655247424879, 0.907110824664, 1.21639307802],
        {"bias_dynamic_weights_lib": 42.1529232865, "bias_dynamic_conv": 6.32409127485,
         "padding_dynamic_value": 19.2797526775, "offset_dynamic_value": 15.744623305,
         "space_i": 4.07562966128, "space_j": 5.46070294216, "inversions": -2.22683237983,
         "direct_G_Re": -0.495936720498, "direct_G_Im": 11.0440013125,
         "w_mix": -3.0336927038, "projections": 2.99404157316,
         "context_transform.weight": 25.656031466, "context_transform.bias": 4.05951468632,
         "x": 11.7991529175, "context": 0.63176310912},
    ),
    "M2": (
        {"in_channels": 3, "out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1,
         "transpose": True, "output_padding": 1},
        (2, 3, 4, 5), 1, (2, 2, 14, 16), 102.248047246, -1.2497640573,
        [-0.347448842905, 0.0300818574282],
        [0.332437905277, 0.0201900349747, 0.287821196807, 0.0201900349747],
        {"bias_dynamic_weights_lib": -5.08239596241, "bias_dynamic_conv": -10.0194362857,
         "padding_dynamic_value": 5.88549513877, "offset_dynamic_value": 7.98172389275,
         "space_i": -1.53786803134, "space_j": 7.72779713991, "inversions": 0.310233786251,
         "direct_G_Re": 0.913309512546, "direct_G_Im": 3.83199134691,
         "w_mix": 6.33306402491, "projections": 10.3911852323,
         "context_transform.weight": -0.8183209198, "context_transform.bias": -1.41224034183,
         "x": 3.16485627016, "context": -0.710600769596},
    ),
    "M3": (
        {"in_channels": 2, "out_channels": 2, "kernel_size": [3, 3], "padding": 0,
         "bias_dynamic": False, "offset_dynamic": False, "padding_dynamic": False},
        (2, 2, 5, 5), 2, (2, 2, 3, 3), 1.5797025957, -0.787273272028,
        [0.286099834641, 0.243163356674],
        [0.775726505236, 0.917964377671, 0.986367264981],
        {"space_i": 1.51763086515, "space_j": -10.2375053126, "inversions": 0.637487999301,
         "direct_G_Re": -7.88051995573, "direct_G_Im": -0.982774154573,
         "w_mix": -7.30538511926, "projections": 3.29736239333,
         "context_transform.weight": 12.4922660442, "context_transform.bias": -3.69318426513,
         "x": -1.93695537951, "context": 2.5206269515},
    ),
}  # fmt: skip


def golden_module(kwargs, dtype=F64):
    module = DynamicConv2DMobius(context_length=6, **SMALL, **kwargs, dtype_weights=dtype)
    parameters = dict(module.named_parameters())
    for k, (name, amplitude) in enumerate(FILLS):
        if name in parameters:
            fill(parameters[name], k, amplitude)
    return module


@pytest.mark.parametrize("case", list(CASES))
def test_golden(case):
    kwargs, x_shape, context_batch, y_shape, total, weighted, centre, tail, probes = CASES[case]
    module = golden_module(kwargs)
    x = conv_input(x_shape).requires_grad_()
    c = context(context_batch, 6).requires_grad_()
    y = module(x, c)
    objective = loss(y)
    objective.backward()
    assert y.shape == y_shape and y.dtype == F64
    assert_golden(y.sum(), total, F64)
    assert_golden(objective, weighted, F64)
    assert_golden(y[0, :, 2, 2], centre, F64)
    assert_golden(y[-1, -1, -2, :4], tail, F64)
    gradients = {n.removeprefix("weights_lib."): p.grad for n, p in module.named_parameters()}
    gradients.update(x=x.grad, context=c.grad)
    assert set(gradients) == set(probes)
    got = [probe(gradients[name]) for name in probes]
    assert_golden(torch.tensor(got, dtype=F64), list(probes.values()), F64)


def explicit(module, x, c):
    """Offset, padding mask, per-sample F.conv2d / conv_transpose2d, offset, static bias."""
    if module.offset_dynamic_value is not None:
        x = x + module.offset_dynamic_value
    kernels = module.get_weights(c, batch_dim=x.shape[0]).to(x.dtype)
    left, right, top, bottom = module.padding
    padded = F.pad(x, [left, right, top, bottom])
    if module.padding_dynamic_value is not None:
        mask = torch.ones_like(padded)
        mask[..., top : top + x.shape[2], left : left + x.shape[3]] = 0
        padded = padded + mask * module.padding_dynamic_value
    bias = module.bias_dynamic_conv
    bias = None if bias is None else bias.to(x.dtype)
    outputs = []
    for b in range(x.shape[0]):
        if module.transpose:
            out = F.conv_transpose2d(
                padded[b : b + 1], kernels[b], bias, stride=module.stride,
                output_padding=module.output_padding, dilation=module.dilation,
            )  # fmt: skip
        else:
            out = F.conv2d(
                padded[b : b + 1], kernels[b], bias, stride=module.stride, dilation=module.dilation
            )
        outputs.append(out)
    y = torch.cat(outputs)
    if module.offset_dynamic_value is not None:
        y = y - module.offset_dynamic_value
    if module.bias_static is not None:
        y = y + module.bias_static_buffer
    return y


@pytest.mark.parametrize("case", list(CASES))
def test_equals_explicit_per_sample_convolution(case):
    kwargs, x_shape, context_batch = CASES[case][:3]
    module = golden_module(kwargs)
    x, c = conv_input(x_shape), context(context_batch, 6)
    torch.testing.assert_close(module(x, c), explicit(module, x, c), rtol=1e-12, atol=1e-12)


def test_dynamic_bias_is_added_to_the_generated_matrix():
    module = golden_module(CASES["M1"][0])
    c = context(2, 6)
    generated = module.weights_lib(c) + module.bias_dynamic_weights_lib
    index = module.dynamic_weights_index.flatten()
    kernels = module.get_weights(c)
    assert torch.equal(kernels.reshape(2, -1), generated.reshape(2, -1)[:, index])


def test_context_batch_one_equals_repeated_context():
    module = golden_module(CASES["M1"][0])
    x, shared = conv_input((3, 2, 6, 5)), context(1, 6)
    torch.testing.assert_close(
        module(x, shared), module(x, shared.repeat(3, 1)), rtol=1e-12, atol=1e-12
    )


def test_bfloat16_module_with_float32_input():
    # The reference fails here ("Input type (float) and bias type (BFloat16) ...").
    torch.manual_seed(0)
    module = DynamicConv2DMobius(2, 3, 6, **SMALL, padding=1, bias_static=0.5)
    x, c = torch.randn(2, 2, 5, 5), torch.randn(2, 6)
    y = module(x, c)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, explicit(module, x, c), rtol=1e-5, atol=1e-5)


def test_two_element_padding_and_int_bias_static():
    torch.manual_seed(0)
    two = DynamicConv2DMobius(2, 3, 6, **SMALL, padding=[2, 1], bias_static=1, dtype_weights=F64)
    four = DynamicConv2DMobius(2, 3, 6, **SMALL, padding=[2, 2, 1, 1], bias_static=1.0,
                               dtype_weights=F64)  # fmt: skip
    assert two.bias_static == 1.0 and isinstance(two.bias_static, float)
    four.load_state_dict(two.state_dict(), strict=True)
    x, c = conv_input((2, 2, 5, 5)), context(2, 6)
    assert torch.equal(two(x, c), four(x, c))


def test_gradcheck_with_respect_to_x():
    # Linear in x (offset, padding, convolution, bias) once the kernels are generated.
    module = golden_module(CASES["M1"][0])
    c = context(1, 6)
    x = conv_input((1, 2, 3, 3)).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: module(t, c), (x,), fast_mode=True)


def test_state_dict_keys_and_index_buffer():
    module = golden_module(CASES["M1"][0])
    assert sorted(module.state_dict()) == sorted(
        [
            "bias_dynamic_weights_lib",
            "bias_dynamic_conv",
            "padding_dynamic_value",
            "offset_dynamic_value",
            "bias_static_buffer",
            "weights_lib.space_i",
            "weights_lib.space_j",
            "weights_lib.inversions",
            "weights_lib.direct_G_Re",
            "weights_lib.direct_G_Im",
            "weights_lib.w_mix",
            "weights_lib.projections",
            "weights_lib.context_transform.weight",
            "weights_lib.context_transform.bias",
        ]
    )
    assert module.dynamic_weights_index.shape == (9, 6)
    assert module.bias_static_buffer.item() == 0.25 and module.bias_static_buffer.dtype == F64
    plain = golden_module(CASES["M3"][0])
    assert plain.bias_dynamic_conv is None and plain.offset_dynamic_value is None
    assert not any("bias_dynamic" in key for key in plain.state_dict())


def test_parameter_counts():
    def count(*args, **kwargs):
        module = DynamicConv2DMobius(*args, **kwargs, device="meta")
        return sum(p.numel() for p in module.parameters())

    assert count(16, 16, 256) == 1_830_554
    assert count(3, 16, 256) == 1_741_130
    assert count(64, 64, 64) == 2_231_318


def test_factory_kwargs_meta_reset_and_seeded_construction():
    module = DynamicConv2DMobius(2, 3, 6, **SMALL, bias_static=0.5, device="meta",
                                 dtype=torch.float32)  # fmt: skip
    assert module.dtype_weights == torch.float32
    assert all(t.device.type == "meta" for t in [*module.parameters(), *module.buffers()])
    module.to_empty(device="cpu")
    module.reset_parameters()
    assert module.bias_static_buffer.item() == 0.5
    y = module(torch.randn(2, 2, 5, 5), torch.randn(1, 6))
    assert y.shape == (2, 3, 3, 3) and torch.isfinite(y).all()
    torch.manual_seed(9)
    first = DynamicConv2DMobius(2, 3, 6, **SMALL, dtype_weights=torch.float32)
    torch.manual_seed(9)
    first.reset_parameters()
    torch.manual_seed(9)
    second = DynamicConv2DMobius(2, 3, 6, **SMALL, dtype_weights=torch.float32)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    bound = (1 / 18) ** 0.5
    assert second.bias_dynamic_conv.abs().max() <= bound
    assert second.bias_dynamic_weights_lib.abs().max() <= 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_dtypes(dtype):
    module = golden_module(CASES["M1"][0], dtype)
    x = conv_input((2, 2, 6, 5), dtype).requires_grad_()
    y = module(x, context(2, 6, dtype))
    assert y.dtype == dtype
    y.sum().backward()
    assert x.grad.dtype == dtype
    reference = module.to(F64)(
        conv_input((2, 2, 6, 5), dtype).double(), context(2, 6, dtype).double()
    )
    tolerance = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 0.1}[dtype]
    assert (y.double() - reference).norm() / reference.norm() < tolerance


def test_extra_repr():
    text = repr(DynamicConv2DMobius(2, 3, 6, **SMALL, padding=1, bias_static=0.5, device="meta"))
    for part in (
        "2, 3, context_length=6",
        "kernel_size=[3, 3]",
        "padding=[1, 1, 1, 1]",
        "n_subspaces=2",
        "rank_subspace=3",
        "rank_transformations=2",
        "asymmetry=0.001",
        "bias_dynamic=True",
        "bias_static=0.5",
        "offset_dynamic=True",
        "dynamic_weights_shape=[9, 6]",
        "dtype_weights=torch.bfloat16",
    ):
        assert part in text


def test_compiles_with_fullgraph():
    module = golden_module(CASES["M1"][0], torch.float32)
    compiled = torch.compile(module, backend="eager", fullgraph=True)
    x, c = conv_input((2, 2, 6, 5), torch.float32), context(2, 6, torch.float32)
    torch.testing.assert_close(compiled(x, c), module(x, c))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_subspaces": 0}, ValueError, "n_subspaces"),
        ({"rank_subspace": -2}, ValueError, "rank_subspace"),
        ({"rank_transformations": 1.0}, TypeError, "rank_transformations"),
        ({"asymmetry": 0.0}, ValueError, "asymmetry"),
        ({"bias_static": True}, TypeError, "bias_static"),
        ({"bias_static": "0.5"}, TypeError, "bias_static"),
        ({"offset_dynamic": 1}, TypeError, "offset_dynamic"),
        ({"padding": [1, -1]}, ValueError, "padding"),
        ({"transpose": True, "output_padding": [1, 2, 3]}, ValueError, "output_padding"),
        ({"dtype_weights": torch.complex64}, TypeError, "dtype_weights"),
        ({"kernel_size": [3, 3, 3]}, ValueError, "kernel_size"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    arguments = {"in_channels": 2, "out_channels": 3, "context_length": 6, "device": "meta",
                 **kwargs}  # fmt: skip
    with pytest.raises(error, match=match):
        DynamicConv2DMobius(**arguments)


def test_bias_dynamic_is_coerced():
    module = DynamicConv2DMobius(2, 3, 6, **SMALL, bias_dynamic=0, device="meta")
    assert module.bias_dynamic is False and module.bias_dynamic_conv is None


def test_bad_input():
    module = DynamicConv2DMobius(2, 3, 6, **SMALL, dtype_weights=torch.float32)
    with pytest.raises(ValueError, match=r"context\.shape"):
        module(torch.randn(3, 2, 5, 5), torch.randn(2, 6))
    with pytest.raises(ValueError, match="in_channels=2"):
        module(torch.randn(3, 3, 5, 5), torch.randn(3, 6))
    with pytest.raises(TypeError, match="context must have a floating"):
        module(torch.randn(3, 2, 5, 5), torch.ones(3, 6, dtype=torch.int64))


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_devices(device):
    torch.manual_seed(0)
    module = DynamicConv2DMobius(
        2, 3, 6, **SMALL, padding=1, bias_static=0.5, device=device, dtype=torch.float32
    )
    assert all(t.device.type == device for t in [*module.parameters(), *module.buffers()])
    x = torch.randn(2, 2, 5, 5, device=device, requires_grad=True)
    c = torch.randn(1, 6, device=device)
    y = module(x, c)
    y.sum().backward()
    assert y.device.type == device and x.grad.device.type == device
    cpu = DynamicConv2DMobius(2, 3, 6, **SMALL, padding=1, bias_static=0.5, dtype=torch.float32)
    cpu.load_state_dict({k: v.cpu() for k, v in module.state_dict().items()})
    torch.testing.assert_close(y.cpu(), cpu(x.detach().cpu(), c.cpu()), rtol=1e-4, atol=1e-5)
