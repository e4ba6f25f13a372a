"""The IDX reader: tiny files written here (plain and gzipped), every error, the real MNIST-10k."""

import os
import struct
from pathlib import Path

import pytest
import torch

from dyna.data.mnist import load_mnist, load_mnist_split, read_idx
from dyna.data.split import DataError
from tests.fake_mnist import idx_bytes, write_mnist_folder

# The MNIST-10k folder shared beside the repository, or the folder named by DYNA_MNIST.
MNIST_10K = Path(
    os.environ.get(
        "DYNA_MNIST", Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist-10k"
    )
)


def _write_folder(folder: Path, *, gz: bool, n_train: int = 5, n_test: int = 3) -> None:
    write_mnist_folder(folder, n_train, n_test, gz=gz)


@pytest.mark.parametrize("gz", [False, True])
def test_tiny_folder_round_trips(tmp_path, gz):
    _write_folder(tmp_path, gz=gz)
    images, labels = load_mnist_split(tmp_path, "train")
    assert images.shape == (5, 28, 28) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 1, 2, 3, 4]
    train, test = load_mnist(tmp_path)
    assert len(train) == 5 and len(test) == 3
    assert train.inputs.dtype == torch.float32
    torch.testing.assert_close(train.inputs * 255, images.float(), rtol=0, atol=1e-4)


def test_read_idx_hand_made_bytes(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(struct.pack(">II", 0x801, 3) + bytes([7, 0, 9]))
    assert read_idx(path).tolist() == [7, 0, 9]


def test_missing_folder_and_missing_file_name_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"does not exist.*--data"):
        load_mnist(tmp_path / "nowhere")
    _write_folder(tmp_path, gz=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.*missing"):
        load_mnist(tmp_path)


def test_bad_magic_truncation_and_disagreeing_counts(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(struct.pack(">II", 0x12345678, 1) + b"\x00")
    with pytest.raises(DataError, match="magic number 0x12345678"):
        read_idx(path)
    path.write_bytes(struct.pack(">II", 0x801, 10) + b"\x00\x01")
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx(path)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)
    gz = tmp_path / "bad.gz"
    gz.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read"):
        read_idx(gz)
    _write_folder(tmp_path / "mnist", gz=False, n_train=5)
    labels = tmp_path / "mnist" / "train-labels-idx1-ubyte"
    labels.write_bytes(idx_bytes(torch.arange(4)))
    with pytest.raises(DataError, match="5 images but 4 labels"):
        load_mnist(tmp_path / "mnist")


@pytest.mark.skipif(not MNIST_10K.is_dir(), reason="the shared MNIST-10k folder is absent")
def test_real_mnist_10k_matches_its_readme():
    train, test = load_mnist(MNIST_10K)
    assert train.inputs.shape == (8000, 28, 28) and test.inputs.shape == (2000, 28, 28)
    # Class counts from the folder's README.
    assert train.labels.bincount().tolist() == [806, 902, 787, 829, 810, 699, 777, 873, 743, 774]
    assert test.labels.bincount().tolist() == [195, 225, 204, 203, 170, 164, 237, 197, 201, 204]
    assert 0.0 == train.inputs.min() and train.inputs.max() == 1.0


def test_read_idx_hand_made_wider_types(tmp_path):
    # Big-endian by hand: int16 0x0102 = 258 and 0xFFFE = -2; float32 0x3F800000 = 1.0 and
    # 0xC0000000 = -2.0; type codes 0x0B and 0x0D, one dimension of two values.
    (tmp_path / "short.idx").write_bytes(bytes.fromhex("00000b01 00000002 0102 fffe"))
    (tmp_path / "float.idx").write_bytes(bytes.fromhex("00000d01 00000002 3f800000 c0000000"))
    short = read_idx(tmp_path / "short.idx")
    assert short.dtype == torch.int16 and short.tolist() == [258, -2]
    single = read_idx(tmp_path / "float.idx")
    assert single.dtype == torch.float32 and single.tolist() == [1.0, -2.0]


def test_non_byte_mnist_file_and_bad_path_type(tmp_path):
    _write_folder(tmp_path, gz=False)
    # The right shape but 32-bit integers: MNIST insists on unsigned bytes.
    labels = struct.pack(">II", 0x00000C01, 3) + struct.pack(">3i", 1, 2, 3)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(labels)
    with pytest.raises(DataError, match="unsigned bytes"):
        load_mnist(tmp_path)
    with pytest.raises(TypeError, match=r"path must be a str or os\.PathLike"):
        read_idx(None)
    with pytest.raises(TypeError, match=r"folder must be a str or os\.PathLike"):
        load_mnist(3)


def test_a_header_that_promises_another_size_says_it_is_not_that_kind_of_idx_file(tmp_path):
    # A labels file (count 8000, then the labels) whose magic claims three dimensions: the
    # labels are read as sizes, and the file cannot be the images its header describes.
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(struct.pack(">II", 0x803, 8000) + bytes([5, 4, 0, 1, 7, 5, 0, 5]) * 1000)
    with pytest.raises(DataError, match="not an IDX file of the kind its header says") as error:
        read_idx(path)
    assert "magic 0x00000803 with sizes (8000, 84148225, 117768197)" in str(error.value)


@pytest.mark.parametrize("gz", [False, True])
def test_images_of_another_size_are_refused_naming_the_file(tmp_path, gz):
    write_mnist_folder(tmp_path, 5, 3, gz=gz, test_size=20)
    with pytest.raises(
        DataError, match=r"t10k-images-idx3-ubyte.* holds 20x20 images, expected 28x28"
    ):
        load_mnist(tmp_path)
    with pytest.raises(
        DataError, match=r"train-images-idx3-ubyte.* holds 28x28 images, expected 20x20"
    ):
        load_mnist(tmp_path, image_shape=(20, 20))


def test_too_few_images_for_the_caller_are_refused_naming_the_file(tmp_path):
    write_mnist_folder(tmp_path, 5, 0)
    train, test = load_mnist(tmp_path)
    assert len(train) == 5 and len(test) == 0  # the reader itself takes empty files
    with pytest.raises(
        DataError, match=r"t10k-images-idx3-ubyte holds 0 test images, .* at least 1"
    ):
        load_mnist(tmp_path, min_test=1)
    with pytest.raises(
        DataError, match=r"train-images-idx3-ubyte holds 5 train images, .* at least 6"
    ):
        load_mnist(tmp_path, min_train=6)
    with pytest.raises(TypeError, match="image_shape must be a"):
        load_mnist(tmp_path, image_shape=28)
    with pytest.raises(ValueError, match="min_test must be >= 0"):
        load_mnist(tmp_path, min_test=-1)
