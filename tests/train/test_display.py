"""What a user sees: the live progress bar, the per-epoch lines and the summary table."""

import io

from dyna.train.display import TrainingDisplay

ROW = {"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.75, "val_accuracy": None,
       "test_accuracy": 0.8125}  # fmt: skip


def test_live_bar_shows_loss_accuracy_and_throughput_then_one_line_per_epoch():
    output = io.StringIO()
    display = TrainingDisplay(live=True, file=output)
    display.start_epoch(0, 3, total=10, done=0)
    display.advance(5, 160, 0.4321, 0.5)
    display.end_epoch(ROW, 3)
    text = output.getvalue()
    assert "epoch 1/3" in text and "loss 0.4321" in text and "acc 50.00 %" in text
    assert "samples/s" in text
    assert "train loss 0.5000 | train acc 75.00 % | test acc 81.25 %" in text


def test_quiet_prints_nothing_and_plain_output_has_no_bar():
    output = io.StringIO()
    quiet = TrainingDisplay(enabled=False, file=output)
    quiet.start_epoch(0, 1, total=2, done=0)
    quiet.advance(2, 10, 1.0, 0.5)
    quiet.end_epoch(ROW, 1)
    quiet.summary("t", [], ["x"])
    assert output.getvalue() == ""
    plain = TrainingDisplay(file=output)  # a StringIO is not a terminal: no live bar
    plain.start_epoch(0, 1, total=2, done=0)
    plain.advance(2, 10, 1.0, 0.5)
    plain.end_epoch(ROW, 1)
    assert output.getvalue().count("\n") == 1 and "loss 1.0000" not in output.getvalue()


def test_summary_table_has_a_row_per_epoch_and_the_footer():
    output = io.StringIO()
    rows = [
        {"epoch": "1", "train_loss": "0.5", "train_accuracy": "0.75", "val_accuracy": "",
         "test_loss": "0.4", "test_accuracy": "0.8"},
        {"epoch": "2", "train_loss": "0.25", "train_accuracy": "0.9", "val_accuracy": "0.85",
         "test_loss": "0.2", "test_accuracy": "0.95"},
    ]  # fmt: skip
    TrainingDisplay(file=output).summary("horn-digits", rows, ["final test accuracy: 95.00 %"])
    text = output.getvalue()
    assert "horn-digits" in text and "95.00" in text and "85.00" in text and "–" in text
    assert text.rstrip().endswith("final test accuracy: 95.00 %")
