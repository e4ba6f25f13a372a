"""Sequence classification: HORN and its RNN/GRU/LSTM baselines, pixel by pixel.

Three data sets, each read one pixel per step (``n_input = 1``, pixels in [0, 1]):

- ``digits``: scikit-learn's 8x8 digits, T = 64 (stratified 80/20 split, seed ``split_seed``).
- ``smnist``: MNIST from a standard IDX folder (``--data``), T = 784; 1,000 training images
  held out for validation (the reference script's recipe).
- ``psmnist``: the same with one fixed permutation of the 784 steps (``randperm(784)`` of a
  generator seeded with ``permutation_seed``), applied to every split.

Every (model, data) pair is one experiment, e.g. ``horn-digits`` or ``lstm-psmnist``; the
baselines use the same hidden size as HORN.

The MNIST HORN experiments also take the paper's two structural variants, which add no
trainable parameters (both are drawn once from ``structure_seed`` and stay fixed buffers):

- ``heterogeneous=true``: per-unit ω ~ U[ω/2, 2ω) and γ ~ U[γ/2, 2γ) around the set values
  (the reference code's heterogeneous example), α shared. Same trainable parameters as the
  homogeneous model.
- ``delays=uniform``: synaptic delays drawn from Uniform(``delay_low``, ``delay_high``) in the
  time unit of ``dt`` (default 1 to 40, brainmass's sMNIST example at dt = 1 ms) and turned into
  whole steps by ``ceil(delay / dt)``: whole steps in [ceil(delay_low / dt),
  ceil(delay_high / dt)], so 2 to 40 steps at the defaults (1 step needs a draw within 1e-9 of
  ``delay_low``, a chance of about 3e-11 per synapse). The delayed coupling has no recurrent
  bias (brainmass's), so the model has ``n`` trainable parameters fewer than the homogeneous
  one; the input bias, added at the same place, makes them redundant.
- Both at once: the same ω, γ and delays as each variant alone (separate random streams).

``horn-smnist-hetero``, ``horn-smnist-delays`` and their ``psmnist`` twins are these variants
under their own names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from dyna.data.digits import load_digits_split
from dyna.data.mnist import IMAGE_SHAPE, load_mnist
from dyna.data.split import Split, holdout
from dyna.experiments.registry import (
    ConfigError,
    Dataset,
    Param,
    SupervisedExperiment,
    TrainingDefaults,
    register,
)
from dyna.functional import delay_steps
from dyna.models import RecurrentClassifier
from dyna.module import HORNSeqNetwork
from dyna.module.horn import DYNAMICS_MINIMUM

MODELS = ("horn", "lstm", "gru", "rnn")
DATA = ("digits", "smnist", "psmnist")
SMNIST_STEPS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]  # 784


def _as_sequences(split: Split, order: torch.Tensor | None = None) -> Split:
    """Images (N, H, W) as pixel sequences (N, H*W, 1), optionally in a permuted order."""
    pixels = split.inputs.reshape(len(split), -1)
    if order is not None:
        pixels = pixels[:, order]
    return Split(pixels.unsqueeze(-1).contiguous(), split.labels)


def _limit(split: Split, count: int) -> Split:
    """The first ``count`` samples (0: all) — for short runs."""
    return split if count == 0 or count >= len(split) else split.subset(torch.arange(count))


def read_mnist(
    data_dir: Path | None, *, min_train: int = 1, min_test: int = 1
) -> tuple[Split, Split]:
    """The (train, test) splits of the MNIST folder ``--data`` names; a usage error without one.

    Every MNIST experiment reads 28x28 images (:data:`~dyna.data.mnist.IMAGE_SHAPE`) and needs
    at least ``min_train`` training and ``min_test`` test images; any other folder is refused
    with a :class:`~dyna.data.split.DataError` naming the file.
    """
    if data_dir is None:
        raise ConfigError(
            "this experiment reads MNIST: pass --data DIR, a folder with the four standard "
            "MNIST IDX files (train-images-idx3-ubyte[.gz], ...)"
        )
    return load_mnist(data_dir, image_shape=IMAGE_SHAPE, min_train=min_train, min_test=min_test)


def digits_sequences(params: Mapping[str, Any], data_dir: Path | None) -> Dataset:
    """The 8x8 digits as 64-step pixel sequences."""
    train, test = load_digits_split(test_fraction=0.2, seed=params["split_seed"])
    return Dataset(
        _as_sequences(train),
        _as_sequences(test),
        10,
        description="scikit-learn digits, 8x8 pixel by pixel (T = 64), stratified 80/20 split",
    )


def mnist_sequences(params: Mapping[str, Any], data_dir: Path | None) -> Dataset:
    """MNIST as 784-step pixel sequences, with a validation hold-out and optional permutation."""
    train, test = read_mnist(data_dir, min_train=1, min_test=1)
    order = None
    if params["permuted"]:
        generator = torch.Generator().manual_seed(params["permutation_seed"])
        order = torch.randperm(SMNIST_STEPS, generator=generator)
    validation = None
    if params["validation"] > 0:
        # The validation images come out of the training file: at least one must remain.
        if params["validation"] >= len(train):
            raise ConfigError(
                f"--set validation={params['validation']} must be smaller than the "
                f"{len(train)} training images in {data_dir}"
            )
        train, validation = holdout(train, params["validation"], params["split_seed"])
        validation = _as_sequences(_limit(validation, params["test_samples"]), order)
    train = _as_sequences(_limit(train, params["train_samples"]), order)
    test = _as_sequences(_limit(test, params["test_samples"]), order)
    kind = "permuted pixel by pixel" if order is not None else "pixel by pixel"
    return Dataset(
        train, test, 10, validation, description=f"MNIST from {data_dir}, {kind} (T = 784)"
    )


def heterogeneous_dynamics(
    omega: float, gamma: float, n_hidden: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-unit ω ~ U[ω/2, 2ω) and γ ~ U[γ/2, 2γ) (float64, ω drawn first), from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    spread = (
        0.5 + 1.5 * torch.rand(2, n_hidden, generator=generator, dtype=torch.float64)
    ).unbind()
    return omega * spread[0], gamma * spread[1]


def random_delays(n_hidden: int, low: float, high: float, dt: float, seed: int) -> torch.Tensor:
    """An (n, n) int64 matrix of delays in steps: ``ceil(U(low, high) / dt)``, from ``seed``.

    The steps lie in [ceil(low / dt), ceil(high / dt)] (:func:`~dyna.functional.delay_steps`
    rounds quotients within 1e-9 of an integer to it); the lower end needs a draw within 1e-9
    of ``low``, so at low = 1, high = 40, dt = 1 the delays are 2 to 40 steps almost surely.
    The draw uses a generator seeded with ``seed + 1``, not the one of
    :func:`heterogeneous_dynamics`.
    """
    # Its own generator, so switching heterogeneity on or off leaves the delays unchanged.
    generator = torch.Generator().manual_seed(seed + 1)
    times = low + (high - low) * torch.rand(
        n_hidden, n_hidden, generator=generator, dtype=torch.float64
    )
    return delay_steps(times, dt)


def horn_model(params: Mapping[str, Any], data: Dataset) -> HORNSeqNetwork:
    """One HORN layer with a linear readout of x_T (or the time average)."""
    omega: float | torch.Tensor = params["omega"]
    gamma: float | torch.Tensor = params["gamma"]
    delay = None
    if params.get("heterogeneous", False):
        omega, gamma = heterogeneous_dynamics(
            params["omega"], params["gamma"], params["n_hidden"], params["structure_seed"]
        )
    if params.get("delays", "none") == "uniform":
        if params["delay_high"] < params["delay_low"]:
            raise ConfigError(
                f"--set delay_high={params['delay_high']} must be >= delay_low="
                f"{params['delay_low']}"
            )
        delay = random_delays(
            params["n_hidden"],
            params["delay_low"],
            params["delay_high"],
            params["dt"],
            params["structure_seed"],
        )
    return HORNSeqNetwork(
        data.train.inputs.shape[-1],
        params["n_hidden"],
        data.num_classes,
        alpha=params["alpha"],
        omega=omega,
        gamma=gamma,
        dt=params["dt"],
        delay=delay,
        batch_first=True,
        paper=params["paper"],
        readout=params["readout"],
    )


def recurrent_model(cell: str) -> Callable[[Mapping[str, Any], Dataset], RecurrentClassifier]:
    def build(params: Mapping[str, Any], data: Dataset) -> RecurrentClassifier:
        return RecurrentClassifier(
            data.train.inputs.shape[-1],
            params["n_hidden"],
            data.num_classes,
            cell=cell,
            num_layers=params["num_layers"],
        )

    build.__name__ = f"{cell}_model"
    return build


def horn_params(
    n_hidden: int, alpha: float, omega: float, gamma: float, readout: str = "last"
) -> dict[str, Param]:
    return {
        "n_hidden": Param(n_hidden, "oscillators n", minimum=1, maximum=65536),
        # The layer's own bounds, so --set and HORNSeqLayer accept the same values.
        "alpha": Param(alpha, "input gain α", minimum=DYNAMICS_MINIMUM["alpha"]),
        "omega": Param(
            omega, "natural angular frequency ω (rad per step)", minimum=DYNAMICS_MINIMUM["omega"]
        ),
        "gamma": Param(gamma, "damping γ", minimum=DYNAMICS_MINIMUM["gamma"]),
        # The layers' rule for dt (check_real(..., minimum=0.0, strictly_greater=True)).
        "dt": Param(1.0, "integration step h", minimum=0.0, strictly_greater=True),
        "paper": Param(True, "original HORN: recurrent scale 1/sqrt(n), nn.Linear initialisation"),
        "readout": Param(
            readout, "read x_T ('last') or its time average", choices=("last", "mean")
        ),
    }


def structure_params(heterogeneous: bool, delays: str) -> dict[str, Param]:
    """The ``--set`` keys of HORN's structural variants (fixed draws, no trainable parameters)."""
    return {
        "heterogeneous": Param(
            heterogeneous, "per-unit ω ~ U[ω/2, 2ω] and γ ~ U[γ/2, 2γ], drawn once, not trained"
        ),
        "delays": Param(
            delays,
            "synaptic delays: none, or uniform (U(delay_low, delay_high) in units of dt, "
            "ceil to steps)",
            choices=("none", "uniform"),
        ),
        "delay_low": Param(1.0, "smallest delay (time units of dt)", minimum=0.0),
        "delay_high": Param(40.0, "largest delay (time units of dt)", minimum=0.0, maximum=1e4),
        # The delays' generator takes structure_seed + 1, which must fit torch's 64-bit seed.
        "structure_seed": Param(
            0, "seed of the heterogeneity and delay draws", minimum=0, maximum=2**32 - 1
        ),
    }


def baseline_params(n_hidden: int) -> dict[str, Param]:
    return {
        "n_hidden": Param(n_hidden, "recurrent units (HORN's n)", minimum=1, maximum=65536),
        "num_layers": Param(1, "stacked recurrent layers", minimum=1, maximum=16),
    }


def digits_data_params() -> dict[str, Param]:
    return {"split_seed": Param(0, "seed of the stratified train/test split", minimum=0)}


def mnist_data_params(permuted: bool) -> dict[str, Param]:
    return {
        "validation": Param(1000, "training images held out for validation", minimum=0),
        "split_seed": Param(1, "seed of the validation hold-out", minimum=0, maximum=2**32 - 1),
        "permuted": Param(permuted, "apply one fixed permutation to the 784 steps"),
        "permutation_seed": Param(1, "seed of the fixed permutation", minimum=0, maximum=2**32 - 1),
        "train_samples": Param(0, "use only the first N training images (0: all)", minimum=0),
        "test_samples": Param(0, "use only the first N test/validation images (0: all)", minimum=0),
    }


# Digits: tuned on this task (8 pixels per row, hence ω = 2π/8; a larger input gain than the
# sMNIST recipe); reaches >= 90 % test accuracy in well under two minutes on two cores.
DIGITS_HORN = horn_params(64, alpha=0.5, omega=2 * math.pi / 8, gamma=0.1)
# sMNIST: the reference script's recipe (n = 32, h = 1, α = 0.04, ω = 0.224, γ = 0.01).
SMNIST_HORN = horn_params(32, alpha=0.04, omega=0.224, gamma=0.01)

DIGITS_TRAINING = TrainingDefaults(
    epochs=30, batch_size=32, lr=0.02, checkpoint_every=0, threads=1, schedule="cosine"
)
SMNIST_TRAINING = TrainingDefaults(
    epochs=10, batch_size=64, seed=1, lr=0.01, checkpoint_every=50, threads=1
)


VARIANTS = {
    "": (False, "none", ""),
    "hetero": (True, "none", ", heterogeneous ω and γ"),
    "delays": (False, "uniform", ", random synaptic delays of 2-40 steps"),
}


def _declare(model: str, data: str, variant: str = "") -> SupervisedExperiment:
    if data == "digits":
        params = dict(DIGITS_HORN if model == "horn" else baseline_params(64))
        params.update(digits_data_params())
        training = DIGITS_TRAINING
        data_builder = digits_sequences
        what = "sklearn 8x8 digits pixel by pixel (T = 64)"
    else:
        params = dict(SMNIST_HORN if model == "horn" else baseline_params(32))
        if model == "horn":
            params.update(structure_params(*VARIANTS[variant][:2]))
        params.update(mnist_data_params(permuted=data == "psmnist"))
        training = SMNIST_TRAINING
        data_builder = mnist_sequences
        what = ("permuted " if data == "psmnist" else "") + "MNIST pixel by pixel (T = 784)"
    label = "HORN" if model == "horn" else f"{model.upper()} baseline"
    if model != "horn" and data == "digits":
        training = TrainingDefaults(
            epochs=30, batch_size=32, lr=0.01, checkpoint_every=0, threads=1, schedule="cosine"
        )
    return register(
        SupervisedExperiment(
            name=f"{model}-{data}" + (f"-{variant}" if variant else ""),
            description=f"{label} on {what}{VARIANTS[variant][2]}",
            params=params,
            data=data_builder,
            model=horn_model if model == "horn" else recurrent_model(model),
            defaults=training,
            needs_data=data != "digits",
        )
    )


for _model in MODELS:
    for _data in DATA:
        _declare(_model, _data)
for _data in ("smnist", "psmnist"):
    for _variant in ("hetero", "delays"):
        _declare("horn", _data, _variant)
