"""What an experiment is: named hyper-parameters and one way to run them into a run folder.

Every experiment has a name, a one-line description and its ``--set`` hyper-parameters
(:class:`~dyna.train.config.Param`), and runs through one method,
:meth:`Experiment.run` (``params, out, options``), which :func:`dyna.train.run` calls. Two
kinds implement it:

- :class:`SupervisedExperiment`: epochs over in-memory splits built by ``data``, a model built
  by ``model``, AdamW, checkpoints and exact ``resume`` (:mod:`dyna.train.trainer`).
- :class:`OnlineExperiment`: one online pass run by ``runner``, which returns JSON-ready
  results (e.g. continual learning with batch 1, :mod:`dyna.train.online`).

The registry of named experiments is :mod:`dyna.experiments`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from dyna.train.config import (
    TRAINING_OPTIONS,
    ConfigError,
    Dataset,
    Param,
    RunOptions,
    TrainingDefaults,
)
from dyna.train.launch import run_online, run_supervised

# Builders receive the resolved hyper-parameters (``--set`` keys and defaults).
DataBuilder = Callable[[Mapping[str, Any], "Path | None"], Dataset]
ModelBuilder = Callable[[Mapping[str, Any], Dataset], nn.Module]
# ``runner(params, device=..., progress=...)`` -> JSON-ready results with a "rows" list.
OnlineRunner = Callable[..., dict]


@dataclass(frozen=True)
class Experiment(ABC):
    """A named experiment: its hyper-parameters and how it runs.

    Attributes:
        name: the command-line name, e.g. ``"horn-digits"``.
        description: one line for ``dyna list``.
        params: the ``--set`` keys: name -> :class:`~dyna.train.config.Param`.
        needs_data: the experiment reads a data folder (e.g. a standard MNIST folder).
    """

    name: str
    description: str
    params: Mapping[str, Param] = field(default_factory=dict)
    needs_data: bool = False

    # What ``dyna list`` calls this kind of experiment (a label, not a switch).
    kind: ClassVar[str]

    def resolve_params(self, assignments: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Defaults overridden by ``--set`` texts; :class:`ConfigError` on an unknown key."""
        values = {key: param.default for key, param in self.params.items()}
        values.update(self.parse_assignments(assignments or {}))
        return values

    def parse_assignments(self, assignments: Mapping[str, str]) -> dict[str, Any]:
        """The values of the ``--set key=text`` assignments alone, parsed and checked."""
        values = {}
        for key, text in assignments.items():
            if key not in self.params:
                known = ", ".join(sorted(self.params)) or "none"
                raise ConfigError(
                    f"--set {key}: {self.name} has no hyper-parameter {key!r} "
                    f"(valid keys: {known}; see `dyna list {self.name}`)"
                )
            values[key] = self.params[key].parse(key, text)
        return values

    def check_params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Validate a full parameter mapping (e.g. read back from a checkpoint)."""
        unknown = sorted(set(values) - set(self.params))
        missing = sorted(set(self.params) - set(values))
        if unknown or missing:
            raise ConfigError(
                f"parameters do not match experiment {self.name}: "
                f"unknown {unknown}, missing {missing}"
            )
        return {key: self.params[key].check(key, values[key]) for key in self.params}

    @abstractmethod
    def option_defaults(self) -> dict[str, Any]:
        """The defaults of the training options this experiment takes (name -> value)."""

    @abstractmethod
    def summary(self) -> str:
        """Its defaults in a few words, for the ``dyna list`` table."""

    @abstractmethod
    def run(self, params: Mapping[str, Any], out: Path, options: RunOptions) -> dict[str, Any]:
        """Run into the folder ``out`` and return the run's summary (JSON-ready).

        Args:
            params: hyper-parameters set explicitly (checked values); the others take their
                defaults, or a resumed run's values.
            out: the run folder.
            options: device, data folder, resume, overwrite, output and training options.
        """


@dataclass(frozen=True, kw_only=True)
class SupervisedExperiment(Experiment):
    """Epochs over in-memory splits: checkpoints, exact resume, DDP (:mod:`dyna.train.trainer`).

    Attributes:
        data: builds the :class:`~dyna.train.config.Dataset` from the parameters and the data
            folder.
        model: builds the ``nn.Module`` from the parameters and the data set.
        defaults: the defaults of the training options.
    """

    data: DataBuilder
    model: ModelBuilder
    defaults: TrainingDefaults = field(default_factory=TrainingDefaults)

    kind: ClassVar[str] = "supervised"

    def option_defaults(self) -> dict[str, Any]:
        return {name: getattr(self.defaults, name) for name in TRAINING_OPTIONS}

    def summary(self) -> str:
        defaults = self.defaults
        return f"{defaults.epochs} ep, batch {defaults.batch_size}, lr {defaults.lr:g}"

    def run(self, params: Mapping[str, Any], out: Path, options: RunOptions) -> dict[str, Any]:
        return run_supervised(self, params, out, options)


@dataclass(frozen=True, kw_only=True)
class OnlineExperiment(Experiment):
    """One online pass without checkpoints, run by ``runner`` (e.g. continual learning).

    Attributes:
        runner: called as ``runner(params, device=..., progress=...)`` with the full parameter
            mapping; returns JSON-ready results whose ``"rows"`` hold one summary per model.
    """

    runner: OnlineRunner

    kind: ClassVar[str] = "continual"

    def option_defaults(self) -> dict[str, Any]:
        return {}

    def summary(self) -> str:
        return "one online pass"

    def run(self, params: Mapping[str, Any], out: Path, options: RunOptions) -> dict[str, Any]:
        return run_online(self, params, out, options)
