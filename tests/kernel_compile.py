"""Compile the Triton kernels for a real GPU target on a machine without one.

Triton's interpreter checks what a kernel computes but not what only the compiler checks: block
shapes, ``tl.dot`` operand sizes, loop-carried dtypes, shared memory, registers. Triton can
compile ahead of time for a named target (it ships ``ptxas``), so this module intercepts every
kernel launch of an op called on CPU tensors, compiles that launch for the target instead of
running it, and records what ``ptxas`` reports. Run it in a process where ``TRITON_INTERPRET``
is unset (the kernels must be real ``JITFunction``\\ s); the op's outputs are then garbage.

Usage (see ``tests/functional/test_kernels_compile.py``)::

    with CompileOnly(capability=90) as compiled:
        run_the_op_forward_and_backward()
    for launch in compiled.launches: ...
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.runtime.autotuner import Autotuner
from triton.runtime.jit import JITFunction

_POINTER_TYPES = {
    torch.float32: "*fp32",
    torch.float16: "*fp16",
    torch.bfloat16: "*bf16",
    torch.float64: "*fp64",
    torch.int64: "*i64",
    torch.int32: "*i32",
    torch.int16: "*i16",
    torch.int8: "*i8",
    torch.uint8: "*u8",
    torch.bool: "*i1",
}
_LAUNCH_OPTIONS = ("num_warps", "num_stages", "num_ctas", "maxnreg", "enable_fp_fusion")
# Largest dynamic shared memory one CTA may use on sm_90 (H100/H200): 227 KiB.
SM90_SHARED_MEMORY_BYTES = 232_448


@dataclasses.dataclass
class Launch:
    """One compiled launch: the kernel, its compile-time constants and what ptxas reported."""

    kernel: str
    constants: dict[str, Any]
    num_warps: int
    shared_bytes: int
    registers: int
    spill_store_bytes: int
    spill_load_bytes: int


def _argument_type(name: str, value: object) -> str:
    if isinstance(value, torch.Tensor):
        try:
            return _POINTER_TYPES[value.dtype]
        except KeyError:
            message = f"kernel argument {name}: no Triton pointer type for {value.dtype}"
            raise TypeError(message) from None
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if -(2**31) <= value < 2**31 else "i64"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"kernel argument {name}: cannot type {type(value).__name__}")


def _ptxas_report(ptx: str, arch: str) -> tuple[int, int, int]:
    """Registers per thread and spill store/load bytes of ``ptx`` compiled for ``arch``."""
    from triton.backends.nvidia.compiler import get_ptxas

    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "kernel.ptx"
        source.write_text(ptx)
        result = subprocess.run(
            [get_ptxas().path, "-v", f"--gpu-name={arch}", str(source), "-o", f"{source}.o"],
            capture_output=True,
            text=True,
            check=True,
        )
    log = result.stdout + result.stderr
    registers = max((int(m) for m in re.findall(r"Used (\d+) registers", log)), default=0)
    stores = sum(int(m) for m in re.findall(r"(\d+) bytes spill stores", log))
    loads = sum(int(m) for m in re.findall(r"(\d+) bytes spill loads", log))
    return registers, stores, loads


class CompileOnly:
    """Context manager: kernel launches compile for ``cuda`` sm_``capability`` and return.

    Autotuned kernels compile every configuration their pruning keeps, instead of timing them.
    """

    def __init__(self, capability: int = 90) -> None:
        self.capability = capability
        self.launches: list[Launch] = []

    def __enter__(self) -> CompileOnly:
        self._saved = (JITFunction.run, Autotuner.run)
        target = GPUTarget("cuda", self.capability, 32)
        arch = f"sm_{self.capability}a" if self.capability >= 90 else f"sm_{self.capability}"
        launches = self.launches

        def compile_launch(function: JITFunction, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("grid", None)
            kwargs.pop("warmup", None)
            options = {k: kwargs.pop(k) for k in _LAUNCH_OPTIONS if kwargs.get(k) is not None}
            for key in _LAUNCH_OPTIONS:
                kwargs.pop(key, None)
            bound = function.signature.bind(*args, **kwargs)
            bound.apply_defaults()
            signature: dict[str, str] = {}
            constants: dict[str, Any] = {}
            for param in function.params:
                value = bound.arguments[param.name]
                if param.is_constexpr or value is None:
                    signature[param.name] = "constexpr"
                    constants[param.name] = value
                else:
                    signature[param.name] = _argument_type(param.name, value)
            source = triton.compiler.ASTSource(
                fn=function, signature=signature, constexprs=constants
            )
            kernel = triton.compile(source, target=target, options=options)
            registers, stores, loads = _ptxas_report(kernel.asm["ptx"], arch)
            launches.append(
                Launch(
                    kernel=function.__name__,
                    constants=constants,
                    num_warps=kernel.metadata.num_warps,
                    shared_bytes=kernel.metadata.shared,
                    registers=registers,
                    spill_store_bytes=stores,
                    spill_load_bytes=loads,
                )
            )

        def tune_by_compiling(tuner: Autotuner, *args: Any, **kwargs: Any) -> None:
            tuner.nargs = dict(zip(tuner.arg_names, args, strict=False))
            for config in tuner.prune_configs(kwargs):
                tuner.fn.run(*args, **kwargs, **config.all_kwargs())
            tuner.nargs = None

        JITFunction.run = compile_launch  # type: ignore[method-assign]
        Autotuner.run = tune_by_compiling  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc_info: object) -> None:
        JITFunction.run, Autotuner.run = self._saved  # type: ignore[method-assign]
