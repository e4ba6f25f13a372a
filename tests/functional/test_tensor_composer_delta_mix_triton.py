"""The Triton kernels of the Delta composer's decorrelation and mixture against their twin.

Without CUDA the kernels run in Triton's interpreter on CPU tensors (the root conftest sets
``TRITON_INTERPRET``); with CUDA the same tests run compiled on the GPU (the CPU cases need the
interpreter, which is off there, and skip).
"""

from __future__ import annotations

import logging
import math

import pytest
import torch

from dyna.functional import _backend
from dyna.functional.tensor_composer_delta import (
    delta_decorrelate_mix,
    delta_decorrelate_mix_ref,
)
from tests.functional.twins import compare, rel

pytest.importorskip("triton")

INTERPRETING = _backend.triton_interpreting()
DEVICES = (["cpu"] if INTERPRETING else []) + (["cuda"] if torch.cuda.is_available() else [])


def _constants(rank):
    # The composer's defaults for rank r: a = 0.3 / sqrt(r) / max(r - 1, 1), lambda = 0.1,
    # sigma_w = 0.01, eps = 1e-12.
    return (0.3 / math.sqrt(rank) / max(rank - 1, 1), 0.1, 0.01, 1e-12)


def _inputs(batch, rank, n, device, dtype=torch.float32):
    generator = torch.Generator().manual_seed(batch * 1000 + rank * 100 + n)
    bank = torch.randn(batch, rank, n, generator=generator, dtype=torch.float64)
    logits = torch.randn(batch, rank, generator=generator, dtype=torch.float64)
    noise = torch.randn(batch, rank, n, generator=generator, dtype=torch.float64)
    mixing = torch.softmax(logits, dim=-1)
    return bank.to(device, dtype), mixing.to(device, dtype), noise.to(device, dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("with_noise", [False, True], ids=["eval", "noise"])
@pytest.mark.parametrize(
    ("batch", "rank", "n"),
    [
        (1, 1, 2),  # one filter: no repulsion, the smallest std
        (3, 2, 12),  # one ragged column tile
        (2, 4, 300),  # two column tiles (256), the second ragged: Chan's combination
        (2, 5, 70),  # padded rank (8): five tiles of 64
        (1, 16, 40),  # the largest rank the kernels take
    ],
)
def test_decorrelate_mix_kernel_matches_reference_values_and_every_gradient(
    device, with_noise, batch, rank, n
):
    bank, mixing, noise = _inputs(batch, rank, n, device)
    noise = noise if with_noise else None
    constants = _constants(rank)
    compare(
        lambda x, p: delta_decorrelate_mix(x, p, noise, *constants, backend="triton"),
        lambda x, p: delta_decorrelate_mix_ref(x, p, noise, *constants),
        [bank, mixing],
        torch.float32,
    )


@pytest.mark.parametrize("device", DEVICES)
def test_decorrelate_mix_kernel_lifts_small_values_and_keeps_a_zero_gradient_sample_zero(device):
    bank, mixing, noise = _inputs(3, 3, 20, device)
    bank[0, :, :5] = 1e-14  # lifted to eps (straight-through)
    bank[0, :, 5] = 0.0  # an exact zero stays zero
    grad = torch.randn(3, 20, generator=torch.Generator().manual_seed(3)).to(device)
    grad[1] = 0.0
    results = []
    for backend in ("triton", None):
        leaves = (bank.clone().requires_grad_(), mixing.clone().requires_grad_())
        if backend is None:
            out = delta_decorrelate_mix_ref(*leaves, noise, *_constants(3))
        else:
            out = delta_decorrelate_mix(*leaves, noise, *_constants(3), backend=backend)
        results.append((out, *torch.autograd.grad(out, leaves, grad)))
    for got, want in zip(*results, strict=True):
        assert rel(got, want) <= 1e-5
    _, got_bank, got_mixing = results[0]
    assert torch.equal(got_bank[1], torch.zeros_like(got_bank[1]))
    assert torch.equal(got_mixing[1], torch.zeros_like(got_mixing[1]))


@pytest.mark.parametrize("device", DEVICES)
def test_decorrelate_mix_kernel_takes_non_contiguous_inputs_and_half_precision_noise(device):
    # The composer draws its noise in the parameters' dtype; the kernels read any dtype.
    bank, mixing, noise = _inputs(2, 3, 24, device)
    bank_t = bank.transpose(1, 2).contiguous().transpose(1, 2)
    noise = noise.bfloat16().float()
    expected = delta_decorrelate_mix_ref(bank, mixing, noise, *_constants(3))
    got = delta_decorrelate_mix(bank_t, mixing, noise.bfloat16(), *_constants(3), backend="triton")
    assert not bank_t.is_contiguous()
    assert rel(got, expected) <= 1e-5


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("with_noise", [False, True], ids=["eval", "noise"])
def test_decorrelate_mix_kernel_bfloat16_as_accurate_as_the_torch_path(device, with_noise):
    # The spec's bfloat16 rule for the composers: within 2e-2 of the float64 result or no
    # less accurate than the torch path in bfloat16.
    bank, mixing, noise = _inputs(2, 4, 60, device, torch.float64)
    noise = noise if with_noise else None
    grad = torch.randn(2, 60, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    grad = grad.to(device)
    results = {}
    for backend, dtype in (("torch", torch.float64), ("torch", torch.bfloat16), ("triton", None)):
        dtype = dtype or torch.bfloat16
        leaves = [bank.to(dtype).requires_grad_(), mixing.to(dtype).requires_grad_()]
        draws = None if noise is None else noise.to(dtype)
        out = delta_decorrelate_mix(*leaves, draws, *_constants(4), backend=backend)
        results[backend, dtype] = (out, *torch.autograd.grad(out, leaves, grad.to(dtype)))
    exact = results["torch", torch.float64]
    torch_path, kernels = results["torch", torch.bfloat16], results["triton", torch.bfloat16]
    for want, base, got in zip(exact, torch_path, kernels, strict=True):
        assert got.dtype == torch.bfloat16
        assert rel(got, want) <= 1.1 * rel(base, want) + 2e-2


@pytest.mark.skipif(not INTERPRETING, reason="forces the kernels on CPU tensors")
def test_decorrelate_mix_dispatch_rules(caplog, monkeypatch):
    bank, mixing, noise = _inputs(2, 3, 10, "cpu")
    with pytest.raises(ValueError, match="backend"):
        delta_decorrelate_mix(bank, mixing, noise, *_constants(3), backend="gpu")
    with pytest.raises(TypeError, match="backend"):
        delta_decorrelate_mix(bank, mixing, noise, *_constants(3), backend=1)
    # float64 and ranks above 16 run the torch path, saying why.
    wide = _inputs(1, 17, 6, "cpu")
    for case in ((bank.double(), mixing.double(), noise.double()), wide):
        with caplog.at_level(logging.DEBUG, logger="dyna.backend"):
            got = delta_decorrelate_mix(*case, *_constants(case[0].shape[1]), backend="triton")
        want = delta_decorrelate_mix(*case, *_constants(case[0].shape[1]), backend="torch")
        assert torch.equal(got, want)
    assert "float64" in caplog.text and "shape (1, 17, 6)" in caplog.text

    # The default takes the torch path for CPU tensors; "triton" takes the kernels.
    from dyna.functional import tensor_composer_delta_mix_triton as kernels

    calls = []
    kernel = kernels.decorrelate_mix

    def spy(*args):
        calls.append(args[0].shape)
        return kernel(*args)

    monkeypatch.setattr(kernels, "decorrelate_mix", spy)
    delta_decorrelate_mix(bank, mixing, noise, *_constants(3))
    assert calls == []
    delta_decorrelate_mix(bank, mixing, noise, *_constants(3), backend="triton")
    assert calls == [bank.shape]


@pytest.mark.skipif(not INTERPRETING, reason="forces the kernels on CPU tensors")
def test_decorrelate_mix_kernel_refuses_a_second_derivative():
    bank, mixing, noise = _inputs(2, 3, 10, "cpu")
    leaves = (bank.requires_grad_(), mixing.requires_grad_())
    out = delta_decorrelate_mix(*leaves, noise, *_constants(3), backend="triton")
    (grad_bank, _) = torch.autograd.grad(out.square().sum(), leaves, create_graph=True)
    assert grad_bank.requires_grad
    with pytest.raises(RuntimeError, match="no autograd formula"):
        grad_bank.sum().backward()
