"""Run the real ``dyna`` command in a subprocess and check that it refuses cleanly.

A refusal is a non-zero exit, exactly one line on stderr (``dyna: error: ...``) without a
traceback, naming its cause, and no change to the folders the command was pointed at: each is
hashed, file by file, before and after.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path


def tree_digest(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (empty if it does not exist)."""
    if not folder.exists():
        return {}
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def run_dyna(
    arguments: Sequence[str], *, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python -m dyna ARGUMENTS`` with this interpreter; output captured as text."""
    environment = dict(os.environ, PYTHONWARNINGS="ignore", COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "dyna", *arguments],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_refused(
    arguments: Sequence[str],
    names: Iterable[str],
    *,
    unchanged: Iterable[Path] = (),
    exit_code: int | None = None,
    cwd: Path | None = None,
) -> str:
    """Run ``dyna ARGUMENTS``; assert a clean refusal that mentions every one of ``names``.

    Returns the error line. ``unchanged`` folders must hold the same files, byte for byte,
    after the command as before it.
    """
    folders = list(unchanged)
    before = [tree_digest(folder) for folder in folders]
    result = run_dyna(arguments, cwd=cwd)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, (result.returncode, result.stdout, result.stderr)
    if exit_code is not None:
        assert result.returncode == exit_code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("dyna: error: "), lines
    for name in names:
        assert name in lines[0], (name, lines[0])
    for folder, digest in zip(folders, before, strict=True):
        assert tree_digest(folder) == digest, f"{folder} changed"
    return lines[0]
