"""Dynamic convolutions against a static ``nn.Conv2d`` of the same shape, in one process.

Forward + backward (loss = sum of the output) of each dynamic convolution in training mode,
weight generation included, timed alternately with a static ``nn.Conv2d(C, C, k, padding=p)``
on the same input; rows print the median times and their ratio. Default setup: B = 32,
64 -> 64 channels, 32x32 input, 3x3 kernels, padding 1, context length 64, composer defaults
(Delta rank 4; Mobius C = R = Rz = 16, so a 192x192 generated matrix), float32 on the CPU.

Extra rows: the weight generation alone (``get_weights`` forward + backward), the grouped
convolution alone with fixed per-sample kernels, bfloat16 modules with float32 input and
context, and a context batch of 1 shared by the whole batch.

``--compile``: rows for both layers under ``torch.compile(module, fullgraph=True)`` (default
backend inductor; ``--compile-backend`` to change it), against the eager static convolution and
against the static convolution compiled the same way. Compilation happens before the timing
(one call, then the warm-up runs). ``--threads`` sets ``torch.set_num_threads``.
``--retain-freed-memory`` keeps freed large blocks in glibc's heap, as the ``dyna`` command does
(:mod:`dyna.train.allocator`): without it, much of a step's memory is faulted in afresh.

Usage: python benchmarks/dynamic_conv.py [--batch 32] [--channels 64] [--size 32]
       [--kernel 3] [--context 64] [--repeats 7] [--warmup 2] [--no-extra] [--compile]
       [--compile-backend inductor] [--threads N] [--retain-freed-memory]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import add_allocator_option, allocator_setting, time_cases

import dyna
from dyna.functional.dynamic_conv import per_sample_conv2d


def forward_backward(module, x, context, tensors):
    def run():
        for tensor in [*module.parameters(), *tensors]:
            tensor.grad = None
        module(x, context).sum().backward()

    return run


class StaticConv(nn.Module):
    """``nn.Conv2d`` with the dynamic convolutions' call signature (the context is ignored)."""

    def __init__(self, channels: int, kernel: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel, padding=padding)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def main(argv: list[str] | None = None) -> list[tuple[str, float, float]]:
    parser = argparse.ArgumentParser(description="Dynamic convolutions vs a static nn.Conv2d")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--kernel", type=int, default=3)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-extra", action="store_true", help="only the main rows")
    parser.add_argument("--compile", action="store_true", help="add torch.compile rows")
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    add_allocator_option(parser)
    args = parser.parse_args(argv)
    allocator = allocator_setting(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    channels, kernel, padding = args.channels, args.kernel, args.kernel // 2
    x = torch.randn(args.batch, channels, args.size, args.size, requires_grad=True)
    context = torch.randn(args.batch, args.context, requires_grad=True)
    static = StaticConv(channels, kernel, padding)
    baseline = forward_backward(static, x, context, [x])

    def make(cls, dtype, **kwargs):
        return cls(
            channels,
            channels,
            args.context,
            kernel_size=kernel,
            padding=padding,
            dtype_weights=dtype,
            **kwargs,
        ).train()

    delta = make(dyna.DynamicConv2DDelta, torch.float32)
    mobius = make(dyna.DynamicConv2DMobius, torch.float32)
    cases = [
        ("DynamicConv2DDelta", forward_backward(delta, x, context, [x, context])),
        ("DynamicConv2DMobius", forward_backward(mobius, x, context, [x, context])),
    ]
    baselines = {}
    if args.compile:

        def compiled(module):
            # The same parameters, compiled; one call compiles forward and backward.
            run = forward_backward(
                torch.compile(module, backend=args.compile_backend, fullgraph=True),
                x,
                context,
                [x, context],
            )
            run()
            return run

        compiled_delta, compiled_mobius = compiled(delta), compiled(mobius)
        compiled_static = compiled(static)
        cases += [
            ("Delta compiled", compiled_delta),
            ("Mobius compiled", compiled_mobius),
            ("Delta compiled vs compiled conv", compiled_delta),
            ("Mobius compiled vs compiled conv", compiled_mobius),
        ]
        baselines = {name: compiled_static for name, _ in cases[-2:]}
    if not args.no_extra:

        def weights_only(module):
            def run():
                module.zero_grad(set_to_none=True)
                context.grad = None
                module.get_weights(context, batch_dim=args.batch).sum().backward()

            return run

        fixed = torch.randn(args.batch, channels, channels, kernel, kernel, requires_grad=True)

        def grouped_conv():
            x.grad = None
            fixed.grad = None
            padded = nn.functional.pad(x, [padding] * 4)
            per_sample_conv2d(padded, fixed).sum().backward()

        shared = context[:1]
        cases += [
            ("Delta weight generation only", weights_only(delta)),
            ("Mobius weight generation only", weights_only(mobius)),
            ("grouped conv, fixed kernels", grouped_conv),
            ("Delta, context batch 1", forward_backward(delta, x, shared, [x, context])),
            ("Mobius, context batch 1", forward_backward(mobius, x, shared, [x, context])),
            (
                "Delta bfloat16 module, float32 x",
                forward_backward(make(dyna.DynamicConv2DDelta, torch.bfloat16), x, context, [x]),
            ),
            (
                "Mobius bfloat16 module, float32 x",
                forward_backward(make(dyna.DynamicConv2DMobius, torch.bfloat16), x, context, [x]),
            ),
        ]
    print(
        f"forward+backward, B={args.batch}, {channels}->{channels} channels, "
        f"{args.size}x{args.size}, {kernel}x{kernel}, context {args.context}, float32 input, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {allocator}; "
        f"baseline nn.Conv2d"
    )
    return time_cases(
        [(name, candidate, baselines.get(name, baseline)) for name, candidate in cases],
        repeats=args.repeats,
        warmup=args.warmup,
        baseline_label="conv ms",
    )


if __name__ == "__main__":
    main()
