"""The CNU layers under ``torch.compile``: full-graph capture, compiled == eager, both backends.

Training mode with scrambling, so that every call is a whole online step (key matching, the
scrambling test, the key pull, counters, the blend). ``aot_eager`` traces forward and backward
as inductor would but runs eager kernels: cheap enough for every run of the suite. On CUDA the
four dynamic layers are also captured as CUDA graphs (``mode="reduce-overhead"``).
"""

import pytest
import torch

from dyna import Conv2dCNU, DynamicConv2DDelta, DynamicConv2DMobius, LinearCNU
from dyna.functional import _backend

pytest.importorskip("triton")

# backend="triton" on CPU tensors needs the interpreter (off on a GPU machine).
_interpreted = pytest.mark.skipif(
    not _backend.triton_interpreting(), reason="forces the kernels on CPU tensors"
)


def _linear(backend, device="cpu"):
    torch.manual_seed(3)
    return LinearCNU(
        6, 4, key_mem_units=5, delta=2, scramble=True, tau_alpha=0.9, backend=backend
    ).to(device)


def _conv(backend, device="cpu"):
    torch.manual_seed(3)
    return Conv2dCNU(
        2, 3, 3, padding=1, key_mem_units=3, delta=2, scramble=True, backend=backend
    ).to(device)


def _step(layer, x):
    x = x.detach().requires_grad_()
    layer.zero_grad(set_to_none=True)
    out = layer(x)
    (out * torch.linspace(-1.0, 2.0, out.numel(), device=x.device).view_as(out)).sum().backward()
    return out.detach(), x.grad, layer.M.grad.clone()


def _state(layer):
    return [getattr(layer, name).clone() for name in ("K", "mu", "eta", "scrambling_count")]


@pytest.mark.parametrize(
    ("build", "backend", "shape"),
    [
        (_linear, "torch", (5, 6)),
        pytest.param(_linear, "triton", (5, 6), marks=_interpreted),
        (_conv, "torch", (2, 2, 6, 6)),
    ],
)
def test_compiled_equals_eager_over_online_steps(build, backend, shape):
    eager, twin = build(backend), build(backend)
    compiled = torch.compile(twin, backend="aot_eager", fullgraph=True)
    torch.manual_seed(0)
    for x in torch.randn(2, *shape):
        expected, got = _step(eager, x), _step(compiled, x)
        for want, have in zip(expected, got, strict=True):
            torch.testing.assert_close(have, want, rtol=1e-5, atol=1e-6)
        for want, have in zip(_state(eager), _state(twin), strict=True):
            torch.testing.assert_close(have, want, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["LinearCNU", "Conv2dCNU", "Delta", "Mobius"])
def test_cuda_graphs_capture_every_dynamic_layer(name):
    device = "cuda"
    if name == "LinearCNU":
        layers = [_linear(None, device) for _ in range(2)]
        inputs = (torch.randn(8, 6, device=device),)
    elif name == "Conv2dCNU":
        layers = [_conv(None, device) for _ in range(2)]
        inputs = (torch.randn(4, 2, 6, 6, device=device),)
    else:
        cls = DynamicConv2DDelta if name == "Delta" else DynamicConv2DMobius
        layers = []
        for _ in range(2):
            torch.manual_seed(3)
            layers.append(cls(2, 3, 5, padding=1, device=device).eval())
        inputs = (torch.randn(4, 2, 6, 6, device=device), torch.randn(4, 5, device=device))
    eager, twin = layers
    compiled = torch.compile(twin, mode="reduce-overhead", fullgraph=True)
    for _ in range(3):  # warm-up, recording, replay
        expected = eager(*inputs)
        got = compiled(*inputs)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        expected.sum().backward()
        got.sum().backward()
    for (name, want), have in zip(eager.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(have.grad, want.grad, rtol=1e-4, atol=1e-4, msg=name)
