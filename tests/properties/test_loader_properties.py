"""Property tests for the on-disk and shipped data sets: the IDX reader, MNIST, the digits.

IDX files are written here by an encoder independent of the reader (numpy's big-endian dtypes),
so a round trip checks the reader's byte order, type codes and shapes, not just its symmetry.
"""

import functools
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import dyna.data
from dyna.data.digits import NUM_SAMPLES, stratified_split
from dyna.data.mnist import FILES

COVERED = {
    "DataError",
    "Split",
    "load_digits_split",
    "load_digits_tensors",
    "load_mnist",
    "read_idx",
}

# IDX type code -> the big-endian numpy dtype that writes it (the IDX format's own table).
IDX_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
TORCH_DTYPES = {
    0x08: torch.uint8,
    0x09: torch.int8,
    0x0B: torch.int16,
    0x0C: torch.int32,
    0x0D: torch.float32,
    0x0E: torch.float64,
}

seeds = st.integers(0, 2**31 - 1)


def _encode(values: np.ndarray, type_code: int) -> bytes:
    magic = struct.pack(">BBBB", 0, 0, type_code, values.ndim)
    sizes = struct.pack(f">{values.ndim}I", *values.shape)
    return magic + sizes + values.astype(IDX_CODES[type_code]).tobytes()


def _write(folder: Path, name: str, data: bytes, gz: bool) -> Path:
    path = folder / (f"{name}.gz" if gz else name)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@st.composite
def idx_arrays(draw):
    """A random array of a random IDX type, 1 to 4 dimensions, every bit pattern allowed."""
    type_code = draw(st.sampled_from(sorted(IDX_CODES)))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=1, max_size=4)))
    dtype = np.dtype(IDX_CODES[type_code]).newbyteorder("=")
    count = int(np.prod(shape))
    # Random bytes reinterpreted: NaNs with payloads, infinities, subnormals, extreme integers.
    raw = np.random.default_rng(draw(seeds)).integers(0, 256, count * dtype.itemsize, np.uint8)
    return type_code, raw.view(dtype).reshape(shape)


@given(array=idx_arrays(), gz=st.booleans())
def test_read_idx_round_trips_every_type_code_and_rank(tmp_path_factory, array, gz):
    type_code, values = array
    folder = tmp_path_factory.mktemp("idx")
    path = _write(folder, "values.idx", _encode(values, type_code), gz)
    read = dyna.data.read_idx(path)
    assert read.dtype == TORCH_DTYPES[type_code]
    assert read.shape == values.shape and read.is_contiguous()
    # Bitwise: NaN payloads and signed zeros must survive as written.
    assert read.numpy().tobytes() == values.tobytes()
    # The same file read through a str path gives the same tensor.
    assert read.numpy().tobytes() == dyna.data.read_idx(str(path)).numpy().tobytes()


@given(array=idx_arrays(), cut=st.floats(0.0, 1.0, exclude_max=True), extra=st.binary(max_size=9))
def test_read_idx_rejects_truncated_or_padded_files(tmp_path_factory, array, cut, extra):
    type_code, values = array
    data = _encode(values, type_code)
    folder = tmp_path_factory.mktemp("idx")
    truncated = _write(folder, "cut.idx", data[: int(cut * len(data))], gz=False)
    with pytest.raises(dyna.data.DataError, match=r"cut\.idx"):
        dyna.data.read_idx(truncated)
    if extra:
        padded = _write(folder, "padded.idx", data + extra, gz=False)
        with pytest.raises(dyna.data.DataError, match="truncated or corrupt"):
            dyna.data.read_idx(padded)
    # A gzip stream cut short is unreadable, not silently short.
    packed = gzip.compress(data)
    cut_gz = _write(folder, "cut.idx.gz", packed[: int(cut * len(packed))], gz=False)
    with pytest.raises(dyna.data.DataError, match=r"cut\.idx\.gz"):
        dyna.data.read_idx(cut_gz)


def _valid_magic(magic: int) -> bool:
    return magic >> 16 == 0 and (magic >> 8) & 0xFF in IDX_CODES and magic & 0xFF > 0


@given(magic=st.integers(0, 2**32 - 1), tail=st.binary(max_size=40))
def test_read_idx_rejects_a_garbled_magic_number(tmp_path_factory, magic, tail):
    assume(not _valid_magic(magic))
    path = tmp_path_factory.mktemp("idx") / "garbled.idx"
    path.write_bytes(struct.pack(">I", magic) + tail)
    with pytest.raises(dyna.data.DataError, match=f"magic number {magic:#010x}"):
        dyna.data.read_idx(path)


def test_data_error_is_a_value_error():
    # Bad data is a bad argument value: callers catching ValueError catch it too.
    assert issubclass(dyna.data.DataError, ValueError)


# ------------------------------------------------------------------------------------ MNIST


@given(
    counts=st.tuples(st.integers(0, 6), st.integers(0, 6)),
    gz=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
    seed=seeds,
)
def test_load_mnist_on_tiny_folders(tmp_path_factory, counts, gz, seed):
    folder = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(seed)
    written = {}
    for index, (split, count) in enumerate(zip(("train", "test"), counts, strict=True)):
        pixels = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        image_name, label_name = FILES[split]
        _write(folder, image_name, _encode(pixels, 0x08), gz[2 * index])
        _write(folder, label_name, _encode(labels, 0x08), gz[2 * index + 1])
        written[split] = (pixels, labels)
    train, test = dyna.data.load_mnist(folder)
    for split, loaded in (("train", train), ("test", test)):
        pixels, labels = written[split]
        assert isinstance(loaded, dyna.data.Split) and len(loaded) == len(labels)
        assert loaded.inputs.shape == (len(labels), 28, 28)
        assert loaded.inputs.dtype == torch.float32 and loaded.labels.dtype == torch.int64
        if len(labels):
            assert 0.0 <= float(loaded.inputs.min()) and float(loaded.inputs.max()) <= 1.0
            assert 0 <= int(loaded.labels.min()) and int(loaded.labels.max()) <= 9
        # Documented scaling: the byte divided by 255, nothing else.
        expected = torch.from_numpy(pixels.astype(np.float32) / np.float32(255.0))
        torch.testing.assert_close(loaded.inputs, expected, rtol=0, atol=0)
        assert torch.equal(loaded.labels, torch.from_numpy(labels.astype(np.int64)))


@given(
    defect=st.sampled_from(["label_above_9", "count_mismatch", "wrong_type", "wrong_rank"]),
    count=st.integers(1, 4),
    seed=seeds,
)
def test_load_mnist_rejects_inconsistent_folders(tmp_path_factory, defect, count, seed):
    folder = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        image_name, label_name = FILES[split]
        pixels = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        image_code = 0x08
        if split == "test":
            if defect == "label_above_9":
                labels[rng.integers(count)] = rng.integers(10, 256)
            elif defect == "count_mismatch":
                labels = labels[:-1]
            elif defect == "wrong_type":
                image_code = int(rng.choice([0x09, 0x0B, 0x0C, 0x0D, 0x0E]))
            else:
                pixels = pixels.reshape(count, 28 * 28)
        _write(folder, image_name, _encode(pixels, image_code), gz=False)
        _write(folder, label_name, _encode(labels, 0x08), gz=True)
    with pytest.raises(dyna.data.DataError, match="t10k"):
        dyna.data.load_mnist(folder)


# ----------------------------------------------------------------------------------- digits


@functools.cache
def _digits():
    return dyna.data.load_digits_tensors()


def test_load_digits_tensors_shapes_and_ranges():
    images, labels = _digits()
    assert images.shape == (NUM_SAMPLES, 8, 8) and images.dtype == torch.float32
    assert labels.shape == (NUM_SAMPLES,) and labels.dtype == torch.int64
    assert float(images.min()) == 0.0 and float(images.max()) == 1.0
    # 17 grey levels: every pixel is a multiple of 1/16.
    assert torch.equal(images * 16, (images * 16).round())
    assert set(labels.tolist()) == set(range(10))


@given(test_fraction=st.floats(0.0, 0.95), seed=seeds)
def test_digits_split_is_disjoint_complete_stratified_and_seeded(test_fraction, seed):
    images, labels = _digits()
    train_index, test_index = stratified_split(labels, test_fraction, seed)
    both = torch.cat([train_index, test_index])
    # Disjoint, and together every one of the 1,797 samples exactly once.
    assert torch.equal(both.sort().values, torch.arange(NUM_SAMPLES))
    assert torch.equal(train_index, train_index.sort().values)
    assert torch.equal(test_index, test_index.sort().values)
    for label in range(10):
        members = int((labels == label).sum())
        held_out = int((labels[test_index] == label).sum())
        # Stratified: each class holds out round(fraction * count) of its samples.
        assert abs(held_out - test_fraction * members) <= 0.5
    train, test = dyna.data.load_digits_split(test_fraction, seed)
    assert len(train) + len(test) == NUM_SAMPLES and len(test) == len(test_index)
    assert torch.equal(train.inputs, images[train_index])
    assert torch.equal(test.labels, labels[test_index])
    assert train.inputs.shape[1:] == (8, 8) and train.labels.dtype == torch.int64
    # Deterministic: the same seed gives the same split (the loader above drew it afresh).
    again_train, again_test = stratified_split(labels, test_fraction, seed)
    assert torch.equal(again_train, train_index) and torch.equal(again_test, test_index)


# ------------------------------------------------------------------------------------ Split


@given(
    count=st.integers(0, 8),
    features=st.lists(st.integers(1, 3), max_size=2).map(tuple),
    picks=st.lists(st.integers(0, 7), max_size=10),
    seed=seeds,
)
def test_split_length_and_subset(count, features, picks, seed):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn((count, *features), generator=generator)
    labels = torch.randint(0, 10, (count,), generator=generator)
    split = dyna.data.Split(inputs, labels)
    assert len(split) == count
    indices = torch.tensor([p for p in picks if p < count], dtype=torch.int64)
    part = split.subset(indices)
    assert isinstance(part, dyna.data.Split) and len(part) == len(indices)
    assert torch.equal(part.inputs, inputs[indices]) and torch.equal(part.labels, labels[indices])
    mask = torch.rand(count, generator=generator) < 0.5
    masked = split.subset(mask)
    assert len(masked) == int(mask.sum()) and torch.equal(masked.labels, labels[mask])


@given(
    count=st.integers(1, 6),
    other=st.integers(0, 6),
    features=st.lists(st.integers(1, 3), max_size=2).map(tuple),
)
def test_split_rejects_inputs_and_labels_of_different_lengths(count, other, features):
    assume(other != count)
    with pytest.raises(ValueError, match="inputs"):
        dyna.data.Split(torch.zeros((other, *features)), torch.zeros(count, dtype=torch.int64))
