"""Signal functions against plain PyTorch baselines: forward + backward, CPU, one process.

Each row times our function and a baseline of the same shape alternately and prints the median
times and their ratio:

- siglog vs ``sign(x) * log1p(|x|)`` through ordinary autograd;
- siglog_parametric (tensor alpha, both gradients) vs the same formula through autograd;
- backward_gradient_normalization vs the identity (its whole cost is the backward rescaling);
- log_proportional_error vs ``F.l1_loss``;
- SignalStabilizationCompressor vs ``nn.LayerNorm`` + ``nn.GELU``, eager and, with
  ``--compile``, under ``torch.compile`` (which fuses its dozen element-wise ops).

Usage: python benchmarks/functional.py [--batch 256] [--features 1024] [--repeats 15]
       [--dtype float32] [--compile]
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import time_cases

import dyna


def forward_backward(function, *inputs):
    def run():
        for tensor in inputs:
            tensor.grad = None
        function(*inputs).sum().backward()

    return run


def main(argv: list[str] | None = None) -> list[tuple[str, float, float]]:
    parser = argparse.ArgumentParser(description="DyNA signal functions vs PyTorch baselines")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--features", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--dtype", choices=["float32", "float64", "bfloat16"], default="float32")
    parser.add_argument("--compile", action="store_true", help="add torch.compile'd rows")
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype)

    torch.manual_seed(0)
    x = torch.randn(args.batch, args.features, dtype=dtype, requires_grad=True)
    y = torch.randn(args.batch, args.features, dtype=dtype, requires_grad=True)
    alpha = torch.tensor(1 / math.e, dtype=dtype, requires_grad=True)
    compressor = dyna.SignalStabilizationCompressor(trainable=True)
    layer_norm = nn.Sequential(nn.LayerNorm(args.features, dtype=dtype), nn.GELU())

    def plain_siglog_parametric(x, alpha):
        m = math.e * alpha
        return torch.where(x > 0, 1.0, -1.0) * (torch.log(x.abs() + m) - torch.log(m))

    cases = [
        (
            "siglog vs sign*log1p",
            forward_backward(dyna.siglog, x),
            forward_backward(lambda t: torch.sign(t) * torch.log1p(t.abs()), x),
        ),
        (
            "siglog_parametric vs autograd formula",
            forward_backward(dyna.siglog_parametric, x, alpha),
            forward_backward(plain_siglog_parametric, x, alpha),
        ),
        (
            "backward_gradient_normalization vs identity",
            forward_backward(dyna.backward_gradient_normalization, x),
            forward_backward(lambda t: t.view_as(t), x),
        ),
        (
            "log_proportional_error vs l1_loss",
            forward_backward(dyna.log_proportional_error, x, y),
            forward_backward(F.l1_loss, x, y),
        ),
        (
            "SignalStabilizationCompressor vs LayerNorm+GELU",
            forward_backward(compressor, x),
            forward_backward(layer_norm, x),
        ),
    ]
    if args.compile:
        cases.append(
            (
                "SSC (torch.compile) vs LayerNorm+GELU",
                forward_backward(torch.compile(compressor), x),
                forward_backward(layer_norm, x),
            )
        )
    print(
        f"forward+backward, {args.batch}x{args.features} {args.dtype}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    return time_cases(cases, repeats=args.repeats)


if __name__ == "__main__":
    main()
