"""The experiments of ``dyna train``: a registry of named :class:`Experiment` declarations.

Importing this package registers every experiment of the declaration modules
(:mod:`~dyna.experiments.sequences`, :mod:`~dyna.experiments.images`,
:mod:`~dyna.experiments.continual`). To add one, call :func:`register` with a
:class:`SupervisedExperiment` or an :class:`OnlineExperiment` in one of them (or in a new
module imported here).
"""

from dyna.experiments import continual, images, sequences  # noqa: F401  (registration)
from dyna.experiments.registry import (
    ConfigError,
    Dataset,
    Experiment,
    OnlineExperiment,
    Param,
    SupervisedExperiment,
    TrainingDefaults,
    experiments,
    get_experiment,
    register,
)

__all__ = [
    "ConfigError",
    "Dataset",
    "Experiment",
    "OnlineExperiment",
    "Param",
    "SupervisedExperiment",
    "TrainingDefaults",
    "experiments",
    "get_experiment",
    "register",
]
