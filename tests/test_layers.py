"""The one-way imports between the sub-packages: the layers contract of pyproject.toml holds."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_layers_contract_is_kept():
    pytest.importorskip("importlinter")
    code = (
        "import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_the_contract_has_no_exceptions():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    (contract,) = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"
    ]
    assert contract["type"] == "layers"
    assert not {"ignore_imports", "unmatched_ignore_imports_alerting"} & set(contract)
    assert contract["layers"][-4:] == [
        "dyna.models | dyna.data",
        "dyna.module",
        "dyna.lib",
        "dyna.functional",
    ]


def test_no_module_of_the_package_but_the_command_parses_arguments():
    # argparse belongs to the command line (and to repro/ and benchmarks/, outside the wheel).
    users = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "src" / "dyna").rglob("*.py")
        if "argparse" in path.read_text(encoding="utf-8")
    )
    assert users == ["src/dyna/cli.py"]
