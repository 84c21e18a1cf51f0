"""The appendix's inputs, verified before a number is used.

A certificate is used only after the checks `npi-verify check` starts with: its digest
(`read_certificate`) and the sha256 of the model file it names, relative to the certificate;
the model must also be of the certificate's task and formulation. Any failure raises BadFile:
a certificate is never dropped silently. Evaluation results are measurements, not proofs:
their structure is validated, their numbers are reported as measured.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verifier.certificate import read_certificate
from verifier.checkpoint import file_sha256, load_checkpoint
from verifier.errors import BadFile, VerifierError
from verifier.gate import require_certificates, select_certificates
from verifier.tasks import Task
from verifier.tasks.base import RECURSIVE
from verifier.traces import read_dataset

RESULTS_FORMAT = "npi-verify-results/1"


@dataclass(frozen=True)
class CertifiedModel:
    """One verified certificate with the model it names and that model's training provenance."""

    path: Path  # the certificate, as given
    data: dict[str, Any]
    task: Task
    model_path: Path  # the model, relative to the working directory
    training: dict[str, Any]
    training_traces: int | None  # None where the provenance does not establish it

    @property
    def digest(self) -> str:
        return str(self.data["digest"])

    @property
    def name(self) -> str:
        """The task, with the formulation where it is not the recursive one."""
        formulation = self.data["formulation"]
        task = self.data["task"]
        return task if formulation == RECURSIVE else f"{task} ({formulation})"

    def obligation(self, name: str) -> dict[str, Any] | None:
        return next((o for o in self.data["obligations"] if o["name"] == name), None)

    def evidence(self, name: str) -> dict[str, Any]:
        found = self.obligation(name)
        return {} if found is None else found["evidence"]


@dataclass(frozen=True)
class Point:
    size: int
    samples: int
    accuracy: float  # fraction of whole answers right


@dataclass(frozen=True)
class Series:
    """One model's accuracy by input size."""

    title: str
    formulation: str | None  # None where the results file does not say
    model: str | None  # the model file, where the results file names it
    model_sha256: str | None
    experiment: str | None  # the key of C17's experiment it reproduces (see paper.json)
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Experiment:
    """One generalization table: models of one task evaluated at the same sizes."""

    title: str
    task: str
    note: str
    source: str  # the results file and its sha256 prefix
    series: tuple[Series, ...]


def certificate_files(paths: list[Path]) -> list[Path]:
    """Certificates named directly, and the *.json files of the directories named that declare
    the certificate format (selected as `check` selects them)."""
    selection = select_certificates(paths)
    require_certificates(selection, paths)
    return selection.certificates


def load_certified(path: Path) -> CertifiedModel:
    """Verify one certificate (digest, model sha256, task) and read its model's provenance."""
    data = read_certificate(path)
    _validate_used_fields(path, data)
    model_path = Path(os.path.normpath(path.parent / data["model"]["path"]))
    if not model_path.is_file():
        raise BadFile(f"{path}: model {data['model']['path']} not found next to the certificate")
    if file_sha256(model_path) != data["model"]["sha256"]:
        raise BadFile(f"{path}: model {data['model']['path']} changed since it was certified")
    try:
        checkpoint = load_checkpoint(model_path)
    except VerifierError as error:
        raise BadFile(f"{path}: {error}") from None
    if checkpoint.task.name != data["task"] or checkpoint.formulation != data["formulation"]:
        raise BadFile(f"{path} is for {data['task']}/{data['formulation']}, its model is "
                      f"{checkpoint.task.name}/{checkpoint.formulation}")
    training = dict(checkpoint.training) if isinstance(checkpoint.training, dict) else {}
    return CertifiedModel(path, data, checkpoint.task, model_path, training,
                          _training_traces(training, model_path))


def load_certificates(paths: list[Path]) -> list[CertifiedModel]:
    """Every certificate under `paths`, verified, ordered by task, formulation and digest."""
    models = [load_certified(path) for path in certificate_files(paths)]
    return sorted(models, key=lambda m: (m.data["task"], m.data["formulation"], m.digest))


def _training_traces(training: dict[str, Any], model_path: Path) -> int | None:
    """The number of training traces: recorded in the provenance, or counted in the dataset
    it names, found beside the model or its folder and matching the recorded sha256."""
    recorded = training.get("traces")
    if isinstance(recorded, int) and not isinstance(recorded, bool):
        return recorded
    dataset, digest = training.get("dataset"), training.get("dataset_sha256")
    if not isinstance(dataset, str) or not isinstance(digest, str):
        return None
    for base in (Path.cwd(), model_path.parent, model_path.parent.parent):
        candidate = base / dataset
        if candidate.is_file() and file_sha256(candidate) == digest:
            try:
                return len(read_dataset(candidate).traces)
            except VerifierError:
                return None
    return None


def _validate_used_fields(path: Path, data: dict[str, Any]) -> None:
    """Types of every field the appendix reads; the optional ones may be absent."""

    def fail(what: str) -> None:
        raise BadFile(f"{path}: {what}")

    obligations = data["obligations"]
    if not isinstance(obligations, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) and isinstance(o.get("status"), str)
        and isinstance(o.get("evidence"), dict) for o in obligations
    ):
        fail("obligations must be a list of {name, status, evidence}")
    margin = data["min_margin"]
    if not _number(data["seconds"]) or not (margin is None or _number(margin)):
        fail("seconds and min_margin must be numbers")
    if not isinstance(data["versions"], dict):
        fail("versions must be a mapping")
    vset = data["verification_set"]
    if vset is not None:
        if not isinstance(vset.get("per_program", {}), dict) or not all(
            isinstance(v, int) for v in vset.get("per_program", {}).values()
        ):
            fail("verification_set.per_program must map programs to counts")
        if not isinstance(vset.get("witness_inputs", []), list):
            fail("verification_set.witness_inputs must be a list")
        calls = vset.get("calls", {})
        if not isinstance(calls, dict) or not all(
            isinstance(v, list) and all(isinstance(c, str) for c in v) for v in calls.values()
        ):
            fail("verification_set.calls must map programs to lists of programs")
    coverage = next((o["evidence"] for o in obligations if o["name"] == "coverage"), {})
    by_size = coverage.get("concrete_states_by_size", [])
    if not isinstance(by_size, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, int) for x in p) for p in by_size
    ):
        fail("coverage evidence concrete_states_by_size must be [size, count] pairs")
    for key in ("abstract_states", "concrete_states", "z3_queries", "unwitnessed"):
        if key in coverage and not isinstance(coverage[key], int):
            fail(f"coverage evidence {key} must be an integer")
    if not isinstance(coverage.get("hidden_predicates", []), list):
        fail("coverage evidence hidden_predicates must be a list")
    listed = coverage.get("unwitnessed_states", [])
    if not isinstance(listed, list) or not all(
        isinstance(s, dict) and isinstance(s.get("program"), str)
        and isinstance(s.get("args"), list) and isinstance(s.get("observations"), list)
        and isinstance(s.get("action"), dict)
        for s in listed
    ):
        fail("coverage evidence unwitnessed_states must list {program, args, observations, action}")
    agreement = next((o["evidence"] for o in obligations if o["name"] == "agreement"), {})
    histogram = agreement.get("margin_histogram", {"counts": []})
    if not isinstance(histogram, dict) or not isinstance(histogram.get("counts"), list) or not all(
        isinstance(p, list) and len(p) == 2 and (p[0] is None or isinstance(p[0], int))
        and isinstance(p[1], int) for p in histogram["counts"]
    ):
        fail("agreement evidence margin_histogram must hold [k, count] pairs")
    example = data.get("counterexample")
    if example is not None and not (
        isinstance(example, dict) and isinstance(example.get("step"), int)
        and isinstance(example.get("program"), str)
    ):
        fail("counterexample must record an input, a step and a program")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def load_results(paths: list[Path]) -> list[Experiment]:
    """Evaluation results: files `evaluate --json` printed, or `bench/paper_tables.py`'s
    combined results file; directories are searched for *.json."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.glob("*.json")))
        elif path.is_file():
            files.append(path)
        else:
            raise BadFile(f"results {path} does not exist")
    experiments: list[Experiment] = []
    for file in files:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise BadFile(f"cannot read results {file}: {error}") from None
        source = f"{file.name} (sha256 {file_sha256(file)[:8]})"
        if isinstance(data, dict) and data.get("format") == RESULTS_FORMAT:
            experiments.extend(_paper_tables(file, data, source))
        elif isinstance(data, dict) and set(data) >= {"task", "results"}:
            experiments.append(_evaluation(file, data, source))
        else:
            raise BadFile(f"{file} is neither `evaluate --json` output nor a {RESULTS_FORMAT} file")
    return experiments


def _points(file: Path, raw: Any) -> tuple[Point, ...]:
    if not isinstance(raw, list) or not raw:
        raise BadFile(f"{file}: results must be a non-empty list of {{size, samples, accuracy}}")
    points = []
    for entry in raw:
        try:
            point = Point(entry["size"], entry["samples"], entry["accuracy"])
        except (TypeError, KeyError):
            raise BadFile(f"{file}: each result needs size, samples and accuracy") from None
        if not (isinstance(point.size, int) and isinstance(point.samples, int) and point.samples > 0
                and _number(point.accuracy) and 0 <= point.accuracy <= 1):
            raise BadFile(f"{file}: size and samples must be positive integers, accuracy in [0, 1]")
        points.append(point)
    return tuple(sorted(points, key=lambda p: p.size))


def _evaluation(file: Path, data: dict[str, Any], source: str) -> Experiment:
    task = data["task"]
    if not isinstance(task, str):
        raise BadFile(f"{file}: task must be a string")
    formulation = data.get("formulation")
    series = Series(file.stem, formulation if isinstance(formulation, str) else None,
                    None, None, None, _points(file, data["results"]))
    return Experiment(f"{task}: {file.name}", task, "", source, (series,))


def _paper_tables(file: Path, data: dict[str, Any], source: str) -> list[Experiment]:
    tables = data.get("tables")
    if not isinstance(tables, list):
        raise BadFile(f"{file}: tables must be a list")
    experiments = []
    for table in tables:
        try:
            series = tuple(
                Series(str(c["title"]), str(c["formulation"]), str(c["model"]),
                       str(c["model_sha256"]), str(c["experiment"]), _points(file, c["results"]))
                for c in table["columns"]
            )
            experiments.append(Experiment(str(table["title"]), str(table["task"]),
                                          str(table.get("note", "")), source, series))
        except (TypeError, KeyError) as error:
            raise BadFile(f"{file}: malformed table ({error})") from None
    return experiments


SWEEP_FORMAT = "npi-verify-sweep/1"  # verifier.sweep's table (not imported: no torch here)


@dataclass(frozen=True)
class SweepRow:
    """The cells of one task, setting (the hyper-parameters the sweep varied) and size."""

    task: str
    setting: str  # e.g. "max_steps=500", or "" where the sweep varied none
    traces: int
    certified: int
    finished: int  # cells that ended with a verdict
    errors: int  # cells that ended in an error (no verdict)


@dataclass(frozen=True)
class Sweep:
    """A sweep's table (`npi-verify sweep`): fraction certified by training-set size."""

    source: str  # the file and its sha256 prefix
    seeds: int
    inputs: str  # how training inputs were drawn, in words
    rows: tuple[SweepRow, ...]


def load_sweeps(paths: list[Path]) -> list[Sweep]:
    """Sweep tables (OUT/sweep.json of `npi-verify sweep`), validated; counts are taken from
    the cells themselves, never from the file's own summary."""
    sweeps = []
    for path in paths:
        if not path.is_file():
            raise BadFile(f"sweep {path} is not a file (give OUT/sweep.json)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise BadFile(f"cannot read sweep {path}: {error}") from None
        if not isinstance(data, dict) or data.get("format") != SWEEP_FORMAT:
            raise BadFile(f"{path} is not an {SWEEP_FORMAT} file (npi-verify sweep's sweep.json)")
        try:
            sweeps.append(_sweep(path, data))
        except (TypeError, KeyError, AttributeError, ValueError) as error:
            raise BadFile(f"{path}: malformed sweep table ({type(error).__name__}: {error})") from None
    return sweeps


def _sweep(path: Path, data: dict[str, Any]) -> Sweep:
    varied = [str(name) for name in data["varied"]]
    counts: dict[tuple[str, str, int], list[int]] = {}
    for result in data["cells"]:
        cell = result["cell"]
        setting = ", ".join(f"{name}={cell['hyper'][name]}" for name in varied)
        traces = cell["traces"]
        if not isinstance(traces, int) or isinstance(traces, bool) or traces < 1:
            raise ValueError(f"traces {traces!r}")
        row = counts.setdefault((str(cell["task"]), setting, traces), [0, 0, 0])
        if result["status"] == "done":
            row[0] += result["verdict"] == "certified"
            row[1] += 1
        elif result["status"] == "error":
            row[2] += 1
        else:
            raise ValueError(f"status {result['status']!r}")
    if not counts:
        raise ValueError("no cells")
    inputs = data["config"]["inputs"]
    if inputs["source"] == "sampled":
        sizes = sorted(set(inputs["max_size"].values()))
        drawn = (f"sampled inputs of sizes up to {'/'.join(map(str, sizes))}"
                 + (", coverage-guided" if inputs["cover"] else ""))
    else:
        drawn = "the first inputs of V's witness cover"
    rows = tuple(SweepRow(task, setting, traces, *row)
                 for (task, setting, traces), row in sorted(counts.items()))
    return Sweep(f"{path.name} (sha256 {file_sha256(path)[:8]})", len(data["config"]["seeds"]),
                 drawn, rows)
