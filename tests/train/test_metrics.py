"""CSV metrics: exact float text, append, truncate back to a checkpoint's size."""

import pytest

from dyna.train.metrics import STEP_COLUMNS, CSVLog


def test_rows_round_trip_exactly_and_truncate_to_a_recorded_size(tmp_path):
    log = CSVLog(tmp_path / "m" / "steps.csv", STEP_COLUMNS)
    log.start()
    row = {"step": 1, "epoch": 1, "batch": 1, "samples": 32, "loss": 0.1 + 0.2, "accuracy": 0.5,
           "lr": 0.02}  # fmt: skip
    log.append([row])
    size = log.size()
    log.append([dict(row, step=2, loss=None)])
    rows = log.read()
    assert float(rows[0]["loss"]) == 0.1 + 0.2  # repr keeps every digit
    assert rows[1]["loss"] == ""
    log.truncate(size)
    assert [r["step"] for r in log.read()] == ["1"]
    with pytest.raises(FileNotFoundError, match="shorter than its checkpoint"):
        log.truncate(size + 100)
