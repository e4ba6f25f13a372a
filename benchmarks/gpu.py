"""The GPU table: DyNA's Triton kernels against cuDNN baselines, forward + backward, one process.

``PYTHONPATH=src python benchmarks/gpu.py`` runs every section (a few minutes on one GPU);
``--only horn`` (or another section name) runs some of them. Each row times its candidates
alternately after a warm-up, with CUDA events, and prints the medians and the ratios against
the baseline. A row that fails prints its error and the table goes on.

Sections (``SECTIONS``; add a family's own as a function taking the ``Bench`` context):

- ``horn``: ``HORNSeqLayer`` (Triton kernels; the torch loop on the smallest case only, it is
  slow) against cuDNN ``nn.LSTM`` and ``nn.RNN`` (tanh) of the same hidden size, sMNIST-shaped
  input (one pixel per step), (T, B, n) in {(784, 64, 32), (784, 64, 64), (784, 256, 256),
  (784, 1024, 128)}, without and with synaptic delays (uniform 2..40 steps per connection,
  seeded); then one whole training step (forward, BPTT, AdamW) of a HORN network against an
  LSTM network, B = 64 at n = 32 and 64, B = 256 at n = 256.
- ``dynconv``: ``DynamicConv2DDelta`` and ``DynamicConv2DMobius`` (default backend: the Triton
  kernels of their weight generation; and the torch path) against ``nn.Conv2d``, 64 -> 64
  channels, 32x32 input, 3x3, padding 1, context 64, B = 32 and 128, training mode.
- ``cnu``: ``LinearCNU(512, 256)`` with scrambling (default backend and the torch path)
  against ``nn.Linear``: m = 16, δ = 2 at b = 64 and 1024; m = 64, δ = 4 at b = 64.
- ``train``: training samples/s of ``dyna train horn-smnist --device cuda``, eager and with
  ``--cuda-graph`` (``TRAINING_COMMANDS``): one epoch of 1,024 and of 4,096 images, the rate
  from the difference, so start-up and evaluation cancel (under a minute on an H200). It
  trains on random images in MNIST's files unless ``--mnist DIR`` names a real folder.

``--smoke`` runs tiny shapes once, on the CPU through Triton's interpreter when there is no GPU,
so a test can check the script runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

import dyna

# Outside reference (not measured here): brainmass's whole training step under one JAX jit on
# an H200, B = 64 (n = 32, 64) and B = 256 (n = 256), as quoted in the issue that asked for
# these kernels.
BRAINMASS_STEP_MS = {32: 16.6, 64: 18.2, 256: 25.2}


@dataclass
class Bench:
    """What every section needs: the device, the repetition counts and the rows printed."""

    device: torch.device
    repeats: int
    warmup: int
    smoke: bool
    rows: list[tuple[str, str, dict[str, float]]] = field(default_factory=list)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def time_once(self, function: Callable[[], object]) -> float:
        """Seconds of one call: CUDA events on a GPU, the wall clock on the CPU."""
        if self.device.type == "cuda":
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            function()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        start_time = time.perf_counter()
        function()
        return time.perf_counter() - start_time

    def median_seconds(self, candidates: dict[str, Callable[[], object]]) -> dict[str, float]:
        """Median seconds of every candidate, run in turn after ``warmup`` rounds."""
        for _ in range(self.warmup):
            for function in candidates.values():
                function()
        self.synchronize()
        times: dict[str, list[float]] = {name: [] for name in candidates}
        for _ in range(self.repeats):
            for name, function in candidates.items():
                times[name].append(self.time_once(function))
        return {name: statistics.median(values) for name, values in times.items()}

    def row(
        self,
        section: str,
        case: str,
        make: Callable[[], dict[str, Callable[[], object]]],
        baseline: str,
    ) -> dict[str, float] | None:
        """Time the candidates ``make`` builds and print one line; on failure print why."""
        try:
            seconds = self.median_seconds(make())
        except Exception as error:  # one failing row must not end the table
            print(f"{case:<30} FAILED: {type(error).__name__}: {error}")
            traceback.print_exc(limit=3, file=sys.stdout)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            return None
        parts = [f"{name} {value * 1e3:9.2f} ms" for name, value in seconds.items()]
        ratios = [
            f"{name}/{baseline} {value / seconds[baseline]:6.2f}"
            for name, value in seconds.items()
            if name != baseline and baseline in seconds
        ]
        print(f"{case:<30} " + "  ".join(parts) + ("   " + "  ".join(ratios) if ratios else ""))
        self.rows.append((section, case, seconds))
        return seconds


# ---------------------------------------------------------------------------------------------
# HORN
# ---------------------------------------------------------------------------------------------


def _forward_backward(module: nn.Module, sequence: torch.Tensor) -> Callable[[], None]:
    """One forward and backward of a loss on the last output (the sMNIST readout)."""

    def run() -> None:
        module.zero_grad(set_to_none=True)
        output = module(sequence)[0]
        output[-1].sum().backward()

    return run


def _random_delays(n: int, seed: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(2, 41, (n, n), generator=generator).to(device)


def _horn_layer(n: int, delayed: bool, backend: str, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    delay = _random_delays(n, 0, device) if delayed else None
    return dyna.HORNSeqLayer(1, n, delay=delay, backend=backend, device=device)


def _training_step(model: nn.Module, sequence: torch.Tensor, labels: torch.Tensor):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(sequence), labels)
        loss.backward()
        optimizer.step()

    return run


class _LSTMClassifier(nn.Module):
    """nn.LSTM over the sequence, a linear readout of the last output."""

    def __init__(self, n_hidden: int, n_output: int, device: torch.device) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, n_hidden, device=device)
        self.readout = nn.Linear(n_hidden, n_output, device=device)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        return self.readout(self.lstm(sequence)[0][-1])


def horn_section(bench: Bench) -> None:
    device = bench.device
    if bench.smoke:
        shapes = [(6, 3, 4), (6, 3, 20)]
        step_shapes = [(6, 3, 4)]
    else:
        shapes = [(784, 64, 32), (784, 64, 64), (784, 256, 256), (784, 1024, 128)]
        step_shapes = [(784, 64, 32), (784, 64, 64), (784, 256, 256)]
    print("\n## HORN: HORNSeqLayer forward + backward (loss on the last output), n_input = 1")
    for index, (steps, batch, n) in enumerate(shapes):
        sequence = torch.rand(steps, batch, 1, device=device)
        for delayed in (False, True):

            def make(n=n, delayed=delayed, sequence=sequence, with_torch=index == 0):
                candidates = {
                    "HORN": _forward_backward(_horn_layer(n, delayed, "triton", device), sequence)
                }
                if with_torch:
                    torch_layer = _horn_layer(n, delayed, "torch", device)
                    candidates["HORN-torch"] = _forward_backward(torch_layer, sequence)
                torch.manual_seed(0)
                lstm = nn.LSTM(1, n, device=device)
                rnn = nn.RNN(1, n, nonlinearity="tanh", device=device)
                candidates["LSTM"] = _forward_backward(lstm, sequence)
                candidates["RNN"] = _forward_backward(rnn, sequence)
                return candidates

            case = f"T={steps} B={batch} n={n}" + (" delays" if delayed else "")
            bench.row("horn", case, make, baseline="LSTM")

    print("\n## HORN: one training step (forward, BPTT, AdamW), 10 classes")
    for steps, batch, n in step_shapes:
        sequence = torch.rand(steps, batch, 1, device=device)
        labels = torch.randint(0, 10, (batch,), device=device)

        def make_step(n=n, sequence=sequence, labels=labels):
            torch.manual_seed(0)
            horn = dyna.HORNSeqNetwork(1, n, 10, backend="triton", device=device)
            lstm = _LSTMClassifier(n, 10, device)
            return {
                "HORN": _training_step(horn, sequence, labels),
                "LSTM": _training_step(lstm, sequence, labels),
            }

        seconds = bench.row("horn-step", f"step T={steps} B={batch} n={n}", make_step, "LSTM")
        if seconds is not None and not bench.smoke and n in BRAINMASS_STEP_MS:
            reference = BRAINMASS_STEP_MS[n]
            print(
                f"{'':<30} brainmass jitted step (H200, not measured here) {reference:.1f} ms: "
                f"HORN is {reference / (seconds['HORN'] * 1e3):.1f}x faster"
            )


# ---------------------------------------------------------------------------------------------
# Dynamic convolutions and CNUs (the cases live in _gpu_layers.py, shared with its own script)
# ---------------------------------------------------------------------------------------------


def _gpu_layers():
    # A sibling script, not a package: importable once its folder is on the path.
    folder = os.path.dirname(os.path.abspath(__file__))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import _gpu_layers

    return _gpu_layers


def dynconv_section(bench: Bench) -> None:
    layers = _gpu_layers()
    if bench.smoke:
        batches, channels, image, context = [2], 4, 8, 6
    else:
        batches, channels, image, context = [32, 128], 64, 32, 64
    print(
        f"\n## Dynamic convolutions: forward + backward, training mode, {channels} -> {channels}"
        f" channels, {image}x{image}, 3x3, padding 1, context {context}"
    )
    for batch in batches:
        for cls in (dyna.DynamicConv2DDelta, dyna.DynamicConv2DMobius):

            def make(cls=cls, batch=batch):
                return layers.conv_candidates(
                    cls, batch, channels, image, context, bench.device, with_torch=True
                )

            bench.row("dynconv", f"{cls.__name__} B={batch}", make, baseline="Conv2d")


def cnu_section(bench: Bench) -> None:
    layers = _gpu_layers()
    if bench.smoke:
        in_features, out_features, settings = 8, 4, [(4, 2, 3)]
    else:
        in_features, out_features = 512, 256
        settings = [(16, 2, 64), (16, 2, 1024), (64, 4, 64)]
    print(
        f"\n## LinearCNU({in_features}, {out_features}), scrambling on: forward + backward, "
        "training mode"
    )
    for memories, delta, batch in settings:

        def make(memories=memories, delta=delta, batch=batch):
            return layers.cnu_candidates(
                memories, delta, batch, in_features, out_features, bench.device, with_torch=True
            )

        case = f"LinearCNU m={memories} d={delta} b={batch}"
        bench.row("cnu", case, make, baseline="Linear")


# ---------------------------------------------------------------------------------------------
# Training command
# ---------------------------------------------------------------------------------------------

# (label, argv of `dyna train`) rows for the ``train`` section; each prints samples/s. The
# section adds --data, --out and the number of training images.
TRAINING_COMMANDS: list[tuple[str, list[str]]] = [
    (
        "horn-smnist",
        ["horn-smnist", "--device", "cuda", "--epochs", "1", "--batch-size", "64",
         "--set", "validation=0", "--set", "test_samples=256", "--log-every", "50",
         "--checkpoint-every", "0", "--quiet"],
    ),
    (
        "horn-smnist --cuda-graph",
        ["horn-smnist", "--device", "cuda", "--epochs", "1", "--batch-size", "64",
         "--set", "validation=0", "--set", "test_samples=256", "--log-every", "50",
         "--checkpoint-every", "0", "--quiet", "--cuda-graph"],
    ),
]  # fmt: skip
# Two run lengths (training images, one epoch): samples/s is their difference over the
# difference of their wall times, so start-up, evaluation, files and graph capture cancel.
TRAINING_SAMPLES = (1024, 4096)


def _write_random_mnist(folder: Path, n_train: int, n_test: int) -> Path:
    """Random 28x28 images in MNIST's IDX files: a training step's time does not depend on
    the pixels, and the benchmark needs no download."""
    from dyna.data.mnist import FILES

    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    for split, count in (("train", n_train), ("test", n_test)):
        images = torch.randint(0, 256, (count, 28, 28), generator=generator, dtype=torch.uint8)
        labels = (torch.arange(count) % 10).to(torch.uint8)
        for name, values in zip(FILES[split], (images, labels), strict=True):
            magic = 0x00000803 if values.dim() == 3 else 0x00000801
            header = struct.pack(f">I{values.dim()}I", magic, *values.shape)
            (folder / name).write_bytes(header + values.contiguous().numpy().tobytes())
    return folder


def _smoke_argv(argv: list[str]) -> list[str] | None:
    """``argv`` for the CPU smoke run (tiny model, one thread); None for a CUDA-only row."""
    if "--cuda-graph" in argv:
        return None
    argv = ["cpu" if value == "cuda" else value for value in argv]
    return [*argv, "--set", "n_hidden=4", "--set", "test_samples=16", "--threads", "1"]


def train_section(bench: Bench, data: str | None = None) -> None:
    """Training samples/s of each ``TRAINING_COMMANDS`` row (smoke: tiny runs on the CPU)."""
    from dyna.cli import main as dyna_main

    print("\n## dyna train on the GPU: training samples/s (one epoch, difference of two lengths)")
    counts = (64, 128) if bench.smoke else TRAINING_SAMPLES
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        folder = data or str(_write_random_mnist(root / "mnist", max(counts), 256))
        print(f"data: {data or 'random 28x28 images in MNIST files'}")
        for label, argv in TRAINING_COMMANDS:
            run_argv = _smoke_argv(argv) if bench.smoke else argv
            if run_argv is None:
                print(f"{label:<30} skipped: needs CUDA")
                continue
            seconds = []
            try:
                # An untimed first run of four steps (three eager, one captured): imports,
                # CUDA's start-up and the kernels' compilation.
                for count in (4 * 64 if not bench.smoke else 64, *counts):
                    out = root / f"{label.replace(' ', '_')}-{len(seconds)}"
                    full = ["train", *run_argv, "--set", f"train_samples={count}"]
                    full += ["--data", folder, "--out", str(out)]
                    start = time.perf_counter()
                    code = dyna_main(full)
                    bench.synchronize()
                    seconds.append(time.perf_counter() - start)
                    if code != 0:
                        raise RuntimeError(f"dyna {' '.join(full)} exited with {code}")
                seconds = seconds[1:]
            except Exception as error:  # one failing row must not end the table
                print(f"{label:<30} FAILED: {type(error).__name__}: {error}")
                continue
            extra = seconds[1] - seconds[0]
            rate = (counts[1] - counts[0]) / extra if extra > 0 else float("nan")
            print(
                f"{label:<30} {rate:10.0f} samples/s   ({counts[0]} images: {seconds[0]:.2f} s, "
                f"{counts[1]}: {seconds[1]:.2f} s)"
            )
            bench.rows.append(("train", label, {"samples/s": rate}))


# Section name -> function; ``--only`` picks among these names.
SECTIONS: dict[str, Callable[[Bench], None]] = {
    "horn": horn_section,
    "dynconv": dynconv_section,
    "cnu": cnu_section,
    "train": train_section,
}


def main(argv: list[str] | None = None) -> list[tuple[str, str, dict[str, float]]]:
    parser = argparse.ArgumentParser(description="DyNA's GPU kernels against cuDNN baselines")
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), default=None)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--mnist", metavar="DIR", default=None, help="MNIST folder for the train section"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny shapes, one repeat; on the CPU through Triton's interpreter without a GPU",
    )
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda:
        if not args.smoke:
            parser.error("needs a CUDA device (or --smoke to check the script on the CPU)")
        # Read when the kernels are first defined: set before any kernel module is imported.
        os.environ.setdefault("TRITON_INTERPRET", "1")
    repeats, warmup = (1, 0) if args.smoke else (args.repeats, args.warmup)
    device = torch.device("cuda" if cuda else "cpu")
    bench = Bench(device=device, repeats=repeats, warmup=warmup, smoke=args.smoke)
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    name = torch.cuda.get_device_name(device) if cuda else "CPU (Triton interpreter)"
    print(f"# {name}, torch {torch.__version__}, triton {triton_version}")
    print(f"# median of {repeats} alternating runs after {warmup} warm-up rounds; ms per call")
    for section in args.only or list(SECTIONS):
        if section == "train":
            train_section(bench, args.mnist)
        else:
            SECTIONS[section](bench)
    return bench.rows


if __name__ == "__main__":
    main()
