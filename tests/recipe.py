"""The deterministic fills of the dynamic-weights golden values (tensor composers, dynamic convs).

Golden values computed by the reference DyNA at 01c17ea use: parameter k of a fill list with
amplitude a, ``t.flatten()[i] = a sin(0.37 i + 0.7 k + 0.1)`` (computed in float64, cast to t's
dtype); context ``c[b, j] = 1.5 sin(0.5 (b Lc + j) + 0.3)``; convolution input
``x.flatten()[i] = cos(0.29 i + 0.4) + 0.1 sin(1.3 i)``; loss ``sum_i y[i] cos(0.11 i + 0.2)``;
and the probe of a gradient ``sum_i g[i] cos(0.23 i)``.
"""

from __future__ import annotations

import math

import torch


def fill(tensor: torch.Tensor, k: int, amplitude: float) -> None:
    i = torch.arange(tensor.numel(), dtype=torch.float64)
    values = amplitude * torch.sin(0.37 * i + 0.7 * k + 0.1)
    with torch.no_grad():
        tensor.copy_(values.reshape(tensor.shape).to(tensor.dtype))


def context(batch: int, length: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    i = torch.arange(batch * length, dtype=torch.float64)
    return (1.5 * torch.sin(0.5 * i + 0.3)).reshape(batch, length).to(dtype)


def conv_input(shape: tuple[int, ...], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    i = torch.arange(math.prod(shape), dtype=torch.float64)
    return (torch.cos(0.29 * i + 0.4) + 0.1 * torch.sin(1.3 * i)).reshape(shape).to(dtype)


def loss(y: torch.Tensor) -> torch.Tensor:
    i = torch.arange(y.numel(), dtype=torch.float64)
    return (y.flatten() * torch.cos(0.11 * i + 0.2).to(y.dtype)).sum()


def probe(gradient: torch.Tensor) -> float:
    i = torch.arange(gradient.numel(), dtype=torch.float64)
    return float((gradient.detach().flatten().double() * torch.cos(0.23 * i)).sum())
