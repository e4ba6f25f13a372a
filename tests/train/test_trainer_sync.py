"""The training loop keeps its values on the device between logging points.

A step reads nothing back to the host (no ``.item()``, ``float(t)``, ``bool(t)``, ``.cpu()``):
on a GPU each such read waits for the queued kernels and starves the device. The metrics files
of a tiny run equal those the loop wrote before it stopped syncing per step: byte for byte on
the machine that wrote them, and to 1e-6 relative elsewhere, because torch picks its CPU vector
kernels at run time (AVX2 against AVX-512 moves the losses by about 1e-7).
"""

import csv
import sys
from pathlib import Path

import pytest
import torch

from dyna.cli import main
from dyna.train import trainer as trainer_module

FIXTURES = Path(__file__).parent / "fixtures"
# 1,438 training digits in batches of 64: 22 full batches and a ragged one of 30.
TINY = [
    "train",
    "horn-digits",
    "--epochs",
    "1",
    "--set",
    "n_hidden=8",
    "--batch-size",
    "64",
    "--log-every",
    "4",
    "--checkpoint-every",
    "5",
    "--quiet",
    "--device",
    "cpu",
    "--threads",
    "1",
]
# Reads of tensors that live on the host on every device, so that they never wait for one:
# torch's (non-capturable) optimizers keep their step count on the host, and the HORN layer's
# check for a fixed zero v runs only on CPU tensors.
HOST_SIDE = {("optimizer.py", "_get_value"), ("horn.py", "forward")}
HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


def test_the_metrics_files_equal_those_of_the_loop_that_synced_every_step(tmp_path):
    assert main([*TINY, "--out", str(tmp_path / "run")]) == 0
    for name in ("steps", "epochs"):
        with open(tmp_path / "run" / "metrics" / f"{name}.csv", newline="") as file:
            written = list(csv.DictReader(file))
        with open(FIXTURES / f"tiny_{name}.csv", newline="") as file:
            expected = list(csv.DictReader(file))
        assert len(written) == len(expected), name
        for row, want in zip(written, expected, strict=True):
            assert row.keys() == want.keys(), name
            for column, value in want.items():
                if value == "":  # a metric the run does not have (no validation split)
                    assert row[column] == "", (name, column)
                    continue
                got = float(row[column])
                assert got == pytest.approx(float(value), rel=1e-6, abs=1e-12), (name, column)


def test_no_step_reads_a_value_back_to_the_host(tmp_path, monkeypatch):
    reads: list[tuple[str, int]] = []
    state = {"allowed": 0, "steps": 0}

    def counting(name, original):
        def wrapper(self, *args, **kwargs):
            if state["allowed"] == 0:
                caller = sys._getframe(1).f_code
                site = (Path(caller.co_filename).name, caller.co_name)
                if site not in HOST_SIDE:
                    reads.append((name, f"step {state['steps']}", *site))
            return original(self, *args, **kwargs)

        return wrapper

    def allowing(original):
        def wrapper(self, *args, **kwargs):
            state["allowed"] += 1
            try:
                return original(self, *args, **kwargs)
            finally:
                state["allowed"] -= 1

        return wrapper

    original_epoch = trainer_module._Run.train_epoch
    original_step = trainer_module._Run.step

    def train_epoch(self, interrupt):
        # Only the loop itself is watched: start-up and the final files may read freely.
        state["allowed"] -= 1
        try:
            return original_epoch(self, interrupt)
        finally:
            state["allowed"] += 1

    def step(self, indices, global_count):
        state["steps"] += 1
        return original_step(self, indices, global_count)

    state["allowed"] = 1
    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    for name in ("flush", "save", "end_epoch"):
        method = getattr(trainer_module._Run, name)
        monkeypatch.setattr(trainer_module._Run, name, allowing(method))
    monkeypatch.setattr(trainer_module._Run, "train_epoch", train_epoch)
    monkeypatch.setattr(trainer_module._Run, "step", step)
    assert main([*TINY, "--out", str(tmp_path / "run")]) == 0
    assert state["steps"] == 23
    assert reads == []
