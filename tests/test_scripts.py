"""scripts/run.sh run twice never deletes the first run: it resumes it, unless told --overwrite.

run.sh is run from a copy of the scripts folder whose setup.sh does nothing and whose
environment holds a stand-in `dyna` that prints its arguments.
"""

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_sh(tmp_path: Path, *arguments: str) -> list[str]:
    scripts = tmp_path / "scripts"
    if not scripts.exists():
        scripts.mkdir()
        shutil.copy(ROOT / "scripts" / "run.sh", scripts / "run.sh")
        (scripts / "setup.sh").write_text("exit 0\n")
        stand_in = tmp_path / "venv" / "bin" / "dyna"
        stand_in.parent.mkdir(parents=True)
        stand_in.write_text('#!/usr/bin/env bash\necho "$@"\n')
        stand_in.chmod(0o755)
    result = subprocess.run(
        ["bash", str(scripts / "run.sh"), *arguments],
        env={"PATH": "/usr/bin:/bin", "DYNA_VENV": str(tmp_path / "venv")},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.split()


def test_run_sh_starts_then_resumes_and_overwrites_only_when_asked(tmp_path):
    assert _run_sh(tmp_path) == ["train", "horn-digits", "--out", "runs/horn-digits"]
    (tmp_path / "runs" / "horn-digits" / "checkpoints").mkdir(parents=True)
    assert _run_sh(tmp_path, "--quiet")[-2:] == ["--resume", "--quiet"]
    assert "--resume" not in _run_sh(tmp_path, "--overwrite")
    assert "--overwrite" in _run_sh(tmp_path, "--overwrite")
