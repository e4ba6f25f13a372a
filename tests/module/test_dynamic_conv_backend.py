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
def test_triton_backend_is_as_accurate_as_the_torch_backend(device, name):
    # Whole layers amplify rounding (the Delta bank is ill-conditioned at its initial scale:
    # float32 is ~1e-3 from float64 there), so both float32 paths are held to a float64 run:
    # the kernels no less accurate than the torch path, and close to it.
    torch.manual_seed(0)
    state = _build(name).state_dict()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, 6, 5, generator=generator, dtype=torch.float64)
    context = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    results = {}
    for backend, dtype in (("torch", torch.float64), ("torch", torch.float32), ("triton", None)):
        module = _build(name, backend=backend, device=device).eval()
        module = module.to(torch.float64) if dtype == torch.float64 else module
        module.load_state_dict(state)
        dtype = dtype or torch.float32
        inputs = (x.to(device, dtype).requires_grad_(), context.to(device, dtype).requires_grad_())
        out = module(*inputs)
        grads = torch.autograd.grad(out.square().sum(), (*inputs, *module.parameters()))
        results[backend, dtype] = (out, *grads)
    exact = results["torch", torch.float64]
    torch_path, kernels = results["torch", torch.float32], results["triton", torch.float32]
    for want, base, got in zip(exact, torch_path, kernels, strict=True):
        assert got.shape == want.shape and got.dtype == torch.float32
        assert rel(got, want) <= 1.1 * rel(base, want) + 1e-5
        assert rel(got, base) <= 1e-4


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["delta", "mobius"])
def test_triton_backend_compiles_whole_and_matches_eager(device, name):
    torch.manual_seed(0)
    eager = _build(name, backend="triton", device=device).train()
    twin = _build(name, backend="triton", device=device).train()
    twin.load_state_dict(eager.state_dict())
    compiled = torch.compile(twin, backend="aot_eager", fullgraph=True)
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, 2, 6, 5, generator=generator).to(device)
    context = torch.randn(2, 5, generator=generator).to(device)
    results = []
    for module in (eager, compiled):
        torch.manual_seed(5)  # the same training-mode noise draws
        inputs = (x.clone().requires_grad_(), context.clone().requires_grad_())
        out = module(*inputs)
        results.append((out, *torch.autograd.grad(out.square().sum(), inputs)))
    for want, got in zip(*results, strict=True):
        assert rel(got, want) <= 1e-5


@pytest.mark.parametrize("device", DEVICES)
def test_delta_composer_triton_backend_draws_the_same_training_noise(device):
    # Training mode: the filter and rank noise are drawn in torch on both paths, so the same
    # seed gives the same draws and the kernels' result is the torch path's to rounding.
    torch.manual_seed(0)
    state = _build("composer-delta").state_dict()
    context = torch.randn(3, 5, generator=torch.Generator().manual_seed(4)).to(device)
    results = []
    for backend in ("torch", "triton"):
        module = _build("composer-delta", backend=backend, device=device).train()
        module.load_state_dict(state)
        torch.manual_seed(9)
        leaf = context.clone().requires_grad_()
        out = module(leaf)
        grads = torch.autograd.grad(out.square().sum(), (leaf, *module.parameters()))
        results.append((out, *grads))
    torch.manual_seed(10)  # other draws move the output: the noise is really there
    other = _build("composer-delta", backend="triton", device=device).train()
    other.load_state_dict(state)
    assert rel(other(context), results[1][0]) > 1e-4
    for want, got in zip(*results, strict=True):
        assert rel(got, want) <= 1e-4
