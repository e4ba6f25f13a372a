"""More than one process: ``torchrun`` environment, process group, DDP, rank-0 output.

Under ``torchrun --nproc-per-node N`` every process finds ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous address in its environment; :func:`setup` joins the process
group (gloo on the CPU, nccl on CUDA) and picks the process's device. Without those variables it
is a single process and nothing is initialised.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank, the number of processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, plots and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str | None, local_rank: int = 0) -> torch.device:
    """``"auto"``/None: CUDA (this process's local GPU) when present, else the CPU."""
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"--device {device!r} is not a device: use auto, cpu, cuda or cuda:N"
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available, use --device cpu")
        if resolved.index is None:
            resolved = torch.device("cuda", local_rank % torch.cuda.device_count())
    elif resolved.type != "cpu":
        raise ValueError(f"--device {device!r} is not supported: use auto, cpu, cuda or cuda:N")
    return resolved


def setup(device: str | None = None) -> Context:
    """Join the ``torchrun`` process group when there is one; return this process's context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return Context(rank, world_size, local_rank, resolved)


def teardown(context: Context, *, finished: bool = True) -> None:
    """Leave the process group; ``finished``: every rank got here without an error.

    A finished run first waits for the other ranks, so that no process tears down its gloo
    threads while another still talks to it. Then it runs the cycle collector: the first DDP
    wrapper of a process outlives the run in a reference cycle (through its constructor's
    frame), holding the process group; left to interpreter shutdown, the group's worker threads
    were destroyed while still joinable and the process aborted ("terminate called without an
    active exception"), in about one run in ten.
    """
    if not (context.distributed and dist.is_initialized()):
        return
    if finished:
        dist.barrier()
    gc.collect()
    dist.destroy_process_group()
    gc.collect()


def wrap(model: nn.Module, context: Context) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` in a distributed run, else ``model``."""
    if not context.distributed:
        return model
    device_ids = [context.device] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def all_reduce_sum(tensor: torch.Tensor, context: Context) -> torch.Tensor:
    """Sum ``tensor`` over the processes (in place; a no-op for one process)."""
    if context.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(context: Context) -> None:
    if context.distributed:
        dist.barrier()
