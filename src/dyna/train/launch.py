"""Start a run (behind :func:`dyna.train.run`, the engine's one entry point).

It resolves the run's configuration (the experiment's defaults, a resumed run's saved values,
then what ``params`` and ``options`` set), checks it before anything is written, prepares the
run folder (refusing, or with ``overwrite`` replacing, one that holds a run) and hands the run to
the experiment's loop: :func:`dyna.train.trainer.train` for a supervised experiment, its runner
for an online one.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dyna.train.checkpoint import list_checkpoints, write_json_atomic
from dyna.train.config import TRAINING_OPTIONS, ConfigError, RunOptions, TrainConfig
from dyna.train.distributed import resolve_device
from dyna.train.run_folder import holds_run
from dyna.train.trainer import config_differences, load_training_checkpoint, train

if TYPE_CHECKING:
    from dyna.train.experiment import OnlineExperiment, SupervisedExperiment


def saved_config(out: Path) -> dict[str, Any] | None:
    """The configuration of the last checkpoint in ``out``, or None without a checkpoint."""
    found = list_checkpoints(out / "checkpoints")
    if not found:
        return None
    return load_training_checkpoint(found[-1])[1]["config"]


def _checked_device(device: str | None) -> str:
    try:
        return str(resolve_device(device))
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _tuples(params: Mapping[str, Any]) -> dict[str, Any]:
    # JSON gives lists where the parameters hold tuples.
    return {
        key: tuple(value) if isinstance(value, list) else value for key, value in params.items()
    }


def resolve_config(
    experiment: SupervisedExperiment,
    params: Mapping[str, Any],
    out: Path,
    options: RunOptions,
) -> TrainConfig:
    """The configuration of a supervised run, checked against the folder's run on ``resume``.

    Without ``resume``: the experiment's defaults, then ``params`` and ``options``. With it:
    what ``params`` and ``options`` leave out comes from the last checkpoint, and what they set
    must match it (except the device and the data folder).
    """
    if options.resume and options.overwrite:
        raise ConfigError("--resume and --overwrite contradict each other: choose one")
    saved = saved_config(out) if options.resume else None
    if options.resume and saved is None:
        raise ConfigError(
            f"--resume: no checkpoint in {out / 'checkpoints'}: start without --resume "
            f"(with --overwrite if {out} holds a run that stopped before its first checkpoint)"
        )
    values = experiment.option_defaults()
    merged = experiment.resolve_params()
    if saved is not None:
        values.update({key: saved[key] for key in values if key in saved})
        merged = dict(saved.get("params", merged))
    merged.update(params)
    values.update(options.training)
    if options.data is not None and not experiment.needs_data:
        # Recorded in the config, an unused --data would say the run read data it never did.
        raise ConfigError(
            f"--data does not apply to {experiment.name}, which reads no data folder (its data "
            f"ship with the package's dependencies): drop --data"
        )
    data = options.data if options.data is not None else (saved or {}).get("data")
    if experiment.needs_data and data is None:
        raise ConfigError(
            f"{experiment.name} reads MNIST: pass --data DIR, a folder with the four standard "
            f"MNIST IDX files"
        )
    config = TrainConfig(
        experiment=experiment.name,
        params=experiment.check_params(_tuples(merged)),
        device=options.device or (saved or {}).get("device") or "auto",
        data=str(Path(data).resolve()) if data is not None else None,
        cuda_graph=(
            options.cuda_graph
            if options.cuda_graph is not None
            else bool((saved or {}).get("cuda_graph", False))
        ),
        **values,
    )
    device = _checked_device(config.device)
    if config.cuda_graph and not device.startswith("cuda"):
        raise ConfigError(
            f"--cuda-graph needs --device cuda (this run trains on {device}): add --device cuda "
            f"or drop --cuda-graph"
        )
    if options.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("--tensorboard needs the tensorboard package: pip install tensorboard")
    if saved is not None:
        differences = config_differences(saved, config.to_json())
        if differences:
            raise ConfigError(
                f"--resume: options differ from the checkpoint in {out} "
                f"({'; '.join(differences)}): drop them, or train into another --out"
            )
    return config


def run_supervised(
    experiment: SupervisedExperiment,
    params: Mapping[str, Any],
    out: Path,
    options: RunOptions,
) -> dict[str, Any]:
    """Resolve the configuration, prepare the folder and train (see :func:`run`)."""
    config = resolve_config(experiment, params, out, options)
    replace = not options.resume and holds_run(out)
    if replace and not options.overwrite:
        raise ConfigError(
            f"{out} already holds a run: add --resume to continue it, --overwrite to start "
            f"over, or choose another --out"
        )
    # With --overwrite the trainer replaces the old run only once the new one's data and model
    # are built (see dyna.train.run_folder): a refused run leaves the old one as it was.
    return train(
        experiment,
        config,
        out,
        resume=options.resume,
        replace=replace,
        quiet=options.quiet,
        tensorboard=options.tensorboard,
    )


def run_online(
    experiment: OnlineExperiment,
    params: Mapping[str, Any],
    out: Path,
    options: RunOptions,
) -> dict[str, Any]:
    """Run the online pass into ``out``: ``config.json``, ``results.json`` and a plot."""
    if options.resume:
        raise ConfigError(
            f"{experiment.name} is one online pass without checkpoints: run it again without "
            f"--resume (it takes seconds)"
        )
    unused = [
        f"--{name.replace('_', '-')}" for name in TRAINING_OPTIONS if name in options.training
    ]
    if options.data is not None:
        unused.append("--data")
    if options.cuda_graph:
        raise ConfigError(
            f"--cuda-graph is not supported by {experiment.name}: an online pass with batch 1 "
            f"has no fixed training step to capture; drop --cuda-graph"
        )
    if unused:
        raise ConfigError(
            f"{', '.join(unused)} do(es) not apply to {experiment.name} (an online pass with "
            f"batch 1): use --set seeds=... / --set KEY=VALUE (see `dyna list {experiment.name}`)"
        )
    resolved = experiment.check_params(_tuples({**experiment.resolve_params(), **params}))
    device = _checked_device(options.device)
    if (out / "results.json").exists() and not options.overwrite:
        raise ConfigError(f"{out} already holds a run: add --overwrite or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "experiment": experiment.name,
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in resolved.items()},
    }
    write_json_atomic(out / "config.json", config)
    progress = None if options.quiet else (lambda line: print(line, flush=True))
    results = experiment.runner(resolved, device=device, progress=progress)
    write_json_atomic(out / "results.json", {"config": config, **results})
    try:
        from dyna.train.plots import plot_continual_matrices

        plot_continual_matrices(results["rows"], out / "plots" / "continual_matrix.png")
    except ImportError:
        pass  # matplotlib is optional at run time: the numbers are in results.json
    if not options.quiet:
        print(f"{'model':<8} {'ACC %':>14} {'FORG %':>14} {'FWD %':>14}")
        for row in results["rows"]:
            cells = [
                f"{100 * row[m]:6.2f} ± {100 * row[m + '_std']:5.2f}"
                for m in ("average_accuracy", "average_forgetting", "forward_transfer")
            ]
            print(f"{row['model']:<8} " + " ".join(f"{c:>14}" for c in cells))
        print(f"run folder: {out}")
    return results
