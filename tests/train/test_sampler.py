"""GlobalBatchSampler: order as a pure function of (seed, epoch), contiguous slices per rank."""

import hashlib

import pytest
import torch

from dyna.train.sampler import GlobalBatchSampler, epoch_seed


def test_order_is_a_pure_function_of_seed_and_epoch():
    a = GlobalBatchSampler(50, 8, seed=3)
    b = GlobalBatchSampler(50, 8, seed=3)
    assert torch.equal(a.permutation(2), b.permutation(2))
    assert not torch.equal(a.permutation(2), a.permutation(3))
    assert not torch.equal(a.permutation(2), GlobalBatchSampler(50, 8, seed=4).permutation(2))
    # Every sample once per epoch, in batches of 8 with the last one partial.
    batches = a.epoch(0)
    assert [len(indices) for indices, _ in batches] == [8] * 6 + [2]
    assert sorted(torch.cat([indices for indices, _ in batches]).tolist()) == list(range(50))
    # The generator seed is 32 bits of sha256("3:2"), computed by hand here.
    assert epoch_seed(3, 2) == int.from_bytes(hashlib.sha256(b"3:2").digest()[:4], "little")
    expected = torch.randperm(50, generator=torch.Generator().manual_seed(epoch_seed(3, 2)))
    assert torch.equal(a.permutation(2), expected)
    # Distinct (seed, epoch) pairs give distinct orders, also where seed * 2**32 + epoch would not.
    orders = {
        tuple(GlobalBatchSampler(50, 8, seed=s).permutation(e).tolist())
        for s in range(4)
        for e in range(4)
    }
    assert len(orders) == 16


def test_start_skips_the_consumed_batches():
    sampler = GlobalBatchSampler(30, 4, seed=0)
    full = sampler.epoch(1)
    tail = sampler.epoch(1, start=5)
    assert len(tail) == len(full) - 5
    for (x, nx), (y, ny) in zip(full[5:], tail, strict=True):
        assert torch.equal(x, y) and nx == ny


@pytest.mark.parametrize("world_size", [2, 3])
def test_rank_slices_concatenate_to_the_single_process_batches(world_size):
    single = GlobalBatchSampler(23, 6, seed=1).epoch(0)
    ranks = [
        GlobalBatchSampler(23, 6, seed=1, rank=r, world_size=world_size).epoch(0)
        for r in range(world_size)
    ]
    assert all(len(batches) == len(single) for batches in ranks)
    for step, (indices, count) in enumerate(single):
        pieces = [ranks[r][step] for r in range(world_size)]
        assert all(piece_count == count for _, piece_count in pieces)
        assert torch.equal(torch.cat([piece for piece, _ in pieces]), indices)


def test_last_batch_smaller_than_the_world_is_dropped_and_errors_name_the_argument():
    # 13 = 2 * 6 + 1: one sample left for two processes.
    assert len(GlobalBatchSampler(13, 6, seed=0, rank=0, world_size=2)) == 2
    assert len(GlobalBatchSampler(13, 6, seed=0)) == 3
    with pytest.raises(ValueError, match="batch_size must be divisible"):
        GlobalBatchSampler(20, 5, seed=0, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        GlobalBatchSampler(20, 4, seed=0, rank=2, world_size=2)
    with pytest.raises(ValueError, match="seed"):
        GlobalBatchSampler(20, 4, seed=2**31)
    with pytest.raises(ValueError, match="num_samples"):
        GlobalBatchSampler(0, 4, seed=0)


@pytest.mark.parametrize(
    ("num_samples", "batch_size", "world_size"), [(10, 4, 2), (23, 6, 3), (7, 8, 4), (30, 5, 1)]
)
def test_slices_cut_the_permutation_as_tensor_split_does(num_samples, batch_size, world_size):
    for rank in range(world_size):
        sampler = GlobalBatchSampler(
            num_samples, batch_size, seed=3, rank=rank, world_size=world_size
        )
        order = sampler.permutation(2)
        expected = []
        for index in range(len(sampler)):
            global_batch = order[index * batch_size : (index + 1) * batch_size]
            expected.append((global_batch.tensor_split(world_size)[rank], global_batch.numel()))
        for start in (0, len(sampler) - 1):
            got = [(order[begin:end], size) for begin, end, size in sampler.slices(start)]
            assert len(got) == len(expected) - start
            for (indices, size), (want, want_size) in zip(got, expected[start:], strict=True):
                assert torch.equal(indices, want) and size == want_size
