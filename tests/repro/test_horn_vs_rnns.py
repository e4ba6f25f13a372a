"""Tests for ``repro.horn_vs_rnns``: the plan, reading run folders, the tables and the page
block, the command line, and one tiny run of the whole pipeline."""

import json
import os
import re
from pathlib import Path

import pytest
import torch

from dyna.experiments import get_experiment
from repro import horn_vs_rnns as hvr
from repro.horn_vs_rnns import (
    Plan,
    collect,
    experiments_of,
    format_table,
    main,
    missing_runs,
    read_run,
    render,
    run_plan,
    save,
)
from repro.results import SECTIONS
from tests.fake_mnist import write_mnist_folder

SMALL = ("--set", "n_hidden=4", "--set", "train_samples=64", "--set", "test_samples=32",
         "--set", "validation=16", "--batch-size", "32")  # fmt: skip


def _fake_run(
    folder: Path,
    experiment: str,
    seed: int,
    test: list[float],
    val: list[float | None],
    *,
    parameters: int = 1450,
    noise: dict[float, float] | None = None,
    seconds: float = 30.0,
    finished: bool = True,
) -> Path:
    """A run folder as ``dyna train`` (and ``dyna eval --noise``) leave it, with chosen numbers."""
    metrics = folder / "metrics"
    metrics.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps({"experiment": experiment, "seed": seed, "params": {"n_hidden": 32}})
    )
    lines = ["epoch,step,train_loss,train_accuracy,val_loss,val_accuracy,test_loss,test_accuracy"]
    for epoch, (t, v) in enumerate(zip(test, val, strict=True), start=1):
        lines.append(f"{epoch},{10 * epoch},1.0,0.5,1.0,{'' if v is None else v},1.0,{t}")
    (metrics / "epochs.csv").write_text("\n".join(lines) + "\n")
    best = max(range(len(val)), key=lambda i: val[i] or 0.0)
    if finished:
        summary = {
            "experiment": experiment,
            "epochs": len(test),
            "parameters": parameters,
            "best_epoch": best + 1,
            "test_accuracy_at_best_val": test[best],
            "final_test_accuracy": test[-1],
        }
        (folder / "summary.json").write_text(json.dumps(summary))
    if noise is not None:
        levels = [{"sigma": s, "test_loss": 1.0, "test_accuracy": a} for s, a in noise.items()]
        (folder / "eval.json").write_text(json.dumps({"noise_seed": 0, "noise": levels}))
    # Training starts when metrics/ is made and ends with the last row of epochs.csv.
    os.utime(metrics, (1_000.0, 1_000.0))
    os.utime(metrics / "epochs.csv", (1_000.0 + seconds, 1_000.0 + seconds))
    return folder


def test_protocol_constants_are_the_published_ones():
    # Long runs elsewhere render with these: they must not drift.
    assert (hvr.EPOCHS, hvr.SEEDS, hvr.NOISE, hvr.NOISE_SEED) == (10, (1, 2, 3), (0.1, 0.2, 0.4), 0)
    assert list(hvr.TABLES) == ["smnist", "psmnist", "structure"]
    assert set(hvr.LABELS) == {name for names in hvr.TABLES.values() for name in names}
    assert SECTIONS["horn-vs-rnns"].arguments == ("--jobs", "2")
    assert SECTIONS["horn-vs-rnns"].run is main and SECTIONS["horn-vs-rnns"].render is render


def test_experiments_of_keeps_table_order_and_drops_repeats():
    assert experiments_of(["smnist"]) == ("horn-smnist", "rnn-smnist", "gru-smnist", "lstm-smnist")
    assert experiments_of(["structure", "smnist"]) == (
        "horn-smnist", "horn-smnist-hetero", "horn-smnist-delays",
        "rnn-smnist", "gru-smnist", "lstm-smnist",
    )  # fmt: skip
    everything = experiments_of(list(hvr.TABLES))
    assert len(everything) == 10 and everything.count("horn-smnist") == 1
    assert everything[-2:] == ("horn-smnist-hetero", "horn-smnist-delays")
    assert experiments_of([]) == ()
    assert experiments_of(["smnist", "smnist"]) == experiments_of(["smnist"])
    with pytest.raises(ValueError, match=r"tables must be among smnist, psmnist, structure, got c"):
        experiments_of(["smnist", "c"])
    with pytest.raises(TypeError, match="tables must be a sequence of table names, got str"):
        experiments_of("smnist")


def test_every_planned_experiment_is_registered():
    for name in experiments_of(list(hvr.TABLES)):
        assert get_experiment(name).needs_data


def test_plan_commands():
    plan = Plan(("horn-smnist",))
    assert (plan.seeds, plan.epochs, plan.noise, plan.noise_seed, plan.extra) == (
        (1, 2, 3), 10, (0.1, 0.2, 0.4), 0, ()
    )  # fmt: skip
    assert plan.run_name("gru-psmnist", 2) == "gru-psmnist-s2"
    assert plan.train_command("gru-psmnist", 2, "MNIST", "runs/x") == [
        "dyna", "train", "gru-psmnist", "--data", "MNIST", "--epochs", "10", "--seed", "2",
        "--threads", "1", "--quiet", "--out", "runs/x/gru-psmnist-s2",
    ]  # fmt: skip
    assert plan.eval_command("gru-psmnist", 2, "runs/x") == [
        "dyna", "eval", "runs/x/gru-psmnist-s2", "--noise", "0.1", "0.2", "0.4",
        "--noise-seed", "0",
    ]  # fmt: skip
    other = Plan(("rnn-smnist",), (7,), 2, (0.05, 1.0), 3, extra=("--set", "n_hidden=4"))
    assert other.train_command("rnn-smnist", 7, "D", "r")[5:9] == ["--epochs", "2", "--seed", "7"]
    assert other.train_command("rnn-smnist", 7, "D", "r")[-2:] == ["--set", "n_hidden=4"]
    assert other.eval_command("rnn-smnist", 7, "r")[3:] == [
        "--noise", "0.05", "1", "--noise-seed", "3",
    ]  # fmt: skip


def test_read_run_fields_and_unfinished_runs(tmp_path):
    folder = _fake_run(
        tmp_path / "horn-smnist-s2", "horn-smnist", 2, [0.5, 0.7, 0.6], [0.4, 0.8, 0.75],
        noise={0.1: 0.55, 0.4: 0.25}, seconds=45.0,
    )  # fmt: skip
    record = read_run(folder)
    assert record == {
        "experiment": "horn-smnist",
        "seed": 2,
        "parameters": 1450,
        "epochs": [
            {"epoch": 1, "val_accuracy": 0.4, "test_accuracy": 0.5},
            {"epoch": 2, "val_accuracy": 0.8, "test_accuracy": 0.7},
            {"epoch": 3, "val_accuracy": 0.75, "test_accuracy": 0.6},
        ],
        "best_epoch": 2,
        "test_accuracy_at_best_val": 0.7,
        "final_test_accuracy": 0.6,
        "seconds_per_epoch": 15.0,
        "params": {"n_hidden": 32},
        "noise": {"0.1": 0.55, "0.4": 0.25},
        "noise_seed": 0,
    }
    # No validation split: val_accuracy is None; no eval.json: no noise.
    plain = read_run(_fake_run(tmp_path / "p", "rnn-smnist", 1, [0.3], [None]))
    assert plain["epochs"] == [{"epoch": 1, "val_accuracy": None, "test_accuracy": 0.3}]
    assert plain["noise"] == {} and "noise_seed" not in plain
    # Training without summary.json yet, and no folder at all.
    assert (
        read_run(_fake_run(tmp_path / "u", "gru-smnist", 1, [0.3], [0.3], finished=False)) is None
    )
    assert read_run(tmp_path / "nothing") is None


def _records(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    for seed, best, noise, seconds in (
        (1, 0.90, 0.50, 10),
        (2, 0.92, 0.60, 20),
        (3, 0.94, None, 30),
    ):
        _fake_run(
            runs / f"horn-smnist-s{seed}", "horn-smnist", seed,
            [best - 0.2, best - 0.1, best], [0.1, 0.2, 0.3],
            noise={0.1: noise} if noise is not None else {0.2: 0.4}, seconds=3 * seconds,
        )  # fmt: skip
    _fake_run(runs / "horn-smnist-delays-s1", "horn-smnist-delays", 1, [0.8, 0.85, 0.875],
              [0.1, 0.3, 0.2], parameters=1418, seconds=30.0)  # fmt: skip
    _fake_run(runs / "horn-smnist-hetero-s2", "horn-smnist-hetero", 2, [0.1], [0.1],
              finished=False)  # fmt: skip
    return runs


def test_collect_and_missing_runs(tmp_path):
    runs = _records(tmp_path)
    plan = Plan(experiments_of(["structure"]), epochs=3)
    records = collect(plan, runs)
    assert [(r["experiment"], r["seed"]) for r in records] == [
        ("horn-smnist", 1), ("horn-smnist", 2), ("horn-smnist", 3), ("horn-smnist-delays", 1),
    ]  # fmt: skip
    assert missing_runs(plan, records) == [
        ("horn-smnist-hetero", 1), ("horn-smnist-hetero", 2), ("horn-smnist-hetero", 3),
        ("horn-smnist-delays", 2), ("horn-smnist-delays", 3),
    ]  # fmt: skip
    assert missing_runs(Plan(("horn-smnist",), epochs=3), records) == []
    assert collect(Plan(("gru-smnist",)), runs) == []


def test_format_table_hand_checked(tmp_path):
    records = collect(Plan(experiments_of(["structure"]), epochs=3), _records(tmp_path))
    grouped = hvr._by_experiment(reversed(records))  # sorted back by seed
    table = format_table(hvr.TABLES["structure"], grouped, 3, (0.1, 0.2, 0.4)).splitlines()
    assert table[0] == (
        "| model | params | seeds | test @ best val | test @ epoch 3 | after 1 ep | after 2 ep "
        "| after 3 ep | noise σ=0.1 | noise σ=0.2 | noise σ=0.4 | s / epoch |"
    )
    assert table[1] == "|---" * 12 + "|"
    # HORN, seeds 1-3: best val is the last epoch, 0.90/0.92/0.94 -> 92.0 ± 2.0 (sample std);
    # epoch 1: 70/72/74; noise 0.1 only on seeds 1 and 2 (50, 60 -> 55.0 ± 7.1, "2 of 3");
    # 0.2 only on seed 3 (one value, no std); 0.4 on none; 10/20/30 s per epoch -> 20 ± 10.
    assert table[2] == (
        "| HORN | 1,450 | 1,2,3 | 92.0 ± 2.0 | 92.0 ± 2.0 | 72.0 ± 2.0 | 82.0 ± 2.0 | 92.0 ± 2.0 "
        "| 55.0 ± 7.1 (2 of 3) | 40.0 (1 of 3) | – | 20 ± 10 |"
    )
    # Delays: one seed, best val at epoch 2; hetero has no finished run and no row.
    assert table[3] == (
        "| HORN, delays 2–40 steps | 1,418 | 1 | 85.0 | 87.5 | 80.0 | 85.0 | 87.5 | – | – | – "
        "| 10 |"
    )
    assert len(table) == 4
    # Runs that differ in parameter count show every count; epochs = 1 marks epoch 1 only.
    mixed = {"horn-smnist": [dict(grouped["horn-smnist"][0]), dict(grouped["horn-smnist"][1])]}
    mixed["horn-smnist"][1]["parameters"] = 78
    row = format_table(["horn-smnist"], mixed, 1, ()).splitlines()
    assert row[0].endswith("| test @ epoch 1 | after 1 ep | s / epoch |")
    assert row[2].startswith("| HORN | 78/1,450 | 1,2 |")


def _saved(tmp_path: Path, tables=("structure",)) -> Path:
    runs = _records(tmp_path)
    plan = Plan(experiments_of(tables), epochs=3)
    json_path = tmp_path / "docs" / "results" / "horn-vs-rnns.json"
    save(plan, list(tables), runs, json_path, "python -m repro.horn_vs_rnns X", 12.0)
    return json_path


def test_save_records_the_facts(tmp_path):
    saved = json.loads(_saved(tmp_path).read_text())
    metadata = saved["metadata"]
    assert metadata["command"] == "python -m repro.horn_vs_rnns X"
    assert (metadata["tables"], metadata["epochs"], metadata["seeds"]) == (
        ["structure"],
        3,
        [1, 2, 3],
    )
    assert (metadata["noise"], metadata["noise_seed"], metadata["wall_seconds"]) == (
        [0.1, 0.2, 0.4], 0, 12.0
    )  # fmt: skip
    # 30 + 60 + 90 + 30 s of training.
    assert metadata["train_seconds"] == pytest.approx(210.0)
    assert metadata["torch"] == torch.__version__
    assert len(saved["runs"]) == 4


def test_render_tables_plot_commands_and_missing_runs(tmp_path):
    pytest.importorskip("matplotlib")
    json_path = _saved(tmp_path)
    figures = tmp_path / "figures"
    figures.mkdir()
    block = render(json_path, figures, "results/")
    assert (
        block.startswith("Produced by `python -m repro.horn_vs_rnns X` on ")
        and "4 runs, 4 min of training" in block
    )
    assert "(one draw, seed 0, shared by all models and levels; no clipping)" in block
    grouped = hvr._by_experiment(json.loads(json_path.read_text())["runs"])
    table = format_table(hvr.TABLES["structure"], grouped, 3, [0.1, 0.2, 0.4])
    assert f"**HORN's structure, sMNIST-10k**\n\n{table}\n" in block
    assert "sMNIST-10k (pixel" not in block  # only the tables asked for
    assert (
        "![Test accuracy per epoch, mean over seeds (band: ± std)](results/horn-vs-rnns.png)"
        in block
    )
    assert (figures / "horn-vs-rnns.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        "```\ndyna train EXPERIMENT --data MNIST_DIR --epochs 3 --seed SEED --threads 1 --quiet "
        "--out runs/horn-vs-rnns/EXPERIMENT-sSEED\n"
        "dyna eval runs/horn-vs-rnns/EXPERIMENT-sSEED --noise 0.1 0.2 0.4 --noise-seed 0\n```"
    ) in block
    assert block.endswith(
        "Planned but not run (not in the tables):\n\n"
        "- `horn-smnist-hetero` seed 1\n- `horn-smnist-hetero` seed 2\n"
        "- `horn-smnist-hetero` seed 3\n- `horn-smnist-delays` seed 2\n"
        "- `horn-smnist-delays` seed 3\n"
    )
    # Without plots: no figure; every run present: no missing list.
    text = render(json_path, tmp_path / "none", "x/", plots=False)
    assert "png" not in text and not (tmp_path / "none").exists()
    assert text == block.replace(
        "![Test accuracy per epoch, mean over seeds (band: ± std)](results/horn-vs-rnns.png)\n\n",
        "",
    )


def test_render_of_a_single_table_plots_one_panel(tmp_path):
    pytest.importorskip("matplotlib")
    json_path = _saved(tmp_path, tables=("structure", "smnist"))
    block = render(json_path, tmp_path, "")
    # Both tables list horn-smnist; the smnist table shows only it (no baseline ran).
    assert block.count("| HORN | 1,450 | 1,2,3 |") == 2
    assert "- `rnn-smnist` seed 1\n" in block
    assert (tmp_path / "horn-vs-rnns.png").is_file()


def test_main_collect_only_writes_the_json(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(hvr.DATA_ENVIRONMENT, raising=False)
    runs = _records(tmp_path)
    json_path = tmp_path / "out.json"
    result = main(["--collect-only", "--runs", str(runs), "--json", str(json_path),
                   "--tables", "structure", "--epochs", "3"])  # fmt: skip
    assert capsys.readouterr().out.strip() == f"4 runs saved to {json_path}"
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(result))
    assert result["metadata"]["wall_seconds"] is None
    assert result["metadata"]["command"] == (
        f"python -m repro.horn_vs_rnns --data MNIST_DIR --runs {runs} --tables structure "
        f"--epochs 3 --jobs 1 --json {json_path}"
    )
    main(["--collect-only", "--runs", str(runs), "--json", str(json_path)])
    assert json.loads(json_path.read_text())["metadata"]["command"] == (
        f"python -m repro.horn_vs_rnns --data MNIST_DIR --runs {runs} --jobs 1 --json {json_path}"
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["--jobs", "0"], "--jobs must be >= 1, got 0"),
        (["--seeds", "1", "-2"], r"--seeds must be >= 0 and < 2\*\*31, got \[1, -2\]"),
        (["--seeds", str(2**31)], r"--seeds must be >= 0 and < 2\*\*31"),
        (["--seeds", "1", "1"], r"--seeds must be distinct, got \[1, 1\]"),
        (["--tables", "cifar"], "invalid choice: 'cifar'"),
        ([], r"--data DIR \(or \$DYNA_MNIST\) is needed to train"),
    ],
)
def test_main_argument_errors(tmp_path, capsys, monkeypatch, arguments, message):
    monkeypatch.delenv(hvr.DATA_ENVIRONMENT, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main([*arguments, "--runs", str(tmp_path / "runs"), "--json", str(tmp_path / "o.json")])
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "o.json").exists()


def test_finished_and_noise_checks(tmp_path):
    plan = Plan(("horn-smnist",), epochs=3, noise=(0.1, 0.123456789))
    folder = _fake_run(tmp_path / "r", "horn-smnist", 1, [0.1] * 3, [0.1] * 3)
    assert hvr._finished(folder, plan) and not hvr._finished(folder, Plan(("x",), epochs=4))
    assert not hvr._has_noise(folder, plan)
    # eval.json holds the levels as parsed from the command line ("0.123457").
    levels = [{"sigma": sigma, "test_accuracy": 0.1} for sigma in (0.1, 0.123457)]
    (folder / "eval.json").write_text(json.dumps({"noise_seed": 0, "noise": levels}))
    assert hvr._has_noise(folder, plan)
    assert not hvr._has_noise(folder, Plan(("horn-smnist",), noise=(0.1,)))
    # Noise of another seed is evaluated again.
    assert not hvr._has_noise(folder, Plan(("horn-smnist",), noise=plan.noise, noise_seed=1))
    (folder / "eval.json").write_text(json.dumps({"noise": levels}))
    assert not hvr._has_noise(folder, plan)


def test_run_plan_end_to_end(tmp_path):
    """One tiny experiment through the engine in fresh processes, then kept on a second call."""
    data = write_mnist_folder(tmp_path / "mnist")
    plan = Plan(("horn-smnist",), seeds=(1,), epochs=1, noise=(0.5,), extra=SMALL)
    runs = tmp_path / "runs"
    assert run_plan(plan, str(data), runs, jobs=1) > 0
    (record,) = collect(plan, runs)
    assert (record["experiment"], record["seed"], record["parameters"]) == ("horn-smnist", 1, 78)
    assert record["params"]["n_hidden"] == 4 and record["params"]["train_samples"] == 64
    assert list(record["noise"]) == ["0.5"] and record["noise_seed"] == 0
    assert 0.0 <= record["noise"]["0.5"] <= 1.0
    assert [row["epoch"] for row in record["epochs"]] == [1]
    log = runs / "horn-smnist-s1.log"
    assert log.is_file()
    # A finished, noise-evaluated run is kept: nothing is run or logged again.
    before = (log.stat().st_size, (runs / "horn-smnist-s1" / "eval.json").stat().st_mtime_ns)
    run_plan(plan, str(data), runs, jobs=2)
    after = (log.stat().st_size, (runs / "horn-smnist-s1" / "eval.json").stat().st_mtime_ns)
    assert after == before
    # A failing command names itself and the log.
    with pytest.raises(RuntimeError, match=r"`dyna train horn-smnist .*` failed \(exit 2\); see"):
        run_plan(Plan(("horn-smnist",), (2,), 1, (0.5,)), str(tmp_path / "none"), runs)


def test_render_names_the_saved_noise_seed(tmp_path):
    json_path = _saved(tmp_path)
    saved = json.loads(json_path.read_text())
    saved["metadata"]["noise_seed"] = 5
    json_path.write_text(json.dumps(saved))
    text = render(json_path, tmp_path, "", plots=False)
    assert "(one draw, seed 5, shared by all models" in text
    assert "--noise 0.1 0.2 0.4 --noise-seed 5\n```" in text


def test_format_table_adds_the_cpu_column_of_the_timing_runs(tmp_path):
    records = collect(Plan(experiments_of(["structure"]), epochs=3), _records(tmp_path))
    grouped = hvr._by_experiment(records)
    timing = {"horn-smnist": {"cpu_seconds": 4.26, "wall_seconds": 9.0}}
    table = format_table(hvr.TABLES["structure"], grouped, 3, (0.1,), timing).splitlines()
    assert table[0].endswith("| s / epoch | CPU s / epoch, alone |")
    assert table[1] == "|---" * 11 + "|"
    assert table[2].endswith("| 20 ± 10 | 4.3 |")
    # An experiment without a timing record shows a dash.
    assert table[3].endswith("| 10 | – |")


def test_time_epoch_measures_one_epoch_alone_and_keeps_the_record(tmp_path):
    data = write_mnist_folder(tmp_path / "mnist")
    runs = tmp_path / "runs"
    plan = Plan(("horn-smnist",), seeds=(1,), epochs=1, extra=SMALL)
    timing = hvr.time_plan(plan, str(data), runs)
    record = timing["horn-smnist"]
    # The child's own CPU time: positive, and at most its wall time (one thread, plus slack
    # for the kernel's accounting granularity).
    assert 0.0 < record["cpu_seconds"] <= 1.5 * record["wall_seconds"] + 0.1
    run = runs / "timing" / "horn-smnist-s1"
    rows = (run / "metrics" / "epochs.csv").read_text().splitlines()
    assert len(rows) == 2  # header + one epoch
    assert json.loads((run / "config.json").read_text())["params"]["train_samples"] == 64
    saved = runs / "timing" / "horn-smnist-s1.json"
    assert json.loads(saved.read_text()) == record
    # Kept: a second call measures nothing and returns the saved record.
    before = saved.stat().st_mtime_ns
    assert hvr.time_plan(plan, str(data), runs) == timing
    assert saved.stat().st_mtime_ns == before
    # save() carries it into the results, and render() shows the column and explains it.
    json_path = tmp_path / "horn-vs-rnns.json"
    save(plan, ["smnist"], runs, json_path, "python -m repro.horn_vs_rnns X")
    assert json.loads(json_path.read_text())["timing"] == timing
    # A failing timing run names its command and log.
    with pytest.raises(RuntimeError, match=r"`dyna train horn-smnist .*` failed \(exit 2\); see"):
        hvr.time_epoch("horn-smnist", str(tmp_path / "none"), tmp_path / "other")


def test_render_explains_the_cpu_column_only_when_timed(tmp_path):
    json_path = _saved(tmp_path)
    assert "CPU s / epoch" not in render(json_path, tmp_path, "results/", plots=False)
    saved = json.loads(json_path.read_text())
    saved["timing"] = {"horn-smnist": {"cpu_seconds": 4.0, "wall_seconds": 5.0}}
    json_path.write_text(json.dumps(saved))
    block = render(json_path, tmp_path, "results/", plots=False)
    assert "*CPU s / epoch, alone*: the CPU time (user + system)" in block
    assert "| 4.0 |" in block


def test_format_table_marks_epochs_one_two_five_and_the_last(tmp_path):
    records = collect(Plan(experiments_of(["structure"]), epochs=3), _records(tmp_path))
    grouped = hvr._by_experiment(records)
    header = format_table(["horn-smnist"], grouped, 10, ()).splitlines()[0]
    assert "| after 1 ep | after 2 ep | after 5 ep | after 10 ep | s / epoch |" in header
    header = format_table(["horn-smnist"], grouped, 4, ()).splitlines()[0]
    assert "| after 1 ep | after 2 ep | after 4 ep | s / epoch |" in header
