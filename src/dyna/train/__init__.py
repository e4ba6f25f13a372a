"""The training engine: one entry point, the loops, checkpoints, metrics and plots.

:func:`run` runs an experiment (:mod:`dyna.train.experiment`) into a run folder: the supervised
epoch loop (:mod:`dyna.train.trainer`) or an online pass (:mod:`dyna.train.online`). The engine
depends on ``module``, ``models`` and ``data``; only ``experiments`` and the command line import
from here.
"""

from dyna.train.config import RunOptions
from dyna.train.continual_metrics import (
    ContinualMetrics,
    accuracy_per_distribution,
    average_accuracy,
    average_forgetting,
    continual_metrics,
    forward_transfer,
)
from dyna.train.engine import run

__all__ = [
    "ContinualMetrics",
    "RunOptions",
    "accuracy_per_distribution",
    "average_accuracy",
    "average_forgetting",
    "continual_metrics",
    "forward_transfer",
    "run",
]
