"""The configuration of a run: hyper-parameters, training options and what a data builder returns.

These are the types the engine needs to run an experiment (:mod:`dyna.train.experiment` declares
the experiments themselves; :mod:`dyna.experiments` names them):

- :class:`Param`: one ``--set`` hyper-parameter with its type, default and valid range.
- :class:`TrainingDefaults`: an experiment's defaults of the training options (``--epochs``,
  ``--batch-size``, ...); :class:`TrainConfig`: the resolved configuration of a supervised run,
  saved as its ``config.json`` and in every checkpoint.
- :class:`RunOptions`: how a run is started (device, data folder, resume, overwrite, output).
- :class:`Dataset`: the in-memory splits a data builder returns.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, SupportsFloat, cast

from dyna._validation import check_bool, check_int, check_real
from dyna.data.split import Split


class ConfigError(ValueError):
    """A usage error in an experiment's configuration (unknown key, bad value)."""


@dataclass(frozen=True)
class Param:
    """One ``--set`` hyper-parameter: its default, meaning and valid values.

    The type is the default's: ``int``, ``float``, ``bool``, ``str`` or a tuple (of ints,
    floats or strs, written ``a,b,c`` on the command line). ``minimum``/``maximum`` bound
    numbers (and every element of a tuple); with ``strictly_greater`` the minimum itself is
    refused (``dt > 0``), as ``check_real`` does for the layers; ``choices`` lists the allowed
    strings.
    """

    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    strictly_greater: bool = False

    @property
    def type_name(self) -> str:
        if isinstance(self.default, tuple):
            element = type(self.default[0]).__name__ if self.default else "int"
            return f"{element},..."
        return type(self.default).__name__

    def describe(self) -> str:
        """The valid values in words, e.g. ``float >= 0``, ``float > 0``, ``one of a, b``."""
        words = self.type_name
        if self.choices:
            words += " in {" + ", ".join(self.choices) + "}"
        low, high = self._bound_text(self.minimum), self._bound_text(self.maximum)
        if low is not None and high is not None:
            words += f" in {'(' if self.strictly_greater else '['}{low}, {high}]"
        elif low is not None:
            words += f" {'>' if self.strictly_greater else '>='} {low}"
        elif high is not None:
            words += f" <= {high}"
        return words

    def _bound_text(self, bound: float | None) -> str | None:
        """A bound as its parameter's type writes it: 4294967295 for an int, 1e-06 for a float."""
        if bound is None:
            return None
        if self._element_type() is int and float(bound).is_integer():
            return str(int(bound))
        return f"{bound:g}"

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
                if self.minimum is not None and (
                    number <= self.minimum if self.strictly_greater else number < self.minimum
                ):
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


# The training options, in the order of ``dyna train --help``; a run's ``TrainConfig`` holds them.
TRAINING_OPTIONS = (
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "seed",
    "eval_batch_size",
    "checkpoint_every",
    "log_every",
    "threads",
    "schedule",
)
# Configuration keys that may differ between a run and its resumption (where it runs, where
# the data are read from); every other key must match the checkpoint.
RESUME_FREE_KEYS = ("device", "data")
# Configuration keys added later, with the value that older checkpoints (without them) ran with.
OPTIONAL_KEYS: dict[str, Any] = {"cuda_graph": False}


@dataclass(frozen=True)
class TrainConfig:
    """The resolved configuration of a supervised run (saved as ``config.json``)."""

    experiment: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int
    eval_batch_size: int
    checkpoint_every: int
    log_every: int
    threads: int = 0
    schedule: str = "constant"
    # Replay each full-size training step as one captured CUDA graph (``--cuda-graph``).
    cuda_graph: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    data: str | None = None

    def __post_init__(self) -> None:
        check_config_fields(asdict(self))

    def to_json(self) -> dict[str, Any]:
        value = asdict(self)
        value["params"] = {
            key: list(item) if isinstance(item, tuple) else item
            for key, item in self.params.items()
        }
        return value


SCHEDULES = ("constant", "cosine")
# torch.manual_seed takes any seed that fits 64 bits unsigned.
SEED_LIMIT = 2**64


def check_integer(name: str, value: object, minimum: int, limit: int | None = None) -> None:
    """Raise ``TypeError``/``ValueError`` naming ``name`` unless ``minimum <= value < limit``."""
    number = check_int(name, value, minimum=minimum)
    if limit is not None and number >= limit:
        raise ValueError(f"{name} must be below {limit}, got {number}")


def check_instance(name: str, value: object, kind: type | tuple[type, ...], words: str) -> None:
    """Raise ``TypeError`` naming ``name`` unless ``value`` is a ``kind`` (``words`` says it)."""
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be {words}, got {type(value).__name__}")


def check_dict(name: str, value: object) -> dict[str, Any]:
    """``value`` if it is a dict (as JSON objects are); ``TypeError`` naming ``name`` if not."""
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict, got {type(value).__name__}")
    return value


def check_config_fields(values: Mapping[str, Any], prefix: str = "") -> None:
    """Raise ``TypeError``/``ValueError`` naming ``prefix + field`` if a value cannot train.

    One rule for every way a :class:`TrainConfig` is made: the command line, the Python API and
    a checkpoint's sidecar (where ``prefix`` is ``"config."``).
    """
    names = {item.name for item in fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{prefix.rstrip('.') or 'config'} has unknown fields {unknown}")
    missing = sorted(
        item.name
        for item in fields(TrainConfig)
        if item.name not in values and item.default is MISSING and item.default_factory is MISSING
    )
    if missing:
        raise ValueError(f"{prefix.rstrip('.') or 'config'} lacks the fields {missing}")
    check_instance(f"{prefix}experiment", values["experiment"], str, "a str")
    for name, minimum in (
        ("epochs", 1),
        ("batch_size", 1),
        ("eval_batch_size", 1),
        ("checkpoint_every", 0),
        ("log_every", 1),
        ("threads", 0),
    ):
        if name in values:
            check_integer(f"{prefix}{name}", values[name], minimum)
    check_integer(f"{prefix}seed", values["seed"], 0, SEED_LIMIT)
    check_real(f"{prefix}lr", values["lr"], minimum=0.0, strictly_greater=True)
    check_real(f"{prefix}weight_decay", values["weight_decay"], minimum=0.0)
    schedule = values.get("schedule", "constant")
    if schedule not in SCHEDULES:
        raise ValueError(
            f"{prefix}schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}"
        )
    check_instance(f"{prefix}cuda_graph", values.get("cuda_graph", False), bool, "a bool")
    check_instance(f"{prefix}params", values.get("params", {}), dict, "a dict")
    check_instance(f"{prefix}device", values.get("device", "auto"), str, "a str")
    check_instance(f"{prefix}data", values.get("data"), (str, type(None)), "a str or null")


def config_differences(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """``key: saved -> wanted`` for every key that must match on resume but does not."""
    differences = []
    for key in sorted(set(saved) | set(wanted)):
        if key in RESUME_FREE_KEYS:
            continue
        if key in OPTIONAL_KEYS and saved.get(key, OPTIONAL_KEYS[key]) == wanted.get(key):
            continue  # a checkpoint written before the key existed ran with its default
        if key == "params":
            old, new = saved.get(key) or {}, wanted.get(key) or {}
            for name in sorted(set(old) | set(new)):
                if old.get(name) != new.get(name):
                    differences.append(f"--set {name}: {old.get(name)!r} -> {new.get(name)!r}")
        elif saved.get(key) != wanted.get(key):
            differences.append(f"{key}: {saved.get(key)!r} -> {wanted.get(key)!r}")
    return differences


@dataclass(frozen=True)
class RunOptions:
    """How a run is started; what is left out takes the experiment's (or the resumed run's) value.

    Attributes:
        training: training options given explicitly, by name (keys of
            :data:`TRAINING_OPTIONS`, e.g. ``{"epochs": 3}``); supervised experiments only.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (None: the resumed run's, else
            auto).
        data: the data folder (None: the resumed run's, if any).
        resume: continue the run in the folder from its last checkpoint.
        overwrite: start over in a folder that holds a run.
        quiet: no progress bars, per-epoch lines or result tables.
        tensorboard: also write TensorBoard event files.
        cuda_graph: replay each full-size training step as one captured CUDA graph (needs a
            CUDA device and one process; None: the resumed run's, else off).
    """

    training: Mapping[str, Any] = field(default_factory=dict)
    device: str | None = None
    data: str | os.PathLike[str] | None = None
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False
    tensorboard: bool = False
    cuda_graph: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.training, Mapping):
            raise TypeError(f"training must be a mapping, got {type(self.training).__name__}")
        unknown = sorted(str(name) for name in set(self.training) - set(TRAINING_OPTIONS))
        if unknown:
            raise ValueError(
                f"training must hold only {', '.join(TRAINING_OPTIONS)}, got {', '.join(unknown)}"
            )
        for name in ("device", "data"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"{name} must be a str or None, got {type(value).__name__}")
            if value == "":
                raise ValueError(f"{name} must not be empty (None: the default)")
        for name in ("resume", "overwrite", "quiet", "tensorboard"):
            check_bool(name, getattr(self, name))
        if self.cuda_graph is not None:
            check_bool("cuda_graph", self.cuda_graph)
