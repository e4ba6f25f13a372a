"""Forward and backward of every layer run under ``torch.use_deterministic_algorithms(True)``
and two runs from the same seed give bitwise-identical outputs and gradients."""

import pytest
import torch

from tests.ecosystem.layers import first_tensor, layer_cases

CASES = layer_cases()


def _run(name):
    factory, inputs = CASES[name]
    torch.manual_seed(0)
    layer = factory().train()
    inputs = [
        [t.clone().requires_grad_() for t in item] if isinstance(item, list) else item.clone()
        for item in inputs
    ]
    leaves = [t for item in inputs for t in (item if isinstance(item, list) else [item])]
    for leaf in leaves:
        leaf.requires_grad_()
    out = first_tensor(layer(*inputs))
    weights = torch.cos(torch.arange(out.numel(), dtype=out.dtype)).view_as(out)
    (out * weights).sum().backward()
    grads = [p.grad for p in layer.parameters() if p.grad is not None]
    grads += [leaf.grad for leaf in leaves if leaf.grad is not None]
    buffers = [b.clone() for b in layer.buffers()]
    return out.detach(), grads, buffers


@pytest.fixture
def deterministic():
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(previous)


@pytest.mark.parametrize("name", list(CASES))
def test_two_runs_are_bitwise_identical(name, deterministic):
    first, second = _run(name), _run(name)
    assert torch.isfinite(first[0]).all()
    assert torch.equal(first[0], second[0])
    assert len(first[1]) == len(second[1]) and first[1]
    for a, b in zip(first[1], second[1], strict=True):
        assert torch.equal(a, b)
    for a, b in zip(first[2], second[2], strict=True):
        assert torch.equal(a, b)
