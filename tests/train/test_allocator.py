"""glibc malloc settings for training processes (dyna.train.allocator) and their use by dyna."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from dyna import cli
from dyna.train import allocator

on_glibc = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="needs glibc"
)


def _clean_environment() -> dict[str, str]:
    environ = dict(os.environ)
    for name in list(environ):
        if name.startswith("MALLOC_") or name in ("LD_PRELOAD", "GLIBC_TUNABLES"):
            del environ[name]
    return environ


def _run(code: str, environ: dict[str, str], *argv: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *argv],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.strip()


# A 40 MiB tensor allocated and freed once per "step": above glibc's largest dynamic threshold,
# so under the defaults every step maps it afresh and faults in each of its 10,240 pages.
_FAULTS_PER_STEP = """
import resource, sys, torch
from dyna.train.allocator import freed_memory_retained, retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] == "retain" else False
def step():
    block = torch.ones(10 << 20)
    del block
faults = []
for _ in range(15):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
# The median step: the heap grows to the block over the first few steps.
faults = sorted(faults)[len(faults) // 2]
print(applied, freed_memory_retained(), retain_freed_memory() if applied else None, faults)
"""


def _faults(mode: str, environ: dict[str, str]) -> tuple[str, str, str, float]:
    applied, retained, again, faults = _run(_FAULTS_PER_STEP, environ, mode).split()
    return applied, retained, again, float(faults)


@on_glibc
def test_retained_blocks_are_reused_without_page_faults():
    environ = _clean_environment()
    applied, retained, again, faults = _faults("retain", environ)
    assert (applied, retained, again) == ("True", "True", "True")
    assert faults < 100
    # The same steps under glibc's defaults fault in the whole block every time.
    applied, retained, _, default_faults = _faults("default", environ)
    assert (applied, retained) == ("False", "False")
    assert default_faults > 5000


@on_glibc
@pytest.mark.parametrize(
    "variable, value",
    [
        ("MALLOC_TRIM_THRESHOLD_", "131072"),
        ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=1048576"),
        ("LD_PRELOAD", "libjemalloc.so.2"),
    ],
)
def test_an_allocator_configured_in_the_environment_is_left_alone(variable, value):
    environ = _clean_environment()
    if variable == "LD_PRELOAD":
        # A library that exists, so the loader does not complain; only its presence matters.
        value = _run("import ctypes.util; print(ctypes.util.find_library('m'))", environ)
    environ[variable] = value
    output = _run(
        """
        from dyna.train.allocator import freed_memory_retained, retain_freed_memory
        print(retain_freed_memory(), freed_memory_retained())
        """,
        environ,
    )
    assert output == "False False"


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({}, False),
        ({"PATH": "/bin", "MALLOC_ARENA_MAX": "2", "MALLOC_CHECK_": "3"}, False),
        ({"LD_PRELOAD": "  "}, False),
        ({"GLIBC_TUNABLES": "glibc.pthread.rseq=0:glibc.malloc.tcache_count=0"}, False),
        ({"MALLOC_MMAP_THRESHOLD_": "1048576"}, True),
        ({"MALLOC_TRIM_THRESHOLD_": "1048576"}, True),
        ({"MALLOC_MMAP_MAX_": "0"}, True),
        ({"MALLOC_TOP_PAD_": "0"}, True),
        ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}, True),
        ({"GLIBC_TUNABLES": "glibc.malloc.mmap_max=0"}, True),
        ({"LD_PRELOAD": "libtcmalloc.so"}, True),
    ],
)
def test_user_configuration_is_recognised(environ, expected):
    assert allocator.allocator_configured_by_user(environ) is expected


class _RecordingLibc:
    """Stands for libc: records mallopt calls and answers with the given results in turn."""

    def __init__(self, results: list[int]) -> None:
        self.calls: list[tuple[int, int]] = []
        self.results = results

    def mallopt(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return self.results.pop(0)


@pytest.fixture
def fresh_allocator_state(monkeypatch):
    monkeypatch.setattr(allocator, "_applied", False)
    monkeypatch.setattr(allocator, "allocator_configured_by_user", lambda: False)


def test_settings_are_the_documented_ones(monkeypatch, fresh_allocator_state):
    libc = _RecordingLibc([1, 1])
    monkeypatch.setattr(allocator, "_libc", lambda: libc)
    assert allocator.retain_freed_memory() is True
    assert libc.calls == [(-3, 128 << 20), (-1, 1 << 30)]
    assert allocator.freed_memory_retained() is True
    # Applied once: a second call does not touch the allocator again.
    assert allocator.retain_freed_memory() is True
    assert len(libc.calls) == 2


def test_a_capped_glibc_gets_the_32_mib_threshold(monkeypatch, fresh_allocator_state):
    libc = _RecordingLibc([0, 1, 1])
    monkeypatch.setattr(allocator, "_libc", lambda: libc)
    assert allocator.retain_freed_memory() is True
    assert libc.calls == [(-3, 128 << 20), (-3, 32 << 20), (-1, 1 << 30)]


def test_a_refused_setting_is_reported(monkeypatch, fresh_allocator_state):
    monkeypatch.setattr(allocator, "_libc", lambda: _RecordingLibc([1, 0]))
    assert allocator.retain_freed_memory() is False
    assert allocator.freed_memory_retained() is False


def test_other_c_libraries_are_left_alone(monkeypatch, fresh_allocator_state):
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    assert allocator._libc() is None
    assert allocator.retain_freed_memory() is False


@pytest.mark.parametrize("argv, called", [(["eval", "no-such-run"], True), (["list"], False)])
def test_the_command_retains_freed_memory_except_for_list(monkeypatch, capsys, argv, called):
    calls = []
    monkeypatch.setattr(allocator, "retain_freed_memory", lambda: calls.append(True) or True)
    cli.main(argv)
    capsys.readouterr()
    assert calls == ([True] if called else [])
