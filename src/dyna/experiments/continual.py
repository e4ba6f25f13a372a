"""Online continual learning on the 2-D streams of the CNU work (an :class:`OnlineExperiment`).

``cnu-stream`` runs :func:`dyna.train.online.run_continual` for every requested model and
seed on one stream (MODES or MOONS) in one order (IID, CI, CDI, CDID): one online pass, batch
1, plain SGD, measured with the continual confusion matrix. With ``--set search=true`` it runs
the paper's whole protocol instead (:func:`dyna.train.online.run_experiment`: the baselines'
learning rate, weight decay and hidden size selected on the early validation stream).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dyna.data.continual_streams import STREAM_NAMES, STREAM_ORDERS
from dyna.experiments.registry import ConfigError, OnlineExperiment, Param, register
from dyna.train.metrics import mean_and_std
from dyna.train.online import (
    MODEL_KINDS,
    PAPER_SEEDS,
    ContinualResult,
    run_continual,
    run_experiment,
)


def _summary(model: str, values: list[dict]) -> dict:
    row: dict[str, Any] = {"model": model, "runs": values}
    for metric in ("average_accuracy", "average_forgetting", "forward_transfer"):
        mean, spread = mean_and_std([run[metric] for run in values])
        row[metric], row[f"{metric}_std"] = mean, spread or 0.0
    return row


def run_stream(
    params: Mapping[str, Any],
    *,
    device: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Run the requested models and seeds; JSON-ready results with per-seed matrices."""
    for model in params["models"]:
        if model not in MODEL_KINDS:
            raise ConfigError(
                f"--set models: unknown model {model!r}, expected some of {', '.join(MODEL_KINDS)}"
            )
    rows = []
    if params["search"]:
        for experiment_row in run_experiment(
            (params["stream"],),
            (params["order"],),
            params["models"],
            seeds=params["seeds"],
            num_train=params["num_train"],
            progress=progress,
        ):
            runs = [_result(result) for result in experiment_row.results]
            rows.append(_summary(experiment_row.model, runs))
        return {"rows": rows}
    for model in params["models"]:
        runs = []
        for seed in params["seeds"]:
            result = run_continual(
                params["stream"],
                params["order"],
                model,
                seed=seed,
                num_train=params["num_train"],
                device=device,
            )
            runs.append(_result(result))
            if progress is not None:
                progress(
                    f"{model} seed {seed}: ACC {100 * result.average_accuracy:.1f} %, "
                    f"FORG {100 * result.average_forgetting:.1f} %"
                )
        rows.append(_summary(model, runs))
    return {"rows": rows}


def _result(result: ContinualResult) -> dict:
    return {
        "seed": result.seed,
        "learning_rate": result.learning_rate,
        "weight_decay": result.weight_decay,
        "steps": result.steps,
        "average_accuracy": result.average_accuracy,
        "average_forgetting": result.average_forgetting,
        "forward_transfer": result.forward_transfer,
        "matrix": result.matrix.tolist(),
    }


register(
    OnlineExperiment(
        name="cnu-stream",
        description="LinearCNU vs linear/MLP, online on the MODES/MOONS 2-D streams",
        params={
            "stream": Param("modes", "the 2-D data set", choices=STREAM_NAMES),
            "order": Param("ci", "order of the distributions in the stream", choices=STREAM_ORDERS),
            "models": Param(tuple(MODEL_KINDS), "learners to compare", choices=MODEL_KINDS),
            "seeds": Param((PAPER_SEEDS[0],), "seeds of the stream and the models", minimum=0),
            "num_train": Param(1000, "training samples of the stream", minimum=100),
            "search": Param(False, "select the baselines' settings on validation (slow)"),
        },
        runner=run_stream,
    )
)
