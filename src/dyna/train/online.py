"""Online continual learning on the 2-D streams: a ``LinearCNU`` against linear, MLP and replay.

The protocol of Tiezzi, Marullo, Becattini, Melacci, "Continual Neural Computation"
(ECML-PKDD 2024) and of its runner (``main.py`` of the paper's repository):

- **Online, one pass, batch 1.** The learner sees the training stream once, one sample at a
  time, with no task labels and (except for the replay baseline) no buffer. Each sample is one
  step of plain SGD on the cross-entropy of the model's logits (``zero_grad``, ``backward``,
  ``step``).
- **Continual confusion matrix.** When the stream leaves a distribution, the model (in
  ``eval()``, without gradient) classifies the held-out split, and the accuracy on each of the
  split's distributions fills one row (:mod:`dyna.train.continual_metrics`). At the end of the
  stream: average accuracy, average forgetting and forward transfer.
- **Model selection on the early stream.** A candidate is trained on the part of the training
  stream that covers the validation distributions (the first half of them; the whole stream for
  ``"iid"``) and scored by the average accuracy of the validation matrix, averaged over seeds.
  The CNU uses the paper's selected hyper-parameters (its supplement, Table 1); the baselines get
  their own search over learning rate, weight decay and (MLP) hidden size with the paper's grids.

Models (all from input to class logits, with biases, as the paper's runner):

- ``"cnu"``: one :class:`~dyna.module.LinearCNU` with shared keys, identity ψ, WTA memory
  update, online (``ad_hoc_WTA``) key update and scrambling.
- ``"linear"``: one ``nn.Linear``.
- ``"mlp"``: ``Linear(in, h) → Tanh → Linear(h, classes)``.
- ``"replay"``: the same MLP trained with experience replay from a small reservoir buffer
  (:mod:`dyna.train.replay`): each step is one SGD step on the cross-entropy of the current
  sample plus the mean cross-entropy of up to ``replay_size`` samples drawn from a buffer of
  ``buffer_size`` (defaults 4 and 50), as ER in Mai et al. (2022); the buffer and the draws are
  seeded by the run's seed. The paper gives its replay competitors R_C − 1 buffer samples per
  step, R_C being the CNU's compute ratio to a linear layer: R_C = m·d/(n·u) + δ + 1 = 5 for
  its 2-D learner (m = 8 keys of size d = 2, n = 4 outputs, u = 2 inputs, δ = 2), hence 4.

The paper's comparison is :func:`run_experiment`; the repository's ``repro/continual.py``
(``python -m repro.continual``) runs it from the command line, prints its table (mean ±
standard deviation over seeds) and saves it for the results page.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dyna._validation import check_choice, check_int
from dyna.data.continual_streams import (
    STREAM_NAMES,
    STREAM_ORDERS,
    ContinualStream,
    StreamSplit,
    make_stream,
)
from dyna.module import LinearCNU
from dyna.train.continual_metrics import accuracy_per_distribution, continual_metrics
from dyna.train.metrics import mean_and_std
from dyna.train.replay import ReplaySchedule, reservoir_replay_schedule

MODEL_KINDS = ("cnu", "linear", "mlp", "replay")
# Models whose hidden size is searched.
HIDDEN_MODELS = ("mlp", "replay")
SPLITS = ("test", "validation")
# The paper's seeds (supplement, section C).
PAPER_SEEDS = (1234, 123456, 12346578)
# The paper's grids for every model (supplement): learning rate ρ, weight decay, MLP hidden size
# for the 2-D data. 1e-1 is added to the learning rates because Table 1 selects it (the printed
# grid omits it).
LEARNING_RATES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
WEIGHT_DECAYS = (0.0, 1e-4, 1e-3)
HIDDEN_SIZES = (5, 25)
# Learning rate of the baselines when none is given.
DEFAULT_LEARNING_RATE = 1e-2
# Experience replay: a small reservoir, and R_C − 1 = 4 replayed samples per step (see above).
DEFAULT_BUFFER_SIZE = 50
DEFAULT_REPLAY_SIZE = 4


@dataclass(frozen=True)
class CNUHyperparameters:
    """Hyper-parameters of the CNU learner (defaults: the paper's MODES-CI column).

    Args:
        key_mem_units: m, keys (= memories) in the layer's single shared key bank.
        delta: δ, memories blended per input.
        beta_k: β, step of the online key update.
        gamma_alpha: γ, inverse temperature of the attention softmax (divided by √d inside).
        tau_alpha: τ_α, scrambling threshold on the winner's cosine similarity.
        tau_mu: τ_μ, a key is under-used while it has won fewer than τ_μ times.
        tau_eta: τ_η, a key is old once it has not won for τ_η steps.
        learning_rate: ρ, SGD step of the memories.
        weight_decay: SGD weight decay.
    """

    key_mem_units: int = 8
    delta: int = 2
    beta_k: float = 1e-2
    gamma_alpha: float = 25.0
    tau_alpha: float = 0.95
    tau_mu: float = 50.0
    tau_eta: float = 50.0
    learning_rate: float = 1e-2
    weight_decay: float = 0.0

    def layer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~dyna.module.LinearCNU` for this learner."""
        return {
            "bias": True,
            "shared_keys": True,
            "key_mem_units": self.key_mem_units,
            "psi_fn": "identity",
            "delta": self.delta,
            "beta_k": self.beta_k,
            "gamma_alpha": self.gamma_alpha,
            "tau_alpha": self.tau_alpha,
            "tau_mu": self.tau_mu,
            "tau_eta": self.tau_eta,
            "upd_m": "WTA",
            "upd_k": "ad_hoc_WTA",
            "scramble": True,
        }


def _paper_column(beta_k, learning_rate, gamma_alpha, tau_alpha, tau_eta, weight_decay):
    return CNUHyperparameters(
        beta_k=beta_k,
        learning_rate=learning_rate,
        gamma_alpha=gamma_alpha,
        tau_alpha=tau_alpha,
        tau_eta=tau_eta,
        weight_decay=weight_decay,
    )


# The paper's selected values (supplement, Table 1); m = 8, δ = 2, τ_μ = 50 everywhere.
PAPER_CNU_HYPERPARAMETERS: dict[tuple[str, str], CNUHyperparameters] = {
    ("modes", "ci"): _paper_column(1e-2, 1e-2, 25.0, 0.95, 50.0, 0.0),
    ("modes", "cdi"): _paper_column(1e-2, 1e-1, 25.0, 0.95, 50.0, 0.0),
    ("modes", "cdid"): _paper_column(1e-2, 1e-2, 25.0, 0.95, 50.0, 0.0),
    ("moons", "ci"): _paper_column(1e-2, 1e-1, 25.0, 0.95, 50.0, 0.0),
    ("moons", "cdi"): _paper_column(1e-2, 1e-2, 25.0, 0.95, 200.0, 0.0),
    ("moons", "cdid"): _paper_column(1e-1, 1e-2, 5.0, 0.85, 200.0, 1e-3),
}


def paper_cnu_hyperparameters(stream: str, order: str) -> CNUHyperparameters:
    """The paper's CNU hyper-parameters for a stream (Table 1 of its supplement).

    The table has no IID column; IID uses the class-incremental (CI) column of the same data set.

    Example:
        >>> paper_cnu_hyperparameters("moons", "cdid").gamma_alpha
        5.0
    """
    stream = check_choice("stream", stream, STREAM_NAMES)
    order = check_choice("order", order, STREAM_ORDERS)
    return PAPER_CNU_HYPERPARAMETERS[(stream, "ci" if order == "iid" else order)]


@dataclass(frozen=True)
class ContinualResult:
    """The outcome of one online run.

    Attributes:
        stream: ``"modes"`` or ``"moons"``.
        order: ``"iid"``, ``"ci"``, ``"cdi"`` or ``"cdid"``.
        model: ``"cnu"``, ``"linear"``, ``"mlp"`` or ``"replay"``.
        seed: seed of the stream, of the model's initialisation and of the replay plan.
        split: the held-out split the matrix was measured on (``"test"`` or ``"validation"``).
        learning_rate: SGD learning rate.
        weight_decay: SGD weight decay.
        hidden: hidden size of the MLP (also under replay); ``None`` for the other models.
        cnu: the CNU's hyper-parameters; ``None`` for the baselines.
        steps: online steps taken (training samples seen).
        matrix: (T, T) float32 CPU continual confusion matrix.
        average_accuracy: ACC of the matrix, in [0, 1].
        average_forgetting: FORG of the matrix.
        forward_transfer: FWD of the matrix.
        seconds: wall time of the run.
        buffer_size: reservoir capacity of a ``"replay"`` run; ``None`` for the other models.
        replay_size: samples replayed per step of a ``"replay"`` run; ``None`` otherwise.
    """

    stream: str
    order: str
    model: str
    seed: int
    split: str
    learning_rate: float
    weight_decay: float
    hidden: int | None
    cnu: CNUHyperparameters | None
    steps: int
    matrix: torch.Tensor = field(repr=False)
    average_accuracy: float
    average_forgetting: float
    forward_transfer: float
    seconds: float
    buffer_size: int | None = None
    replay_size: int | None = None


def _check_rate(name: str, value: object, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number < 0.0 or (positive and number == 0.0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")
    return number


def _check_sequence(name: str, values: object) -> tuple:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence (list or tuple), got {type(values).__name__}")
    if len(values) == 0:
        raise ValueError(f"{name} must not be empty")
    return tuple(values)


def build_model(
    model: str,
    in_features: int,
    num_classes: int,
    *,
    hidden: int = 25,
    cnu: CNUHyperparameters | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """Build one of the learners, initialised from PyTorch's global generator.

    Args:
        model: ``"cnu"``, ``"linear"``, ``"mlp"`` or ``"replay"`` (an MLP; replay is in the
            training loop).
        in_features: input size.
        num_classes: number of classes (output logits).
        hidden: hidden size of the MLP (default 25; ignored by the other models).
        cnu: the CNU's hyper-parameters (default :class:`CNUHyperparameters`).
        device: device of the parameters.
        dtype: dtype of the parameters.

    Example:
        >>> build_model("mlp", 2, 4, hidden=5)
        Sequential(
          (0): Linear(in_features=2, out_features=5, bias=True)
          (1): Tanh()
          (2): Linear(in_features=5, out_features=4, bias=True)
        )
    """
    model = check_choice("model", model, MODEL_KINDS)
    in_features = check_int("in_features", in_features, minimum=1)
    num_classes = check_int("num_classes", num_classes, minimum=1)
    hidden = check_int("hidden", hidden, minimum=1)
    factory_kwargs: dict[str, Any] = {"device": device, "dtype": dtype}
    if model == "linear":
        return nn.Linear(in_features, num_classes, **factory_kwargs)
    if model in HIDDEN_MODELS:
        return nn.Sequential(
            nn.Linear(in_features, hidden, **factory_kwargs),
            nn.Tanh(),
            nn.Linear(hidden, num_classes, **factory_kwargs),
        )
    if cnu is None:
        cnu = CNUHyperparameters()
    if not isinstance(cnu, CNUHyperparameters):
        raise TypeError(f"cnu must be a CNUHyperparameters, got {type(cnu).__name__}")
    return LinearCNU(in_features, num_classes, **cnu.layer_kwargs(), **factory_kwargs)


def _evaluate_row(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    distributions: torch.Tensor,
    count: int,
) -> torch.Tensor:
    # One batched forward over the held-out split; eval() turns off the CNU's key updates.
    model.eval()
    with torch.no_grad():
        predictions = model(inputs).argmax(dim=1)
    model.train()
    return accuracy_per_distribution(predictions, targets, distributions, count)


@contextlib.contextmanager
def _single_threaded():
    # A run is a few thousand operations on 1 to 5 samples, a replay plan of (n, c) integers and
    # a few evaluations of a few hundred 2-D points: intra-op threads cannot help at these
    # sizes, and on a loaded 2-core machine two threads measured 30 to 100 times slower than one
    # for the row-parallel log-softmax of a 5-sample replay batch, and 25 to 60 times slower for
    # the plan. Switching the thread count costs about 20 ms, so a run switches once.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _plain_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels)


def _replay_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    # ER as in Mai et al. (2022): the current sample's loss plus the mean loss of the replayed
    # ones, from one forward pass over the joint batch (the MLP has no batch statistics).
    return F.cross_entropy(logits[:1], labels[:1]) + F.cross_entropy(logits[1:], labels[1:])


def _train_online(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    stream: ContinualStream,
    steps: int,
    evaluation_split: StreamSplit,
    num_rows: int,
    replay: ReplaySchedule | None = None,
) -> torch.Tensor:
    train = stream.train
    # One host read before the loop: where each distribution of the stream ends.
    block_sizes = torch.bincount(train.distributions[:steps]).tolist()
    if replay is None:
        # Per-sample (1, ...) views made once; unbind avoids indexing the big tensors every step.
        samples: Sequence[torch.Tensor] = train.inputs[:steps].unsqueeze(1).unbind(0)
        labels: Sequence[torch.Tensor] = train.targets[:steps].unsqueeze(1).unbind(0)
        losses = [_plain_loss] * steps
    else:
        # Every step's batch (current sample first, then its replayed ones) gathered in one
        # indexing op before the loop; the first k steps, with fewer samples in the buffer, are
        # trimmed views of their rows.
        indices = torch.cat(
            [torch.arange(steps, device=train.inputs.device).unsqueeze(1), replay.replay_indices],
            dim=1,
        ).clamp(min=0)
        counts = replay.replay_counts()
        samples = [
            batch[: 1 + count]
            for batch, count in zip(train.inputs[indices].unbind(0), counts, strict=True)
        ]
        labels = [
            batch[: 1 + count]
            for batch, count in zip(train.targets[indices].unbind(0), counts, strict=True)
        ]
        losses = [_replay_loss if count else _plain_loss for count in counts]
    evaluation = (
        evaluation_split.inputs,
        evaluation_split.targets,
        evaluation_split.distributions,
        evaluation_split.num_distributions,
    )
    rows = []
    start = 0
    model.train()
    for size in block_sizes[:num_rows]:
        for sample, label, loss_fn in zip(
            samples[start : start + size],
            labels[start : start + size],
            losses[start : start + size],
            strict=True,
        ):
            loss = loss_fn(model(sample), label)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        start += size
        rows.append(_evaluate_row(model, *evaluation))
    return torch.stack(rows)


def run_continual(
    stream: str | ContinualStream = "modes",
    order: str | None = "ci",
    model: str = "cnu",
    *,
    seed: int = PAPER_SEEDS[0],
    learning_rate: float | None = None,
    weight_decay: float | None = None,
    hidden: int = 25,
    cnu: CNUHyperparameters | None = None,
    split: str = "test",
    num_train: int = 1000,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    replay_size: int = DEFAULT_REPLAY_SIZE,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> ContinualResult:
    """Train one learner online on one stream and measure it with the continual confusion matrix.

    Args:
        stream: ``"modes"`` or ``"moons"`` (generated with ``seed``), or a ready
            :class:`~dyna.data.ContinualStream`.
        order: ``"iid"``, ``"ci"``, ``"cdi"`` or ``"cdid"`` (default ``"ci"``); with a ready
            stream, ``None`` or the stream's own order.
        model: ``"cnu"`` (default), ``"linear"``, ``"mlp"`` or ``"replay"`` (the MLP with
            experience replay).
        seed: seed of the stream (when generated), of the model's initialisation and of the
            replay plan (default 1234). The global random state is restored afterwards.
        learning_rate: SGD learning rate; default the CNU's ρ, or 0.01 for the baselines.
        weight_decay: SGD weight decay; default the CNU's, or 0 for the baselines.
        hidden: hidden size of the MLP, with or without replay (default 25).
        cnu: the CNU's hyper-parameters; default :func:`paper_cnu_hyperparameters` of the
            stream. ``learning_rate`` and ``weight_decay``, when given, override its own.
        split: ``"test"`` (default): the whole stream, measured on the test split;
            ``"validation"``: the early part of the stream that the validation split covers,
            measured on it (model selection).
        num_train: training samples of a generated stream (default 1000).
        buffer_size: capacity of the replay reservoir (default 50; ``"replay"`` only).
        replay_size: samples replayed per step, at most ``buffer_size`` (default 4, the paper's
            R_C − 1; ``"replay"`` only).
        device: device of the model and the data.
        dtype: floating dtype of the model and the data (default: the global default).

    Returns:
        A :class:`ContinualResult`.

    Example:
        >>> result = run_continual("modes", "ci", "linear", seed=0, num_train=100)
        >>> result.matrix.shape, result.steps
        (torch.Size([4, 4]), 100)
    """
    model = check_choice("model", model, MODEL_KINDS)
    seed = check_int("seed", seed, minimum=0)
    split = check_choice("split", split, SPLITS)
    hidden = check_int("hidden", hidden, minimum=1)
    buffer_size = check_int("buffer_size", buffer_size, minimum=1)
    replay_size = check_int("replay_size", replay_size, minimum=1)
    if replay_size > buffer_size:
        raise ValueError(f"replay_size must be <= buffer_size ({buffer_size}), got {replay_size}")
    if isinstance(stream, ContinualStream):
        if order is not None and check_choice("order", order, STREAM_ORDERS) != stream.order:
            raise ValueError(
                f"order must be None or the stream's order {stream.order!r}, got {order!r}"
            )
        data = stream.train.inputs
        if (device is not None and torch.device(device) != data.device) or (
            dtype is not None and dtype != data.dtype
        ):
            stream = replace(
                stream,
                train=stream.train.to(device, dtype),
                validation=stream.validation.to(device, dtype),
                test=stream.test.to(device, dtype),
            )
    elif isinstance(stream, str):
        if order is None:
            raise ValueError("order must be given when stream is a name")
        stream = make_stream(
            stream, order, seed=seed, num_train=num_train, device=device, dtype=dtype
        )
    else:
        raise TypeError(f"stream must be a str or a ContinualStream, got {type(stream).__name__}")

    if model == "cnu":
        if cnu is None:
            cnu = paper_cnu_hyperparameters(stream.name, stream.order)
        elif not isinstance(cnu, CNUHyperparameters):
            raise TypeError(f"cnu must be a CNUHyperparameters, got {type(cnu).__name__}")
        if learning_rate is None:
            learning_rate = cnu.learning_rate
        if weight_decay is None:
            weight_decay = cnu.weight_decay
        cnu = replace(cnu, learning_rate=learning_rate, weight_decay=weight_decay)
    else:
        cnu = None
    if learning_rate is None:
        learning_rate = DEFAULT_LEARNING_RATE
    if weight_decay is None:
        weight_decay = 0.0
    learning_rate = _check_rate("learning_rate", learning_rate, positive=True)
    weight_decay = _check_rate("weight_decay", weight_decay, positive=False)

    evaluation_split = stream.test if split == "test" else stream.validation
    num_rows = evaluation_split.num_distributions
    if split == "test":
        steps = len(stream.train)
    else:
        # Train up to the end of the last distribution the validation split covers.
        steps = int((stream.train.distributions < num_rows).sum())

    begin = time.perf_counter()
    parameters_dtype = stream.train.inputs.dtype
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        learner = build_model(
            model,
            stream.in_features,
            stream.num_classes,
            hidden=hidden,
            cnu=cnu,
            device=stream.train.inputs.device,
            dtype=parameters_dtype,
        )
    optimizer = torch.optim.SGD(learner.parameters(), lr=learning_rate, weight_decay=weight_decay)
    with _single_threaded():
        replay = None
        if model == "replay":
            replay = reservoir_replay_schedule(
                steps,
                buffer_size,
                replay_size,
                generator=torch.Generator().manual_seed(seed),
                device=stream.train.inputs.device,
            )
        matrix = _train_online(
            learner, optimizer, stream, steps, evaluation_split, num_rows, replay
        )
    matrix = matrix.float().cpu()
    metrics = continual_metrics(matrix)
    return ContinualResult(
        stream=stream.name,
        order=stream.order,
        model=model,
        seed=seed,
        split=split,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        hidden=hidden if model in HIDDEN_MODELS else None,
        cnu=cnu,
        steps=steps,
        matrix=matrix,
        average_accuracy=metrics.average_accuracy,
        average_forgetting=metrics.average_forgetting,
        forward_transfer=metrics.forward_transfer,
        seconds=time.perf_counter() - begin,
        buffer_size=buffer_size if replay is not None else None,
        replay_size=replay_size if replay is not None else None,
    )


def _run_each(
    streams: Sequence[ContinualStream],
    model: str,
    setting: tuple[float, float, int | None],
    *,
    cnu: CNUHyperparameters | None,
    split: str,
    buffer_size: int,
    replay_size: int,
) -> list[ContinualResult]:
    """One run of ``model`` per stream (seeded by the stream) with ``setting`` = (learning
    rate, weight decay, hidden size or None)."""
    learning_rate, weight_decay, hidden = setting
    return [
        run_continual(
            stream,
            None,
            model,
            seed=stream.seed,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            hidden=hidden if hidden is not None else 25,
            cnu=cnu,
            split=split,
            buffer_size=buffer_size,
            replay_size=replay_size,
        )
        for stream in streams
    ]


@dataclass(frozen=True)
class Candidate:
    """One point of a hyper-parameter grid and its validation score (mean ACC over seeds)."""

    learning_rate: float
    weight_decay: float
    hidden: int | None
    score: float


def search_hyperparameters(
    streams: Sequence[ContinualStream],
    model: str,
    *,
    learning_rates: Sequence[float] = LEARNING_RATES,
    weight_decays: Sequence[float] = WEIGHT_DECAYS,
    hidden_sizes: Sequence[int] = HIDDEN_SIZES,
    cnu: CNUHyperparameters | None = None,
    split: str = "validation",
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    replay_size: int = DEFAULT_REPLAY_SIZE,
) -> list[Candidate]:
    """Score every grid point on the validation part of the streams; best first.

    Each candidate is trained on the early part of each stream (one stream per seed, the seed
    taken from the stream) and scored by the validation average accuracy, averaged over the
    streams. With ``split="test"`` it is trained on the whole stream and scored on the test
    split instead: not a fair selection, but an upper bound of what the grid can reach. Ties
    keep the grid order (smaller learning rate, then smaller weight decay, then smaller hidden
    size first).

    Args:
        streams: one generated stream per seed, all of the same data set and order.
        model: ``"cnu"``, ``"linear"``, ``"mlp"`` or ``"replay"``.
        learning_rates: grid of SGD learning rates (default the paper's, plus 0.1).
        weight_decays: grid of weight decays (default the paper's: 0, 1e-4, 1e-3).
        hidden_sizes: grid of MLP hidden sizes (default the paper's: 5, 25; MLP and replay
            only).
        cnu: the CNU's other hyper-parameters (default the paper's for the stream).
        split: ``"validation"`` (default) or ``"test"``, where candidates are scored.
        buffer_size: replay reservoir capacity (default 50; fixed, not searched).
        replay_size: samples replayed per step (default 4; fixed, not searched).

    Returns:
        The candidates sorted by score, best first.
    """
    model = check_choice("model", model, MODEL_KINDS)
    split = check_choice("split", split, SPLITS)
    streams = _check_sequence("streams", streams)
    for stream in streams:
        if not isinstance(stream, ContinualStream):
            raise TypeError(
                f"streams must hold ContinualStream objects, got {type(stream).__name__}"
            )
    if len({(stream.name, stream.order) for stream in streams}) != 1:
        raise ValueError("streams must all be of the same data set and order")
    learning_rates = _check_sequence("learning_rates", learning_rates)
    weight_decays = _check_sequence("weight_decays", weight_decays)
    hidden_choices: Sequence[int | None] = (
        _check_sequence("hidden_sizes", hidden_sizes) if model in HIDDEN_MODELS else (None,)
    )
    candidates = []
    for learning_rate in learning_rates:
        for weight_decay in weight_decays:
            for hidden in hidden_choices:
                scores = [
                    result.average_accuracy
                    for result in _run_each(
                        streams,
                        model,
                        (learning_rate, weight_decay, hidden),
                        cnu=cnu,
                        split=split,
                        buffer_size=buffer_size,
                        replay_size=replay_size,
                    )
                ]
                candidates.append(
                    Candidate(
                        float(learning_rate), float(weight_decay), hidden, statistics.fmean(scores)
                    )
                )
    # sorted() is stable: equal scores keep the grid order.
    return sorted(candidates, key=lambda candidate: -candidate.score)


@dataclass(frozen=True)
class ExperimentRow:
    """One (data set, order, model) cell of the comparison: its settings and per-seed runs.

    ``seconds`` is the wall time of the whole cell: its search (if any) and its final runs.
    """

    stream: str
    order: str
    model: str
    learning_rate: float
    weight_decay: float
    hidden: int | None
    searched: bool
    selected_on: str
    results: tuple[ContinualResult, ...]
    seconds: float = 0.0

    def mean_std(self, metric: str) -> tuple[float, float]:
        """Mean and sample standard deviation over seeds of ``"average_accuracy"``,
        ``"average_forgetting"`` or ``"forward_transfer"`` (std 0 for one seed)."""
        names = ("average_accuracy", "average_forgetting", "forward_transfer")
        metric = check_choice("metric", metric, names)
        mean, spread = mean_and_std([getattr(result, metric) for result in self.results])
        return mean, spread or 0.0


def run_experiment(
    streams: Sequence[str] = STREAM_NAMES,
    orders: Sequence[str] = STREAM_ORDERS,
    models: Sequence[str] = MODEL_KINDS,
    *,
    seeds: Sequence[int] = PAPER_SEEDS,
    search_cnu: bool = False,
    selection: str = "validation",
    learning_rates: Sequence[float] = LEARNING_RATES,
    weight_decays: Sequence[float] = WEIGHT_DECAYS,
    hidden_sizes: Sequence[int] = HIDDEN_SIZES,
    num_train: int = 1000,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    replay_size: int = DEFAULT_REPLAY_SIZE,
    progress: Callable[[str], None] | None = None,
) -> list[ExperimentRow]:
    """The paper's comparison: every model on every stream, selected on validation, over seeds.

    For each data set and order, one stream is generated per seed. The baselines' learning rate,
    weight decay and (MLP) hidden size are selected by :func:`search_hyperparameters`; the CNU
    uses :func:`paper_cnu_hyperparameters`, or gets the same learning-rate and weight-decay
    search when ``search_cnu`` is true. The selected setting is then run on the whole stream of
    every seed and measured on the test split.

    Args:
        streams: data sets (default both).
        orders: orders (default all four).
        models: learners (default ``cnu``, ``linear``, ``mlp``, ``replay``).
        seeds: seeds (default the paper's three).
        search_cnu: also search the CNU's learning rate and weight decay (default False).
        selection: where searched settings are scored: ``"validation"`` (default, the paper's
            protocol) or ``"test"`` (an upper bound for the searched models, not a fair result).
        learning_rates: the search grid of learning rates.
        weight_decays: the search grid of weight decays.
        hidden_sizes: the search grid of MLP hidden sizes (MLP and replay).
        num_train: training samples per stream (default 1000).
        buffer_size: replay reservoir capacity (default 50).
        replay_size: samples replayed per step (default 4).
        progress: called with one line of text after each cell (default silent).

    Returns:
        One :class:`ExperimentRow` per (data set, order, model), in that nesting order.
    """
    streams = tuple(
        check_choice("streams", name, STREAM_NAMES) for name in _check_sequence("streams", streams)
    )
    orders = tuple(
        check_choice("orders", name, STREAM_ORDERS) for name in _check_sequence("orders", orders)
    )
    models = tuple(
        check_choice("models", name, MODEL_KINDS) for name in _check_sequence("models", models)
    )
    seeds = tuple(check_int("seeds", seed, minimum=0) for seed in _check_sequence("seeds", seeds))
    selection = check_choice("selection", selection, SPLITS)
    buffer_size = check_int("buffer_size", buffer_size, minimum=1)
    replay_size = check_int("replay_size", replay_size, minimum=1)
    if replay_size > buffer_size:
        raise ValueError(f"replay_size must be <= buffer_size ({buffer_size}), got {replay_size}")
    if not isinstance(search_cnu, bool):
        raise TypeError(f"search_cnu must be a bool, got {type(search_cnu).__name__}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable or None, got {type(progress).__name__}")
    rows = []
    for name in streams:
        for order in orders:
            generated = [make_stream(name, order, seed=seed, num_train=num_train) for seed in seeds]
            for model in models:
                begin = time.perf_counter()
                cnu = paper_cnu_hyperparameters(name, order) if model == "cnu" else None
                # Only the CNU has paper settings; the baselines are always searched.
                searched = cnu is None or search_cnu
                if cnu is None or search_cnu:
                    best = search_hyperparameters(
                        generated,
                        model,
                        learning_rates=learning_rates,
                        weight_decays=weight_decays,
                        hidden_sizes=hidden_sizes,
                        cnu=cnu,
                        split=selection,
                        buffer_size=buffer_size,
                        replay_size=replay_size,
                    )[0]
                    learning_rate, weight_decay, hidden = (
                        best.learning_rate,
                        best.weight_decay,
                        best.hidden,
                    )
                else:
                    learning_rate, weight_decay, hidden = cnu.learning_rate, cnu.weight_decay, None
                results = tuple(
                    _run_each(
                        generated,
                        model,
                        (learning_rate, weight_decay, hidden),
                        cnu=cnu,
                        split="test",
                        buffer_size=buffer_size,
                        replay_size=replay_size,
                    )
                )
                row = ExperimentRow(
                    name,
                    order,
                    model,
                    learning_rate,
                    weight_decay,
                    hidden,
                    searched,
                    selection if searched else "paper",
                    results,
                    time.perf_counter() - begin,
                )
                rows.append(row)
                if progress is not None:
                    accuracy, _ = row.mean_std("average_accuracy")
                    progress(
                        f"{name} {order} {model}: lr {learning_rate:g}, wd {weight_decay:g}, "
                        f"ACC {100 * accuracy:.1f} % ({row.seconds:.1f} s)"
                    )
    return rows
