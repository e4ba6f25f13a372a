"""GPU section: the dynamic convolutions and the CNU layers against their static layers.

Forward + backward in training mode (scrambling on for the CNU layers), the candidate and its
baseline run alternately in one process, median times and their ratio; every call ends with a
device synchronisation so that the wall time covers the kernels. The cases are those of the
GPU issue's table:

- ``DynamicConv2DDelta`` and ``DynamicConv2DMobius``, 64 -> 64 channels, 32x32 input, 3x3,
  padding 1, context 64, at B = 32 and B = 128, against ``nn.Conv2d``;
- ``LinearCNU(512, 256)`` with m = 16, δ = 2 at b = 64 and b = 1024, and m = 64, δ = 4 at
  b = 64, against ``nn.Linear(512, 256)``.

``--smoke`` runs every case once at tiny sizes on the CPU (for CI); the figures then mean
nothing. ``--backend`` is passed to every layer. ``benchmarks/gpu.py`` runs the same cases in
its ``dynconv`` and ``cnu`` sections through :func:`conv_candidates` and
:func:`cnu_candidates`, with the torch paths beside the kernels.
Usage: python benchmarks/_gpu_layers.py [--repeats 20] [--smoke] [--backend torch|triton]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import time_cases

import dyna
from dyna.module import LinearCNU


def _synchronised(function, device):
    if device.type != "cuda":
        return function

    def run():
        function()
        torch.cuda.synchronize(device)

    return run


def _forward_backward(module, inputs):
    def run():
        for tensor in inputs:
            tensor.grad = None
        module.zero_grad(set_to_none=True)
        module(*inputs).sum().backward()

    return run


class _StaticConv(nn.Conv2d):
    """``nn.Conv2d`` with the dynamic convolutions' call signature (the context is ignored)."""

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return super().forward(x)


def conv_candidates(cls, batch, channels, image, context, device, backend=None, with_torch=False):
    """Forward + backward callables: ``cls`` (and its torch path) and ``nn.Conv2d``, by name.

    The dynamic layer runs in training mode; every callable builds its graph afresh.
    """
    x = torch.randn(batch, channels, image, image, device=device, requires_grad=True)
    contexts = torch.randn(batch, context, device=device, requires_grad=True)
    short = cls.__name__.removeprefix("DynamicConv2D")
    backends = {short: backend} | ({f"{short}-torch": "torch"} if with_torch else {})
    candidates = {}
    for name, choice in backends.items():
        torch.manual_seed(0)
        module = cls(channels, channels, context, kernel_size=3, padding=1, backend=choice)
        candidates[name] = _forward_backward(module.to(device).train(), (x, contexts))
    static = _StaticConv(channels, channels, 3, padding=1, device=device)
    candidates["Conv2d"] = _forward_backward(static, (x, contexts))
    return candidates


def cnu_candidates(
    memories, delta, batch, in_features, out_features, device, backend=None, with_torch=False
):
    """Forward + backward callables: ``LinearCNU`` (and its torch path) and ``nn.Linear``."""
    x = torch.randn(batch, in_features, device=device, requires_grad=True)
    backends = {"LinearCNU": backend} | ({"LinearCNU-torch": "torch"} if with_torch else {})
    candidates = {}
    for name, choice in backends.items():
        torch.manual_seed(0)
        layer = LinearCNU(
            in_features,
            out_features,
            key_mem_units=memories,
            delta=delta,
            scramble=True,
            device=device,
            backend=choice,
        ).train()
        candidates[name] = _forward_backward(layer, (x,))
    linear = nn.Linear(in_features, out_features, device=device)
    candidates["Linear"] = _forward_backward(linear, (x,))
    return candidates


def conv_cases(batches, channels, image, context, device, backend):
    """(name, candidate, baseline) for both dynamic convolutions at every batch size."""
    cases = []
    for batch in batches:
        for cls in (dyna.DynamicConv2DDelta, dyna.DynamicConv2DMobius):
            candidates = conv_candidates(cls, batch, channels, image, context, device, backend)
            name = f"{cls.__name__} B={batch} vs Conv2d"
            short = cls.__name__.removeprefix("DynamicConv2D")
            cases.append((name, candidates[short], candidates["Conv2d"]))
    return cases


def cnu_cases(settings, in_features, out_features, device, backend):
    """(name, candidate, baseline) for LinearCNU at every (m, δ, b) setting."""
    cases = []
    for memories, delta, batch in settings:
        candidates = cnu_candidates(
            memories, delta, batch, in_features, out_features, device, backend
        )
        name = f"LinearCNU m={memories} d={delta} b={batch} vs Linear"
        cases.append((name, candidates["LinearCNU"], candidates["Linear"]))
    return cases


def main(argv: list[str] | None = None) -> list[tuple[str, float, float]]:
    parser = argparse.ArgumentParser(description="dynamic layers vs static layers on the GPU")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--backend", choices=["torch", "triton"], default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run of every case")
    args = parser.parse_args(argv)
    if args.smoke:
        device = torch.device("cpu")
        cases = conv_cases([2, 3], 4, 8, 6, device, args.backend) + cnu_cases(
            [(4, 2, 3), (6, 3, 2)], 8, 4, device, args.backend
        )
        repeats, warmup = 1, 0
    else:
        if not torch.cuda.is_available():
            parser.error("needs CUDA (or --smoke)")
        device = torch.device("cuda")
        torch.manual_seed(0)
        cases = conv_cases([32, 128], 64, 32, 64, device, args.backend) + cnu_cases(
            [(16, 2, 64), (16, 2, 1024), (64, 4, 64)], 512, 256, device, args.backend
        )
        repeats, warmup = args.repeats, args.warmup
        print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    cases = [
        (name, _synchronised(candidate, device), _synchronised(baseline, device))
        for name, candidate, baseline in cases
    ]
    return time_cases(cases, repeats=repeats, warmup=warmup)


if __name__ == "__main__":
    main()
