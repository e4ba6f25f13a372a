"""Deprecated alias of :mod:`dyna.train.online` (renamed: kept for one release).

The online runner and its search moved to :mod:`dyna.train.online`; the paper's tables, results
files and command line moved out of the package, to ``repro/continual.py`` in the repository.
"""

import warnings

from dyna.train.online import (
    DEFAULT_BUFFER_SIZE,
    DEFAULT_LEARNING_RATE,
    DEFAULT_REPLAY_SIZE,
    HIDDEN_MODELS,
    HIDDEN_SIZES,
    LEARNING_RATES,
    MODEL_KINDS,
    PAPER_CNU_HYPERPARAMETERS,
    PAPER_SEEDS,
    SPLITS,
    WEIGHT_DECAYS,
    Candidate,
    CNUHyperparameters,
    ContinualResult,
    ExperimentRow,
    build_model,
    paper_cnu_hyperparameters,
    run_continual,
    run_experiment,
    search_hyperparameters,
)

warnings.warn(
    "dyna.train.continual is deprecated and will be removed in the next release: import "
    "dyna.train.online instead (the paper's tables and command line are repro/continual.py "
    "in the repository)",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_LEARNING_RATE",
    "DEFAULT_REPLAY_SIZE",
    "HIDDEN_MODELS",
    "HIDDEN_SIZES",
    "LEARNING_RATES",
    "MODEL_KINDS",
    "PAPER_CNU_HYPERPARAMETERS",
    "PAPER_SEEDS",
    "SPLITS",
    "WEIGHT_DECAYS",
    "CNUHyperparameters",
    "Candidate",
    "ContinualResult",
    "ExperimentRow",
    "build_model",
    "paper_cnu_hyperparameters",
    "run_continual",
    "run_experiment",
    "search_hyperparameters",
]
