"""A batch sampler whose order is a pure function of (seed, epoch), split across ranks.

``torch.utils.data.DistributedSampler`` hands rank r the indices ``perm[r::W]``: the global
batches of W processes are then different sets of samples from the batches of one process,
so a distributed run cannot reproduce a single-process run. :class:`GlobalBatchSampler`
shuffles globally, cuts the permutation into global batches of ``batch_size`` and gives each
rank its contiguous slice of every global batch. With a loss summed per rank and divided by the
global batch size (times W, which DDP's gradient averaging divides out) the update equals the
single-process one. The order depends only on (seed, epoch), so a resumed run skips the
batches it has consumed and continues with exactly the same ones.
"""

from __future__ import annotations

import hashlib

import torch

from dyna._validation import check_int

MAX_SEED = 2**31 - 1


def epoch_seed(seed: int, epoch: int) -> int:
    """The generator seed of (seed, epoch): 32 bits of sha256("seed:epoch").

    torch's CPU generator (mt19937) keeps only the low 32 bits of its seed, so arithmetic such
    as ``seed * 2**32 + epoch`` would ignore ``seed``; a hash mixes both into those bits.
    """
    digest = hashlib.sha256(f"{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class GlobalBatchSampler:
    """Index batches for one rank: (seed, epoch)-shuffled global batches, sliced per rank.

    Args:
        num_samples: size of the data set.
        batch_size: the global batch (all ranks together); divisible by ``world_size``.
        seed: seed of the shuffles (0 <= seed < 2**31).
        rank, world_size: this process and the number of processes (default 0 and 1).
        shuffle: reshuffle every epoch (default True); otherwise the natural order.

    A last global batch smaller than ``world_size`` is dropped (a rank would get no sample);
    any other last batch is kept and split as evenly as possible.

    Example:
        >>> sampler = GlobalBatchSampler(10, 4, seed=0, rank=1, world_size=2)
        >>> len(sampler), [len(indices) for indices, _ in sampler.epoch(0)]
        (3, [2, 2, 1])
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        self.num_samples = check_int("num_samples", num_samples, minimum=1)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)
        if self.seed > MAX_SEED:
            raise ValueError(f"seed must be < 2**31, got {seed}")
        self.world_size = check_int("world_size", world_size, minimum=1)
        self.rank = check_int("rank", rank, minimum=0)
        if self.rank >= self.world_size:
            raise ValueError(f"rank must be < world_size={world_size}, got {rank}")
        if self.batch_size % self.world_size:
            raise ValueError(
                f"batch_size must be divisible by the number of processes ({self.world_size}), "
                f"got {self.batch_size}"
            )
        self.shuffle = shuffle
        full, last = divmod(self.num_samples, self.batch_size)
        self.num_batches = full + (1 if last >= self.world_size else 0)
        if self.num_batches == 0:
            raise ValueError(f"num_samples={num_samples} is too small for {world_size} processes")

    def __len__(self) -> int:
        return self.num_batches

    def permutation(self, epoch: int) -> torch.Tensor:
        """The global order of the samples in ``epoch``."""
        epoch = check_int("epoch", epoch, minimum=0)
        if not self.shuffle:
            return torch.arange(self.num_samples)
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        return torch.randperm(self.num_samples, generator=generator)

    def epoch(self, epoch: int, start: int = 0) -> list[tuple[torch.Tensor, int]]:
        """This rank's batches of ``epoch`` from batch ``start`` on: (indices, global size)."""
        order = self.permutation(epoch)
        return [(order[begin:end], size) for begin, end, size in self.slices(start)]

    def slices(self, start: int = 0) -> list[tuple[int, int, int]]:
        """This rank's batches from batch ``start`` on as ``(begin, end, global size)``: its
        indices are ``permutation(epoch)[begin:end]`` in every epoch.

        A trainer moves the permutation to its device once per epoch and slices it there, so a
        step copies no indices from the host.
        """
        slices = []
        for index in range(check_int("start", start, minimum=0), self.num_batches):
            first = index * self.batch_size
            size = min(self.batch_size, self.num_samples - first)
            # tensor_split's rule: the first size % world_size ranks take one sample more.
            share, extra = divmod(size, self.world_size)
            begin = first + self.rank * share + min(self.rank, extra)
            end = begin + share + (1 if self.rank < extra else 0)
            slices.append((begin, end, size))
        return slices
