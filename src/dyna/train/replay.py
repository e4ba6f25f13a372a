"""Experience replay with a reservoir buffer, planned for a whole stream in a few tensor ops.

Experience replay (ER; Chaudhry et al., "On Tiny Episodic Memories in Continual Learning",
2019; the online form of Mai et al., "Online Continual Learning in Image Classification: An
Empirical Survey", 2022) keeps a small buffer of past samples. At step t of the stream the
learner trains on the incoming sample together with up to k samples drawn uniformly, without
replacement, from the buffer; then the incoming sample is offered to the buffer.

The buffer is a reservoir (Vitter's algorithm R, "Random Sampling with a Reservoir", 1985): of
capacity c, the first c samples fill slots 0 … c−1 in order; sample t ≥ c draws j uniformly in
{0, …, t} and replaces slot j if j < c, else it is dropped. After n samples every one of them is
in the buffer with probability c / n.

Neither the reservoir nor the draws from it depend on the model, so for a stream known in
advance the whole plan is a function of the random numbers alone. :func:`reservoir_slots` turns
one uniform number per sample into the slot it is written to; :func:`buffer_contents` turns the
slots into the buffer's content before every step (a running maximum over an (n, c) table); and
:func:`reservoir_replay_schedule` draws the random numbers from a seeded generator and picks the
replayed samples of every step at once (the k smallest of c random keys per step). The training
loop then only gathers precomputed indices: no Python bookkeeping and no host synchronisation
per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dyna._validation import check_int

# Returned where a slot or a replayed sample does not exist (dropped sample, empty slot).
EMPTY = -1


def _check_uniforms(uniforms: object) -> torch.Tensor:
    if not isinstance(uniforms, torch.Tensor):
        raise TypeError(f"uniforms must be a torch.Tensor, got {type(uniforms).__name__}")
    if not uniforms.is_floating_point():
        raise TypeError(f"uniforms must have a floating-point dtype, got {uniforms.dtype}")
    if uniforms.dim() != 1:
        raise ValueError(
            f"uniforms must be 1-D (one per sample), got shape {tuple(uniforms.shape)}"
        )
    return uniforms


def reservoir_slots(uniforms: torch.Tensor, capacity: int) -> torch.Tensor:
    """Slot of the reservoir each sample of a stream is written to (Vitter's algorithm R).

    Sample t < ``capacity`` goes to slot t. Sample t ≥ ``capacity`` draws j = ⌊u_t (t + 1)⌋,
    uniform in {0, …, t} for u_t uniform in [0, 1), and replaces slot j if j < ``capacity``;
    otherwise it is dropped.

    Args:
        uniforms: (n,) floating numbers in [0, 1), one per sample (only those of samples
            t ≥ ``capacity`` are used). Use float64 for long streams so that ⌊u (t + 1)⌋ is exact.
        capacity: c ≥ 1, slots of the buffer.

    Returns:
        (n,) int64 slot per sample, ``-1`` for a dropped sample; on the device of ``uniforms``.

    Example:
        >>> reservoir_slots(torch.tensor([0.7, 0.2, 0.5, 0.1, 0.9], dtype=torch.float64), 2)
        tensor([ 0,  1,  1,  0, -1])
    """
    uniforms = _check_uniforms(uniforms)
    capacity = check_int("capacity", capacity, minimum=1)
    positions = torch.arange(uniforms.shape[0], device=uniforms.device)
    draws = (uniforms * (positions + 1).to(uniforms.dtype)).floor().long()
    # Keep j in {0, …, t} even for a number at or past the ends of [0, 1).
    draws = torch.minimum(draws.clamp(min=0), positions)
    replaced = torch.where(draws < capacity, draws, EMPTY)
    return torch.where(positions < capacity, positions, replaced)


def buffer_contents(slots: torch.Tensor, capacity: int) -> torch.Tensor:
    """The buffer before every step: which sample sits in each slot.

    Args:
        slots: (n,) integer slot of each sample, ``-1`` for a dropped one (as returned by
            :func:`reservoir_slots`).
        capacity: c, slots of the buffer.

    Returns:
        (n + 1, c) int64; row t holds the sample index in each slot after samples 0 … t−1 were
        offered (row 0: empty buffer, row n: the final buffer), ``-1`` for an empty slot.

    Example:
        >>> buffer_contents(torch.tensor([0, 1, 1, 0, -1]), 2)
        tensor([[-1, -1],
                [ 0, -1],
                [ 0,  1],
                [ 0,  2],
                [ 3,  2],
                [ 3,  2]])
    """
    if not isinstance(slots, torch.Tensor):
        raise TypeError(f"slots must be a torch.Tensor, got {type(slots).__name__}")
    if slots.is_floating_point() or slots.is_complex() or slots.dtype == torch.bool:
        raise TypeError(f"slots must have an integer dtype, got {slots.dtype}")
    if slots.dim() != 1:
        raise ValueError(f"slots must be 1-D, got shape {tuple(slots.shape)}")
    capacity = check_int("capacity", capacity, minimum=1)
    positions = torch.arange(slots.shape[0], device=slots.device)
    # writes[t, s] = t where sample t is written to slot s: the latest writer of each slot up to
    # step t is a running maximum down the columns.
    writes = torch.where(
        slots.long().unsqueeze(1) == torch.arange(capacity, device=slots.device),
        positions.unsqueeze(1),
        EMPTY,
    )
    latest = writes.cummax(dim=0).values
    empty = torch.full((1, capacity), EMPTY, dtype=torch.long, device=slots.device)
    return torch.cat([empty, latest])


@dataclass(frozen=True)
class ReplaySchedule:
    """The replay plan of one stream.

    Attributes:
        buffer_size: c, capacity of the reservoir.
        replay_size: k, samples replayed per step (fewer while the buffer holds fewer).
        slots: (n,) int64 slot each sample is written to after its step, ``-1`` if dropped.
        contents: (n + 1, c) int64 buffer before each step (see :func:`buffer_contents`).
        replay_indices: (n, k) int64 indices into the stream of the samples replayed at each
            step, drawn from the buffer before the step's own sample is offered to it; ``-1``
            pads the rows of the first k steps, where the buffer holds t < k samples.
    """

    buffer_size: int
    replay_size: int
    slots: torch.Tensor
    contents: torch.Tensor
    replay_indices: torch.Tensor

    def replay_counts(self) -> list[int]:
        """Replayed samples at each step, min(t, k), computed on the host without a sync."""
        return [min(step, self.replay_size) for step in range(self.slots.shape[0])]


def reservoir_replay_schedule(
    num_samples: int,
    buffer_size: int,
    replay_size: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> ReplaySchedule:
    """Plan experience replay with a reservoir buffer for a stream of ``num_samples`` samples.

    Draws, in this order, n float64 uniforms for the reservoir (:func:`reservoir_slots`) and an
    (n, c) float64 table of random keys; at step t the k filled slots with the smallest keys are
    replayed (a uniform draw of k of the min(t, c) filled slots, without replacement).

    Args:
        num_samples: n ≥ 1, length of the stream.
        buffer_size: c ≥ 1, capacity of the reservoir.
        replay_size: k, 1 ≤ k ≤ c, samples replayed per step.
        generator: source of the random numbers (default PyTorch's global generator); a seeded
            generator makes the plan deterministic.
        device: device of the plan's tensors (default CPU). The draws are made on the
            generator's device.

    Returns:
        A :class:`ReplaySchedule`.

    Example:
        >>> plan = reservoir_replay_schedule(6, 3, 2, generator=torch.Generator().manual_seed(0))
        >>> plan.replay_indices.shape, plan.replay_counts()
        (torch.Size([6, 2]), [0, 1, 2, 2, 2, 2])
    """
    num_samples = check_int("num_samples", num_samples, minimum=1)
    buffer_size = check_int("buffer_size", buffer_size, minimum=1)
    replay_size = check_int("replay_size", replay_size, minimum=1)
    if replay_size > buffer_size:
        raise ValueError(f"replay_size must be <= buffer_size ({buffer_size}), got {replay_size}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    draw_device = generator.device if generator is not None else None
    uniforms = torch.rand(num_samples, dtype=torch.float64, generator=generator, device=draw_device)
    keys = torch.rand(
        num_samples, buffer_size, dtype=torch.float64, generator=generator, device=draw_device
    )
    uniforms, keys = uniforms.to(device), keys.to(device)
    slots = reservoir_slots(uniforms, buffer_size)
    contents = buffer_contents(slots, buffer_size)
    positions = torch.arange(num_samples, device=keys.device)
    # The reservoir fills its slots in order, so before step t slots 0 … min(t, c)−1 are full;
    # empty slots get key 2 (above every uniform) and sort last.
    filled = torch.arange(buffer_size, device=keys.device) < positions.unsqueeze(1)
    keys = torch.where(filled, keys, 2.0)
    chosen = keys.topk(replay_size, dim=1, largest=False, sorted=True).indices
    replayed = contents[:-1].gather(1, chosen)
    valid = filled.gather(1, chosen)
    replay_indices = torch.where(valid, replayed, EMPTY)
    return ReplaySchedule(buffer_size, replay_size, slots, contents, replay_indices)
