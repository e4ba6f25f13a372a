"""HORNSeqLayer against nn.LSTM and nn.RNN of the same hidden size: forward + backward, CPU.

sMNIST-shaped input (T = 784 steps of one pixel, batch 64) by default. For every hidden size
and for the layer without and with synaptic delays (uniform 2..40 steps, the older brainmass
sMNIST example's choice), the script times one forward + backward of a loss on the last
output (the sMNIST readout) alternately with the baseline, after a warm-up, and prints the
median times and the ratio HORN / baseline (below 1: HORN is faster). ``--forward-only``
times the forward pass under ``torch.no_grad()`` instead.

On a loaded machine, compare ``--threads 1`` too: with two intra-op threads every small op
may wait for a descheduled worker, which penalises HORN's many small per-step ops more than
the baselines' fewer, larger ones.

Usage: python benchmarks/horn.py [--steps 784] [--batch 64] [--hidden 32 64] [--repeats 7]
       [--dtype float32] [--forward-only] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import median_seconds

import dyna


def forward_backward(module: nn.Module, sequence: torch.Tensor, forward_only: bool):
    def run():
        if forward_only:
            with torch.no_grad():
                module(sequence)
            return
        module.zero_grad(set_to_none=True)
        output = module(sequence)[0]
        output[-1].sum().backward()

    return run


def main(argv: list[str] | None = None) -> list[tuple[str, float, float]]:
    parser = argparse.ArgumentParser(description="HORNSeqLayer vs nn.LSTM / nn.RNN")
    parser.add_argument("--steps", type=int, default=784)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--inputs", type=int, default=1)
    parser.add_argument("--hidden", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--forward-only", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads (0: leave the default)"
    )
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    torch.manual_seed(0)
    sequence = torch.rand(args.steps, args.batch, args.inputs, dtype=dtype)
    mode = "forward" if args.forward_only else "forward + backward"
    print(
        f"{mode}, T={args.steps}, B={args.batch}, n_input={args.inputs}, {args.dtype}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"{'case':<34} {'HORN ms':>9} {'base ms':>9} {'ratio':>7}")
    rows = []
    for hidden in args.hidden:
        baselines = {
            "LSTM": nn.LSTM(args.inputs, hidden, dtype=dtype),
            "RNN": nn.RNN(args.inputs, hidden, dtype=dtype),
        }
        layers = {
            "": dyna.HORNSeqLayer(args.inputs, hidden, dtype=dtype),
            " delays": dyna.HORNSeqLayer(
                args.inputs, hidden, delay=torch.randint(2, 41, (hidden, hidden)), dtype=dtype
            ),
        }
        for layer_name, layer in layers.items():
            for base_name, baseline in baselines.items():
                ours, base = median_seconds(
                    forward_backward(layer, sequence, args.forward_only),
                    forward_backward(baseline, sequence, args.forward_only),
                    repeats=args.repeats,
                    warmup=args.warmup,
                )
                name = f"n={hidden}{layer_name} vs {base_name}"
                rows.append((name, ours, base))
                print(f"{name:<34} {ours * 1e3:9.2f} {base * 1e3:9.2f} {ours / base:7.2f}")
    print("ratio = HORN / baseline (median of alternating runs in this process)")
    return rows


if __name__ == "__main__":
    main()
