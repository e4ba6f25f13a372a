"""The ``dyna`` command: train, evaluate, list experiments, run the benchmarks.

``dyna train EXPERIMENT`` looks the experiment up in the registry (:mod:`dyna.experiments`),
resolves its configuration (experiment defaults, then options, then ``--set key=value``
hyper-parameters) and calls the training engine (:mod:`dyna.train`). Errors are one line on
stderr naming the problem and the fix; usage errors (bad options, unknown experiment or key,
out-of-range value, missing or malformed data, a mismatched checkpoint) exit with code 2, other
failures (a corrupt checkpoint, a full disk) with 1, and an interrupted run with 130.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib.util
import io
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:  # the registry is imported lazily, to keep `dyna --help` fast
    from dyna.experiments import Experiment

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
        description="DyNA: train and evaluate the experiments, list them, run the benchmarks.",
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

    bench = commands.add_parser(
        "bench",
        help="run the benchmarks and print a table of ratios",
        description=(
            "Run the scripts of the repository's benchmarks/ folder (each times DyNA against a "
            "PyTorch baseline, alternately in one process) and print one table of ratios."
        ),
    )
    size = bench.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes, few repeats (default)")
    size.add_argument("--full", action="store_true", help="each script's own default sizes")
    bench.add_argument(
        "--only", nargs="+", metavar="NAME", help=f"run only these ({', '.join(BENCHMARKS)})"
    )
    bench.add_argument(
        "--benchmarks", metavar="DIR", help="the benchmarks/ folder (default: the repository's)"
    )
    bench.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help="torch intra-op threads for every script (default: torch's); on a busy machine "
        "--threads 1 gives steadier ratios",
    )
    bench.add_argument("--verbose", action="store_true", help="also print each script's output")
    return parser


# ---------------------------------------------------------------------------------------- list


def _list(arguments: argparse.Namespace) -> int:
    from dyna.experiments import experiments

    if arguments.experiment:
        experiment = _experiment(arguments.experiment)
        print(f"{experiment.name} ({experiment.kind}): {experiment.description}")
        if experiment.needs_data:
            print("  needs --data DIR (a standard MNIST folder of IDX files)")
        if experiment.kind == "supervised":
            defaults = experiment.defaults
            print("  training defaults:")
            for name in ("epochs", "batch_size", "lr", "weight_decay", "seed"):
                print(f"    --{name.replace('_', '-')} {getattr(defaults, name)}")
            print(f"    --eval-batch-size {defaults.eval_batch_size}")
            print(f"    --checkpoint-every {defaults.checkpoint_every}")
            print(f"    --log-every {defaults.log_every}")
            print(f"    --threads {defaults.threads}")
            print(f"    --schedule {defaults.schedule}")
        print("  hyper-parameters (--set KEY=VALUE):")
        for key, param in experiment.params.items():
            default = param.default
            if isinstance(default, tuple):
                default = ",".join(str(item) for item in default)
            print(f"    {key}={default}  [{param.describe()}]  {param.help}")
        return 0
    rows = []
    for experiment in experiments():
        if experiment.kind == "supervised":
            training = experiment.defaults
            summary = f"{training.epochs} ep, batch {training.batch_size}, lr {training.lr:g}"
        else:
            summary = "one online pass"
        rows.append(
            (
                experiment.name + (" *" if experiment.name == DEFAULT_EXPERIMENT else ""),
                experiment.kind,
                summary,
                experiment.description + (" [--data]" if experiment.needs_data else ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    print(f"{'experiment':<{widths[0]}}  {'kind':<{widths[1]}}  {'defaults':<{widths[2]}}  what")
    for row in rows:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}")
    print("* the default experiment; `dyna list NAME` shows its --set keys")
    return 0


def _experiment(name: str) -> Experiment:
    from dyna.experiments import ConfigError, get_experiment

    try:
        return get_experiment(name)
    except ConfigError as error:
        raise UsageError(str(error)) from None


# --------------------------------------------------------------------------------------- train


def _saved_config(out: Path) -> dict[str, Any] | None:
    from dyna.train.checkpoint import list_checkpoints
    from dyna.train.trainer import load_training_checkpoint

    found = list_checkpoints(out / "checkpoints")
    if not found:
        return None
    return load_training_checkpoint(found[-1])[1]["config"]


def _train(arguments: argparse.Namespace) -> int:
    from dyna.experiments import ConfigError
    from dyna.train.distributed import resolve_device
    from dyna.train.trainer import TrainConfig, config_differences, train

    experiment = _experiment(arguments.experiment)
    out = Path(arguments.out or Path("runs") / experiment.name)
    assignments = dict(arguments.assignments)
    if experiment.kind == "continual":
        return _train_continual(experiment, arguments, out, assignments)
    if arguments.resume and arguments.overwrite:
        raise UsageError("--resume and --overwrite contradict each other: choose one")
    saved = _saved_config(out) if arguments.resume else None
    if arguments.resume and saved is None:
        raise UsageError(
            f"--resume: no checkpoint in {out / 'checkpoints'}: start without --resume "
            f"(with --overwrite if {out} holds a run that stopped before its first checkpoint)"
        )
    try:
        params = experiment.resolve_params(assignments)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    given = {
        attribute: getattr(arguments, attribute)
        for _, attribute, _, _ in TRAIN_OPTIONS
        if getattr(arguments, attribute) is not None
    }
    values: dict[str, Any] = {
        "epochs": experiment.defaults.epochs,
        "batch_size": experiment.defaults.batch_size,
        "lr": experiment.defaults.lr,
        "weight_decay": experiment.defaults.weight_decay,
        "seed": experiment.defaults.seed,
        "eval_batch_size": experiment.defaults.eval_batch_size,
        "checkpoint_every": experiment.defaults.checkpoint_every,
        "log_every": experiment.defaults.log_every,
        "threads": experiment.defaults.threads,
        "schedule": experiment.defaults.schedule,
    }
    if saved is not None:
        # Resume: what the command line leaves out comes from the checkpoint.
        values.update({key: saved[key] for key in values if key in saved})
        params = dict(saved.get("params", params))
        params.update({key: experiment.resolve_params(assignments)[key] for key in assignments})
    values.update(given)
    data = arguments.data if arguments.data is not None else (saved or {}).get("data")
    if experiment.needs_data and data is None:
        raise UsageError(
            f"{experiment.name} reads MNIST: pass --data DIR, a folder with the four standard "
            f"MNIST IDX files"
        )
    try:
        params = experiment.check_params(
            {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
        )
    except ConfigError as error:
        raise UsageError(str(error)) from None
    config = TrainConfig(
        experiment=experiment.name,
        params=params,
        device=arguments.device or (saved or {}).get("device") or "auto",
        data=str(Path(data).resolve()) if data is not None else None,
        **values,
    )
    try:
        resolve_device(config.device)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if arguments.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise UsageError("--tensorboard needs the tensorboard package: pip install tensorboard")
    if saved is not None:
        differences = config_differences(saved, config.to_json())
        if differences:
            raise UsageError(
                f"--resume: options differ from the checkpoint in {out} "
                f"({'; '.join(differences)}): drop them, or train into another --out"
            )
    elif (out / "config.json").exists() or (out / "checkpoints").exists():
        if not arguments.overwrite:
            raise UsageError(
                f"{out} already holds a run: add --resume to continue it, --overwrite to start "
                f"over, or choose another --out"
            )
        for name in ("checkpoints", "metrics", "plots", "tensorboard"):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in ("config.json", "summary.json", "model.safetensors"):
            (out / name).unlink(missing_ok=True)
    train(
        experiment,
        config,
        out,
        resume=arguments.resume,
        quiet=arguments.quiet,
        tensorboard=arguments.tensorboard,
    )
    return 0


def _train_continual(
    experiment: Experiment, arguments: argparse.Namespace, out: Path, assignments: dict[str, str]
) -> int:
    from dyna.experiments import ConfigError
    from dyna.train.checkpoint import write_json_atomic

    if arguments.resume:
        raise UsageError(
            f"{experiment.name} is one online pass without checkpoints: run it again without "
            f"--resume (it takes seconds)"
        )
    unused = [
        flag for flag, attribute, _, _ in TRAIN_OPTIONS if getattr(arguments, attribute) is not None
    ]
    if arguments.data is not None:
        unused.append("--data")
    if unused:
        raise UsageError(
            f"{', '.join(unused)} do(es) not apply to {experiment.name} (an online pass with "
            f"batch 1): use --set seeds=... / --set KEY=VALUE (see `dyna list {experiment.name}`)"
        )
    try:
        params = experiment.resolve_params(assignments)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    if (out / "results.json").exists() and not arguments.overwrite:
        raise UsageError(f"{out} already holds a run: add --overwrite or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "experiment": experiment.name,
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()},
    }
    write_json_atomic(out / "config.json", config)
    progress = None if arguments.quiet else (lambda line: print(line, flush=True))
    from dyna.train.distributed import resolve_device

    try:
        device = str(resolve_device(arguments.device))
    except ValueError as error:
        raise UsageError(str(error)) from None
    runner = experiment.runner
    if runner is None:  # Experiment refuses a continual experiment without a runner
        raise UsageError(f"{experiment.name} has no runner")
    try:
        results = runner(params, device=device, progress=progress)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    write_json_atomic(out / "results.json", {"config": config, **results})
    _plot_continual(results, out / "plots" / "continual_matrix.png")
    if not arguments.quiet:
        print(f"{'model':<8} {'ACC %':>14} {'FORG %':>14} {'FWD %':>14}")
        for row in results["rows"]:
            cells = [
                f"{100 * row[m]:6.2f} ± {100 * row[m + '_std']:5.2f}"
                for m in ("average_accuracy", "average_forgetting", "forward_transfer")
            ]
            print(f"{row['model']:<8} " + " ".join(f"{c:>14}" for c in cells))
        print(f"run folder: {out}")
    return 0


def _plot_continual(results: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = results["rows"]
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.2), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        matrix = row["runs"][0]["matrix"]
        ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
        ax.set(
            title=f"{row['model']}: ACC {100 * row['average_accuracy']:.1f} %",
            xlabel="distribution",
            ylabel="after distribution",
        )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# ---------------------------------------------------------------------------------------- eval


def _eval(arguments: argparse.Namespace) -> int:
    from dyna.experiments import ConfigError
    from dyna.train import distributed
    from dyna.train.checkpoint import CheckpointMismatch, resolve_checkpoint, write_json_atomic
    from dyna.train.trainer import TrainConfig, build, evaluate, load_training_checkpoint

    sidecar = resolve_checkpoint(arguments.checkpoint)
    tensors, metadata = load_training_checkpoint(sidecar)
    experiment = _experiment(str(metadata.get("experiment")))
    saved = dict(metadata.get("config") or {})
    if arguments.data is not None:
        saved["data"] = str(Path(arguments.data).resolve())
    try:
        saved["params"] = experiment.check_params(
            {k: tuple(v) if isinstance(v, list) else v for k, v in saved["params"].items()}
        )
        config = TrainConfig(**saved)
    except (ConfigError, KeyError, TypeError) as error:
        raise CheckpointMismatch(
            f"checkpoint {sidecar} has a configuration this dyna cannot use ({error})"
        ) from None
    try:
        device = distributed.resolve_device(arguments.device)
    except ValueError as error:
        raise UsageError(str(error)) from None
    context = distributed.Context(device=device)
    dataset, model = build(experiment, config)
    state = {name[6:]: t for name, t in tensors.items() if name.startswith("model.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointMismatch(
            f"checkpoint {sidecar} does not fit the model of {experiment.name} "
            f"({str(error).splitlines()[0]})"
        ) from None
    model.to(context.device)
    batch = arguments.batch_size or config.eval_batch_size
    result: dict[str, Any] = {"checkpoint": str(sidecar), "experiment": experiment.name}
    result["step"] = metadata.get("position", {}).get("step")
    for name, split in (("validation", dataset.validation), ("test", dataset.test)):
        if split is None:
            continue
        loss, accuracy = evaluate(model, split, batch, context)
        result[f"{name}_loss"], result[f"{name}_accuracy"] = loss, accuracy
        print(f"{name}: loss {loss:.4f}, accuracy {100 * accuracy:.2f} % ({len(split)} samples)")
    if arguments.noise:
        from dyna.train.noise import noisy_splits

        result["noise_seed"] = arguments.noise_seed
        result["noise"] = []
        noisy = noisy_splits(dataset.test, arguments.noise, arguments.noise_seed)
        for sigma, split in zip(arguments.noise, noisy, strict=True):
            loss, accuracy = evaluate(model, split, batch, context)
            result["noise"].append({"sigma": sigma, "test_loss": loss, "test_accuracy": accuracy})
            print(f"test, noise σ = {sigma:g}: loss {loss:.4f}, accuracy {100 * accuracy:.2f} %")
    run_folder = sidecar.parent.parent if sidecar.parent.name == "checkpoints" else sidecar.parent
    write_json_atomic(run_folder / "eval.json", result)
    return 0


# --------------------------------------------------------------------------------------- bench

# Each script with small sizes for --quick (a few seconds each on two cores).
BENCHMARKS = {
    "functional": ["--batch", "64", "--features", "256", "--repeats", "5"],
    "horn": ["--steps", "64", "--batch", "16", "--hidden", "32", "--repeats", "5", "--warmup", "1"],
    "cnu": [
        "--batch",
        "16",
        "--in-features",
        "64",
        "--out-features",
        "32",
        "--grid",
        "8:1",
        "--repeats",
        "5",
    ],
    "dynamic_conv": [
        "--batch",
        "4",
        "--channels",
        "8",
        "--size",
        "8",
        "--context",
        "8",
        "--repeats",
        "5",
        "--warmup",
        "1",
        "--no-extra",
    ],
    "compact_spectral": [
        "--batch",
        "16",
        "--repeats",
        "3",
        "--warmup",
        "1",
        "--factors",
        "2",
        "--sketch-dims",
        "64",
        "--points",
        "2",
    ],
    "continual": ["--steps", "50", "--num-train", "200", "--repeats", "3"],
}


def benchmarks_folder(explicit: str | None = None) -> Path:
    """The repository's ``benchmarks/`` (not part of the installed package)."""
    if explicit is not None:
        folder = Path(explicit)
    else:
        import dyna

        folder = Path(dyna.__file__).resolve().parents[2] / "benchmarks"
    if not (folder / "_timing.py").is_file():
        raise UsageError(
            f"benchmarks folder {folder} not found: run `dyna bench` from an editable install "
            f"of a clone of the repository, or pass --benchmarks DIR"
        )
    return folder


def _bench_rows(name: str, rows: list) -> list[tuple[str, str, float, float]]:
    table = []
    for row in rows:
        if hasattr(row, "csm_seconds"):
            case = f"K={row.factors} D={row.sketch_dim} d={row.mode_dim}"
            table.append((name, case, row.csm_seconds, row.explicit_seconds))
        else:
            case, ours, base = row[:3]
            table.append((name, str(case), ours, base))
    return table


def _bench(arguments: argparse.Namespace) -> int:
    import torch

    folder = benchmarks_folder(arguments.benchmarks)
    names = arguments.only or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise UsageError(
            f"--only: unknown benchmark(s) {', '.join(unknown)}: choose from "
            f"{', '.join(BENCHMARKS)}"
        )
    sys.path.insert(0, str(folder))
    table = []
    threads = torch.get_num_threads()
    try:
        for name in names:
            spec = importlib.util.spec_from_file_location(
                f"dyna_bench_{name}", folder / f"{name}.py"
            )
            if spec is None or spec.loader is None or not (folder / f"{name}.py").is_file():
                raise UsageError(f"benchmark script {folder / (name + '.py')} is missing")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            argv = [] if arguments.full else BENCHMARKS[name]
            if arguments.threads:
                torch.set_num_threads(arguments.threads)
            print(f"running benchmarks/{name}.py {' '.join(argv)}", file=sys.stderr, flush=True)
            output = io.StringIO()
            with contextlib.redirect_stdout(sys.stdout if arguments.verbose else output):
                rows = module.main(list(argv))
            table.extend(_bench_rows(name, rows))
            torch.set_num_threads(threads)
    finally:
        sys.path.remove(str(folder))
    width = max([len("case"), *(len(case) for _, case, _, _ in table)])
    print(f"{'script':<16} {'case':<{width}} {'ours ms':>10} {'base ms':>10} {'ratio':>7}")
    for name, case, ours, base in table:
        print(
            f"{name:<16} {case:<{width}} {ours * 1e3:10.4f} {base * 1e3:10.4f} {ours / base:7.2f}"
        )
    from dyna.train.allocator import allocator_setting

    print(
        f"ratio = ours / baseline (below 1: DyNA is faster); torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {allocator_setting()}"
    )
    return 0


# ---------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dyna`` command; returns the exit code."""
    from dyna.data.split import DataError
    from dyna.experiments.registry import ConfigError
    from dyna.train.checkpoint import CheckpointError, CheckpointMismatch, DiskFullError
    from dyna.train.trainer import TrainingInterrupted

    try:
        arguments = _parser().parse_args(argv)
        if arguments.command != "list":
            # The command owns its process: large per-step temporaries are reused from the
            # heap instead of being faulted in from the kernel on every step.
            from dyna.train.allocator import retain_freed_memory

            retain_freed_memory()
        handler = {"train": _train, "eval": _eval, "list": _list, "bench": _bench}
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
