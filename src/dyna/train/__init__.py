"""The training engine: online continual learning, metrics, runners.

Depends on ``module`` (and ``data``); nothing in ``functional``, ``lib`` or ``module`` imports
from here.
"""

from dyna.train.continual_metrics import (
    ContinualMetrics,
    accuracy_per_distribution,
    average_accuracy,
    average_forgetting,
    continual_metrics,
    forward_transfer,
)

__all__ = [
    "ContinualMetrics",
    "accuracy_per_distribution",
    "average_accuracy",
    "average_forgetting",
    "continual_metrics",
    "forward_transfer",
]
