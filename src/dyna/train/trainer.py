"""The supervised epoch loop of ``dyna train``: exact resume, DDP, metrics, plots.

Everything a run needs to continue exactly is a pure function of its configuration and its
last checkpoint: the data live in memory as tensors (no loader workers), the batch order is a
pure function of (seed, epoch) (:class:`~dyna.train.sampler.GlobalBatchSampler`), and a
checkpoint holds the model, the optimizer, the random generator states, the position in the
run (epoch, batch within the epoch, step) and the running epoch sums. Resuming skips the
consumed batches and cuts the metrics files back to the checkpoint, so a run killed at any
point and resumed ends with the same weights and the same metrics files as a run that was
never interrupted.

Loss: each process sums the cross-entropy over its slice of the global batch and divides by the
global batch size times ``1 / world_size``; DDP averages the gradients over processes, which
gives exactly the single-process mean-loss gradient.
"""

from __future__ import annotations

import contextlib
import math
import signal
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from dyna._validation import check_real
from dyna.data.split import Split
from dyna.train import distributed
from dyna.train.checkpoint import (
    CheckpointError,
    CheckpointMismatch,
    flatten_optimizer,
    list_checkpoints,
    load_checkpoint,
    remove_temporary_files,
    resolve_checkpoint,
    restore_rng,
    rng_tensors,
    save_checkpoint,
    save_tensors_atomic,
    unflatten_optimizer,
    write_json_atomic,
)
from dyna.train.config import (
    SCHEDULES,
    ConfigError,
    Dataset,
    TrainConfig,
    check_config_fields,
    check_dict,
    check_instance,
    check_integer,
    config_differences,
)
from dyna.train.display import TrainingDisplay
from dyna.train.metrics import EPOCH_COLUMNS, STEP_COLUMNS, CSVLog
from dyna.train.run_folder import replacing_run
from dyna.train.sampler import GlobalBatchSampler

if TYPE_CHECKING:
    from dyna.train.experiment import SupervisedExperiment as Experiment


class TrainingInterrupted(Exception):
    """SIGINT: the run stopped after writing a checkpoint; ``--resume`` continues it."""


@dataclass
class Position:
    """Where the run is: the next batch to train and the sums of the current epoch."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    samples: int = 0
    loss_sum: float = 0.0
    correct: float = 0.0
    count: float = 0.0
    best_val_accuracy: float | None = None
    best_epoch: int | None = None
    test_at_best: float | None = None


def position_from_json(value: object, epochs: int) -> Position:
    """The :class:`Position` a sidecar holds, checked against a run of ``epochs`` epochs.

    Raises:
        TypeError, ValueError: naming the field (``position.step``, ...) and the value.
    """
    value = check_dict("position", value)
    names = [item.name for item in fields(Position)]
    if sorted(value) != sorted(names):
        raise ValueError(f"position must hold exactly {names}, got {sorted(value)}")
    for name in ("epoch", "batch", "step", "samples"):
        check_integer(f"position.{name}", value[name], 0)
    for name in ("correct", "count"):
        check_real(f"position.{name}", value[name], minimum=0.0)
    # A diverged run may carry an infinite or NaN loss sum; it still resumes.
    check_real("position.loss_sum", value["loss_sum"], finite=False)
    if value["epoch"] > epochs:
        raise ValueError(
            f"position.epoch must be at most config.epochs = {epochs}, got {value['epoch']}"
        )
    for name in ("best_val_accuracy", "test_at_best"):
        if value[name] is not None:
            number = check_real(f"position.{name}", value[name], minimum=0.0)
            if number > 1.0:
                raise ValueError(f"position.{name} must be an accuracy in [0, 1], got {number}")
    if value["best_epoch"] is not None:
        check_integer("position.best_epoch", value["best_epoch"], 1, value["epoch"] + 1)
    return Position(**value)


def check_sidecar(path: Path, metadata: Mapping[str, Any]) -> None:
    """Check the fields :func:`train` writes into a checkpoint's sidecar, types and ranges.

    :func:`~dyna.train.checkpoint.load_checkpoint` has checked the envelope (version, tensor
    file name, checksums); this checks the content, so a sidecar that is valid JSON but not a
    run's (written by hand, or by a buggy tool) is refused before any of it is used.

    Raises:
        CheckpointError: one line naming the sidecar and the field.
    """
    try:
        check_instance("experiment", metadata.get("experiment"), str, "a str")
        config = check_dict("config", metadata.get("config"))
        check_config_fields(config, prefix="config.")
        if config["experiment"] != metadata["experiment"]:
            raise ValueError(
                f"config.experiment {config['experiment']!r} differs from experiment "
                f"{metadata['experiment']!r}"
            )
        position_from_json(metadata.get("position"), config["epochs"])
        optimizer = check_dict("optimizer", metadata.get("optimizer"))
        check_instance("optimizer.param_groups", optimizer.get("param_groups"), list, "a list")
        for index, group in enumerate(optimizer["param_groups"]):
            check_dict(f"optimizer.param_groups[{index}]", group)
        for key, entry in check_dict("optimizer.state", optimizer.get("state")).items():
            if not key.isdigit():
                raise ValueError(f"optimizer.state keys must be parameter indices, got {key!r}")
            check_dict(f"optimizer.state.{key}", entry)
        sizes = check_dict("metrics_bytes", metadata.get("metrics_bytes"))
        for name in ("steps", "epochs"):
            check_integer(f"metrics_bytes.{name}", sizes.get(name), 0)
        check_instance("complete", metadata.get("complete"), bool, "a bool")
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {path} holds an invalid sidecar ({error}): restore the checkpoint or "
            f"start a new run"
        ) from None


def load_training_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """:func:`~dyna.train.checkpoint.load_checkpoint` of a run's checkpoint, its sidecar checked.

    ``path`` is a run folder, its ``checkpoints/`` folder or a sidecar. Returns (tensors,
    sidecar); raises :class:`~dyna.train.checkpoint.CheckpointError` with one line otherwise.
    """
    sidecar_path = resolve_checkpoint(path)
    tensors, metadata = load_checkpoint(sidecar_path)
    check_sidecar(sidecar_path, metadata)
    return tensors, metadata


def _listed(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def load_model_state(
    model: nn.Module, tensors: Mapping[str, torch.Tensor], checkpoint: str | Path, name: str
) -> None:
    """Load a checkpoint's ``model.*`` tensors into ``model``, strictly.

    Raises:
        CheckpointMismatch: naming the missing and unexpected keys and the tensors whose shapes
            differ (torch's own error lists them over many lines).
    """
    state = {
        key[len("model.") :]: value for key, value in tensors.items() if key.startswith("model.")
    }
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = [
        f"{key} {tuple(state[key].shape)} for {tuple(expected[key].shape)}"
        for key in sorted(set(state) & set(expected))
        if state[key].shape != expected[key].shape
    ]
    problems = [
        f"{what} {_listed(keys)}"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("shapes", reshaped))
        if keys
    ]
    if problems:
        raise CheckpointMismatch(
            f"checkpoint {checkpoint} does not fit the model of {name} ({'; '.join(problems)}): "
            f"it was written by another model or another version of it"
        )
    model.load_state_dict(state, strict=True)


def learning_rate(config: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate of step ``step`` (0-based): a pure function of the step, so a resumed
    run needs no scheduler state. ``cosine``: lr * (1 + cos(pi * step / total)) / 2."""
    if config.schedule == "constant":
        return config.lr
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))


class _Interrupt:
    """SIGINT sets a flag; the loop checks it after each step and stops at a checkpoint."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _Interrupt:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        # A second Ctrl-C stops at once (the last checkpoint still resumes the run).
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _to_device(split: Split, device: torch.device) -> Split:
    return Split(split.inputs.to(device), split.labels.to(device))


@torch.no_grad()
def evaluate(
    model: nn.Module, split: Split, batch_size: int, context: distributed.Context
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy on ``split`` (each process takes a contiguous shard)."""
    was_training = model.training
    model.eval()
    shard = torch.arange(len(split)).tensor_split(context.world_size)[context.rank]
    totals = torch.zeros(3, dtype=torch.float64, device=context.device)
    for chunk in shard.split(batch_size):
        chunk = chunk.to(split.inputs.device)
        logits = model(split.inputs[chunk]).float()
        labels = split.labels[chunk]
        totals[0] += F.cross_entropy(logits, labels, reduction="sum").double()
        totals[1] += (logits.argmax(dim=1) == labels).sum()
        totals[2] += labels.numel()
    distributed.all_reduce_sum(totals, context)
    model.train(was_training)
    loss, correct, count = totals.tolist()
    return loss / count, correct / count


def run_folder_files(out: Path) -> dict[str, Path]:
    """The files of a run folder."""
    return {
        "config": out / "config.json",
        "steps": out / "metrics" / "steps.csv",
        "epochs": out / "metrics" / "epochs.csv",
        "checkpoints": out / "checkpoints",
        "model": out / "model.safetensors",
        "summary": out / "summary.json",
        "curves": out / "plots" / "learning_curves.png",
        "traces": out / "plots" / "horn_traces.png",
    }


def build(experiment: Experiment, config: TrainConfig) -> tuple[Dataset, nn.Module]:
    """The data set and a freshly initialised model (seeded with ``config.seed``)."""
    params = experiment.check_params(config.params)
    data_dir = Path(config.data) if config.data else None
    if experiment.data is None or experiment.model is None:
        raise ConfigError(f"experiment {experiment.name!r} has no data or model builder to train")
    dataset = experiment.data(params, data_dir)
    torch.manual_seed(config.seed)
    model = experiment.model(params, dataset)
    return dataset, model


def train(
    experiment: Experiment,
    config: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    replace: bool = False,
    quiet: bool = False,
    live: bool | None = None,
    tensorboard: bool = False,
) -> dict[str, Any]:
    """Train ``experiment`` with ``config`` into the run folder ``out``; returns the summary.

    ``replace``: ``out`` holds a run to start over from; it is replaced only after the new
    run's data and model are built, and kept if writing the new run's first files fails
    (:func:`~dyna.train.run_folder.replacing_run`).

    Raises:
        TrainingInterrupted: after SIGINT, once a checkpoint is written.
        CheckpointError / CheckpointMismatch: ``resume`` found no usable checkpoint.
        ConfigError, DataError: bad configuration or data.
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    context = distributed.setup(config.device)
    finished = False
    try:
        options = _Options(
            resume=resume, replace=replace, quiet=quiet, live=live, tensorboard=tensorboard
        )
        summary = _train(experiment, config, Path(out), context, options)
        finished = True
        return summary
    finally:
        distributed.teardown(context, finished=finished)


def _train(
    experiment: Experiment,
    config: TrainConfig,
    out: Path,
    context: distributed.Context,
    options: _Options,
) -> dict[str, Any]:
    """The epoch loop: start (or resume) the run, train its epochs, write its final files."""
    if context.distributed and config.batch_size % context.world_size:
        raise ConfigError(
            f"--batch-size {config.batch_size} must be divisible by the number of processes "
            f"({context.world_size})"
        )
    if config.cuda_graph and context.distributed:
        raise ConfigError(
            f"--cuda-graph runs in one process, not under torchrun ({context.world_size} "
            f"processes): drop --cuda-graph or run one process"
        )
    if config.cuda_graph and context.device.type != "cuda":
        raise ConfigError(
            f"--cuda-graph needs --device cuda (this run trains on {context.device}): add "
            f"--device cuda or drop --cuda-graph"
        )
    if config.schedule not in SCHEDULES:
        raise ConfigError(
            f"schedule must be one of {', '.join(SCHEDULES)}, got {config.schedule!r}"
        )
    checkpoint = _resume_checkpoint(experiment, config, out) if options.resume else None
    run = _Run.start(experiment, config, out, context, options)
    if checkpoint is not None:
        run.restore(*checkpoint)
    elif context.is_main:
        run.create_folder(replace=options.replace)
    run.open_writer(options.tensorboard)
    with _Interrupt() as interrupt:
        while run.position.epoch < config.epochs:
            run.train_epoch(interrupt)
            run.end_epoch()
            if run.stop_requested(interrupt):
                raise TrainingInterrupted(
                    f"interrupted after epoch {run.position.epoch}; checkpoint written: "
                    f"continue with the same command and --resume"
                )
    if run.writer is not None:
        run.writer.close()
    return _finish(run)


@dataclass(frozen=True)
class _Options:
    """How :func:`train` was asked to run (see its arguments)."""

    resume: bool
    replace: bool
    quiet: bool
    live: bool | None
    tensorboard: bool


def _resume_checkpoint(
    experiment: Experiment, config: TrainConfig, out: Path
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The last checkpoint of the run in ``out``, checked against ``experiment`` and ``config``."""
    folder = run_folder_files(out)["checkpoints"]
    found = list_checkpoints(folder)
    if not found:
        raise CheckpointError(
            f"--resume: no checkpoint in {folder}: start the run without --resume"
        )
    checkpoint = load_training_checkpoint(found[-1])
    saved = checkpoint[1]
    if saved.get("experiment") != experiment.name:
        raise CheckpointMismatch(
            f"--resume: {found[-1]} belongs to experiment {saved.get('experiment')!r}, "
            f"not {experiment.name!r}: use another --out"
        )
    differences = config_differences(saved.get("config", {}), config.to_json())
    if differences:
        raise CheckpointMismatch(
            f"--resume: the checkpoint was written with different settings "
            f"({'; '.join(differences)}): drop those options or use another --out"
        )
    return checkpoint


@dataclass
class _Run:
    """A supervised run in progress: what its steps read and update.

    Built by :meth:`start`; :meth:`restore` puts a checkpoint's state back. Each epoch is
    :meth:`train_epoch` (the steps, their metrics rows and the mid-epoch checkpoints) then
    :meth:`end_epoch` (evaluation, the epoch's row and its checkpoint).
    """

    experiment: Experiment
    config: TrainConfig
    out: Path
    context: distributed.Context
    display: TrainingDisplay
    files: dict[str, Path]
    dataset: Dataset
    model: nn.Module
    network: nn.Module
    optimizer: torch.optim.Optimizer
    train_split: Split
    validation: Split | None
    test: Split
    sampler: GlobalBatchSampler
    steps_log: CSVLog
    epochs_log: CSVLog
    position: Position = field(default_factory=Position)
    writer: Any = None
    # ``--cuda-graph``: the captured step of the full-size batches (None: every step eager).
    captured: _CapturedStep | None = None
    # The learning rate of the last step, as the Python float a checkpoint records.
    rate: float = 0.0
    # Per-step (loss sum, correct) sums on the device and where they were taken (with the
    # global batch size, which the summed counts equal), not yet read back.
    pending: list[tuple[torch.Tensor, dict[str, float]]] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        experiment: Experiment,
        config: TrainConfig,
        out: Path,
        context: distributed.Context,
        options: _Options,
    ) -> _Run:
        """The data, a freshly initialised model on the device, its optimizer and sampler."""
        files = run_folder_files(out)
        display = TrainingDisplay(enabled=context.is_main and not options.quiet, live=options.live)
        dataset, model = build(experiment, config)
        model.to(context.device)
        optimizer = _optimizer(model, config, context.device)
        train_split = _to_device(dataset.train, context.device)
        sampler = GlobalBatchSampler(
            len(train_split),
            config.batch_size,
            seed=config.seed,
            rank=context.rank,
            world_size=context.world_size,
        )
        return cls(
            experiment=experiment,
            config=config,
            out=out,
            context=context,
            display=display,
            files=files,
            dataset=dataset,
            model=model,
            network=distributed.wrap(model, context),
            optimizer=optimizer,
            train_split=train_split,
            validation=(
                None
                if dataset.validation is None
                else _to_device(dataset.validation, context.device)
            ),
            test=_to_device(dataset.test, context.device),
            sampler=sampler,
            steps_log=CSVLog(files["steps"], STEP_COLUMNS),
            epochs_log=CSVLog(files["epochs"], EPOCH_COLUMNS),
            captured=(
                _CapturedStep(config.batch_size, context.device, experiment.name)
                if config.cuda_graph
                else None
            ),
            rate=config.lr,
        )

    @property
    def total_steps(self) -> int:
        return self.config.epochs * len(self.sampler)

    def create_folder(self, replace: bool) -> None:
        """A new run: its folder, ``config.json`` and the metrics files' headers (rank 0).

        ``replace``: the folder holds an old run, swapped for this one only now that the data
        and the model are built (:func:`~dyna.train.run_folder.replacing_run`).
        """
        self.out.mkdir(parents=True, exist_ok=True)
        with replacing_run(self.out) if replace else contextlib.nullcontext():
            write_json_atomic(self.files["config"], self.config.to_json())
            self.steps_log.start()
            self.epochs_log.start()

    def restore(self, tensors: dict[str, torch.Tensor], saved: dict[str, Any]) -> None:
        """Put a checkpoint's weights, optimizer, position, generators and metrics back."""
        sidecar = list_checkpoints(self.files["checkpoints"])[-1]
        load_model_state(self.model, tensors, sidecar, self.experiment.name)
        try:
            self.optimizer.load_state_dict(unflatten_optimizer(tensors, saved["optimizer"]))
            self.position = Position(**saved["position"])
            self.rate = float(self.optimizer.param_groups[0]["lr"])
            if self.captured is not None:
                _use_tensor_rates(self.optimizer, self.context.device)
        except (RuntimeError, KeyError, TypeError, ValueError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise CheckpointMismatch(
                f"--resume: the checkpoint does not fit the model of {self.experiment.name} "
                f"({first_line}): use another --out"
            ) from None
        restore_rng(tensors)
        if self.context.is_main:
            remove_temporary_files(self.files["checkpoints"])
            remove_temporary_files(self.out)
            try:
                self.steps_log.truncate(saved["metrics_bytes"]["steps"])
                self.epochs_log.truncate(saved["metrics_bytes"]["epochs"])
            except (FileNotFoundError, KeyError) as error:
                raise CheckpointError(f"--resume: {error}: start a new run") from None
        position, name = self.position, self.experiment.name
        if position.epoch >= self.config.epochs:
            self.display.message(f"{name}: the run in {self.out} is already complete")
        else:
            self.display.message(
                f"resuming {name} at epoch {position.epoch + 1}, batch {position.batch} "
                f"(step {position.step})"
            )

    def open_writer(self, tensorboard: bool) -> None:
        """TensorBoard's event writer (rank 0, when asked for), from the run's step on."""
        if not (tensorboard and self.context.is_main):
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "--tensorboard needs the tensorboard package: pip install tensorboard"
            ) from None
        self.writer = SummaryWriter(
            str(self.out / "tensorboard"), purge_step=self.position.step or None
        )

    def stop_requested(self, interrupt: _Interrupt) -> bool:
        """Whether SIGINT asked to stop, agreed by every process.

        In a distributed run this is a collective with a host sync: call it at the same steps
        on every process (the logging points and the epoch ends).
        """
        if not self.context.distributed:
            return interrupt.requested
        # Every process must stop at the same step, or the others would wait forever.
        flag = torch.tensor([1.0 if interrupt.requested else 0.0], device=self.context.device)
        return bool(distributed.all_reduce_sum(flag, self.context).item() > 0)

    def train_epoch(self, interrupt: _Interrupt) -> None:
        """The steps of the current epoch from the position's batch on.

        No step reads a value back to the host: the batch order goes to the device once per
        epoch, each batch is a slice of it, and the metrics stay on the device until the
        logging points. A distributed run agrees on SIGINT there too (a single process checks
        its flag, a host variable, after every step).
        """
        config, position, context = self.config, self.position, self.context
        epoch = position.epoch
        order = self.sampler.permutation(epoch).to(context.device)
        slices = self.sampler.slices(start=position.batch)
        self.display.start_epoch(epoch, config.epochs, len(self.sampler), position.batch)
        self.network.train()
        for begin, end, global_count in slices:
            self.step(order[begin:end], global_count)
            logging_point = position.step % config.log_every == 0
            if logging_point:
                self.flush()
            stop = (logging_point or not context.distributed) and self.stop_requested(interrupt)
            if stop or (config.checkpoint_every and position.step % config.checkpoint_every == 0):
                self.save()
            if stop:
                raise TrainingInterrupted(
                    f"interrupted at step {position.step}; checkpoint written: continue "
                    f"with the same command and --resume"
                )
        self.flush()

    def step(self, indices: torch.Tensor, global_count: int) -> None:
        """One optimizer step on this process's slice of a global batch; its sums stay on the
        device until :meth:`flush`.

        Args:
            indices: ``(local batch,)`` int64 indices into the training split, on its device.
            global_count: the size of the global batch (all processes together).
        """
        position, context = self.position, self.context
        rate = learning_rate(self.config, position.step, self.total_steps)
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(rate)  # a captured step reads its rate from this tensor
            else:
                group["lr"] = rate
        self.rate = rate
        scale = context.world_size / global_count
        if self.captured is not None and self.captured.fits(indices, global_count):
            sums = self.captured.step(self, indices, scale)
        else:
            sums = self.update(indices, scale)
        position.batch += 1
        position.step += 1
        position.samples += global_count
        where = {
            "step": position.step,
            "epoch": position.epoch + 1,
            "batch": position.batch,
            "samples": position.samples,
            "lr": rate,
            "count": global_count,
        }
        self.pending.append((sums, where))

    def update(self, indices: torch.Tensor, scale: float) -> torch.Tensor:
        """Forward, backward and optimizer step on the samples ``indices``; the loss is summed
        and multiplied by ``scale`` (world size over the global batch size).

        Returns:
            ``(2,)``: the batch's summed cross-entropy and its number of correct predictions,
            on the device. Nothing here reads a value back, so it can be captured as a graph.
        """
        inputs = self.train_split.inputs.index_select(0, indices)
        labels = self.train_split.labels.index_select(0, indices)
        logits = self.network(inputs).float()
        loss_sum = F.cross_entropy(logits, labels, reduction="sum")
        self.optimizer.zero_grad(set_to_none=True)
        (loss_sum * scale).backward()
        self.optimizer.step()
        correct = (logits.detach().argmax(dim=1) == labels).sum()
        return torch.stack([loss_sum.detach(), correct.to(loss_sum.dtype)])

    def flush(self) -> None:
        """Turn the pending per-step sums into rows: one host sync per log interval."""
        if not self.pending:
            return
        position = self.position
        totals = torch.stack([sums for sums, _ in self.pending]).double()
        distributed.all_reduce_sum(totals, self.context)
        rows = []
        samples = 0
        for (loss_sum, correct), (_, where) in zip(totals.tolist(), self.pending, strict=True):
            count = float(where["count"])
            samples += int(count)
            position.loss_sum += loss_sum
            position.correct += correct
            position.count += count
            rows.append({**where, "loss": loss_sum / count, "accuracy": correct / count})
        self.pending.clear()
        if self.context.is_main:
            self.steps_log.append(rows)
            if self.writer is not None:
                for row in rows:
                    self.writer.add_scalar("train/loss", row["loss"], row["step"])
                    self.writer.add_scalar("train/accuracy", row["accuracy"], row["step"])
        last = rows[-1]
        self.display.advance(len(rows), samples, last["loss"], last["accuracy"])

    def save(self) -> None:
        """A checkpoint of everything that continues the run exactly (rank 0)."""
        self.flush()
        if not self.context.is_main:
            return
        state = self.optimizer.state_dict()
        for group in state["param_groups"]:
            group["lr"] = self.rate  # a captured step's rate is a tensor; JSON takes the float
        optimizer_tensors, optimizer_rest = flatten_optimizer(state)
        tensors = {f"model.{name}": value for name, value in self.model.state_dict().items()}
        tensors.update(optimizer_tensors)
        tensors.update(rng_tensors())
        metadata = {
            "experiment": self.experiment.name,
            "config": self.config.to_json(),
            "optimizer": optimizer_rest,
            "position": asdict(self.position),
            "metrics_bytes": {"steps": self.steps_log.size(), "epochs": self.epochs_log.size()},
            "complete": self.position.epoch >= self.config.epochs,
        }
        save_checkpoint(self.files["checkpoints"], self.position.step, tensors, metadata)

    def end_epoch(self) -> None:
        """Evaluate, write the epoch's row, move to the next epoch and checkpoint there."""
        config, position, context = self.config, self.position, self.context
        epoch = position.epoch
        train_loss = position.loss_sum / max(position.count, 1.0)
        train_accuracy = position.correct / max(position.count, 1.0)
        val_loss = val_accuracy = None
        if self.validation is not None:
            val_loss, val_accuracy = evaluate(
                self.model, self.validation, config.eval_batch_size, context
            )
        test_loss, test_accuracy = evaluate(self.model, self.test, config.eval_batch_size, context)
        if val_accuracy is not None and (
            position.best_val_accuracy is None or val_accuracy > position.best_val_accuracy
        ):
            position.best_val_accuracy = val_accuracy
            position.best_epoch = epoch + 1
            position.test_at_best = test_accuracy
        row = {
            "epoch": epoch + 1,
            "step": position.step,
            "train_loss": train_loss,
            "train_accuracy": train_accuracy,
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
        }
        if context.is_main:
            self.epochs_log.append([row])
            if self.writer is not None:
                for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
                    self.writer.add_scalar(f"epoch/{key}", row[key], position.step)
        self.display.end_epoch(row, config.epochs)
        position.epoch += 1
        position.batch = 0
        position.loss_sum = position.correct = position.count = 0.0
        self.save()


def _optimizer(
    model: nn.Module, config: TrainConfig, device: torch.device
) -> torch.optim.Optimizer:
    """AdamW over ``model``'s parameters; capturable, its rate a device tensor, for
    ``--cuda-graph`` (a captured step replays its kernels, so it reads its state and its rate
    from the device, never from Python numbers)."""
    if not config.cuda_graph:
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, capturable=True
    )
    _use_tensor_rates(optimizer, device)
    return optimizer


def _use_tensor_rates(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for group in optimizer.param_groups:
        group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)


class _CapturedStep:
    """``--cuda-graph``: the whole step of a full-size batch (forward, backward, AdamW) as one
    CUDA graph, replayed with the batch's indices copied into a static buffer.

    The first :data:`WARMUP` full-size steps run eagerly on a side stream (they are real steps
    of the run: cuBLAS, the allocator and the optimizer state settle there); the next one is
    captured and every later one replays the graph. A ragged last batch has another shape and
    runs eagerly, with the same optimizer.

    Args:
        batch_size: the global batch size (one process: the local one too).
        device: the CUDA device.
        name: the experiment's name, for the error when its step cannot be captured.
    """

    WARMUP = 3

    def __init__(self, batch_size: int, device: torch.device, name: str) -> None:
        self.batch_size = batch_size
        self.name = name
        self.indices = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.sums: torch.Tensor | None = None
        self.warm_steps = 0

    def fits(self, indices: torch.Tensor, global_count: int) -> bool:
        """Whether the step of ``indices`` (``(batch,)``) has the captured shape."""
        return global_count == self.batch_size and indices.shape[0] == self.batch_size

    def step(self, run: _Run, indices: torch.Tensor, scale: float) -> torch.Tensor:
        """The step of ``indices`` (``(batch_size,)``); returns its ``(2,)`` sums (a copy)."""
        if self.graph is None and self.warm_steps < self.WARMUP:
            self.warm_steps += 1
            side = torch.cuda.Stream(device=indices.device)
            side.wait_stream(torch.cuda.current_stream(indices.device))
            with torch.cuda.stream(side):
                sums = run.update(indices, scale)
            torch.cuda.current_stream(indices.device).wait_stream(side)
            return sums
        self.indices.copy_(indices)
        if self.graph is None:
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    self.sums = run.update(self.indices, scale)
            except RuntimeError as error:
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
                raise ConfigError(
                    f"--cuda-graph: the training step of {self.name} cannot be captured as a "
                    f"CUDA graph ({first_line}): train without --cuda-graph"
                ) from None
            self.graph = graph
        self.graph.replay()
        assert self.sums is not None
        return self.sums.clone()


def _finish(run: _Run) -> dict[str, Any]:
    """Final weights, summary, plots and the summary table (rank 0)."""
    experiment, config, out, model = run.experiment, run.config, run.out, run.model
    dataset, position, context, display = run.dataset, run.position, run.context, run.display
    files = run.files
    epochs = CSVLog(files["epochs"], EPOCH_COLUMNS).read()
    last = epochs[-1] if epochs else {}
    summary: dict[str, Any] = {
        "experiment": experiment.name,
        "epochs": config.epochs,
        "steps": position.step,
        "final_test_accuracy": float(last["test_accuracy"]) if last else None,
        "final_test_loss": float(last["test_loss"]) if last else None,
        "best_val_accuracy": position.best_val_accuracy,
        "best_epoch": position.best_epoch,
        "test_accuracy_at_best_val": position.test_at_best,
        "parameters": sum(p.numel() for p in model.parameters()),
        "world_size": context.world_size,
    }
    if not context.is_main:
        return summary
    save_tensors_atomic(files["model"], model.state_dict())
    write_json_atomic(files["summary"], summary)
    files["curves"].parent.mkdir(parents=True, exist_ok=True)
    try:
        from dyna.train.plots import plot_learning_curves, plot_traces

        plot_learning_curves(CSVLog(files["steps"], STEP_COLUMNS).read(), epochs, files["curves"])
        hidden_sequences = getattr(model, "hidden_sequences", None)
        if callable(hidden_sequences) and len(dataset.test):
            with torch.no_grad():
                sample = dataset.test.inputs[:1].to(context.device)
                positions = hidden_sequences(sample)[-1][0]
            plot_traces(
                positions[:, : min(6, positions.shape[1])],
                files["traces"],
                title=f"{experiment.name}: x(t) of {min(6, positions.shape[1])} oscillators, "
                f"first test input",
            )
    except ImportError:
        display.message("plots skipped: matplotlib is not installed (pip install matplotlib)")
    footer = [f"final test accuracy: {100 * summary['final_test_accuracy']:.2f} %"]
    if (
        position.best_epoch is not None
        and position.best_val_accuracy is not None
        and position.test_at_best is not None
    ):
        footer.append(
            f"best validation accuracy {100 * position.best_val_accuracy:.2f} % at epoch "
            f"{position.best_epoch}: test accuracy {100 * position.test_at_best:.2f} %"
        )
    footer.append(f"run folder: {out}")
    display.summary(f"{experiment.name}: {summary['parameters']:,} parameters", epochs, footer)
    return summary
