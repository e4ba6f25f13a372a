"""Evaluate a saved checkpoint: rebuild its model, load its weights, measure it (``dyna eval``).

The checkpoint's sidecar names its experiment and holds the run's configuration: the model is
rebuilt from them, loaded strictly, and evaluated on the validation and test splits, and, with
noise levels, on the test split under additive Gaussian input noise
(:func:`~dyna.train.eval_noise.noisy_splits`). The result is written as ``eval.json`` in the run
folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dyna.train import distributed
from dyna.train.checkpoint import (
    CheckpointMismatch,
    resolve_checkpoint,
    write_json_atomic,
)
from dyna.train.config import ConfigError, TrainConfig
from dyna.train.eval_noise import noisy_splits
from dyna.train.experiment import Experiment, SupervisedExperiment
from dyna.train.trainer import build, evaluate, load_model_state, load_training_checkpoint


def evaluate_checkpoint(
    checkpoint: str | Path,
    find_experiment: Callable[[str], Experiment],
    *,
    data: str | Path | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    noise: Sequence[float] = (),
    noise_seed: int = 0,
    report: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint and write ``eval.json`` into its run folder; returns the result.

    Args:
        checkpoint: a run folder, its ``checkpoints/`` folder or a ``step-*.json`` sidecar.
        find_experiment: the experiment of a name (e.g. :func:`dyna.experiments.get_experiment`).
        data: the data folder (default: the run's).
        device: ``"auto"`` (default), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        batch_size: evaluation batch size (default: the run's).
        noise: standard deviations of additive Gaussian input noise to also evaluate the test
            split with (one seeded draw, scaled per level).
        noise_seed: seed of the noise draw.
        report: called with one line per measured split (default silent).

    Raises:
        CheckpointError: the checkpoint is missing or corrupt.
        CheckpointMismatch: it does not fit the experiment this package defines under its name.
        ConfigError: a bad device.
    """
    sidecar = resolve_checkpoint(checkpoint)
    tensors, metadata = load_training_checkpoint(sidecar)
    experiment = find_experiment(str(metadata.get("experiment")))
    if not isinstance(experiment, SupervisedExperiment):
        raise CheckpointMismatch(
            f"checkpoint {sidecar} names {experiment.name}, which trains no model to evaluate"
        )
    if data is not None and not experiment.needs_data:
        raise ConfigError(
            f"--data does not apply to {experiment.name}, which reads no data folder: drop --data"
        )
    saved = dict(metadata.get("config") or {})
    if data is not None:
        saved["data"] = str(Path(data).resolve())
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
        context = distributed.Context(device=distributed.resolve_device(device))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    dataset, model = build(experiment, config)
    load_model_state(model, tensors, sidecar, experiment.name)
    model.to(context.device)
    batch = batch_size or config.eval_batch_size
    say = report or (lambda line: None)
    result: dict[str, Any] = {"checkpoint": str(sidecar), "experiment": experiment.name}
    result["step"] = metadata.get("position", {}).get("step")
    for name, split in (("validation", dataset.validation), ("test", dataset.test)):
        if split is None:
            continue
        loss, accuracy = evaluate(model, split, batch, context)
        result[f"{name}_loss"], result[f"{name}_accuracy"] = loss, accuracy
        say(f"{name}: loss {loss:.4f}, accuracy {100 * accuracy:.2f} % ({len(split)} samples)")
    if noise:
        result["noise_seed"] = noise_seed
        result["noise"] = []
        for sigma, split in zip(noise, noisy_splits(dataset.test, noise, noise_seed), strict=True):
            loss, accuracy = evaluate(model, split, batch, context)
            result["noise"].append({"sigma": sigma, "test_loss": loss, "test_accuracy": accuracy})
            say(f"test, noise σ = {sigma:g}: loss {loss:.4f}, accuracy {100 * accuracy:.2f} %")
    run_folder = sidecar.parent.parent if sidecar.parent.name == "checkpoints" else sidecar.parent
    write_json_atomic(run_folder / "eval.json", result)
    return result
