"""DynamicConv2DDelta: golden values of the reference DyNA at 01c17ea, equality with explicit
per-sample convolutions, the documented deviations, conventions and argument checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dyna import DynamicConv2DDelta
from tests.golden import assert_golden
from tests.recipe import context, conv_input, fill, loss, probe

F64 = torch.float64
FILLS = [
    ("weights_lib.context_transform.weight", 0.3),
    ("weights_lib.weights", 0.5),
    ("weights_lib.extras", None),  # := 3.0
    ("padding_dynamic_value", 0.2),
]
CASES = {
    "D1": (
        {"in_channels": 2, "out_channels": 3, "context_length": 5, "rank": 2, "kernel_size": 3,
         "padding": [1, 2, 0, 1]},
        (2, 2, 6, 5), 2, (2, 3, 5, 6), 1.40235893258, 0.327305546134,
        [-0.567545258455, 0.452210353077, -0.130303752901],
        [-0.0823175534567, -0.150546776319, -0.12868395015, -0.11041301529],
        {"padding_dynamic_value": 4.0273606472, "weights": 142.370769643,
         "extras": 0.00685189431533, "context_transform.weight": -1168.2844323,
         "x": 4.29215347155, "context": -105.376320588},
    ),
    "D2": (
        {"in_channels": 2, "out_channels": 3, "context_length": 5, "rank": 2, "kernel_size": 3,
         "stride": 2, "padding": 1, "dilation": [1, 2]},
        (3, 2, 7, 8), 1, (3, 3, 4, 3), 9.29932425468, 1.82516023999,
        [-0.747952221127, 1.2778262724, 0.112407145782],
        [0.369750276012, 0.0505644192132, 0.00716295352912],
        {"padding_dynamic_value": -2.89204296038, "weights": -141.115336902,
         "extras": 0.0235766675323, "context_transform.weight": -125.582158033,
         "x": 3.26052492845, "context": -8.50017988794},
    ),
    "D3": (
        {"in_channels": 3, "out_channels": 2, "context_length": 5, "rank": 2, "kernel_size": 3,
         "stride": 2, "padding": [1, 0, 1, 0], "transpose": True, "output_padding": 1,
         "padding_dynamic": False},
        (2, 3, 4, 5), 2, (2, 2, 12, 14), -4.71013449846, 1.810916866,
        [0.0928753815423, -0.0654100633479],
        [0, 0, -0.270768486875, 0.203777499178],
        {"weights": -101.588964445, "extras": 0.0425498597324,
         "context_transform.weight": -124.683376631, "x": -1.17811365337,
         "context": 46.7290239821},
    ),
}  # fmt: skip


def golden_module(kwargs, dtype=F64):
    module = DynamicConv2DDelta(**kwargs, dtype_weights=dtype).eval()
    parameters = dict(module.named_parameters())
    for k, (name, amplitude) in enumerate(FILLS):
        if name not in parameters:
            continue
        if amplitude is None:
            with torch.no_grad():
                parameters[name].fill_(3.0)
        else:
            fill(parameters[name], k, amplitude)
    return module


@pytest.mark.parametrize("case", list(CASES))
def test_golden(case):
    kwargs, x_shape, context_batch, y_shape, total, weighted, centre, tail, probes = CASES[case]
    module = golden_module(kwargs)
    x = conv_input(x_shape).requires_grad_()
    c = context(context_batch, kwargs["context_length"]).requires_grad_()
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


def test_golden_float32():
    kwargs, x_shape = CASES["D1"][:2]
    module = golden_module(kwargs, torch.float32)
    y = module(conv_input(x_shape, torch.float32), context(2, 5, torch.float32))
    assert y.dtype == torch.float32
    assert_golden(y.sum(), 1.44521666, torch.float32)
    assert_golden(loss(y), 0.33533686, torch.float32)
    assert_golden(y[0, :, 0, 0], [0.17151798, -0.11418784, 0.36859676], torch.float32)


def explicit(module, x, c):
    """Per-sample F.conv2d / F.conv_transpose2d with the kernels of get_weights."""
    kernels = module.get_weights(c, batch_dim=x.shape[0])
    kernels = kernels.to(torch.promote_types(x.dtype, module.dtype_weights))
    left, right, top, bottom = module.padding
    padded = F.pad(x, [left, right, top, bottom])
    if module.padding_dynamic_value is not None:
        mask = torch.ones_like(padded)
        mask[..., top : top + x.shape[2], left : left + x.shape[3]] = 0
        padded = padded + mask * module.padding_dynamic_value
    outputs = []
    for b in range(x.shape[0]):
        if module.transpose:
            out = F.conv_transpose2d(
                padded[b : b + 1], kernels[b], stride=module.stride,
                output_padding=module.output_padding, dilation=module.dilation,
            )  # fmt: skip
        else:
            out = F.conv2d(
                padded[b : b + 1], kernels[b], stride=module.stride, dilation=module.dilation
            )
        outputs.append(out)
    return torch.cat(outputs)


@pytest.mark.parametrize("case", list(CASES))
def test_equals_explicit_per_sample_convolution(case):
    kwargs, x_shape, context_batch = CASES[case][:3]
    module = golden_module(kwargs)
    x, c = conv_input(x_shape), context(context_batch, kwargs["context_length"])
    torch.testing.assert_close(module(x, c), explicit(module, x, c), rtol=1e-12, atol=1e-12)


def test_kernels_follow_the_index():
    module = golden_module(CASES["D1"][0])
    c = context(2, 5)
    generated = module.weights_lib(c)
    kernels = module.get_weights(c)
    index = module.dynamic_weights_index.flatten()
    assert kernels.shape == (2, 3, 2, 3, 3)
    assert torch.equal(kernels.reshape(2, -1), generated.reshape(2, -1)[:, index])
    transposed = golden_module(CASES["D3"][0])
    assert transposed.get_weights(c).shape == (2, 3, 2, 3, 3)  # (B, C_in, C_out, k0, k1)


def test_context_batch_one_equals_repeated_context():
    module = golden_module(CASES["D1"][0])
    x = conv_input((3, 2, 6, 5))
    shared = context(1, 5)
    torch.testing.assert_close(
        module(x, shared), module(x, shared.repeat(3, 1)), rtol=1e-12, atol=1e-12
    )
    # The composer runs once for a shared context (its per-sample gradient normalisation then
    # sees the summed gradient, as in the reference, which repeats the generated matrix).
    assert module.get_weights(shared, batch_dim=3).shape == (3, 3, 2, 3, 3)


def test_two_element_padding_equals_four():
    torch.manual_seed(0)
    two = DynamicConv2DDelta(2, 3, 5, rank=2, padding=[1, 2], dtype_weights=F64).eval()
    four = DynamicConv2DDelta(2, 3, 5, rank=2, padding=[1, 1, 2, 2], dtype_weights=F64).eval()
    assert two.padding == [1, 1, 2, 2]
    four.load_state_dict(two.state_dict())
    x, c = conv_input((2, 2, 5, 5)), context(2, 5)
    assert torch.equal(two(x, c), four(x, c))
    assert two(x, c).shape == (2, 3, 7, 5)  # height 5 + 2 + 2 - 2, width 5 + 1 + 1 - 2


def test_output_sizes():
    module = DynamicConv2DDelta(2, 3, 5, padding=[1, 2, 0, 0], dtype_weights=torch.float32)
    assert module(torch.randn(1, 2, 10, 10), torch.randn(1, 5)).shape == (1, 3, 8, 11)
    transposed = DynamicConv2DDelta(
        2, 3, 5, stride=2, transpose=True, output_padding=0, dtype_weights=torch.float32
    )
    assert transposed(torch.randn(2, 2, 10, 10), torch.randn(1, 5)).shape == (2, 3, 21, 21)


def test_bfloat16_module_with_float32_input_and_mixed_contexts():
    torch.manual_seed(0)
    module = DynamicConv2DDelta(2, 3, 5, rank=2, padding=1).eval()  # bfloat16 by default
    x = torch.randn(2, 2, 5, 5)
    for c in (torch.randn(2, 5), torch.randn(2, 5).to(torch.bfloat16)):
        y = module(x, c)  # the reference fails on the bfloat16 context
        assert y.dtype == torch.float32
        torch.testing.assert_close(y, explicit(module, x, c).float(), rtol=1e-5, atol=1e-5)


def test_gradcheck_with_respect_to_x():
    # Linear in x once the kernels are generated (they depend on the context only).
    module = golden_module(CASES["D2"][0])
    c = context(1, 5)
    x = conv_input((2, 2, 3, 4)).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: module(t, c), (x,), fast_mode=True)


def test_index_buffer_and_state_dict():
    module = DynamicConv2DDelta(2, 3, 5, rank=2, dtype_weights=torch.float32)
    keys = [
        "padding_dynamic_value",
        "weights_lib.weights",
        "weights_lib.extras",
        "weights_lib.context_transform.weight",
    ]
    assert list(module.state_dict()) == keys
    assert "dynamic_weights_index" in dict(module.named_buffers())
    moved = module.to(torch.float64)
    assert moved.dynamic_weights_index.dtype == torch.int64
    plain = DynamicConv2DDelta(2, 3, 5, padding_dynamic=False, context_use_bias=True)
    assert plain.padding_dynamic_value is None
    assert "weights_lib.context_transform.bias" in plain.state_dict()
    target = DynamicConv2DDelta(2, 3, 5, rank=2, dtype_weights=torch.float32)
    target.load_state_dict(module.state_dict(), strict=True)


def test_parameter_counts():
    assert sum(p.numel() for p in DynamicConv2DDelta(16, 16, 256, device="meta").parameters()) == (
        100_866
    )
    big = DynamicConv2DDelta(64, 64, 64, dtype_weights=torch.float32, device="meta")
    assert sum(p.numel() for p in big.parameters()) == 1_186_434
    assert big.dynamic_weights_shape == [192, 192]


def test_factory_kwargs_meta_reset_and_seeded_construction():
    module = DynamicConv2DDelta(2, 3, 5, rank=2, device="meta", dtype=torch.float64)
    assert module.dtype_weights == torch.float64
    assert all(p.device.type == "meta" for p in module.parameters())
    module.to_empty(device="cpu")
    module.reset_parameters()
    fresh = DynamicConv2DDelta(2, 3, 5, rank=2)
    assert torch.equal(module.dynamic_weights_index, fresh.dynamic_weights_index)
    torch.manual_seed(4)
    first = DynamicConv2DDelta(2, 3, 5, rank=2, dtype_weights=torch.float32)
    torch.manual_seed(4)
    first.reset_parameters()
    torch.manual_seed(4)
    second = DynamicConv2DDelta(2, 3, 5, rank=2, dtype_weights=torch.float32)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    assert 0 < second.padding_dynamic_value.abs().item() < 0.01


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_dtypes(dtype):
    module = golden_module(CASES["D1"][0], dtype)
    x = conv_input((2, 2, 6, 5), dtype).requires_grad_()
    y = module(x, context(2, 5, dtype))
    assert y.dtype == dtype
    y.sum().backward()
    assert x.grad.dtype == dtype
    reference = golden_module(CASES["D1"][0])(conv_input((2, 2, 6, 5)), context(2, 5))
    tolerance = {torch.float64: 1e-12, torch.float32: 0.05, torch.bfloat16: 0.2}[dtype]
    assert (y.double() - reference).norm() / reference.norm() < tolerance


def test_extra_repr():
    text = repr(DynamicConv2DDelta(2, 3, 5, rank=2, padding=1, dtype_weights=torch.float32))
    for part in (
        "2, 3, context_length=5",
        "kernel_size=[3, 3]",
        "stride=[1, 1]",
        "padding=[1, 1, 1, 1]",
        "dilation=[1, 1]",
        "transpose=False",
        "output_padding=None",
        "padding_dynamic=True",
        "rank=2",
        "context_use_bias=False",
        "dynamic_weights_shape=[9, 6]",
        "dtype_weights=torch.float32",
    ):
        assert part in text


def test_compiles_with_fullgraph():
    module = golden_module(CASES["D1"][0], torch.float32)
    compiled = torch.compile(module, backend="eager", fullgraph=True)
    x, c = conv_input((2, 2, 6, 5), torch.float32), context(2, 5, torch.float32)
    torch.testing.assert_close(compiled(x, c), module(x, c))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"in_channels": 0}, ValueError, "in_channels"),
        ({"out_channels": 2.0}, TypeError, "out_channels"),
        ({"context_length": 0}, ValueError, "context_length"),
        ({"kernel_size": [3]}, ValueError, "kernel_size"),
        ({"kernel_size": 0}, ValueError, "kernel_size"),
        ({"stride": [1, 0]}, ValueError, "stride"),
        ({"dilation": "1"}, TypeError, "dilation"),
        ({"padding": [1, 2, 3]}, ValueError, "padding"),
        ({"padding": -1}, ValueError, "padding"),
        ({"transpose": True}, ValueError, "output_padding"),
        ({"output_padding": 1}, ValueError, "output_padding"),
        ({"transpose": 1}, TypeError, "transpose"),
        ({"padding_dynamic": "yes"}, TypeError, "padding_dynamic"),
        ({"context_use_bias": 0}, TypeError, "context_use_bias"),
        ({"dtype_weights": torch.int64}, TypeError, "dtype_weights"),
        ({"initialization_std": -1.0}, ValueError, "initialization_std"),
        ({"rank_noise_strength": -1.0}, ValueError, "rank_noise_strength"),
        ({"rank": 0}, ValueError, "rank"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    arguments = {"in_channels": 2, "out_channels": 3, "context_length": 5, **kwargs}
    with pytest.raises(error, match=match):
        DynamicConv2DDelta(**arguments)


def test_bad_input():
    module = DynamicConv2DDelta(2, 3, 5, rank=2, padding=1, dtype_weights=torch.float32)
    x, c = torch.randn(3, 2, 5, 5), torch.randn(3, 5)
    with pytest.raises(ValueError, match=r"context.shape\[0\] must be equal to 1 or x.shape\[0\]"):
        module(x, torch.randn(2, 5))
    with pytest.raises(ValueError, match="in_channels=2"):
        module(torch.randn(3, 4, 5, 5), c)
    with pytest.raises(ValueError, match="x must have shape"):
        module(torch.randn(2, 5, 5), c)
    with pytest.raises(ValueError, match="context_length=5"):
        module(x, torch.randn(3, 4))
    with pytest.raises(TypeError, match="x must have a floating"):
        module(x.long(), c)
    with pytest.raises(TypeError, match="context must have a floating"):
        module(x, c.long())
    with pytest.raises(ValueError, match="batch_dim"):
        module.get_weights(c, batch_dim=0)
    with pytest.raises(ValueError, match=r"context.shape\[0\]"):
        module.get_weights(c, batch_dim=2)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_devices(device):
    torch.manual_seed(0)
    module = DynamicConv2DDelta(2, 3, 5, rank=2, padding=1, device=device, dtype=torch.float32)
    assert all(t.device.type == device for t in [*module.parameters(), *module.buffers()])
    x = torch.randn(2, 2, 5, 5, device=device, requires_grad=True)
    c = torch.randn(2, 5, device=device)
    y = module.eval()(x, c)
    y.sum().backward()
    assert y.device.type == device and x.grad.device.type == device
    cpu = DynamicConv2DDelta(2, 3, 5, rank=2, padding=1, dtype=torch.float32).eval()
    cpu.load_state_dict({k: v.cpu() for k, v in module.state_dict().items()})
    torch.testing.assert_close(y.cpu(), cpu(x.detach().cpu(), c.cpu()), rtol=1e-4, atol=1e-5)


def test_input_smaller_than_the_dilated_kernel_is_a_value_error():
    # it reached conv2d and failed there with a RuntimeError before
    module = DynamicConv2DDelta(2, 3, 4, rank=2, kernel_size=3, dilation=2, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"x is too small: its padded size \(4, 4\)"):
        module(torch.randn(1, 2, 4, 4), torch.randn(1, 4))
    padded = DynamicConv2DDelta(2, 3, 4, rank=2, padding=1, dtype=torch.float32).eval()
    assert padded(torch.randn(1, 2, 1, 1), torch.randn(1, 4)).shape == (1, 3, 1, 1)
