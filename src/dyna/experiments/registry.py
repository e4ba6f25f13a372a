"""The experiment registry: one :class:`Experiment` declaration per ``dyna train`` name.

An experiment bundles what ``dyna train NAME`` needs: how to build the data and the model, its
training defaults (``--epochs``, ``--batch-size``, ``--lr``, ...) and its hyper-parameters (the
``--set key=value`` keys, each a :class:`Param` with a type, a default and a valid range).
Adding an experiment is one :func:`register` call in a declaration module imported by
:mod:`dyna.experiments`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, SupportsFloat, cast

from torch import nn

from dyna.data.split import Split

KINDS = ("supervised", "continual")


class ConfigError(ValueError):
    """A usage error in an experiment's configuration (unknown key, bad value)."""


@dataclass(frozen=True)
class Param:
    """One ``--set`` hyper-parameter: its default, meaning and valid values.

    The type is the default's: ``int``, ``float``, ``bool``, ``str`` or a tuple (of ints,
    floats or strs, written ``a,b,c`` on the command line). ``minimum``/``maximum`` bound
    numbers (and every element of a tuple); ``choices`` lists the allowed strings.
    """

    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None

    @property
    def type_name(self) -> str:
        if isinstance(self.default, tuple):
            element = type(self.default[0]).__name__ if self.default else "int"
            return f"{element},..."
        return type(self.default).__name__

    def describe(self) -> str:
        """The valid values in words, e.g. ``float >= 0`` or ``one of modes, moons``."""
        words = self.type_name
        if self.choices:
            words += " in {" + ", ".join(self.choices) + "}"
        if self.minimum is not None and self.maximum is not None:
            words += f" in [{self.minimum:g}, {self.maximum:g}]"
        elif self.minimum is not None:
            words += f" >= {self.minimum:g}"
        elif self.maximum is not None:
            words += f" <= {self.maximum:g}"
        return words

    def _element_type(self) -> type:
        if isinstance(self.default, tuple):
            return type(self.default[0]) if self.default else int
        return type(self.default)

    def _parse_scalar(self, key: str, text: str, kind: type) -> Any:
        if kind is bool:
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"--set {key}={text}: expected true or false")
        try:
            return kind(text.strip())
        except ValueError:
            raise ConfigError(
                f"--set {key}={text}: expected {self.describe()} ({self.help})"
            ) from None

    def parse(self, key: str, text: str) -> Any:
        """The value of ``--set key=text``, checked; :class:`ConfigError` when invalid."""
        kind = self._element_type()
        if isinstance(self.default, tuple):
            parts = [part for part in text.split(",") if part.strip()]
            if not parts:
                raise ConfigError(f"--set {key}={text}: expected {self.describe()}")
            value = tuple(self._parse_scalar(key, part, kind) for part in parts)
        else:
            value = self._parse_scalar(key, text, kind)
        return self.check(key, value)

    def check(self, key: str, value: Any) -> Any:
        """``value`` if it is valid for this parameter (e.g. from a saved config)."""
        values: tuple[Any, ...] | list[Any] = (
            value if isinstance(value, (tuple, list)) else (value,)
        )
        if isinstance(self.default, tuple):
            value = tuple(value) if isinstance(value, (tuple, list)) else None
            if value is None:
                raise ConfigError(f"{key} must be {self.describe()}, got {values!r}")
        kind = self._element_type()
        element: Any
        for element in values:
            if kind is float and isinstance(element, int) and not isinstance(element, bool):
                element = float(element)
            if not isinstance(element, kind) or (kind is int and isinstance(element, bool)):
                raise ConfigError(f"{key} must be {self.describe()}, got {element!r}")
            if kind in (int, float):
                number = float(cast(SupportsFloat, element))
                if kind is float and not math.isfinite(number):
                    raise ConfigError(f"{key} must be finite, got {element!r}")
                if self.minimum is not None and number < self.minimum:
                    raise ConfigError(
                        f"{key}={element} is out of range: expected {self.describe()}"
                    )
                if self.maximum is not None and number > self.maximum:
                    raise ConfigError(
                        f"{key}={element} is out of range: expected {self.describe()}"
                    )
            if self.choices is not None and element not in self.choices:
                raise ConfigError(
                    f"{key}={element!r} is not valid: expected one of {', '.join(self.choices)}"
                )
        if kind is float and not isinstance(value, tuple):
            value = float(value)
        return value


@dataclass(frozen=True)
class Dataset:
    """What a data builder returns: in-memory splits and their meaning.

    ``validation`` is optional; when present, the summary also reports the test accuracy at
    the epoch of the best validation accuracy (the sMNIST recipe).
    """

    train: Split
    test: Split
    num_classes: int
    validation: Split | None = None
    description: str = ""


@dataclass(frozen=True)
class TrainingDefaults:
    """Defaults of the ``dyna train`` options for one experiment."""

    epochs: int = 10
    batch_size: int = 64
    seed: int = 0
    lr: float = 1e-2
    weight_decay: float = 0.01
    eval_batch_size: int = 1000
    checkpoint_every: int = 50
    log_every: int = 10
    # torch intra-op threads (0: torch's default). HORN and the recurrent baselines run many
    # small ops per step; on a busy 2-core machine one thread was 10-20x faster than two.
    threads: int = 0
    # Learning-rate schedule: "constant" or "cosine" (per step, from lr down to 0 at the end).
    schedule: str = "constant"


# Builders receive the resolved hyper-parameters (``--set`` keys and defaults).
DataBuilder = Callable[[Mapping[str, Any], "Path | None"], Dataset]
ModelBuilder = Callable[[Mapping[str, Any], Dataset], nn.Module]
ContinualRunner = Callable[..., dict]


@dataclass(frozen=True)
class Experiment:
    """A ``dyna train`` experiment.

    Attributes:
        name: the command-line name, e.g. ``"horn-digits"``.
        description: one line for ``dyna list``.
        kind: ``"supervised"`` (epochs over in-memory splits, checkpoints, ``--resume``) or
            ``"continual"`` (one online pass run by ``runner``).
        params: the ``--set`` keys: name -> :class:`Param`.
        data: builds the :class:`Dataset` from the parameters and the ``--data`` folder
            (supervised).
        model: builds the ``nn.Module`` from the parameters and the data set (supervised).
        defaults: the training defaults.
        needs_data: the experiment reads ``--data`` (e.g. a standard MNIST folder).
        runner: for ``"continual"``: called as ``runner(params, seed=..., device=...)`` and
            returns a JSON-serialisable dict of results.
    """

    name: str
    description: str
    kind: str = "supervised"
    params: Mapping[str, Param] = field(default_factory=dict)
    data: DataBuilder | None = None
    model: ModelBuilder | None = None
    defaults: TrainingDefaults = TrainingDefaults()
    needs_data: bool = False
    runner: ContinualRunner | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "supervised" and (self.data is None or self.model is None):
            raise ValueError(f"experiment {self.name!r}: supervised needs data and model")
        if self.kind == "continual" and self.runner is None:
            raise ValueError(f"experiment {self.name!r}: continual needs a runner")

    def resolve_params(self, assignments: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Defaults overridden by ``--set`` texts; :class:`ConfigError` on an unknown key."""
        values = {key: param.default for key, param in self.params.items()}
        for key, text in (assignments or {}).items():
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


_REGISTRY: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
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
