"""The ``dyna`` command: train, evaluate and list the experiments.

This module parses the command line and dispatches, nothing else: ``dyna train EXPERIMENT``
looks the experiment up in the registry (:mod:`dyna.experiments`), parses its ``--set
key=value`` hyper-parameters and hands them with the options to the engine's one entry point,
:func:`dyna.train.run`, which resolves the configuration and prepares the run folder;
``dyna eval`` calls :func:`dyna.train.evaluation.evaluate_checkpoint`. The benchmarks are run by
``python benchmarks/run.py`` from a clone of the repository. Errors are one line on
stderr naming the problem and the fix; usage errors (bad options, unknown experiment or key,
out-of-range value, missing or malformed data, a mismatched checkpoint) exit with code 2, other
failures (a corrupt checkpoint, a full disk) with 1, and an interrupted run with 130.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:  # the registry and the engine are imported lazily: `dyna --help` stays fast
    from dyna.train.experiment import Experiment

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEFAULT_EXPERIMENT = "horn-digits"


class UsageError(Exception):
    """A mistake in the command line; exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) instead of the usage block.

    Abbreviated options are refused: ``--epoch 3`` is a typo, not ``--epochs 3``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


_Number = TypeVar("_Number", int, float)


def _parsed(text: str, convert: Callable[[str], _Number], what: str) -> _Number:
    """``convert(text)``, or the usage error "expected WHAT" for text it cannot read."""
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _parsed(text, int, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = _parsed(text, int, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _seed(text: str) -> int:
    value = _non_negative_int(text)
    if value >= 2**31:
        raise argparse.ArgumentTypeError(f"expected a seed below 2**31, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = _parsed(text, float, "a positive number")
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = _parsed(text, float, "a number >= 0")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def _schedule(text: str) -> str:
    if text not in ("constant", "cosine"):
        raise argparse.ArgumentTypeError(f"expected constant or cosine, got {text!r}")
    return text


def _assignment(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key.strip(), value


# Training options: (flag, attribute, type, help). Their defaults come from the experiment.
TRAIN_OPTIONS = (
    ("--epochs", "epochs", _positive_int, "passes over the training split"),
    ("--batch-size", "batch_size", _positive_int, "global batch size (all processes together)"),
    ("--lr", "lr", _positive_float, "AdamW learning rate"),
    ("--weight-decay", "weight_decay", _non_negative_float, "AdamW weight decay"),
    ("--seed", "seed", _seed, "seed of the initialisation and of the batch order"),
    ("--eval-batch-size", "eval_batch_size", _positive_int, "batch size of evaluation"),
    (
        "--checkpoint-every",
        "checkpoint_every",
        _non_negative_int,
        "also checkpoint every N steps (0: at epoch ends only)",
    ),
    (
        "--log-every",
        "log_every",
        _positive_int,
        "write the per-step metrics rows every N steps (one host sync per write)",
    ),
    (
        "--threads",
        "threads",
        _non_negative_int,
        "torch intra-op threads (0: torch's default)",
    ),
    ("--schedule", "schedule", _schedule, "learning-rate schedule: constant or cosine (per step)"),
)


def _parser() -> _Parser:
    parser = _Parser(
        prog="dyna",
        description="DyNA: train and evaluate the experiments, and list them.",
        epilog="`dyna COMMAND --help` describes each command.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    train = commands.add_parser(
        "train",
        help="train an experiment",
        description=(
            "Train an experiment into a run folder: config.json, metrics/steps.csv and "
            "epochs.csv, checkpoints/, model.safetensors, summary.json and plots/. Options "
            "left out take the experiment's defaults (see `dyna list EXPERIMENT`)."
        ),
    )
    train.add_argument(
        "experiment",
        nargs="?",
        default=DEFAULT_EXPERIMENT,
        help=f"experiment name (default {DEFAULT_EXPERIMENT}; `dyna list` shows them all)",
    )
    for flag, attribute, kind, text in TRAIN_OPTIONS:
        train.add_argument(
            flag,
            dest=attribute,
            type=kind,
            default=None,
            metavar={_positive_int: "N", _non_negative_int: "N", _seed: "N", _schedule: "NAME"}.get(
                kind, "X"
            ),
            help=f"{text} (default: the experiment's)",
        )
    train.add_argument(
        "--device", default=None, help="auto (default: CUDA when present), cpu, cuda or cuda:N"
    )
    train.add_argument("--out", metavar="DIR", help="run folder (default runs/EXPERIMENT)")
    train.add_argument(
        "--data", metavar="DIR", help="data folder, e.g. a standard MNIST folder of IDX files"
    )
    train.add_argument(
        "--set",
        dest="assignments",
        metavar="KEY=VALUE",
        type=_assignment,
        action="append",
        default=[],
        help="set a hyper-parameter of the experiment (repeatable; keys in `dyna list NAME`)",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint (options left out are taken "
        "from it; options given must match it)",
    )
    train.add_argument(
        "--overwrite", action="store_true", help="start over in an --out that holds a run"
    )
    train.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    train.add_argument(
        "--tensorboard", action="store_true", help="also write TensorBoard event files"
    )
    train.add_argument(
        "--cuda-graph",
        action="store_const",
        const=True,
        default=None,
        help="replay each full-size training step (forward, backward, AdamW) as one captured "
        "CUDA graph: needs --device cuda and one process; supervised experiments only",
    )

    evaluate = commands.add_parser(
        "eval",
        help="evaluate a checkpoint on the test split",
        description=(
            "Rebuild the model from a checkpoint's sidecar, load its weights and evaluate it on "
            "the test (and validation) split; prints the metrics and writes eval.json in the "
            "run folder."
        ),
    )
    evaluate.add_argument(
        "checkpoint", help="a run folder, its checkpoints/ folder or a step-*.json file"
    )
    evaluate.add_argument("--data", metavar="DIR", help="data folder (default: the run's)")
    evaluate.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    evaluate.add_argument(
        "--batch-size", type=_positive_int, metavar="N", help="evaluation batch size"
    )
    evaluate.add_argument(
        "--noise",
        type=_non_negative_float,
        nargs="+",
        default=[],
        metavar="SIGMA",
        help="also evaluate the test split with additive Gaussian input noise of these "
        "standard deviations (one seeded draw, scaled per level; written to eval.json)",
    )
    evaluate.add_argument(
        "--noise-seed", type=_seed, default=0, metavar="N", help="seed of the noise (default 0)"
    )

    listing = commands.add_parser(
        "list",
        help="list the experiments and their defaults",
        description="List the experiments, or one experiment's defaults and --set keys.",
    )
    listing.add_argument("experiment", nargs="?", help="show this experiment in detail")

    return parser


# ---------------------------------------------------------------------------------------- list


def _list(arguments: argparse.Namespace) -> int:
    from dyna.experiments import experiments

    if arguments.experiment:
        experiment = _experiment(arguments.experiment)
        print(f"{experiment.name} ({experiment.kind}): {experiment.description}")
        if experiment.needs_data:
            from dyna.data.mnist import IMAGE_SHAPE

            height, width = IMAGE_SHAPE
            print(
                f"  needs --data DIR: a standard MNIST folder of IDX files, {height}x{width} "
                f"images, at least one test image and more training images than --set "
                f"validation holds out (where the experiment has it)"
            )
        defaults = experiment.option_defaults()
        if defaults:
            print("  training defaults:")
            for name, value in defaults.items():
                print(f"    --{name.replace('_', '-')} {value}")
        print("  hyper-parameters (--set KEY=VALUE):")
        for key, param in experiment.params.items():
            default = param.default
            if isinstance(default, tuple):
                default = ",".join(str(item) for item in default)
            print(f"    {key}={default}  [{param.describe()}]  {param.help}")
        return 0
    rows = [
        (
            experiment.name + (" *" if experiment.name == DEFAULT_EXPERIMENT else ""),
            experiment.kind,
            experiment.summary(),
            experiment.description + (" [--data]" if experiment.needs_data else ""),
        )
        for experiment in experiments()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    print(f"{'experiment':<{widths[0]}}  {'kind':<{widths[1]}}  {'defaults':<{widths[2]}}  what")
    for row in rows:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}")
    print("* the default experiment; `dyna list NAME` shows its --set keys")
    return 0


def _experiment(name: str) -> Experiment:
    from dyna.experiments import get_experiment

    return get_experiment(name)


# --------------------------------------------------------------------------------------- train


def _train(arguments: argparse.Namespace) -> int:
    from dyna.train import RunOptions, run

    experiment = _experiment(arguments.experiment)
    params = experiment.parse_assignments(dict(arguments.assignments))
    options = RunOptions(
        training={
            attribute: getattr(arguments, attribute)
            for _, attribute, _, _ in TRAIN_OPTIONS
            if getattr(arguments, attribute) is not None
        },
        device=arguments.device,
        data=arguments.data,
        resume=arguments.resume,
        overwrite=arguments.overwrite,
        quiet=arguments.quiet,
        tensorboard=arguments.tensorboard,
        cuda_graph=arguments.cuda_graph,
    )
    run(experiment, params, Path(arguments.out or Path("runs") / experiment.name), options)
    return 0


# ---------------------------------------------------------------------------------------- eval


def _eval(arguments: argparse.Namespace) -> int:
    from dyna.train.evaluation import evaluate_checkpoint

    evaluate_checkpoint(
        arguments.checkpoint,
        _experiment,
        data=arguments.data,
        device=arguments.device,
        batch_size=arguments.batch_size,
        noise=arguments.noise,
        noise_seed=arguments.noise_seed,
        report=print,
    )
    return 0


# ---------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dyna`` command; returns the exit code."""
    try:
        previous = signal.signal(signal.SIGINT, _leave_at_once)
    except ValueError:  # not the main thread: signals stay as they are
        previous = None
    try:
        return _run(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _leave_at_once(signum: int, frame: FrameType | None) -> None:
    """SIGINT outside a training loop (which installs its own handler): exit 130 at once.

    Before the loop there is nothing to save. Raising ``KeyboardInterrupt`` instead can land
    inside an import (torch takes seconds) and leave a half-imported module, which library code
    that catches broad exceptions then trips over with a traceback of its own. The writes that
    must not be cut (replacing a run folder) defer SIGINT themselves.
    """
    sys.stderr.write("dyna: interrupted\n")
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


def _run(argv: Sequence[str] | None) -> int:
    # Imported here, not at the top: they import torch, which takes a second or two, and a
    # Ctrl-C meanwhile must find main's handler installed.
    from dyna.data.split import DataError
    from dyna.train.checkpoint import CheckpointError, CheckpointMismatch, DiskFullError
    from dyna.train.config import ConfigError
    from dyna.train.trainer import TrainingInterrupted

    try:
        arguments = _parser().parse_args(argv)
        if arguments.command != "list":
            # The command owns its process: large per-step temporaries are reused from the
            # heap instead of being faulted in from the kernel on every step.
            from dyna.train.allocator import retain_freed_memory

            retain_freed_memory()
        handler = {"train": _train, "eval": _eval, "list": _list}
        return handler[arguments.command](arguments)
    except (UsageError, ConfigError, DataError, CheckpointMismatch) as error:
        _fail(error)
        return EXIT_USAGE
    except TrainingInterrupted as error:
        print(f"dyna: {error}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(
            "dyna: interrupted; the last checkpoint (if any) resumes with --resume", file=sys.stderr
        )
        return EXIT_INTERRUPTED
    except (CheckpointError, DiskFullError) as error:
        _fail(error)
        return EXIT_FAILURE
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            _fail(f"no space left to write {error.filename or 'a file'}: free disk space or "
                  f"choose another --out")  # fmt: skip
            return EXIT_FAILURE
        _fail(
            f"{error.strerror or error} ({error.filename or 'file'}): "
            "check the path and permissions"
        )
        return EXIT_FAILURE


def _fail(error: object) -> None:
    text = str(error.args[-1] if isinstance(error, OSError) and error.args else error)
    print(f"dyna: error: {' '.join(text.split())}", file=sys.stderr)


__all__ = ["main"]
