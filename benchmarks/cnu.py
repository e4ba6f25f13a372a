"""CNU layers against their static counterparts: forward + backward, training mode, one process.

Each row times a CNU layer and a baseline alternately and prints the median times and their
ratio. The CNU layers run in training mode with scrambling on, so every call is a full online
step (key matching, scrambling test, key pull, counters, blend, product):

- ``LinearCNU(in, out)`` vs ``nn.Linear(in, out)`` over m (memories) and δ (top-δ), with our
  default output-space blend (``auto``), each forced strategy (``dense``, ``grouped``), and the
  reference's materialising blend (per-sample weight matrices, ``cnu_linear_ref``);
- ``Conv2dCNU`` vs ``nn.Conv2d`` (one grouped convolution with per-sample filters);
- with ``--breakdown``, the pieces of a LinearCNU step against the same ``nn.Linear`` step: the
  key path alone (one online attention step: ψ, matching, scrambling, pull, refresh, counters),
  the output blend forward, and the blend forward + backward (on a fixed attention).

With ``--runs N`` the whole table is timed N times, one run after the other, and a summary
gives each case's median ratio over the runs and its spread (lowest and highest): on a shared
machine a single run can be off by tens of percent.

Usage: python benchmarks/cnu.py [--batch 64] [--in-features 512] [--out-features 256]
       [--grid 8:1,16:2,64:4] [--repeats 15] [--strategies] [--reference] [--conv]
       [--image 16] [--threads N] [--breakdown] [--runs N] [--retain-freed-memory]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from functools import partial

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import add_allocator_option, allocator_setting, time_cases

import dyna.module.cnu as cnu_module
from dyna.functional import cnu_linear, cnu_linear_ref
from dyna.module import Conv2dCNU, LinearCNU


def forward_backward(module, x):
    def run():
        x.grad = None
        module.zero_grad(set_to_none=True)
        module(x).sum().backward()

    return run


def with_blend(blend, run):
    """Run ``run`` with LinearCNU's output blend replaced by ``blend``."""

    def wrapped():
        original = cnu_module.cnu_linear
        cnu_module.cnu_linear = blend
        try:
            run()
        finally:
            cnu_module.cnu_linear = original

    return wrapped


def materialising(*args, backend=None, **kwargs):
    """The reference blend in the layer's place (it has one implementation: no backend)."""
    return cnu_linear_ref(*args, **kwargs)


def blend_pieces(layer, x, label, baseline):
    """The output blend alone on one fixed attention: forward, and forward + backward."""
    attention = layer.attention(x)
    weights = layer.blend_weights(attention).detach()
    memories = layer.M

    def blend():
        return cnu_linear(
            x, memories, attention.indices, weights, bias=layer.bias, wta=layer.upd_m == "WTA"
        )

    def forward():
        with torch.no_grad():
            blend()

    def forward_backward():
        x.grad = None
        memories.grad = None
        blend().sum().backward()

    return [
        (f"{label} blend forward vs Linear", forward, baseline),
        (f"{label} blend fwd+bwd vs Linear", forward_backward, baseline),
    ]


def parse_grid(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in item.split(":")) for item in text.split(",")]


def main(argv: list[str] | None = None) -> list[tuple[str, float, float]]:
    parser = argparse.ArgumentParser(description="CNU layers vs nn.Linear / nn.Conv2d")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--in-features", type=int, default=512)
    parser.add_argument("--out-features", type=int, default=256)
    parser.add_argument("--grid", type=parse_grid, default=parse_grid("8:1,16:2,64:4"))
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--strategies", action="store_true", help="also force dense/grouped")
    parser.add_argument("--reference", action="store_true", help="add the materialising blend")
    parser.add_argument("--conv", action="store_true", help="add Conv2dCNU rows")
    parser.add_argument("--image", type=int, default=16, help="conv input height and width")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--breakdown", action="store_true", help="time the pieces of a step")
    parser.add_argument("--runs", type=int, default=1, help="time the table N times")
    add_allocator_option(parser)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")
    args.allocator = allocator_setting(args)
    threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        rows = []
        for _ in range(args.runs):
            rows += run(args)
        if args.runs > 1:
            summarise(rows)
        return rows
    finally:
        torch.set_num_threads(threads)


def summarise(rows: list[tuple[str, float, float]]) -> None:
    """Median ratio of every case over the runs, with the lowest and highest."""
    ratios: dict[str, list[float]] = {}
    for name, ours, base in rows:
        ratios.setdefault(name, []).append(ours / base)
    width = max(len(name) for name in ratios)
    print(f"\nover {len(next(iter(ratios.values())))} runs")
    print(f"{'case':<{width}} {'median':>7} {'lowest':>7} {'highest':>7}")
    for name, values in ratios.items():
        print(
            f"{name:<{width}} {statistics.median(values):7.2f} {min(values):7.2f} "
            f"{max(values):7.2f}"
        )


def run(args: argparse.Namespace) -> list[tuple[str, float, float]]:

    torch.manual_seed(0)
    x = torch.randn(args.batch, args.in_features, requires_grad=True)
    linear = nn.Linear(args.in_features, args.out_features)
    baseline = forward_backward(linear, x)
    cases = []
    for memories, delta in args.grid:
        layer = LinearCNU(
            args.in_features, args.out_features, key_mem_units=memories, delta=delta,
            scramble=True,
        )  # fmt: skip
        label = f"LinearCNU m={memories} d={delta}"
        run = forward_backward(layer, x)
        cases.append((f"{label} auto vs Linear", run, baseline))
        if args.strategies:
            for strategy in ("dense", "grouped"):
                blend = partial(cnu_linear, strategy=strategy)
                cases.append((f"{label} {strategy} vs Linear", with_blend(blend, run), baseline))
        if args.reference:
            cases.append(
                (f"{label} materialising vs Linear", with_blend(materialising, run), baseline)
            )
        if args.breakdown:
            cases += [
                (f"{label} key path vs Linear", partial(layer.attention, x), baseline),
                *blend_pieces(layer, x, label, baseline),
            ]
    if args.conv:
        channels_in, channels_out = 16, 32
        image = torch.randn(args.batch, channels_in, args.image, args.image, requires_grad=True)
        conv = nn.Conv2d(channels_in, channels_out, 3, padding=1)
        conv_baseline = forward_backward(conv, image)
        for memories, delta in args.grid:
            layer = Conv2dCNU(
                channels_in, channels_out, 3, padding=1, key_mem_units=memories, delta=delta,
                scramble=True,
            )  # fmt: skip
            cases.append(
                (
                    f"Conv2dCNU m={memories} d={delta} vs Conv2d",
                    forward_backward(layer, image),
                    conv_baseline,
                )
            )
    print(
        f"forward+backward, training mode with scrambling, batch {args.batch}, "
        f"Linear {args.in_features}->{args.out_features}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {args.allocator}"
    )
    return time_cases(cases, repeats=args.repeats)


if __name__ == "__main__":
    main()
