"""The figure script of the documentation runs and its pictures stay small.

``docs/figures/make_figures.py`` draws the site's figures with matplotlib (the ``docs`` extra);
the test runs it into a temporary folder, as a user would, and checks what it wrote and what is
committed: valid PNGs, each under 150 KB, all together under 600 KB.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"
NAMES = ["cnu_key_usage.png", "dynamic_kernels.png", "horn_traces.png"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) read from a PNG's header chunk."""
    header = path.read_bytes()[:24]
    assert header[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    return struct.unpack(">II", header[16:24])


def check_figures(folder: Path) -> None:
    sizes = {name: (folder / name).stat().st_size for name in NAMES}
    assert all(size < 150 * 1024 for size in sizes.values()), sizes
    assert sum(sizes.values()) < 600 * 1024, sizes
    for name in NAMES:
        width, height = png_size(folder / name)
        assert 300 <= width <= 1200 and 200 <= height <= 900, (name, width, height)


def test_committed_figures_are_small_pngs():
    check_figures(FIGURES)
    for name in NAMES:
        assert f"figures/{name}" in "".join(
            path.read_text(encoding="utf-8") for path in (ROOT / "docs").glob("*.md")
        ), f"{name} is not shown on any page"


@pytest.mark.slow
def test_make_figures_runs(tmp_path):
    pytest.importorskip("matplotlib", reason="the figure script needs the docs extra")
    result = subprocess.run(
        [sys.executable, str(FIGURES / "make_figures.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MPLBACKEND": "Agg"},  # files only, no display
    )
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == NAMES
    check_figures(tmp_path)
