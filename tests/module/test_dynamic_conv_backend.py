"""``backend=`` on the dynamic convolutions and their composers: checked, shown, passed down.

The Triton paths run in Triton's interpreter on CPU tensors without a GPU (the root conftest
sets ``TRITON_INTERPRET``), compiled on CUDA tensors where a GPU is present.
"""

from __future__ import annotations

import pytest
import torch

from dyna import DynamicConv2DDelta, DynamicConv2DMobius
from dyna.functional import _backend
from dyna.lib import TensorComposerDelta, TensorComposerMobius
from tests.functional.twins import rel

SMALL_MOBIUS = {"n_subspaces": 2, "rank_subspace": 3, "rank_transformations": 2}
CUDA = torch.cuda.is_available()
# The CPU cases force the kernels, which needs the interpreter (off on a GPU machine).
DEVICES = (["cpu"] if _backend.triton_interpreting() else []) + (["cuda"] if CUDA else [])


def _build(name, **kwargs):
    if name == "delta":
        return DynamicConv2DDelta(2, 3, 5, rank=2, padding=1, dtype=torch.float32, **kwargs)
    if name == "mobius":
        return DynamicConv2DMobius(
            2, 3, 5, padding=1, dtype=torch.float32, **SMALL_MOBIUS, **kwargs
        )
    if name == "composer-delta":
        return TensorComposerDelta([4, 3], 5, rank=2, dtype=torch.float32, **kwargs)
    return TensorComposerMobius([4, 3], 5, dtype=torch.float32, **SMALL_MOBIUS, **kwargs)


NAMES = ["delta", "mobius", "composer-delta", "composer-mobius"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("backend", "error"), [("gpu", ValueError), (1, TypeError)])
def test_bad_backend_is_refused_at_construction(name, backend, error):
    with pytest.raises(error, match="backend"):
        _build(name, backend=backend)


@pytest.mark.parametrize("name", NAMES)
def test_backend_is_stored_and_shown(name):
    assert _build(name).backend is None
    assert "backend" not in _build(name).extra_repr()
    module = _build(name, backend="torch")
    assert module.backend == "torch"
    assert module.extra_repr().endswith("backend='torch'")


@pytest.mark.parametrize("name", ["delta", "mobius"])
def test_convolution_passes_its_backend_to_the_composer_and_keeps_its_state_dict(name):
    module = _build(name, backend="torch")
    assert module.weights_lib.backend == "torch"
    assert module.state_dict().keys() == _build(name).state_dict().keys()


def test_mobius_composer_hands_its_backend_to_the_projection(monkeypatch):
    import dyna.lib.tensor_composer_mobius as composer_module

    seen = []
    projection = composer_module.mobius_projection

    def spy(*args, backend=None):
        seen.append(backend)
        return projection(*args, backend="torch")

    monkeypatch.setattr(composer_module, "mobius_projection", spy)
    _build("composer-mobius", backend="triton")(torch.randn(2, 5))
    assert seen == ["triton"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["delta", "mobius"])
def test_triton_backend_matches_torch_backend_values_and_gradients(device, name):
    torch.manual_seed(0)
    torch_module = _build(name, backend="torch", device=device)
    triton_module = _build(name, backend="triton", device=device)
    triton_module.load_state_dict(torch_module.state_dict())
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, 6, 5, generator=generator).to(device)
    context = torch.randn(3, 5, generator=generator).to(device)
    results = []
    for module in (torch_module, triton_module):
        module.eval()
        inputs = (x.clone().requires_grad_(), context.clone().requires_grad_())
        out = module(*inputs)
        grads = torch.autograd.grad(out.square().sum(), (*inputs, *module.parameters()))
        results.append((out, *grads))
    # The spec's float32 parity: relative error of the whole tensor at most 1e-5.
    for expected, got in zip(*results, strict=True):
        assert got.shape == expected.shape
        assert rel(got, expected) <= 1e-5
