"""Tests for ``dyna.data.continual_streams``: shapes, orders, determinism and bad arguments."""

import pytest
import torch

from dyna.data import STREAM_NAMES, STREAM_ORDERS, ContinualStream, StreamSplit, make_stream

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SPLITS = ("train", "validation", "test")
# Composition of the streams at num_train=1000, from the reference generator's saved streams
# (the paper's repository at commit f7ea0ff): samples per class in train and test.
CLASS_COUNTS = {"modes": [200, 400, 100, 300], "moons": [400, 100, 300, 200]}


def _splits(stream):
    return [getattr(stream, name) for name in SPLITS]


def _block_starts(distributions):
    starts = torch.ones_like(distributions, dtype=torch.bool)
    starts[1:] = distributions[1:] != distributions[:-1]
    return starts


@pytest.mark.parametrize("name", STREAM_NAMES)
@pytest.mark.parametrize("order", STREAM_ORDERS)
def test_shapes_dtypes_and_composition(name, order):
    stream = make_stream(name, order, seed=3)
    assert isinstance(stream, ContinualStream)
    assert (stream.name, stream.order, stream.seed) == (name, order, 3)
    assert (stream.num_classes, stream.num_domains, stream.in_features) == (4, 2, 2)
    assert stream.num_distributions == {"iid": 1, "ci": 4, "cdi": 8, "cdid": 8}[order]
    assert len(stream.train) == 1000 and len(stream.test) == 500
    expected_validation = {"iid": 250, "ci": 300 if name == "modes" else 250}.get(order, 250)
    assert len(stream.validation) == expected_validation
    for split in _splits(stream):
        n = len(split)
        assert split.inputs.shape == (n, 2) and split.inputs.dtype == torch.float32
        for tensor in (split.targets, split.domains, split.distributions):
            assert tensor.shape == (n,) and tensor.dtype == torch.int64
        assert split.inputs.abs().max() <= 1.0
        # Distribution indices run 0, 1, ... without gaps, never going back.
        assert (split.distributions.diff() >= 0).all()
        assert split.distributions.unique().tolist() == list(range(split.num_distributions))
    assert torch.bincount(stream.train.targets).tolist() == CLASS_COUNTS[name]
    assert torch.bincount(stream.test.targets).tolist() == [c // 2 for c in CLASS_COUNTS[name]]
    # Both domains are equally represented in every class.
    for label in range(4):
        domains = stream.train.domains[stream.train.targets == label]
        assert abs(domains.float().mean().item() - 0.5) < 0.01


@pytest.mark.parametrize("name", STREAM_NAMES)
def test_scaled_to_unit_box(name):
    # Scaled per coordinate over all points: the training half alone nearly spans [-1, 1].
    inputs = make_stream(name, "iid", seed=0).train.inputs
    assert (inputs.amin(dim=0) < -0.95).all() and (inputs.amax(dim=0) > 0.95).all()
    assert inputs.abs().max() <= 1.0


def test_iid_is_shuffled_single_distribution():
    stream = make_stream("modes", "iid", seed=0)
    for split in _splits(stream):
        assert (split.distributions == 0).all()
        # Shuffled: many class changes along the stream, both domains present.
        assert (split.targets.diff() != 0).sum() > len(split) // 4
        assert set(split.domains.tolist()) == {0, 1}
    # The validation split is the first half of the shuffled held-out samples.
    assert len(stream.validation) == 250


def test_ci_classes_arrive_one_after_another():
    stream = make_stream("moons", "ci", seed=0)
    for split in (stream.train, stream.test):
        assert (split.targets.diff() >= 0).all()
        assert torch.equal(split.distributions, split.targets)
        for label in range(4):
            domains = split.domains[split.targets == label]
            # The domain is ignored: both domains are mixed inside each class block.
            assert set(domains.tolist()) == {0, 1}
            assert (domains.diff() != 0).any() and not (domains.diff() >= 0).all()
    # Validation: the first half of the distributions, i.e. classes 0 and 1.
    assert stream.validation.targets.unique().tolist() == [0, 1]


@pytest.mark.parametrize("order", ["cdi", "cdid"])
def test_cdi_blocks_are_domain_class_pairs(order):
    stream = make_stream("modes", order, seed=0)
    for split in (stream.train, stream.test):
        block_key = split.domains * 4 + split.targets
        assert (block_key.diff() >= 0).all()
        assert torch.equal(split.distributions, block_key)
        starts = _block_starts(split.distributions)
        assert split.domains[starts].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
        assert split.targets[starts].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    # Validation: the first half of the distributions, i.e. domain 0, every class.
    assert (stream.validation.domains == 0).all()
    assert stream.validation.targets.unique().tolist() == [0, 1, 2, 3]


def test_cdi_blocks_are_shuffled_and_cdid_blocks_are_sorted():
    cdi = make_stream("moons", "cdi", seed=7)
    cdid = make_stream("moons", "cdid", seed=7)
    for split_cdi, split_cdid in zip(_splits(cdi), _splits(cdid), strict=True):
        assert torch.equal(split_cdi.distributions, split_cdid.distributions)
        for block in range(split_cdi.num_distributions):
            first_cdi = split_cdi.inputs[split_cdi.distributions == block]
            first_cdid = split_cdid.inputs[split_cdid.distributions == block]
            # Dependent sampling: sorted by the first coordinate; CDI keeps random order.
            assert (first_cdid[:, 0].diff() >= 0).all()
            assert not (first_cdi[:, 0].diff() >= 0).all()
            # Same samples in each block, only their order differs.
            torch.testing.assert_close(
                first_cdi[first_cdi[:, 0].argsort()], first_cdid, rtol=0, atol=0
            )


def test_orders_are_permutations_of_the_same_samples():
    def sorted_rows(split):
        keys = split.inputs[:, 0] * 4 + split.targets
        return split.inputs[keys.argsort()]

    streams = [make_stream("modes", order, seed=11) for order in STREAM_ORDERS]
    for split_name in ("train", "test"):
        reference = sorted_rows(getattr(streams[0], split_name))
        for stream in streams[1:]:
            assert torch.equal(sorted_rows(getattr(stream, split_name)), reference)


@pytest.mark.parametrize("name", STREAM_NAMES)
def test_same_seed_same_stream_different_seed_different_stream(name):
    first = make_stream(name, "cdi", seed=42)
    again = make_stream(name, "cdi", seed=42)
    other = make_stream(name, "cdi", seed=43)
    for a, b, c in zip(_splits(first), _splits(again), _splits(other), strict=True):
        for field in ("inputs", "targets", "domains", "distributions"):
            assert torch.equal(getattr(a, field), getattr(b, field))
        assert not torch.equal(a.inputs, c.inputs)


def test_global_random_state_untouched():
    state = torch.get_rng_state()
    make_stream("modes", "iid", seed=0)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("device", DEVICES)
def test_dtype_and_device(dtype, device):
    stream = make_stream("moons", "cdid", seed=1, num_train=100, device=device, dtype=dtype)
    reference = make_stream("moons", "cdid", seed=1, num_train=100, dtype=torch.float64)
    for split, split64 in zip(_splits(stream), _splits(reference), strict=True):
        assert split.inputs.dtype == dtype and split.inputs.device.type == device
        assert split.targets.device.type == device
        assert torch.equal(split.targets.cpu(), split64.targets)
        # Generated in float64, then cast: the same points to the dtype's rounding.
        torch.testing.assert_close(split.inputs.cpu(), split64.inputs.to(dtype))


def test_default_dtype_is_followed():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert make_stream("modes", "ci", num_train=100).train.inputs.dtype == torch.float64
    finally:
        torch.set_default_dtype(previous)


def test_small_streams_keep_every_block():
    for name in STREAM_NAMES:
        stream = make_stream(name, "cdi", seed=0, num_train=100)
        assert len(stream.train) == 100 and len(stream.test) == 50
        assert stream.test.num_distributions == 8 and stream.validation.num_distributions == 4
        assert (torch.bincount(stream.test.distributions) >= 2).all()


def test_case_insensitive_names_and_moving_a_split():
    stream = make_stream("MOONS", "CDI", seed=0, num_train=100)
    assert (stream.name, stream.order) == ("moons", "cdi")
    moved = stream.train.to(dtype=torch.float64)
    assert isinstance(moved, StreamSplit) and moved.inputs.dtype == torch.float64
    assert moved.targets.dtype == torch.int64 and len(moved) == 100


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"name": "spirals"}, ValueError, "name must be one of"),
        ({"name": 3}, TypeError, "name must be a str"),
        ({"order": "task"}, ValueError, "order must be one of"),
        ({"order": None}, TypeError, "order must be a str"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
        ({"seed": True}, TypeError, "seed must be an int"),
        ({"num_train": 99}, ValueError, "num_train must be >= 100"),
        ({"num_train": "1000"}, TypeError, "num_train must be an int"),
        ({"dtype": torch.int64}, TypeError, "dtype must be a floating"),
        ({"dtype": "float32"}, TypeError, "dtype must be a floating"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    arguments = {"name": "modes", "order": "ci"} | kwargs
    name, order = arguments.pop("name"), arguments.pop("order")
    with pytest.raises(error, match=match):
        make_stream(name, order, **arguments)
