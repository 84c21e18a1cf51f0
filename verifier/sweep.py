"""Sweeps (`npi-verify sweep CONFIG`): train and certify every cell of a grid of tasks ×
training-set sizes × seeds × hyper-parameters, and tabulate the verdicts.

Each cell draws its training set deterministically from its seed, trains with that seed and
certifies with the library calls `npi-verify certify` makes (the model is saved as a
checkpoint, loaded back and certified). A cell's verdict is its certificate's verdict, never
upgraded. Every cell is exactly a pair of commands, e.g. for a sampled training set:

    npi-verify train --task T --count N --max-size K [--cover] --seed S --max-steps M \\
        --hidden H -o m.pt && npi-verify certify m.pt

(with the other hyper-parameters at their defaults, the checkpoint is byte-identical to the
one the cell certified: the cell records its sha256).

CONFIG is a TOML file:

    tasks = ["bubblesort", "hanoi"]     # required: task names
    traces = [1, 2, 4, 8]               # required: training-set sizes (reference traces)
    seeds = [0, 1, 2]                   # required: seeds (sampling, initialisation, batches)
    formulation = "recursive"           # optional (default recursive)

    [inputs]                            # optional: where a cell's training inputs come from
    source = "sampled"                  # "sampled" (default): `train --count N --max-size K`
                                        # with the cell's seed; "witness-cover": the first N
                                        # inputs of V's witness cover, as `train
                                        # --until-certified --start N` starts (seed-independent)
    max_size = 3                        # sampled: input sizes 1..max_size, one number or a
                                        # table per task, e.g. {bubblesort = 3, hanoi = 4}
    cover = false                       # sampled: coverage-guided inputs (`train --cover`)

    [train]                             # optional: each a value or a list of values; the grid
    max_steps = [500, 4000]             # is the product of the lists. Names: TrainConfig's
    learning_rate = 0.003               # max_steps, learning_rate, batch_size, check_every and
    d_hidden = 128                      # NPIConfig's d_state, d_hidden, d_program, d_key, layers

`verifier.grid` reads it: anything else (an unknown key, a wrong type, an empty or repeated
list) is refused with BadFile naming the key. Results go to an output folder: `cells/<cell>.json` per cell,
written atomically (temporary file + os.replace) as soon as the cell ends, and `sweep.json`,
the whole table, at the end. A cell file is reused only if it parses, is of this format and
records exactly the cell's parameters and a verdict, written by this npi-verify version;
anything else (a corrupt or foreign
file, an error cell) is run again, so an interrupted sweep resumes where it stopped. A cell
that raises is recorded as an error cell with a one-line message; the sweep goes on.

Cells run in local processes (`jobs`, one torch and BLAS thread each) or as Ray tasks. Since
training and certifying are deterministic on one thread, both give the same table except
for the cells' wall-clock seconds (TIMINGS).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verifier import __version__
from verifier.errors import VerifierError
from verifier.grid import Cell, SweepConfig, canonical, cell_of
from verifier.tasks import TASKS, get_task

SWEEP_FORMAT = "npi-verify-sweep/1"
CELL_FORMAT = "npi-verify-sweep-cell/1"
TIMINGS = ("train_seconds", "certify_seconds")  # the only fields that differ between runs
VERDICTS = ("certified", "inconclusive", "uncertifiable", "refuted")
TASK_MODULE_ORIGIN = "task module "  # how verifier.tasks.registry names a --task-module task


# -- one cell ---------------------------------------------------------------------------------

def run_cell(payload: dict[str, Any]) -> dict[str, Any]:
    """Train and certify one cell (`payload`: the cell's JSON and the --task-module files its
    task needs) on one thread; the cell's result, or an error cell. Never raises an
    Exception: what goes wrong in a cell is that cell's result. Runs in any worker."""
    cell_json = payload["cell"]
    try:
        for path in payload.get("task_modules", []):
            if cell_json["task"] not in TASKS:
                from verifier.tasks import load_task_module

                load_task_module(path)
        cell = cell_of(cell_json)
        with _one_thread():
            result = _train_and_certify(cell)
    except Exception as error:  # noqa: BLE001 - recorded in the cell, never lost
        result = {"status": "error", "error": _one_line(error), "verdict": None,
                  "train_seconds": None, "certify_seconds": None}
    return {"format": CELL_FORMAT, "npi_verify": __version__, "cell": cell_json, **result}


def _train_and_certify(cell: Cell) -> dict[str, Any]:
    from verifier.checkpoint import load_checkpoint, save_checkpoint
    from verifier.training import provenance, steps_from_records, train
    from verifier.verify import certify

    task = get_task(cell.task)
    data = training_set(cell)
    model_config, settings = cell.configs()
    started = time.perf_counter()
    model, report = train(task, steps_from_records(data.records), model_config, settings)
    train_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="npi-verify-sweep-") as folder:
        path = Path(folder) / "model.pt"
        save_checkpoint(path, task, cell.formulation, model, provenance(data, settings, report))
        checkpoint = load_checkpoint(path)
        started = time.perf_counter()
        outcome = certify(checkpoint)
        certify_seconds = time.perf_counter() - started
    check = outcome.check
    example = outcome.counterexample
    return {
        "status": "done",
        "error": None,
        "verdict": outcome.verdict.label,
        "reason": outcome.reason,
        "states": check.checked if check else None,
        "disagreements": len(check.disagreements) if check else None,
        "min_margin": _finite(check.min_margin) if check else None,
        "counterexample": task.input_to_json(example.input) if example else None,
        "inputs": [record["input"] for record in data.records],
        "training": {"steps": report.steps, "accuracy": report.accuracy,
                     "converged": report.converged, "calls": report.calls},
        "model_sha256": checkpoint.sha256,
        "weights_sha256": checkpoint.weights_sha256,
        "train_seconds": round(train_seconds, 3),
        "certify_seconds": round(certify_seconds, 3),
    }


def training_set(cell: Cell) -> Any:
    """The cell's training set: sampled exactly as `train --count N --max-size K [--cover]
    --seed S` samples it, or the first N inputs of V's witness cover, where `train
    --until-certified --start N` starts."""
    from verifier.traces import Sampling, sampled_training_set, training_set_of
    from verifier.vcache import load_or_build

    task = get_task(cell.task)
    if cell.source == "sampled":
        assert cell.max_size is not None  # parse_config requires it
        sampling = Sampling(cell.traces, 1, cell.max_size, cell.seed, cover=cell.cover)
        return sampled_training_set(task, cell.formulation, sampling)
    vset, _ = load_or_build(task, cell.formulation)
    cover = vset.witness_cover()
    if cell.traces > len(cover):
        raise VerifierError(f"{cell.traces} traces exceed the witness cover of {task.name}'s V "
                            f"({len(cover)} inputs)")
    return training_set_of(task, cell.formulation, cover[: cell.traces],
                           f"witness cover: first {cell.traces} inputs")


@contextmanager
def _one_thread() -> Iterator[None]:
    """One torch and one BLAS thread while a cell runs (its results then do not depend on the
    machine's cores, and cells running side by side do not slow each other down)."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(threads)


def _finite(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or "(no message)"
    return text if isinstance(error, VerifierError) else f"{type(error).__name__}: {text}"


# -- results on disk --------------------------------------------------------------------------

class CellStore:
    """The output folder: cells/<cell>.json per cell, sweep.json for the table."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.cells = out / "cells"

    def path(self, cell: Cell) -> Path:
        return self.cells / f"{cell.name}.json"

    def finished(self, cell: Cell) -> dict[str, Any] | None:
        """The cell's stored result if it is a finished, valid result of exactly this cell."""
        try:
            data = json.loads(self.path(cell).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return data if valid_result(data, cell) else None

    def save(self, result: dict[str, Any]) -> Path:
        self.cells.mkdir(parents=True, exist_ok=True)
        cell = cell_of(result["cell"])
        path = self.path(cell)
        write_atomically(path, json.dumps(result, sort_keys=True, indent=1) + "\n")
        return path


def valid_result(data: Any, cell: Cell) -> bool:
    """A finished result of `cell`: this format, written by this npi-verify version, exactly
    the cell's parameters, a verdict."""
    if not isinstance(data, dict) or data.get("format") != CELL_FORMAT:
        return False
    if data.get("npi_verify") != __version__:
        return False
    if data.get("cell") != cell.to_json() or data.get("status") != "done":
        return False
    if data.get("verdict") not in VERDICTS:
        return False
    return all(isinstance(data.get(k), int | float) for k in TIMINGS) and isinstance(
        data.get("training"), dict)


def write_atomically(path: Path, text: str) -> None:
    """A temporary file in the same folder, renamed into place: never half a file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# -- the sweep --------------------------------------------------------------------------------

Runner = Callable[[list[dict[str, Any]]], Iterator[dict[str, Any]]]


@dataclass
class SweepResult:
    table: dict[str, Any]  # what sweep.json holds
    reused: int  # cells whose stored result was reused
    ran: int  # cells run now
    path: Path


def run_sweep(config: SweepConfig, out: Path, runner: Runner,
              on_cell: Callable[[dict[str, Any], bool], None] | None = None) -> SweepResult:
    """Run every cell not finished in `out` with `runner`, store each result as it arrives,
    then write and return the table. `on_cell(result, reused)` is told of every cell."""
    out.mkdir(exist_ok=True)
    store = CellStore(out)
    cells = config.cells()
    results: dict[str, dict[str, Any]] = {}
    pending = []
    for cell in cells:
        stored = store.finished(cell)
        if stored is None:
            pending.append(cell)
        else:
            results[cell.key] = stored
            if on_cell:
                on_cell(stored, True)
    modules = task_modules(config.tasks)
    payloads = [{"cell": cell.to_json(), "task_modules": modules} for cell in pending]
    for result in runner(payloads):
        if result.get("status") == "done" and result.get("npi_verify") != __version__:
            result = {**result, "status": "error", "verdict": None, "error":
                      f"the worker runs npi-verify {result.get('npi_verify')}, not {__version__}"}
        store.save(result)
        results[cell_of(result["cell"]).key] = result
        if on_cell:
            on_cell(result, False)
    ordered = [results[cell.key] for cell in cells]
    table = {"format": SWEEP_FORMAT, "npi_verify": __version__, "config": config.to_json(),
             "varied": config.varied, "cells": ordered, "summary": summarize(ordered, config)}
    path = out / "sweep.json"
    write_atomically(path, json.dumps(table, sort_keys=True, indent=1) + "\n")
    return SweepResult(table, len(cells) - len(pending), len(pending), path)


def task_modules(tasks: tuple[str, ...]) -> list[str]:
    """The --task-module files that define these tasks (a worker process loads them)."""
    origins = [TASKS.origin(get_task(name)) for name in tasks]
    return sorted({os.path.abspath(o[len(TASK_MODULE_ORIGIN):]) for o in origins
                   if o.startswith(TASK_MODULE_ORIGIN)})


def summarize(results: list[dict[str, Any]], config: SweepConfig) -> list[dict[str, Any]]:
    """Per task, varied hyper-parameters and training-set size: how many cells ended how."""
    rows: dict[str, dict[str, Any]] = {}
    for result in results:
        cell = result["cell"]
        hyper = {name: cell["hyper"][name] for name in config.varied}
        key = canonical([cell["task"], hyper, cell["traces"]])
        row = rows.setdefault(key, {"task": cell["task"], "hyper": hyper,
                                    "traces": cell["traces"], "cells": 0, "errors": 0,
                                    **{v: 0 for v in VERDICTS}})
        row["cells"] += 1
        if result.get("status") == "done":
            row[result["verdict"]] += 1
        else:
            row["errors"] += 1
    return list(rows.values())


def render_summary(table: dict[str, Any]) -> str:
    """The table as Markdown: the fraction certified per task, hyper-parameters and size."""
    varied = table["varied"]
    lines = ["| task | " + "".join(f"{name} | " for name in varied)
             + "traces | certified | refuted | inconclusive | uncertifiable | errors |",
             "|---|" + "---|" * len(varied) + "---|---|---|---|---|---|"]
    for row in table["summary"]:
        done = row["cells"] - row["errors"]
        lines.append(
            f"| {row['task']} | " + "".join(f"{row['hyper'][n]} | " for n in varied)
            + f"{row['traces']} | {row['certified']}/{done} | {row['refuted']} | "
              f"{row['inconclusive']} | {row['uncertifiable']} | {row['errors']} |")
    return "\n".join(lines)

