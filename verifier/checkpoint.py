"""Model checkpoints: write, sniff, load and validate (design §4).

New files are `npi-verify-model/2`: a safetensors file (see `verifier.weights`) whose header
metadata holds string values: `format`, `task`, `formulation`, and `config` and `training`
as canonical JSON. Nothing time- or host-dependent goes in, so the same `train` command and
seed give the same bytes. Files of the earlier `npi-verify-model/1` (a `torch.save` dict of
tensors and plain data) are still read, with `torch.load(weights_only=True)`; no code path
unpickles anything for a safetensors file. The format is told by the file's first bytes,
never its name. Anything else is refused with BadFile and a one-line reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from verifier.errors import BadFile, VerifierError
from verifier.npi import NPI, NPIConfig
from verifier.tasks import Task, get_task
from verifier.weights import (
    SAFETENSORS_HEAD,
    ZIP_MAGIC,
    canonical_json,
    dtype_name,
    encode_safetensors,
    header_length,
    looks_like_safetensors,
    weights_digest,
)

MODEL_FORMAT = "npi-verify-model/2"
LEGACY_FORMAT = "npi-verify-model/1"
MAX_HEADER_BYTES = 1 << 20  # a model's header is a few kB; refuse absurd ones before parsing
_METADATA = ("config", "format", "formulation", "task", "training")
_MAX_WIDTH = 4096  # refuse configs that would allocate absurd layers
_TASK_FIXED = ("observation_sizes", "program_names", "arg_size", "arities", "numeric_slots",
               "numeric_scale")
_NUMERIC_FIELDS = {"numeric_slots", "numeric_scale"}  # absent from finite-alphabet configs


@dataclass(frozen=True)
class Checkpoint:
    task: Task
    formulation: str
    model: NPI
    training: dict[str, Any]
    sha256: str  # of the file's bytes
    format: str = MODEL_FORMAT

    @property
    def weights_sha256(self) -> str:
        """Canonical digest of config and weights: equal for equal networks in any format."""
        return model_weights_sha256(self.model)


def model_weights_sha256(model: NPI) -> str:
    tensors = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    return weights_digest(model.config.to_json(), tensors)


def describe_checkpoint(checkpoint: Checkpoint) -> dict[str, Any]:
    """What `npi-verify info` shows: identity, network, provenance and both digests."""
    return {
        "format": checkpoint.format,
        "task": checkpoint.task.name,
        "formulation": checkpoint.formulation,
        "config": json.loads(canonical_json(checkpoint.model.config.to_json())),
        "parameters": sum(p.numel() for p in checkpoint.model.parameters()),
        "training": checkpoint.training,
        "sha256": checkpoint.sha256,
        "weights_sha256": checkpoint.weights_sha256,
    }


def checkpoint_bytes(task: Task, formulation: str, model: NPI, training: dict[str, Any]) -> bytes:
    """The `npi-verify-model/2` file of a model; byte-identical for identical arguments."""
    try:
        metadata = {
            "format": MODEL_FORMAT,
            "task": task.name,
            "formulation": formulation,
            "config": canonical_json(model.config.to_json()),
            "training": canonical_json(training),
        }
    except (TypeError, ValueError) as error:  # a caller's bug, not the user's input
        raise ValueError(f"training provenance must be plain JSON data: {error}") from None
    tensors = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    return encode_safetensors(tensors, metadata)


def save_checkpoint(
    path: Path, task: Task, formulation: str, model: NPI, training: dict[str, Any]
) -> None:
    """Write the checkpoint; the directory must exist (nothing is created silently)."""
    path.write_bytes(checkpoint_bytes(task, formulation, model, training))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_checkpoint(path: Path) -> Checkpoint:
    """Load and validate a checkpoint of either format; BadFile for anything else."""
    if path.is_dir():
        raise BadFile(f"{path} is a directory, not a model file")
    if not path.exists():
        raise BadFile(f"model file {path} does not exist")
    try:
        with path.open("rb") as handle:
            head = handle.read(SAFETENSORS_HEAD)
            size = os.fstat(handle.fileno()).st_size
    except OSError as error:
        raise BadFile(f"cannot read model file {path}: {error.strerror or error}") from None
    if not head:
        raise BadFile(f"{path} is empty, not an npi-verify model file")
    if head.startswith(ZIP_MAGIC):
        raw, form = _read_legacy(path), LEGACY_FORMAT
    elif looks_like_safetensors(head):
        raw, form = _read_safetensors_metadata(path, head, size), MODEL_FORMAT
    else:
        raise BadFile(f"{path} is not an npi-verify model file "
                      "(neither safetensors nor a torch checkpoint)")
    where = str(path)
    try:
        task = get_task(str(raw["task"]))
        formulation = str(raw["formulation"])
        task.routines(formulation)
    except VerifierError as error:
        raise BadFile(f"{where}: {error}") from None
    model = NPI(_config(raw["config"], task, where))
    legacy = form == LEGACY_FORMAT
    weights = raw["state_dict"] if legacy else _read_safetensors_weights(path, model)
    _load_weights(model, weights, where)
    training = raw["training"]
    if not isinstance(training, dict):
        raise BadFile(f"{where}: training provenance is not a mapping")
    try:
        canonical_json(training)
    except (TypeError, ValueError):
        raise BadFile(f"{where}: training provenance is not plain JSON data") from None
    return Checkpoint(task, formulation, model.eval(), training, file_sha256(path), form)


def _read_legacy(path: Path) -> dict[str, Any]:
    """The fields of an `npi-verify-model/1` file (a torch zip, loaded without unpickling code)."""
    try:
        with warnings.catch_warnings():  # torch warns about odd pickles; we refuse them anyway
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 (torch raises many types for corrupt files)
        raise BadFile(f"{path} is not an npi-verify model file "
                      f"({type(error).__name__}: {_reason(error)})") from None
    if not isinstance(data, dict) or data.get("format") != LEGACY_FORMAT:
        raise BadFile(f"{path} is not an npi-verify model file "
                      f"(a torch file without format {LEGACY_FORMAT})")
    missing = {"task", "formulation", "config", "state_dict", "training"} - set(data)
    if missing:
        raise BadFile(f"{path} lacks {', '.join(sorted(missing))}")
    return data


def _read_safetensors_metadata(path: Path, head: bytes, size: int) -> dict[str, Any]:
    """The decoded header metadata of an `npi-verify-model/2` file."""
    length = header_length(head)
    if length > MAX_HEADER_BYTES:
        raise BadFile(f"{path} is not an npi-verify model file (safetensors header of {length} "
                      f"bytes; at most {MAX_HEADER_BYTES} allowed)")
    if 8 + length > size:
        raise BadFile(f"{path} is not an npi-verify model file (truncated: header of {length} "
                      f"bytes, file of {size})")
    metadata = _safetensors(path, lambda f: f.metadata())
    if not metadata or metadata.get("format") != MODEL_FORMAT:
        found = f"format {metadata['format']!r}" if metadata and "format" in metadata else (
            "no npi-verify metadata")
        raise BadFile(f"{path} is not an npi-verify model file (safetensors with {found}; "
                      f"expected {MODEL_FORMAT})")
    if sorted(metadata) != list(_METADATA):
        raise BadFile(f"{path}: header metadata must have exactly the keys {list(_METADATA)}")
    raw: dict[str, Any] = dict(metadata)
    for key in ("config", "training"):
        try:
            raw[key] = json.loads(metadata[key], parse_constant=_no_constant)
        except (ValueError, RecursionError):
            raise BadFile(f"{path}: header metadata {key} is not valid JSON") from None
    return raw


def _read_safetensors_weights(path: Path, model: NPI) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, each checked against the model before it is read."""

    def read(handle: Any) -> dict[str, torch.Tensor]:
        expected = model.state_dict()
        names = set(handle.keys())
        if names != set(expected):
            extra, missing = sorted(names - set(expected)), sorted(set(expected) - names)
            raise BadFile(f"{path}: tensors do not match the NPI's parameters (unexpected "
                          f"{extra[:3]}, missing {missing[:3]})")
        for name in sorted(names):
            found = handle.get_slice(name)
            shape, dtype = tuple(found.get_shape()), found.get_dtype()
            want_shape, want_dtype = tuple(expected[name].shape), dtype_name(expected[name].numpy())
            if shape != want_shape or dtype != want_dtype:
                raise BadFile(f"{path}: parameter {name} has shape {shape} {dtype}, expected "
                              f"{want_shape} {want_dtype}")
        return {name: handle.get_tensor(name) for name in sorted(names)}

    return _safetensors(path, read)


def _safetensors(path: Path, use: Callable[[Any], Any]) -> Any:
    """Apply `use` to the opened file; the library's parse errors become BadFile."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return use(handle)
    except VerifierError:
        raise
    except Exception as error:  # noqa: BLE001 (SafetensorError, or torch's for odd tensors)
        raise BadFile(f"{path} is not an npi-verify model file (malformed safetensors: "
                      f"{_reason(error)})") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _reason(error: Exception) -> str:
    """The informative line of a loader's error, shortened to fit one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "WeightsUnpickler error" in line:
            return line.split(":", 1)[1].split(". Please use")[0].strip()[:200]
    return lines[0][:200] if lines else "unreadable"


def _config(raw: Any, task: Task, where: str) -> NPIConfig:
    names = {f.name for f in fields(NPIConfig)}
    if not isinstance(raw, dict) or set(raw) not in (names, names - _NUMERIC_FIELDS):
        raise BadFile(f"{where}: model config must have exactly the fields {sorted(names)}")
    values = {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in raw.items()}
    values = {"numeric_slots": (), "numeric_scale": 1, **values}
    expected = NPIConfig.for_task(task)
    for name in _TASK_FIXED:
        if values[name] != getattr(expected, name):
            raise BadFile(f"{where}: config {name} does not match task {task.name}")
    for name in names - set(_TASK_FIXED):
        value = values[name]
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= _MAX_WIDTH:
            raise BadFile(f"{where}: config {name} must be an integer in 1..{_MAX_WIDTH}")
    if values["layers"] > 8:
        raise BadFile(f"{where}: config layers must be at most 8")
    return NPIConfig(**values)


def _load_weights(model: NPI, state: Any, where: str) -> None:
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise BadFile(f"{where}: state_dict must map parameter names to tensors")
    expected = model.state_dict()
    if set(state) != set(expected):
        raise BadFile(f"{where}: state_dict does not have the NPI's parameters")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape or tensor.dtype != expected[name].dtype:
            raise BadFile(f"{where}: parameter {name} has shape {tuple(tensor.shape)} "
                          f"{tensor.dtype}, expected {tuple(expected[name].shape)}")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise BadFile(f"{where}: parameter {name} holds non-finite values")
    model.load_state_dict(state, strict=True)
