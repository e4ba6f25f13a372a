"""Checkpoints that lose nothing: safetensors for the tensors, a JSON sidecar for the rest.

A checkpoint ``step-00000123`` in a run's ``checkpoints/`` folder is two files:

- ``step-00000123.safetensors``: every tensor (model parameters and buffers under ``model.``,
  the optimizer's per-parameter state under ``optimizer.``, the random generator states under
  ``rng.``). safetensors holds raw tensors only: loading executes nothing (no pickle).
- ``step-00000123.json``: the format version, the experiment, the resolved configuration, the
  sha256 of the tensor file, and the non-tensor state (optimizer hyper-parameters, the position
  in the run, the metrics so far), and last the sha256 of all of that (``sidecar_sha256``).

Both are written to a temporary file in the same folder, flushed, fsynced and renamed over
their final name (``os.replace`` is atomic). The tensor file goes first and the sidecar names
its checksum, so a sidecar on disk always describes a complete tensor file: a run killed at any
moment leaves either the previous checkpoint or the new one, never half of one.

Loading trusts neither file: it checks the format version, that the sidecar names its own tensor
file (``step-00000123.safetensors`` beside it, so no path in a sidecar can reach outside its
folder), both checksums, and the tensors, and raises :class:`CheckpointError` with a one-line
message otherwise. The sidecar's own checksum catches a hand-edited or damaged sidecar; what it
holds is then checked field by field by its reader (:func:`dyna.train.trainer.check_sidecar`),
since a checksum proves only that the file is the one written.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

# Version 2 adds ``sidecar_sha256``; version 1 sidecars (without it) are still read.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_NAME = re.compile(r"^step-(\d{8,})\.json$")
_TEMP_PREFIX = ".tmp-"
_WHAT_TO_PASS = "pass a run folder written by `dyna train`, its checkpoints/ or a step-*.json file"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not match the run; the message says which."""


class CheckpointMismatch(CheckpointError):
    """A valid checkpoint of a different experiment or configuration (a usage error)."""


class DiskFullError(OSError):
    """Writing a file failed for lack of space (ENOSPC) or quota; temporary files are removed."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_checksum(sidecar: Mapping[str, Any]) -> str:
    """The sha256 of ``sidecar`` without its ``sidecar_sha256`` key, as canonical JSON.

    Canonical: sorted keys, no spaces, computed on the JSON round trip (tuples become lists),
    so the writer and a reader of the file hash the same text.
    """
    content = {key: value for key, value in sidecar.items() if key != "sidecar_sha256"}
    text = json.dumps(json.loads(json.dumps(content)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _fsync_directory(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open folders; the rename is still atomic
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file, fsync, ``os.replace``.

    On any ``OSError`` the temporary file is removed; a full disk (ENOSPC, EDQUOT) is raised as
    :class:`DiskFullError` with a message naming the file and the fix.
    """
    path = Path(path)
    temporary = path.with_name(f"{_TEMP_PREFIX}{path.name}.{os.getpid()}")
    try:
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(
                error.errno,
                f"no space left to write {path}: free disk space or choose another --out",
            ) from None
        raise
    _fsync_directory(path.parent)


def write_json_atomic(path: str | Path, value: Any) -> None:
    """``value`` as indented JSON, written with :func:`write_bytes_atomic`."""
    write_bytes_atomic(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def save_tensors_atomic(path: str | Path, tensors: Mapping[str, torch.Tensor]) -> str:
    """Write ``tensors`` as a safetensors file atomically; returns its sha256."""
    from safetensors.torch import save

    data = save({name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()})
    write_bytes_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def flatten_optimizer(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors (``optimizer.<param>.<key>``) and JSON."""
    tensors: dict[str, torch.Tensor] = {}
    rest: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for parameter, entries in state["state"].items():
        plain = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{parameter}.{key}"] = value
            else:
                plain[key] = value
        rest["state"][str(parameter)] = plain
    return tensors, rest


def unflatten_optimizer(tensors: Mapping[str, torch.Tensor], rest: Mapping[str, Any]) -> dict:
    """The inverse of :func:`flatten_optimizer`."""
    state: dict[int, dict[str, Any]] = {
        int(parameter): dict(plain) for parameter, plain in rest["state"].items()
    }
    for name, tensor in tensors.items():
        if not name.startswith("optimizer."):
            continue
        _, parameter, key = name.split(".", 2)
        state.setdefault(int(parameter), {})[key] = tensor
    # JSON turns tuples (AdamW's betas) into lists; torch's own state dicts hold tuples.
    groups = [
        {key: tuple(value) if isinstance(value, list) and key != "params" else value
         for key, value in group.items()}
        for group in rest["param_groups"]
    ]  # fmt: skip
    return {"state": state, "param_groups": groups}


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def save_checkpoint(
    folder: str | Path,
    step: int,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, Any],
    *,
    keep: int = 1,
) -> Path:
    """Write checkpoint ``step`` (tensors first, then the sidecar); keep the newest ``keep``.

    Returns the sidecar's path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(step)
    tensor_path = folder / f"{name}.safetensors"
    checksum = save_tensors_atomic(tensor_path, tensors)
    sidecar = dict(metadata)
    sidecar.update(
        {"format_version": FORMAT_VERSION, "tensors": tensor_path.name, "sha256": checksum}
    )
    sidecar["sidecar_sha256"] = sidecar_checksum(sidecar)
    try:
        write_json_atomic(folder / f"{name}.json", sidecar)
    except OSError:
        tensor_path.unlink(missing_ok=True)
        raise
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".safetensors").unlink(missing_ok=True)
    return folder / f"{name}.json"


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Sidecars of the checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [
        (int(match.group(1)), path)
        for path in folder.iterdir()
        if (match := _NAME.match(path.name))
    ]
    return [path for _, path in sorted(found)]


def remove_temporary_files(folder: str | Path) -> None:
    """Delete the temporary files a killed writer left behind in ``folder``."""
    folder = Path(folder)
    if folder.is_dir():
        for path in folder.iterdir():
            if path.name.startswith(_TEMP_PREFIX):
                path.unlink(missing_ok=True)


def resolve_checkpoint(path: str | Path) -> Path:
    """The sidecar for ``path``: a sidecar, its tensor file, a ``checkpoints/`` folder or a run."""
    path = Path(path)
    if path.is_dir():
        for folder in (path / "checkpoints", path):
            found = list_checkpoints(folder)
            if found:
                return found[-1]
        raise CheckpointError(f"no checkpoint in {path}: {_WHAT_TO_PASS}")
    if path.suffix == ".safetensors":
        path = path.with_suffix(".json")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: check the path")
    return path


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and verify a checkpoint: returns (tensors on the CPU, sidecar).

    Raises:
        CheckpointError: unreadable sidecar, unknown format version, an edited sidecar, a
            sidecar naming another tensor file, a missing tensor file, a checksum mismatch or
            unreadable tensors.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    sidecar_path = resolve_checkpoint(path)
    try:
        metadata = json.loads(sidecar_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        if _NAME.match(sidecar_path.name):
            raise CheckpointError(
                f"checkpoint {sidecar_path} is corrupt (unreadable JSON: {error}): restore it "
                f"or start a new run"
            ) from None
        # Not a name dyna writes: the user's own file, so no advice to delete or restore it.
        raise CheckpointError(
            f"{sidecar_path} is not a checkpoint (unreadable JSON: {error}): {_WHAT_TO_PASS}"
        ) from None
    check_envelope(sidecar_path, metadata)
    tensor_path = sidecar_path.with_name(metadata["tensors"])
    try:
        data = tensor_path.read_bytes()
    except OSError:
        raise CheckpointError(
            f"checkpoint tensors {tensor_path} are missing: the checkpoint is incomplete, "
            f"delete {sidecar_path.name} or start a new run"
        ) from None
    if hashlib.sha256(data).hexdigest() != metadata["sha256"]:
        raise CheckpointError(
            f"checkpoint {tensor_path} is corrupt (sha256 does not match its sidecar): "
            f"restore it or start a new run"
        )
    try:
        tensors = load(data)
    except (SafetensorError, ValueError) as error:
        raise CheckpointError(f"checkpoint {tensor_path} is unreadable ({error})") from None
    return tensors, metadata


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_envelope(sidecar_path: Path, metadata: object) -> None:
    """Check what every sidecar holds: version, tensor file name, checksums.

    Raises:
        CheckpointError: one line naming the sidecar, the field and what was expected.
    """
    if not isinstance(metadata, dict) or "format_version" not in metadata:
        raise CheckpointError(
            f"{sidecar_path} is not a checkpoint (a JSON file without format_version): "
            f"{_WHAT_TO_PASS}"
        )
    version = metadata["format_version"]
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"checkpoint {sidecar_path} has format version {version!r}, this dyna reads "
            f"version {' or '.join(map(str, READABLE_VERSIONS))}: use the dyna that wrote it"
        )
    fix = "restore the checkpoint or start a new run"
    if version >= 2:
        stored = metadata.get("sidecar_sha256")
        if not isinstance(stored, str) or stored != sidecar_checksum(metadata):
            raise CheckpointError(
                f"checkpoint {sidecar_path} was edited or damaged (its sidecar_sha256 does not "
                f"match its content): {fix}"
            )
    # The writer names the tensor file after the sidecar; any other name (a path, "..", an
    # absolute path) could only make the reader open a file outside the checkpoint.
    expected = sidecar_path.with_suffix(".safetensors").name
    if metadata.get("tensors") != expected:
        raise CheckpointError(
            f"checkpoint {sidecar_path}: field 'tensors' must be {expected!r} (the tensor file "
            f"beside it), got {metadata.get('tensors', '<missing>')!r}: {fix}"
        )
    checksum = metadata.get("sha256")
    if not isinstance(checksum, str) or not _SHA256.match(checksum):
        raise CheckpointError(
            f"checkpoint {sidecar_path}: field 'sha256' must be 64 lower-case hex digits, got "
            f"{checksum!r}: {fix}"
        )


def rng_tensors() -> dict[str, torch.Tensor]:
    """The global random generator states (CPU, and every CUDA device) as uint8 tensors."""
    tensors = {"rng.torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = state
    return tensors


def restore_rng(tensors: Mapping[str, torch.Tensor]) -> None:
    """Set the generator states saved by :func:`rng_tensors`."""
    if "rng.torch_cpu" in tensors:
        torch.set_rng_state(tensors["rng.torch_cpu"])
    cuda = sorted(
        (int(name.rsplit(".", 1)[1]), state)
        for name, state in tensors.items()
        if name.startswith("rng.cuda.")
    )
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([state for _, state in cuda][: torch.cuda.device_count()])
