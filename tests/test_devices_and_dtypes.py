"""Every public function and layer on every available device and in every supported dtype.

Runs on CPU always and on CUDA when present. Each case compares the device/dtype result with a
float64 CPU computation at a tolerance suited to the dtype, and checks that gradients come
back with the input's dtype and device.
"""

import pytest
import torch

import dyna

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float32, torch.float64, torch.bfloat16]
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 3e-2}


def _cases():
    alpha = torch.tensor(0.7)
    return {
        "siglog": lambda x: dyna.siglog(x),
        "siglog_parametric": lambda x: dyna.siglog_parametric(x, alpha),
        "backward_gradient_normalization": lambda x: dyna.backward_gradient_normalization(x),
        "log_proportional_error": lambda x: dyna.log_proportional_error(
            x, x.detach().flip(-1), "none"
        ),
        "noiseover": lambda x: dyna.noiseover(x, 0.0),
        "noisein": lambda x: dyna.noisein(x, 0.0),
        "SignalStabilizationCompressor": lambda x: dyna.SignalStabilizationCompressor(
            bgn_mid=True, device=x.device
        )(x),
    }


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(_cases()))
def test_matches_float64_cpu(name, dtype, device):
    function = _cases()[name]
    base = torch.linspace(-3, 3, 24, dtype=torch.float64).reshape(4, 6)
    x = base.to(device=device, dtype=dtype).requires_grad_()
    reference_x = base.to(dtype).double().requires_grad_()  # same rounded input, exact maths
    out = function(x)
    reference = function(reference_x)
    assert out.dtype == dtype and out.device.type == device and out.shape == (4, 6)
    weights = torch.linspace(0.5, 1.5, 24, dtype=torch.float64).reshape(4, 6)
    (out * weights.to(device=device, dtype=dtype)).sum().backward()
    (reference * weights).sum().backward()
    assert x.grad.dtype == dtype and x.grad.device.type == device
    tolerance = TOLERANCE[dtype]
    if name == "SignalStabilizationCompressor" and dtype != torch.float64:
        # float32/bfloat16 use the leak/eps arguments, float64 the dtype's own constants.
        tolerance = max(tolerance, 1e-2)
    for ours, expected in ((out, reference), (x.grad, reference_x.grad)):
        error = (ours.detach().double().cpu() - expected.detach()).norm() / expected.norm()
        assert error <= tolerance, f"{name} {dtype} {device}: relative error {error:.2e}"


@pytest.mark.parametrize("device", DEVICES)
def test_noisein_noise_on_device(device):
    torch.manual_seed(3)
    x = torch.randn(3, 10, device=device)
    out = dyna.noisein(x, 0.3)
    assert out.device.type == device
    changed = (out != x).sum(dim=1)
    assert bool((changed <= 3).all())
