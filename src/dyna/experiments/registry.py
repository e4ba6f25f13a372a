"""The experiment registry: one :class:`Experiment` declaration per ``dyna train`` name.

An experiment bundles what ``dyna train NAME`` needs: its hyper-parameters (the ``--set
key=value`` keys, each a :class:`Param` with a type, a default and a valid range) and how it
runs. A :class:`SupervisedExperiment` builds its data and model and has training defaults
(``--epochs``, ``--batch-size``, ``--lr``, ...); an :class:`OnlineExperiment` runs one online
pass. Both types live in the engine (:mod:`dyna.train.experiment`, :mod:`dyna.train.config`);
this module names the instances. Adding an experiment is one :func:`register` call in a
declaration module imported by :mod:`dyna.experiments`.
"""

from __future__ import annotations

from typing import TypeVar

from dyna.train.config import ConfigError, Dataset, Param, TrainingDefaults
from dyna.train.experiment import (
    DataBuilder,
    Experiment,
    ModelBuilder,
    OnlineExperiment,
    OnlineRunner,
    SupervisedExperiment,
)

_REGISTRY: dict[str, Experiment] = {}
ExperimentType = TypeVar("ExperimentType", bound=Experiment)


def register(experiment: ExperimentType) -> ExperimentType:
    """Add ``experiment`` to the registry (names are unique) and return it."""
    if not isinstance(experiment, Experiment):
        raise TypeError(f"experiment must be an Experiment, got {type(experiment).__name__}")
    if experiment.name in _REGISTRY:
        raise ValueError(f"experiment {experiment.name!r} is already registered")
    _REGISTRY[experiment.name] = experiment
    return experiment


def get_experiment(name: str) -> Experiment:
    """The registered experiment ``name``; :class:`ConfigError` naming the valid ones if not."""
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown experiment {name!r}: choose one of {', '.join(sorted(_REGISTRY))} "
            f"(see `dyna list`)"
        )
    return _REGISTRY[name]


def experiments() -> list[Experiment]:
    """Every registered experiment, sorted by name."""
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


__all__ = [
    "ConfigError",
    "DataBuilder",
    "Dataset",
    "Experiment",
    "ModelBuilder",
    "OnlineExperiment",
    "OnlineRunner",
    "Param",
    "SupervisedExperiment",
    "TrainingDefaults",
    "experiments",
    "get_experiment",
    "register",
]
