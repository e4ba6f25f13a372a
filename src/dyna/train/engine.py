"""The engine's one entry point: :func:`run` an experiment into a run folder.

``dyna train`` and every reproduction start their runs here, in this process: the experiment
resolves its configuration, prepares the folder and runs its loop
(:meth:`~dyna.train.experiment.Experiment.run`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dyna.train.config import RunOptions
from dyna.train.experiment import Experiment


def run(
    experiment: Experiment,
    params: Mapping[str, Any] | None,
    out: str | os.PathLike[str],
    options: RunOptions | None = None,
) -> dict[str, Any]:
    """Run ``experiment`` into the run folder ``out``; returns the run's summary.

    Args:
        experiment: a :class:`~dyna.train.experiment.Experiment` (e.g. from
            :func:`dyna.experiments.get_experiment`).
        params: hyper-parameters to set (checked values, e.g. from
            :meth:`~dyna.train.experiment.Experiment.parse_assignments`); the others take the
            experiment's defaults, or on ``resume`` the run's.
        out: the run folder.
        options: device, data folder, resume, overwrite, output and training options (default
            :class:`~dyna.train.config.RunOptions`: every default, a fresh run).

    Raises:
        ConfigError: the configuration, the options or the folder do not allow the run.
        TrainingInterrupted: after SIGINT, once a checkpoint is written (supervised).
    """
    if not isinstance(experiment, Experiment):
        raise TypeError(f"experiment must be an Experiment, got {type(experiment).__name__}")
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be a path (str or os.PathLike), got {type(out).__name__}")
    if str(out) == "":
        raise ValueError("out must name the run folder, got an empty path")
    if params is not None and not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping or None, got {type(params).__name__}")
    if options is None:
        options = RunOptions()
    elif not isinstance(options, RunOptions):
        raise TypeError(f"options must be a RunOptions or None, got {type(options).__name__}")
    return experiment.run(dict(params or {}), Path(out), options)
