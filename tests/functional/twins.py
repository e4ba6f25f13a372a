"""Compare a fast path with its plain ``*_ref`` twin: outputs and gradients."""

from __future__ import annotations

import torch

TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).norm() / b.detach().double().norm())


def compare(fast, ref, inputs, dtype, seed=0):
    """Outputs and gradients (for a fixed random upstream) of two functions agree."""
    leaves_fast = [t.detach().clone().requires_grad_() for t in inputs]
    leaves_ref = [t.detach().clone().requires_grad_() for t in inputs]
    out_fast, out_ref = fast(*leaves_fast), ref(*leaves_ref)
    outs_fast = out_fast if isinstance(out_fast, tuple) else (out_fast,)
    outs_ref = out_ref if isinstance(out_ref, tuple) else (out_ref,)
    gen = torch.Generator().manual_seed(seed)
    upstream = [
        torch.randn(o.shape, generator=gen, dtype=torch.float64).to(dtype) for o in outs_ref
    ]
    torch.autograd.backward(outs_fast, upstream)
    torch.autograd.backward(outs_ref, upstream)
    for a, b in zip(outs_fast, outs_ref, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert rel(a, b) <= TOL[dtype]
    for a, b in zip(leaves_fast, leaves_ref, strict=True):
        assert rel(a.grad, b.grad) <= TOL[dtype]
