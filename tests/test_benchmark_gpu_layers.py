"""The GPU layers' benchmark section runs every case (tiny, on the CPU, in its smoke mode)."""

import importlib.util
import pathlib

import pytest

from dyna.functional import _backend

pytest.importorskip("triton")

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "_gpu_layers.py"


def _load():
    spec = importlib.util.spec_from_file_location("_gpu_layers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The smoke run is on the CPU: forcing the kernels there needs the interpreter.
_interpreted = pytest.mark.skipif(
    not _backend.triton_interpreting(), reason="forces the kernels on CPU tensors"
)


@pytest.mark.parametrize("backend", [None, pytest.param("triton", marks=_interpreted)])
def test_smoke_runs_every_case(backend, capsys):
    argv = ["--smoke"] + ([] if backend is None else ["--backend", backend])
    rows = _load().main(argv)
    names = [name for name, _, _ in rows]
    assert len(names) == 6
    assert sum("Delta" in name for name in names) == 2
    assert sum("LinearCNU" in name for name in names) == 2
    assert all(ours > 0 and base > 0 for _, ours, base in rows)
    assert "vs Linear" in capsys.readouterr().out
