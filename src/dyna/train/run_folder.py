"""What a supervised run owns in its folder, and how a new run replaces an old one.

``dyna train --overwrite`` must not lose the earlier run to a mistake: the new run's
configuration, data and model are all checked before the folder is touched (the trainer builds
them first), and then :func:`replacing_run` swaps: the old run's entries are renamed into a
hidden folder beside them, the new run's first files are written, and only then is the old run
deleted. If writing the new run's start fails, or is interrupted, the old entries are renamed
back and the folder is as it was. Renames within one folder are atomic and cost nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# What a supervised run writes into its folder (``eval.json`` by `dyna eval`); replacing a run
# moves these and nothing else: the user's own files stay.
RUN_FOLDERS = ("checkpoints", "metrics", "plots", "tensorboard")
RUN_FILES = ("config.json", "summary.json", "model.safetensors", "eval.json")
_ASIDE_PREFIX = ".replaced-run-"


def holds_run(out: Path) -> bool:
    """Whether ``out`` holds (part of) a supervised run."""
    return (out / "config.json").exists() or (out / "checkpoints").exists()


def _entries(out: Path) -> list[str]:
    return [name for name in (*RUN_FOLDERS, *RUN_FILES) if (out / name).exists()]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C until the block is done, then act on it as the previous handler would."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            if callable(previous):
                previous(signal.SIGINT, None)
            elif previous == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)


@contextmanager
def replacing_run(out: Path) -> Iterator[None]:
    """Set the run in ``out`` aside while the block writes a new run's first files.

    On success the old run is deleted; on any exception (``KeyboardInterrupt`` included) what
    the block wrote is removed and the old run is renamed back, then the exception propagates.
    Leftovers of an earlier replacement killed with SIGKILL are removed first. A Ctrl-C is
    held until the swap is complete, so it cannot leave the old run set aside.
    """
    with _sigint_deferred():
        yield from _replace(out)


def _replace(out: Path) -> Iterator[None]:
    for leftover in out.glob(f"{_ASIDE_PREFIX}*") if out.is_dir() else ():
        shutil.rmtree(leftover, ignore_errors=True)
    names = _entries(out)
    if not names:
        yield
        return
    aside = out / f"{_ASIDE_PREFIX}{os.getpid()}"
    aside.mkdir()
    moved: list[str] = []
    try:
        for name in names:
            os.replace(out / name, aside / name)
            moved.append(name)
        yield
    except BaseException:
        for name in _entries(out):
            _remove(out / name)
        for name in moved:
            os.replace(aside / name, out / name)
        aside.rmdir()
        raise
    shutil.rmtree(aside, ignore_errors=True)
