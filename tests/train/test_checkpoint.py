"""Checkpoints: safetensors + JSON sidecar, atomic writes, verification, full-disk handling."""

import errno
import json
import os

import pytest
import torch
from torch import nn

from dyna.train import checkpoint as ckpt
from dyna.train.checkpoint import (
    CheckpointError,
    DiskFullError,
    flatten_optimizer,
    list_checkpoints,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
    unflatten_optimizer,
    write_bytes_atomic,
)


def _trained_optimizer():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.randn(4, 3)).square().sum().backward()
        optimizer.step()
    return model, optimizer


def test_optimizer_state_round_trips_through_tensors_and_json():
    model, optimizer = _trained_optimizer()
    tensors, rest = flatten_optimizer(optimizer.state_dict())
    assert set(tensors) == {
        f"optimizer.{i}.{k}" for i in (0, 1) for k in ("step", "exp_avg", "exp_avg_sq")
    }
    rest = json.loads(json.dumps(rest))  # the sidecar is JSON
    restored = torch.optim.AdamW(model.parameters(), lr=0.5)
    restored.load_state_dict(unflatten_optimizer(tensors, rest))
    original = optimizer.state_dict()
    assert restored.state_dict()["param_groups"] == original["param_groups"]
    for index, entries in original["state"].items():
        for key, value in entries.items():
            assert torch.equal(restored.state_dict()["state"][index][key], value)


def test_save_load_keeps_the_newest_and_verifies(tmp_path):
    tensors = {"model.w": torch.arange(6.0).reshape(2, 3), "rng.torch_cpu": torch.get_rng_state()}
    save_checkpoint(tmp_path, 5, tensors, {"experiment": "x"})
    path = save_checkpoint(tmp_path, 12, tensors, {"experiment": "x", "note": [1, 2]})
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000012.json"]
    assert sorted(os.listdir(tmp_path)) == ["step-00000012.json", "step-00000012.safetensors"]
    loaded, metadata = load_checkpoint(tmp_path)
    assert torch.equal(loaded["model.w"], tensors["model.w"])
    assert metadata["note"] == [1, 2] and metadata["format_version"] == ckpt.FORMAT_VERSION
    assert resolve_checkpoint(path.with_suffix(".safetensors")) == path
    # The tensor file holds raw safetensors: an 8-byte header length, then a JSON header.
    raw = path.with_suffix(".safetensors").read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    assert header["model.w"]["shape"] == [2, 3] and header["model.w"]["dtype"] == "F32"


def test_corruption_and_mismatch_are_clear_errors(tmp_path):
    path = save_checkpoint(tmp_path, 1, {"model.w": torch.ones(3)}, {"experiment": "x"})
    tensor_path = path.with_suffix(".safetensors")
    data = bytearray(tensor_path.read_bytes())
    data[-1] ^= 0xFF
    tensor_path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"corrupt.*sha256"):
        load_checkpoint(path)
    tensor_path.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(path)
    path.write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable JSON"):
        load_checkpoint(path)
    path.write_text(json.dumps({"format_version": 99}))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="sub does not exist"):
        load_checkpoint(tmp_path / "sub")
    (tmp_path / "sub").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        load_checkpoint(tmp_path / "sub")


def test_full_disk_removes_the_temporary_file_and_says_so(tmp_path, monkeypatch):
    def no_space(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.os, "fsync", no_space)
    with pytest.raises(DiskFullError, match=r"no space left to write .*free disk space"):
        save_checkpoint(tmp_path, 3, {"model.w": torch.ones(2)}, {"experiment": "x"})
    assert os.listdir(tmp_path) == []
    with pytest.raises(DiskFullError):
        write_bytes_atomic(tmp_path / "file", b"data")
    assert os.listdir(tmp_path) == []


def test_a_failed_sidecar_removes_its_tensor_file(tmp_path, monkeypatch):
    original = ckpt.write_json_atomic

    def fail(path, value):
        raise DiskFullError(errno.ENOSPC, "no space")

    monkeypatch.setattr(ckpt, "write_json_atomic", fail)
    with pytest.raises(DiskFullError):
        save_checkpoint(tmp_path, 3, {"model.w": torch.ones(2)}, {"experiment": "x"})
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(ckpt, "write_json_atomic", original)


def _rewrite(path, change):
    """Apply ``change`` to the sidecar at ``path`` and store it with a matching checksum."""
    metadata = json.loads(path.read_text())
    change(metadata)
    metadata["sidecar_sha256"] = ckpt.sidecar_checksum(metadata)
    path.write_text(json.dumps(metadata))


def test_the_sidecar_is_covered_by_its_own_checksum(tmp_path):
    path = save_checkpoint(tmp_path, 1, {"model.w": torch.ones(3)}, {"experiment": "x"})
    metadata = json.loads(path.read_text())
    assert metadata["sidecar_sha256"] == ckpt.sidecar_checksum(metadata)
    metadata["experiment"] = "y"
    path.write_text(json.dumps(metadata))
    with pytest.raises(CheckpointError, match=r"edited or damaged .*sidecar_sha256"):
        load_checkpoint(path)
    _rewrite(path, lambda m: None)
    assert load_checkpoint(path)[1]["experiment"] == "y"


@pytest.mark.parametrize(
    "tensors",
    [None, "", "../../x", "/etc/passwd", "sub/step-00000001.safetensors", 3, "step-2.safetensors"],
)
def test_a_sidecar_names_only_its_own_tensor_file(tmp_path, tensors):
    path = save_checkpoint(tmp_path, 1, {"model.w": torch.ones(3)}, {"experiment": "x"})

    def change(metadata):
        if tensors is None:
            del metadata["tensors"]
        else:
            metadata["tensors"] = tensors

    _rewrite(path, change)
    with pytest.raises(CheckpointError, match=r"field 'tensors' must be 'step-00000001\."):
        load_checkpoint(path)


@pytest.mark.parametrize("checksum", [None, 5, "abc", "A" * 64])
def test_a_malformed_tensor_checksum_is_refused(tmp_path, checksum):
    path = save_checkpoint(tmp_path, 1, {"model.w": torch.ones(3)}, {"experiment": "x"})
    _rewrite(path, lambda metadata: metadata.update(sha256=checksum))
    with pytest.raises(CheckpointError, match="field 'sha256' must be 64 lower-case hex"):
        load_checkpoint(path)


def test_a_version_1_sidecar_without_its_checksum_still_loads(tmp_path):
    path = save_checkpoint(tmp_path, 1, {"model.w": torch.ones(3)}, {"experiment": "x"})
    metadata = json.loads(path.read_text())
    del metadata["sidecar_sha256"]
    path.write_text(json.dumps(dict(metadata, format_version=1)))
    assert load_checkpoint(path)[1]["experiment"] == "x"
    path.write_text(json.dumps(dict(metadata, format_version=True)))
    with pytest.raises(CheckpointError, match="format version True"):
        load_checkpoint(path)


def test_a_file_that_is_not_a_checkpoint_is_never_called_corrupt(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("some text\n")
    for content in ("some text\n", "[1, 2]", '{"a": 1}'):
        notes.write_text(content)
        with pytest.raises(CheckpointError) as error:
            load_checkpoint(notes)
        message = str(error.value)
        assert "is not a checkpoint" in message
        assert "delete" not in message and "corrupt" not in message
