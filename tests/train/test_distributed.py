"""Process-group helpers: device choice and a clean exit from a DDP run."""

from __future__ import annotations

import gc
import socket
import weakref

import pytest
import torch
import torch.distributed as dist
from torch import nn

from dyna.train import distributed


def test_a_single_process_initialises_nothing(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    context = distributed.setup("cpu")
    assert (context.rank, context.world_size, context.distributed) == (0, 1, False)
    assert context.device == torch.device("cpu")
    assert not dist.is_initialized()
    model = nn.Linear(2, 2)
    assert distributed.wrap(model, context) is model
    distributed.teardown(context)


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "meta"])
def test_an_unusable_device_is_a_value_error(device):
    with pytest.raises(ValueError, match="--device"):
        distributed.resolve_device(device)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("finished", [True, False])
def test_teardown_frees_the_ddp_wrapper_and_leaves_the_group(monkeypatch, finished):
    # A one-process gloo group stands in for torchrun's; the context claims two processes so
    # that teardown takes the distributed path (barrier, collection, destroy).
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    context = distributed.Context(rank=0, world_size=2)
    collecting = gc.isenabled()
    gc.disable()  # only teardown's own collection may free the wrapper
    try:

        def train_step() -> weakref.ref:
            network = nn.parallel.DistributedDataParallel(nn.Linear(3, 2))
            network(torch.randn(4, 3)).sum().backward()
            return weakref.ref(network)

        wrapper = train_step()
        # The first wrapper of a process may outlive the step in a reference cycle; teardown
        # must free it whichever is the case.
        distributed.teardown(context, finished=finished)
        assert wrapper() is None
        assert not dist.is_initialized()
    finally:
        if collecting:
            gc.enable()
        if dist.is_initialized():
            dist.destroy_process_group()
