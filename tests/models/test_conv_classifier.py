"""DynamicConvClassifier: static conv, dynamic conv with a context from the image, readout."""

import pytest
import torch

from dyna.models import DynamicConvClassifier
from dyna.module import DynamicConv2DDelta, DynamicConv2DMobius

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("kind", ["mobius", "delta"])
def test_forward_and_backward_reach_every_parameter(kind):
    torch.manual_seed(0)
    model = DynamicConvClassifier(channels=(4, 6), context_length=3, kind=kind, pool=False)
    expected = DynamicConv2DMobius if kind == "mobius" else DynamicConv2DDelta
    assert isinstance(model.dynamic_conv, expected)
    out = model(torch.rand(5, 1, 8, 8))
    assert out.shape == (5, 10)
    out.square().sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_kernels_depend_on_the_image():
    # The context is computed from each image, so one image's logits do not depend on the
    # others in the batch, and two different images get different kernels.
    torch.manual_seed(0)
    model = DynamicConvClassifier(channels=(4, 6), context_length=3).eval()
    images = torch.rand(3, 1, 12, 12)
    torch.testing.assert_close(model(images)[1:2], model(images[1:2]), rtol=1e-5, atol=1e-6)
    features = torch.relu(model.conv(images)).amax(dim=(2, 3))
    context = torch.tanh(model.context(features))
    assert not torch.allclose(context[0], context[1])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtypes_and_factory_kwargs(device, dtype):
    model = DynamicConvClassifier(channels=(2, 3), context_length=2, device=device, dtype=dtype)
    assert all(p.dtype == dtype and p.device.type == device for p in model.parameters())
    out = model(torch.rand(2, 1, 8, 8, device=device, dtype=dtype))
    assert out.shape == (2, 10) and out.dtype == dtype


def test_meta_state_dict_repr_and_bad_input():
    model = DynamicConvClassifier(channels=(2, 3), context_length=2, device="meta")
    model.to_empty(device="cpu")
    model.reset_parameters()
    copy = DynamicConvClassifier(channels=(2, 3), context_length=2)
    copy.load_state_dict(model.state_dict())
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(copy.eval()(x), model.eval()(x))
    assert "kind='mobius'" in repr(model) and "channels=(2, 3)" in repr(model)
    with pytest.raises(ValueError, match="kind"):
        DynamicConvClassifier(kind="static")
    with pytest.raises(TypeError, match="channels"):
        DynamicConvClassifier(channels=4)
    with pytest.raises(ValueError, match="input must be"):
        model(torch.rand(1, 8, 8))
