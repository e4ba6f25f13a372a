"""Online continual learning: the cost of a CNU learner against plain baselines, CPU, one process.

The online protocol is dominated by per-step overhead (batch 1, tiny layers), so this measures
what a user pays per streamed sample and per whole stream:

- ``step``: ``--steps`` online SGD steps (forward, cross-entropy, backward, step) of the
  paper's 2-D learner, ``LinearCNU(2, 4)`` with m = 8, δ = 2, WTA memories, online keys and
  scrambling, against ``nn.Linear(2, 4)`` and against the MLP baseline ``2 → 25 → 4``;
- ``stream``: one whole ``run_continual`` on a MOONS-CDI stream (``--num-train`` samples, eight
  evaluations of the test split included), CNU against linear.

Usage: python benchmarks/continual.py [--steps 200] [--num-train 1000] [--repeats 9]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import time_cases

from dyna.data import make_stream
from dyna.train.online import build_model, paper_cnu_hyperparameters, run_continual


def online_steps(model, inputs, targets):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    samples = inputs.unsqueeze(1).unbind(0)
    labels = targets.unsqueeze(1).unbind(0)

    def run():
        for sample, label in zip(samples, labels, strict=True):
            loss = F.cross_entropy(model(sample), label)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return run


def main(argv: list[str] | None = None) -> list[tuple[str, float, float]]:
    parser = argparse.ArgumentParser(description="DyNA online continual learning vs baselines")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--num-train", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)

    stream = make_stream("moons", "cdi", seed=0, num_train=args.num_train)
    inputs = stream.train.inputs[: args.steps]
    targets = stream.train.targets[: args.steps]
    config = paper_cnu_hyperparameters("moons", "cdi")
    torch.manual_seed(0)
    cnu = build_model("cnu", 2, 4, cnu=config)
    linear = build_model("linear", 2, 4)
    mlp = build_model("mlp", 2, 4, hidden=25)
    cases = [
        (
            f"step x{args.steps}: LinearCNU vs Linear",
            online_steps(cnu, inputs, targets),
            online_steps(linear, inputs, targets),
        ),
        (
            f"step x{args.steps}: LinearCNU vs MLP 25",
            online_steps(cnu, inputs, targets),
            online_steps(mlp, inputs, targets),
        ),
        (
            f"stream (n={args.num_train}): cnu vs linear",
            lambda: run_continual(stream, None, "cnu", seed=0),
            lambda: run_continual(stream, None, "linear", seed=0),
        ),
    ]
    print(f"online SGD, batch 1, torch {torch.__version__}, {torch.get_num_threads()} threads")
    return time_cases(cases, repeats=args.repeats, warmup=1)


if __name__ == "__main__":
    main()
