"""Model checkpoints: one `torch.save` file of tensors and plain data (design §4).

    {"format": "npi-verify-model/1", "task", "formulation", "config": {...},
     "state_dict": {...}, "training": {...}}

Loading uses `torch.load(weights_only=True)`, which never runs code from the file, and then
validates every field; anything else is refused with BadFile and a one-line reason.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from verifier.errors import BadFile, VerifierError
from verifier.npi import NPI, NPIConfig
from verifier.tasks import Task, get_task

MODEL_FORMAT = "npi-verify-model/1"
_MAX_WIDTH = 4096  # refuse configs that would allocate absurd layers
_TASK_FIXED = ("observation_sizes", "program_names", "arg_size", "arities")


@dataclass(frozen=True)
class Checkpoint:
    task: Task
    formulation: str
    model: NPI
    training: dict[str, Any]
    sha256: str


def save_checkpoint(
    path: Path, task: Task, formulation: str, model: NPI, training: dict[str, Any]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": MODEL_FORMAT,
            "task": task.name,
            "formulation": formulation,
            "config": model.config.to_json(),
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "training": training,
        },
        path,
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_checkpoint(path: Path) -> Checkpoint:
    """Load and validate a checkpoint; BadFile for anything that is not one of ours."""
    if not path.is_file():
        raise BadFile(f"model file {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickles; we refuse them anyway
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or hostile files
        raise BadFile(
            f"{path} is not a loadable npi-verify model ({type(error).__name__}: {_reason(error)})"
        ) from None
    where = str(path)
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise BadFile(f"{where} is not an npi-verify model (expected format {MODEL_FORMAT})")
    missing = {"task", "formulation", "config", "state_dict", "training"} - set(data)
    if missing:
        raise BadFile(f"{where} lacks {', '.join(sorted(missing))}")
    try:
        task = get_task(str(data["task"]))
        formulation = str(data["formulation"])
        task.routines(formulation)
    except VerifierError as error:
        raise BadFile(f"{where}: {error}") from None
    config = _config(data["config"], task, where)
    model = NPI(config)
    _load_weights(model, data["state_dict"], where)
    if not isinstance(data["training"], dict):
        raise BadFile(f"{where}: training provenance is not a mapping")
    return Checkpoint(task, formulation, model.eval(), data["training"], file_sha256(path))


def _reason(error: Exception) -> str:
    """The informative line of a torch.load error, shortened to fit one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "WeightsUnpickler error" in line:
            return line.split(":", 1)[1].split(". Please use")[0].strip()[:200]
    return lines[0][:200] if lines else "unreadable"


def _config(raw: Any, task: Task, where: str) -> NPIConfig:
    names = {f.name for f in fields(NPIConfig)}
    if not isinstance(raw, dict) or set(raw) != names:
        raise BadFile(f"{where}: model config must have exactly the fields {sorted(names)}")
    values = {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in raw.items()}
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
    if not isinstance(state, dict) or not all(
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
