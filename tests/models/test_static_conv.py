"""StaticConvClassifier (the static baseline) and the parameter-matching rule."""

import pytest
import torch

from dyna.models import (
    DynamicConvClassifier,
    StaticConvClassifier,
    matched_static_channels,
    static_parameter_count,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def count(model):
    return sum(parameter.numel() for parameter in model.parameters())


def test_same_shape_as_the_dynamic_network():
    static = StaticConvClassifier(channels=(8, 16), pool=False)
    dynamic = DynamicConvClassifier(channels=(8, 16), pool=False)
    assert static.conv.weight.shape == dynamic.conv.weight.shape == (8, 1, 3, 3)
    assert static.static_conv.weight.shape == (16, 8, 3, 3)
    assert static.readout.weight.shape == dynamic.readout.weight.shape == (10, 16)
    # By hand: conv 1->8 (9 + 1) * 8 = 80, conv 8->16 (72 + 1) * 16 = 1168, readout 17 * 10.
    assert count(static) == static_parameter_count(1, 10, (8, 16)) == 80 + 1168 + 170 == 1418
    assert count(StaticConvClassifier(3, 7, (5, 6))) == static_parameter_count(3, 7, (5, 6))


@pytest.mark.parametrize("pool", [False, True])
def test_forward_matches_the_layers_by_hand(pool):
    torch.manual_seed(0)
    model = StaticConvClassifier(channels=(4, 6), pool=pool)
    images = torch.rand(5, 1, 8, 8)
    features = torch.relu(
        torch.nn.functional.conv2d(images, model.conv.weight, model.conv.bias, padding=1)
    )
    if pool:
        features = torch.nn.functional.max_pool2d(features, 2)
    features = torch.relu(
        torch.nn.functional.conv2d(
            features, model.static_conv.weight, model.static_conv.bias, padding=1
        )
    )
    expected = features.mean(dim=(2, 3)) @ model.readout.weight.T + model.readout.bias
    out = model(images)
    assert out.shape == (5, 10)
    torch.testing.assert_close(out, expected)


def test_matched_channels_by_hand():
    # The Delta network of the digits experiment has 38,036 parameters. Static (45, 90):
    # 10 * 45 + 406 * 90 + 91 * 10 = 37,900 (136 short); (46, 92): 460 + 415 * 92 + 930 =
    # 39,570 (1,534 over): (45, 90) is the closest.
    assert static_parameter_count(1, 10, (45, 90)) == 37900
    assert static_parameter_count(1, 10, (46, 92)) == 39570
    assert matched_static_channels(38036, 1, 10, (8, 16)) == (45, 90)
    # The ratio c2 / c1 = 1.5 is kept (rounded): (26, 39) has 260 + 235 * 39 + 400 = 9,825
    # (175 short of 10,000), (27, 40) has 270 + 244 * 40 + 410 = 10,440 (440 over).
    assert static_parameter_count(1, 10, (26, 39)) == 9825
    assert static_parameter_count(1, 10, (27, 40)) == 10440
    assert matched_static_channels(10_000, 1, 10, (8, 12)) == (26, 39)
    # A tiny target gives the smallest network.
    assert matched_static_channels(1, 1, 10, (8, 16)) == (1, 2)


@pytest.mark.parametrize("kind", ["delta", "mobius"])
@pytest.mark.parametrize("channels", [(8, 16), (16, 32)])
def test_matched_channels_are_the_closest(kind, channels):
    target = count(
        DynamicConvClassifier(channels=channels, context_length=8, kind=kind, device="meta")
    )
    first, second = matched_static_channels(target, 1, 10, channels)
    assert second == round(first * channels[1] / channels[0])
    best = abs(static_parameter_count(1, 10, (first, second)) - target)
    for width in (first - 1, first + 1):
        other = (width, round(width * channels[1] / channels[0]))
        assert best <= abs(static_parameter_count(1, 10, other) - target)
    assert best / target < 0.02


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtypes_and_factory_kwargs(device, dtype):
    model = StaticConvClassifier(channels=(2, 3), device=device, dtype=dtype)
    assert all(p.dtype == dtype and p.device.type == device for p in model.parameters())
    out = model(torch.rand(2, 1, 8, 8, device=device, dtype=dtype))
    assert out.shape == (2, 10) and out.dtype == dtype
    out.float().sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_meta_state_dict_repr_compile():
    model = StaticConvClassifier(channels=(2, 3), device="meta")
    model.to_empty(device="cpu")
    model.reset_parameters()
    copy = StaticConvClassifier(channels=(2, 3))
    copy.load_state_dict(model.state_dict())
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(copy(x), model(x))
    assert "in_channels=1, n_output=10, channels=(2, 3), pool=True" in repr(model)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), model(x))


def test_bad_input():
    with pytest.raises(TypeError, match="channels"):
        StaticConvClassifier(channels=4)
    with pytest.raises(ValueError, match="channels"):
        StaticConvClassifier(channels=(0, 4))
    with pytest.raises(ValueError, match="in_channels"):
        StaticConvClassifier(in_channels=0)
    with pytest.raises(ValueError, match="input must be"):
        StaticConvClassifier()(torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match="target"):
        matched_static_channels(0, 1, 10, (8, 16))
    with pytest.raises(TypeError, match="channels"):
        static_parameter_count(1, 10, (8,))
