"""The ``dyna`` command refuses bad input in one line and leaves earlier runs untouched.

Each case runs the real command in a subprocess (``tests/cli_refusal.py``): a non-zero exit, one
line on stderr without a traceback, naming the cause, and the run folders byte-identical.
"""

import json
import shutil

import pytest

from dyna.cli import main
from dyna.train.checkpoint import sidecar_checksum
from tests.cli_refusal import assert_refused


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A finished one-epoch horn-digits run (n = 8) to copy."""
    out = tmp_path_factory.mktemp("digits") / "run"
    tiny = ["--set", "n_hidden=8", "--quiet", "--epochs", "1"]
    assert main(["train", "horn-digits", *tiny, "--out", str(out)]) == 0
    return out


def _copy(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def _edit_sidecar(run, change, *, sign: bool):
    (sidecar,) = (run / "checkpoints").glob("step-*.json")
    metadata = json.loads(sidecar.read_text())
    change(metadata)
    if sign:
        metadata["sidecar_sha256"] = sidecar_checksum(metadata)
    sidecar.write_text(json.dumps(metadata))
    return sidecar


@pytest.mark.parametrize(
    ("path", "value", "sign", "named"),
    [
        ("tensors", None, False, "edited or damaged"),
        ("tensors", "../../x", True, "field 'tensors' must be 'step-00000045.safetensors'"),
        ("tensors", None, True, "got '<missing>'"),
        ("config.batch_size", 0, True, "config.batch_size must be >= 1, got 0"),
        ("config.epochs", -3, True, "config.epochs must be >= 1, got -3"),
        ("position.step", "abc", True, "position.step must be an int, got str"),
    ],
)
def test_an_invalid_sidecar_is_refused_by_resume_and_eval(
    digits_run, tmp_path, path, value, sign, named
):
    run = _copy(digits_run, tmp_path)

    def change(metadata):
        *parents, last = path.split(".")
        for key in parents:
            metadata = metadata[key]
        if value is None:
            del metadata[last]
        else:
            metadata[last] = value

    _edit_sidecar(run, change, sign=sign)
    resume = ["train", "horn-digits", "--out", str(run), "--resume", "--quiet"]
    assert_refused(resume, [named], unchanged=[run], exit_code=1)
    assert_refused(["eval", str(run)], [named], unchanged=[run], exit_code=1)
