"""Tests for ``dyna.train.replay``: the reservoir (Vitter's algorithm R) and the replay plan."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dyna.train.replay import (
    EMPTY,
    ReplaySchedule,
    buffer_contents,
    reservoir_replay_schedule,
    reservoir_slots,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _reference_plan(uniforms, keys, capacity, replay_size):
    # Algorithm R and the replay draw written as a plain loop over the stream, consuming the same
    # random numbers as the vectorised plan: replay from the buffer as it is before step t, then
    # offer sample t to the reservoir.
    buffer = []
    slots, contents, replayed = [], [], []
    for step, (uniform, row) in enumerate(zip(uniforms.tolist(), keys.tolist(), strict=True)):
        contents.append(buffer + [EMPTY] * (capacity - len(buffer)))
        ranked = sorted(range(len(buffer)), key=lambda slot: row[slot])[:replay_size]
        replayed.append([buffer[slot] for slot in ranked] + [EMPTY] * (replay_size - len(ranked)))
        if step < capacity:
            buffer.append(step)
            slots.append(step)
        else:
            slot = int(uniform * (step + 1))
            if slot < capacity:
                buffer[slot] = step
                slots.append(slot)
            else:
                slots.append(EMPTY)
    contents.append(buffer + [EMPTY] * (capacity - len(buffer)))
    return torch.tensor(slots), torch.tensor(contents), torch.tensor(replayed)


def test_hand_worked_reservoir():
    # Capacity 2: samples 0 and 1 fill the slots; sample 2 draws ⌊0.5·3⌋ = 1 and replaces slot 1;
    # sample 3 draws ⌊0.1·4⌋ = 0 and replaces slot 0; sample 4 draws ⌊0.9·5⌋ = 4 ≥ 2: dropped.
    uniforms = torch.tensor([0.7, 0.2, 0.5, 0.1, 0.9], dtype=torch.float64)
    slots = reservoir_slots(uniforms, 2)
    assert slots.tolist() == [0, 1, 1, 0, EMPTY] and slots.dtype == torch.int64
    contents = buffer_contents(slots, 2)
    assert contents.tolist() == [[-1, -1], [0, -1], [0, 1], [0, 2], [3, 2], [3, 2]]
    # Boundary uniforms: 0 always replaces slot 0, just below 1 picks j = t (dropped).
    edges = torch.tensor([0.0, 0.0, 0.0, 1.0 - 2.0**-53], dtype=torch.float64)
    assert reservoir_slots(edges, 2).tolist() == [0, 1, 0, EMPTY]


@pytest.mark.parametrize(("capacity", "length"), [(1, 3), (2, 4), (2, 5), (3, 5)])
def test_exact_inclusion_probability_by_enumeration(capacity, length):
    # Every equally likely draw of j_t ∈ {0, …, t} for t ≥ c, fed as the uniform (j + ½)/(t + 1):
    # each sample must end in the buffer in exactly a fraction c/n of the outcomes.
    ranges = [range(step + 1) for step in range(capacity, length)]
    outcomes = list(itertools.product(*ranges))
    counts = torch.zeros(length, dtype=torch.long)
    for draws in outcomes:
        uniforms = torch.zeros(length, dtype=torch.float64)
        for step, draw in zip(range(capacity, length), draws, strict=True):
            uniforms[step] = (draw + 0.5) / (step + 1)
        final = buffer_contents(reservoir_slots(uniforms, capacity), capacity)[-1]
        assert (final != EMPTY).all()
        counts[final] += 1
    expected = len(outcomes) * capacity // length
    assert len(outcomes) * capacity % length == 0
    assert counts.tolist() == [expected] * length


def test_inclusion_probability_is_uniform_statistically():
    # 3000 seeded streams of 12 samples, capacity 3: each sample is kept with probability 1/4
    # (standard error 0.0079 per sample), and every sample is replayed at the last step with
    # probability k/n = 2/12 (the buffer is uniform and the draw from it too).
    generator = torch.Generator().manual_seed(2024)
    trials, length, capacity, replay_size = 3000, 12, 3, 2
    kept = torch.zeros(length)
    replayed_last = torch.zeros(length)
    for _ in range(trials):
        plan = reservoir_replay_schedule(length, capacity, replay_size, generator=generator)
        kept[plan.contents[-1]] += 1
        replayed_last[plan.replay_indices[-1]] += 1
    frequency = kept / trials
    torch.testing.assert_close(frequency, torch.full((length,), 0.25), rtol=0, atol=0.035)
    assert abs(frequency.mean().item() - 0.25) < 1e-6  # exactly c samples kept per trial
    replay_frequency = replayed_last[: length - 1] / trials
    torch.testing.assert_close(
        replay_frequency, torch.full((length - 1,), 2 / 11), rtol=0, atol=0.035
    )
    assert replayed_last[-1] == 0  # the step's own sample is not in the buffer yet


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("length", "capacity", "replay_size"), [(1, 1, 1), (7, 3, 3), (60, 5, 2)])
def test_plan_matches_the_plain_loop(device, length, capacity, replay_size):
    plan = reservoir_replay_schedule(
        length, capacity, replay_size, generator=torch.Generator().manual_seed(7), device=device
    )
    generator = torch.Generator().manual_seed(7)
    uniforms = torch.rand(length, dtype=torch.float64, generator=generator)
    keys = torch.rand(length, capacity, dtype=torch.float64, generator=generator)
    slots, contents, replayed = _reference_plan(uniforms, keys, capacity, replay_size)
    assert isinstance(plan, ReplaySchedule)
    assert (plan.buffer_size, plan.replay_size) == (capacity, replay_size)
    assert plan.slots.device.type == device
    assert torch.equal(plan.slots.cpu(), slots)
    assert torch.equal(plan.contents.cpu(), contents)
    assert torch.equal(plan.replay_indices.cpu(), replayed)


@settings(max_examples=40, deadline=None)
@given(
    length=st.integers(1, 40),
    capacity=st.integers(1, 12),
    replay_fraction=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_plan_matches_the_plain_loop_for_any_sizes(length, capacity, replay_fraction, seed):
    replay_size = 1 + int(replay_fraction * (capacity - 1))
    plan = reservoir_replay_schedule(
        length, capacity, replay_size, generator=torch.Generator().manual_seed(seed)
    )
    generator = torch.Generator().manual_seed(seed)
    uniforms = torch.rand(length, dtype=torch.float64, generator=generator)
    keys = torch.rand(length, capacity, dtype=torch.float64, generator=generator)
    slots, contents, replayed = _reference_plan(uniforms, keys, capacity, replay_size)
    assert torch.equal(plan.slots, slots)
    assert torch.equal(plan.contents, contents)
    assert torch.equal(plan.replay_indices, replayed)
    assert ((plan.contents != EMPTY).sum(dim=1) <= capacity).all()


def test_buffer_invariants():
    length, capacity, replay_size = 200, 10, 4
    plan = reservoir_replay_schedule(
        length, capacity, replay_size, generator=torch.Generator().manual_seed(3)
    )
    assert plan.contents.shape == (length + 1, capacity)
    assert plan.replay_indices.shape == (length, replay_size)
    steps = torch.arange(length + 1)
    filled = (plan.contents != EMPTY).sum(dim=1)
    # Never more than the capacity; full as soon as c samples were offered.
    assert torch.equal(filled, steps.clamp(max=capacity))
    for step, row in enumerate(plan.contents.tolist()):
        held = [index for index in row if index != EMPTY]
        assert len(set(held)) == len(held) and all(0 <= index < step for index in held)
    counts = plan.replay_counts()
    assert counts[:6] == [0, 1, 2, 3, 4, 4] and len(counts) == length
    for step, (row, count) in enumerate(zip(plan.replay_indices.tolist(), counts, strict=True)):
        drawn = row[:count]
        assert row[count:] == [EMPTY] * (replay_size - count)
        # Distinct samples, all in the buffer before the step (never the step's own sample).
        assert len(set(drawn)) == count
        assert set(drawn) <= set(plan.contents[step].tolist())
        assert step not in drawn


def test_plan_is_deterministic_given_the_seed():
    first = reservoir_replay_schedule(100, 8, 4, generator=torch.Generator().manual_seed(11))
    again = reservoir_replay_schedule(100, 8, 4, generator=torch.Generator().manual_seed(11))
    other = reservoir_replay_schedule(100, 8, 4, generator=torch.Generator().manual_seed(12))
    assert torch.equal(first.slots, again.slots)
    assert torch.equal(first.replay_indices, again.replay_indices)
    assert not torch.equal(first.replay_indices, other.replay_indices)
    # Without a generator it draws from the global one, which a manual seed fixes.
    torch.manual_seed(5)
    global_first = reservoir_replay_schedule(30, 4, 2)
    torch.manual_seed(5)
    assert torch.equal(
        reservoir_replay_schedule(30, 4, 2).replay_indices, global_first.replay_indices
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"buffer_size": 0}, ValueError, "buffer_size must be >= 1"),
        ({"buffer_size": 2.5}, TypeError, "buffer_size must be an int"),
        ({"buffer_size": True}, TypeError, "buffer_size must be an int"),
        ({"replay_size": 0}, ValueError, "replay_size must be >= 1"),
        ({"replay_size": 9}, ValueError, r"replay_size must be <= buffer_size \(8\), got 9"),
        ({"num_samples": 0}, ValueError, "num_samples must be >= 1"),
        ({"generator": 3}, TypeError, r"generator must be a torch\.Generator or None"),
    ],
)
def test_schedule_bad_arguments(kwargs, error, match):
    arguments = {"num_samples": 20, "buffer_size": 8, "replay_size": 4} | kwargs
    with pytest.raises(error, match=match):
        reservoir_replay_schedule(**arguments)


def test_slots_and_contents_bad_arguments():
    with pytest.raises(TypeError, match=r"uniforms must be a torch\.Tensor"):
        reservoir_slots([0.1, 0.2], 1)
    with pytest.raises(TypeError, match="uniforms must have a floating-point dtype"):
        reservoir_slots(torch.tensor([0, 1]), 1)
    with pytest.raises(ValueError, match="uniforms must be 1-D"):
        reservoir_slots(torch.rand(2, 2), 1)
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        reservoir_slots(torch.rand(3), 0)
    with pytest.raises(TypeError, match=r"slots must be a torch\.Tensor"):
        buffer_contents([0, 1], 2)
    with pytest.raises(TypeError, match="slots must have an integer dtype"):
        buffer_contents(torch.tensor([0.0, 1.0]), 2)
    with pytest.raises(ValueError, match="slots must be 1-D"):
        buffer_contents(torch.zeros(2, 2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        buffer_contents(torch.tensor([0]), 0)
