"""A sweep's grid: the CONFIG file (schema: verifier/sweep.py) parsed and checked, and the
cells it spans, each with everything that determines its result. No torch."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verifier.config import NPIConfig, TrainConfig
from verifier.errors import BadFile, VerifierError
from verifier.tasks import get_task
from verifier.tasks.base import FORMULATIONS, RECURSIVE

SOURCES = ("sampled", "witness-cover")
TRAIN_FIELDS = ("max_steps", "learning_rate", "batch_size", "check_every")
MODEL_FIELDS = ("d_state", "d_hidden", "d_program", "d_key", "layers")
_TOP_KEYS = {"tasks", "traces", "seeds", "formulation", "inputs", "train"}
_INPUT_KEYS = {"source", "max_size", "cover"}


@dataclass(frozen=True)
class Cell:
    """One point of the grid: everything that determines its result."""

    task: str
    formulation: str
    traces: int
    seed: int
    source: str
    max_size: int | None  # sampled inputs have sizes 1..max_size (None: witness cover)
    cover: bool
    hyper: tuple[tuple[str, int | float], ...]  # every hyper-parameter, resolved, sorted

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["hyper"] = dict(self.hyper)
        return data

    @property
    def key(self) -> str:
        return hashlib.sha256(canonical(self.to_json()).encode()).hexdigest()

    @property
    def name(self) -> str:
        """The cell's file stem: readable, and unique by the digest of its parameters."""
        return f"{self.task}-{self.formulation}-n{self.traces}-s{self.seed}-{self.key[:12]}"

    def configs(self) -> tuple[NPIConfig, TrainConfig]:
        task = get_task(self.task)
        hyper = dict(self.hyper)
        model = NPIConfig.for_task(task, **{k: hyper[k] for k in MODEL_FIELDS})
        return model, TrainConfig(seed=self.seed, **{k: hyper[k] for k in TRAIN_FIELDS})


@dataclass(frozen=True)
class SweepConfig:
    tasks: tuple[str, ...]
    formulation: str
    traces: tuple[int, ...]
    seeds: tuple[int, ...]
    source: str
    max_size: tuple[tuple[str, int], ...]  # per task (sampled); empty for the witness cover
    cover: bool
    grid: tuple[tuple[str, tuple[int | float, ...]], ...]  # hyper-parameter -> values

    def cells(self) -> list[Cell]:
        """Every cell, in table order: task, hyper-parameters, training-set size, seed."""
        names = [name for name, _ in self.grid]
        combos = list(itertools.product(*(values for _, values in self.grid)))
        sizes = dict(self.max_size)
        return [
            Cell(task, self.formulation, n, seed, self.source, sizes.get(task), self.cover,
                 tuple(sorted(zip(names, combo))))
            for task in self.tasks for combo in combos for n in self.traces for seed in self.seeds
        ]

    @property
    def varied(self) -> list[str]:
        """The hyper-parameters given more than one value."""
        return [name for name, values in self.grid if len(values) > 1]

    def to_json(self) -> dict[str, Any]:
        return {"tasks": list(self.tasks), "formulation": self.formulation,
                "traces": list(self.traces), "seeds": list(self.seeds),
                "inputs": {"source": self.source, "max_size": dict(self.max_size),
                           "cover": self.cover},
                "train": {name: list(values) for name, values in self.grid}}


def cell_of(data: Mapping[str, Any]) -> Cell:
    """The cell whose `to_json()` is `data`."""
    return Cell(**{**data, "hyper": tuple(sorted(data["hyper"].items()))})


# -- the configuration file -------------------------------------------------------------------

def read_config(path: Path) -> SweepConfig:
    """Parse and validate a sweep's TOML file; BadFile says what is wrong in one line."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise BadFile(f"cannot read sweep config {path}: {error.strerror or error}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise BadFile(f"{path} is not a TOML file: {error}") from None
    try:
        return parse_config(data)
    except VerifierError as error:
        raise BadFile(f"{path}: {error}") from None


def parse_config(data: Mapping[str, Any]) -> SweepConfig:
    """The sweep a parsed TOML document describes; VerifierError names a bad key."""
    _known(data, _TOP_KEYS, "key")
    for required in ("tasks", "traces", "seeds"):
        if required not in data:
            raise VerifierError(f"missing key {required!r}")
    tasks = tuple(_list(data["tasks"], "tasks", str))
    for name in tasks:
        get_task(name)  # UnknownName lists the known tasks
    formulation = data.get("formulation", RECURSIVE.value)
    if formulation not in FORMULATIONS:
        raise VerifierError(f"formulation must be one of {', '.join(FORMULATIONS)}, "
                            f"got {formulation!r}")
    for name in tasks:
        get_task(name).routines(formulation)
    traces = tuple(_list(data["traces"], "traces", int, least=1))
    seeds = tuple(_list(data["seeds"], "seeds", int, least=0))
    inputs = _table(data.get("inputs", {}), "inputs")
    _known(inputs, _INPUT_KEYS, "key in [inputs]")
    source = inputs.get("source", "sampled")
    if source not in SOURCES:
        raise VerifierError(f"inputs.source must be one of {', '.join(SOURCES)}, got {source!r}")
    cover = inputs.get("cover", False)
    if not isinstance(cover, bool):
        raise VerifierError(f"inputs.cover must be true or false, got {cover!r}")
    if source == "sampled":
        max_size = _max_sizes(inputs.get("max_size"), tasks)
    elif "max_size" in inputs or "cover" in inputs:
        raise VerifierError("inputs.max_size and inputs.cover are for source = \"sampled\"; "
                            "the witness cover's inputs are V's")
    else:
        max_size = ()
    return SweepConfig(tasks, formulation, traces, seeds, source, max_size, cover,
                       _grid(_table(data.get("train", {}), "train")))


def _max_sizes(raw: Any, tasks: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
    if raw is None:
        raise VerifierError("inputs.max_size is required for sampled inputs (sizes 1..max_size)")
    if isinstance(raw, dict):
        _known(raw, set(tasks), "task in inputs.max_size (not in tasks)")
        missing = [t for t in tasks if t not in raw]
        if missing:
            raise VerifierError(f"inputs.max_size gives no size for {', '.join(missing)}")
        sizes = {t: _integer(raw[t], f"inputs.max_size.{t}", 1) for t in tasks}
    else:
        size = _integer(raw, "inputs.max_size", 1)
        sizes = {t: size for t in tasks}
    return tuple((t, sizes[t]) for t in tasks)


def _grid(train: Mapping[str, Any]) -> tuple[tuple[str, tuple[int | float, ...]], ...]:
    _known(train, set(TRAIN_FIELDS + MODEL_FIELDS), "hyper-parameter in [train]")
    defaults = {**{f: getattr(TrainConfig, f) for f in TRAIN_FIELDS},
                **{f.name: f.default for f in dataclasses.fields(NPIConfig) if f.name in MODEL_FIELDS}}
    grid = []
    for name in TRAIN_FIELDS + MODEL_FIELDS:
        raw = train.get(name, defaults[name])
        values = raw if isinstance(raw, list) else [raw]
        kind = float if name == "learning_rate" else int
        checked = _list(values, f"train.{name}", kind, least=0 if name == "max_steps" else 1)
        if name == "learning_rate":
            checked = [float(v) for v in checked]
            if not all(0 < v < math.inf for v in checked):
                raise VerifierError(f"train.learning_rate must be positive, got {raw!r}")
        if name in MODEL_FIELDS and max(checked) > 4096:
            raise VerifierError(f"train.{name} must be at most 4096, got {raw!r}")
        grid.append((name, tuple(checked)))
    return tuple(grid)


def _list(raw: Any, key: str, kind: type, least: int | None = None) -> list[Any]:
    if not isinstance(raw, list) or not raw:
        raise VerifierError(f"{key} must be a non-empty list, got {raw!r}")
    values = [_integer(v, key, least) if kind is int else v for v in raw]
    for value in values:
        ok = isinstance(value, str) if kind is str else (
            isinstance(value, int | float) and not isinstance(value, bool))
        if not ok:
            raise VerifierError(f"{key} must hold {kind.__name__}s, got {value!r}")
    if len(set(values)) != len(values):
        raise VerifierError(f"{key} lists a value twice: {raw!r}")
    return values


def _integer(value: Any, key: str, least: int | None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise VerifierError(f"{key} must hold integers, got {value!r}")
    if least is not None and value < least:
        raise VerifierError(f"{key} must be at least {least}, got {value}")
    return value


def _table(raw: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(raw, dict):
        raise VerifierError(f"{key} must be a table ([{key}]), got {raw!r}")
    return raw


def _known(data: Mapping[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise VerifierError(f"unknown {what} {unknown[0]!r} (known: {', '.join(sorted(allowed))})")


def canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))
