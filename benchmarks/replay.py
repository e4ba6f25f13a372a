"""Experience replay: the cost of planning the reservoir and of a replay learner, CPU, one process.

- ``plan``: :func:`dyna.train.replay.reservoir_replay_schedule` for a whole stream (a handful of
  tensor ops), single-threaded as the runner calls it, against the same plan kept step by step
  in Python (algorithm R with one random draw per sample and a ``randperm`` of the buffer per
  step), as an online buffer would do it; and the plan with the process's intra-op threads
  against one thread (the runner's choice: on a loaded machine the threads cost more than the
  ops);
- ``stream``: one whole ``run_continual`` on a MOONS-CDI stream (``--num-train`` samples, eight
  evaluations of the test split included): the MLP with replay (4 samples from a buffer of 50
  per step) against the plain MLP, and against the paper's CNU learner, whose compute the replay
  budget is meant to match.

Usage: python benchmarks/replay.py [--num-train 1000] [--repeats 9]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import time_cases

from dyna.data import make_stream
from dyna.train.online import run_continual
from dyna.train.replay import reservoir_replay_schedule


def planned(num_samples, buffer_size, replay_size, threads=1):
    def run():
        generator = torch.Generator().manual_seed(0)
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return reservoir_replay_schedule(
                num_samples, buffer_size, replay_size, generator=generator
            )
        finally:
            torch.set_num_threads(previous)

    return run


def looped(num_samples, buffer_size, replay_size):
    def run():
        generator = torch.Generator().manual_seed(0)
        buffer, replayed = [], []
        for step in range(num_samples):
            order = torch.randperm(len(buffer), generator=generator)[:replay_size].tolist()
            replayed.append([buffer[slot] for slot in order])
            if step < buffer_size:
                buffer.append(step)
            else:
                slot = int(torch.randint(step + 1, (), generator=generator))
                if slot < buffer_size:
                    buffer[slot] = step
        return replayed

    return run


def main(argv: list[str] | None = None) -> list[tuple[str, float, float]]:
    parser = argparse.ArgumentParser(description="DyNA experience replay: plan and learner cost")
    parser.add_argument("--num-train", type=int, default=1000)
    parser.add_argument("--buffer-size", type=int, default=50)
    parser.add_argument("--replay-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)

    stream = make_stream("moons", "cdi", seed=0, num_train=args.num_train)
    sizes = (args.num_train, args.buffer_size, args.replay_size)
    replay = {"buffer_size": args.buffer_size, "replay_size": args.replay_size}
    threads = torch.get_num_threads()
    plan = f"plan (n={args.num_train}, c={args.buffer_size}, k={args.replay_size})"
    cases = [
        (f"{plan}: vectorised vs loop", planned(*sizes), looped(*sizes)),
        (f"{plan}: {threads} threads vs 1", planned(*sizes, threads=threads), planned(*sizes)),
        (
            f"stream (n={args.num_train}): replay vs mlp",
            lambda: run_continual(stream, None, "replay", seed=0, learning_rate=0.1, **replay),
            lambda: run_continual(stream, None, "mlp", seed=0, learning_rate=0.1),
        ),
        (
            f"stream (n={args.num_train}): replay vs cnu",
            lambda: run_continual(stream, None, "replay", seed=0, learning_rate=0.1, **replay),
            lambda: run_continual(stream, None, "cnu", seed=0),
        ),
    ]
    print(f"CPU, torch {torch.__version__}, {torch.get_num_threads()} threads")
    return time_cases(cases, repeats=args.repeats, warmup=1)


if __name__ == "__main__":
    main()
