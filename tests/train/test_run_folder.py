"""Replacing a run: the old run is set aside, kept on failure, deleted once the new one starts."""

import pytest

from dyna.train.run_folder import RUN_FILES, holds_run, replacing_run
from tests.cli_refusal import tree_digest


def _old_run(folder):
    for name in RUN_FILES:
        (folder / name).write_text(f"old {name}")
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "step-00000001.json").write_text("{}")
    (folder / "notes.txt").write_text("mine")
    return tree_digest(folder)


def test_a_new_run_replaces_the_old_one_and_nothing_else(tmp_path):
    _old_run(tmp_path)
    assert holds_run(tmp_path)
    with replacing_run(tmp_path):
        assert sorted(path.name for path in tmp_path.iterdir())[1:] == ["notes.txt"]
        (tmp_path / "config.json").write_text("new")
    assert tree_digest(tmp_path).keys() == {"config.json", "notes.txt"}
    assert (tmp_path / "config.json").read_text() == "new"


@pytest.mark.parametrize("failure", [OSError("disk"), KeyboardInterrupt()])
def test_a_failed_start_puts_the_old_run_back_byte_for_byte(tmp_path, failure):
    before = _old_run(tmp_path)
    with pytest.raises(type(failure)), replacing_run(tmp_path):
        (tmp_path / "config.json").write_text("new")
        (tmp_path / "metrics").mkdir()
        raise failure
    assert tree_digest(tmp_path) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [*RUN_FILES, "checkpoints", "notes.txt"]
    )


def test_leftovers_of_a_killed_replacement_are_removed(tmp_path):
    (tmp_path / ".replaced-run-99999").mkdir()
    (tmp_path / ".replaced-run-99999" / "config.json").write_text("stale")
    with replacing_run(tmp_path):
        pass
    assert list(tmp_path.iterdir()) == []


def test_a_ctrl_c_during_the_swap_waits_until_the_swap_is_done(tmp_path):
    import os
    import signal

    _old_run(tmp_path)
    calls = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    try:
        with replacing_run(tmp_path):
            os.kill(os.getpid(), signal.SIGINT)
            assert calls == []  # held
            (tmp_path / "config.json").write_text("new")
        assert calls == [signal.SIGINT]  # delivered once the new run has started
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (tmp_path / "config.json").read_text() == "new"
    assert not list(tmp_path.glob(".replaced-run-*"))
