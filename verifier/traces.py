"""Execution traces as data: the `trace --json` record, its text rendering, and datasets.

A dataset is a JSON-lines file: a header line, then one trace record per line, each exactly
what `npi-verify trace --json` prints. Files are written with sorted keys and no spaces, so
the same inputs give byte-identical files.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verifier import __version__
from verifier.errors import BadFile, PluginError, VerifierError
from verifier.runtime import Execution, StateKey, Step, call_local_steps, run_reference
from verifier.tasks import Task, get_task
from verifier.tasks.base import NOP, RECURSIVE, Action
from verifier.tasks.registry import task_label

DATASET_FORMAT = "npi-verify-traces/1"


def trace_record(task: Task, formulation: str, run: Execution) -> dict[str, Any]:
    """The `trace --json` object for one recorded execution."""
    return {
        "task": task.name,
        "formulation": formulation,
        "input": task.input_to_json(run.input),
        "output": task.output(run.env),
        "steps": [step.to_json() for step in run.steps],
    }


INDENT_CAP = 12  # call levels drawn as indentation; deeper calls also show their depth
ACTION_WIDTH = 2 * INDENT_CAP + 34  # fixed, so a trace streams line by line in constant memory


def format_trace(task: Task, steps: Iterable[Step]) -> str:
    """Human-readable trace, indented by call depth as in C17's Figures 1-2."""
    return "\n".join([trace_header(task), *(trace_line(task, step) for step in steps)])


def trace_header(task: Task) -> str:
    return f"{task.entry:<{ACTION_WIDTH}}  | observation before each step"


def trace_line(task: Task, step: Step) -> str:
    """One step: the action indented by call depth (capped at INDENT_CAP levels, beyond which
    the depth is written out), then the observation the step saw."""
    level = step.depth + 1
    deep = f"[depth {step.depth}] " if level > INDENT_CAP else ""
    text = "  " * min(level, INDENT_CAP) + deep + _format_action(task, step.action)
    return f"{text:<{ACTION_WIDTH}}  | {task.format_observation(step.observation)}"


def _format_action(task: Task, action: Action) -> str:
    if action.program == NOP:
        return "return" if action.ret else "NOP"
    shown = task.format_action(action)
    return f"{shown}; return" if action.ret else shown


def canonical_line(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Sampling:
    """How dataset inputs are drawn: `count` inputs with sizes uniform in min_size..max_size,
    or, when `sizes` is given, one input of each listed size. With `cover`, each input is
    instead picked from 25 sampled candidates of the same sizes to cover the most call-local
    states (see `greedy_cover`), so a small training set sees as many distinct steps as it can."""

    count: int
    min_size: int
    max_size: int
    seed: int
    sizes: tuple[int, ...] = ()
    cover: bool = False

    def inputs(self, task: Task) -> list[Any]:
        if self.sizes:
            if min(self.sizes) < 1:
                raise VerifierError(f"sizes must be positive, got {list(self.sizes)}")
        elif not 1 <= self.min_size <= self.max_size:
            raise VerifierError(
                f"sizes must satisfy 1 <= min-size <= max-size, got {self.min_size}..{self.max_size}"
            )
        elif self.count < 1:
            raise VerifierError(f"count must be positive, got {self.count}")
        rng = random.Random(self.seed)
        sizes = self.sizes or [rng.randint(self.min_size, self.max_size) for _ in range(self.count)]
        if not self.cover:
            return [task.sample_input(rng, size) for size in sizes]
        pool = [task.sample_input(rng, size) for size in sizes for _ in range(COVER_POOL)]
        return greedy_cover(task, pool, len(sizes))

    def provenance(self) -> dict[str, Any]:
        """What a dataset's header records about its inputs: enough to draw them again."""
        if self.sizes:
            return {"seed": self.seed, "sizes": list(self.sizes), "cover": self.cover}
        return {"seed": self.seed, "size_range": [self.min_size, self.max_size],
                "cover": self.cover}


EXPLICIT_INPUTS: dict[str, Any] = {"inputs": "explicit"}  # the provenance of given inputs


COVER_POOL = 25  # candidates sampled per requested input when covering


def call_local_states(steps: Sequence[Step]) -> set[StateKey]:
    """The (program, args, observations so far) of every step of a trace."""
    return {key for key, _ in call_local_steps(steps)}


def greedy_cover(task: Task, pool: Sequence[Any], count: int) -> list[Any]:
    """`count` inputs from `pool`, each chosen to add the most call-local states of the
    recursive reference program not yet covered (lazy greedy); ties go to the earlier one."""
    states = [call_local_states(run_reference(task, RECURSIVE, v).steps) for v in pool]
    return [pool[k] for k in greedy_cover_sets(states, count)]


def greedy_cover_sets(sets: Sequence[set | frozenset], count: int | None = None) -> list[int]:
    """Indices of sets picked greedily (most new elements first, ties to the lower index,
    lazily re-scored) until `count` are picked or nothing new remains."""
    index: dict[Any, int] = {}
    masks = [_bitmask(s, index) for s in sets]  # set k as bits: re-scoring is a popcount
    heap = [(-len(s), k) for k, s in enumerate(sets)]
    heapq.heapify(heap)
    covered = 0
    chosen: list[int] = []
    while heap and (count is None or len(chosen) < count):
        negative_gain, k = heapq.heappop(heap)
        gain = (masks[k] & ~covered).bit_count()
        if gain < -negative_gain:
            heapq.heappush(heap, (-gain, k))
            continue
        if count is None and gain == 0:
            break
        chosen.append(k)
        covered |= masks[k]
    return chosen


def _bitmask(elements: Iterable[Any], index: dict[Any, int]) -> int:
    bits = [index.setdefault(e, len(index)) for e in elements]
    if not bits:
        return 0
    buffer = bytearray(max(bits) // 8 + 1)
    for b in bits:
        buffer[b >> 3] |= 1 << (b & 7)
    return int.from_bytes(buffer, "little")


def write_dataset(
    task: Task,
    formulation: str,
    inputs: Iterable[Any],
    path: Path,
    provenance: dict[str, Any],
) -> int:
    """Run the reference program on every input and write the dataset; return the count."""
    records = [
        canonical_line(trace_record(task, formulation, run_reference(task, formulation, value)))
        for value in inputs
    ]
    header = {
        "format": DATASET_FORMAT,
        "task": task.name,
        "formulation": formulation,
        "count": len(records),
        "npi_verify": __version__,
        **provenance,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([canonical_line(header), *records]) + "\n", encoding="utf-8")
    return len(records)


@dataclass(frozen=True)
class Dataset:
    header: dict[str, Any]
    task: Task
    formulation: str
    traces: list[dict[str, Any]]
    lines: list[int]  # the file's line number of each trace
    sha256: str  # of the file's bytes


def read_dataset(path: Path) -> Dataset:
    """Read and validate a dataset file; BadFile names what is wrong."""
    try:
        content = path.read_bytes()
        lines = content.decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise BadFile(f"cannot read dataset {path}: {error}") from None
    try:
        rows = [(n, json.loads(line)) for n, line in enumerate(lines, start=1) if line.strip()]
    except json.JSONDecodeError as error:
        raise BadFile(f"{path} is not a JSON-lines file: {error}") from None
    if not rows or not isinstance(rows[0][1], dict) or rows[0][1].get("format") != DATASET_FORMAT:
        raise BadFile(f"{path} is not an npi-verify trace dataset (no {DATASET_FORMAT} header)")
    header = rows[0][1]
    task = get_task(str(header.get("task")))
    formulation = str(header.get("formulation"))
    task.routines(formulation)  # validates the formulation name
    for number, record in rows[1:]:
        _validate_record(task, formulation, record, f"{path}:{number}")
    return Dataset(header, task, formulation, [r for _, r in rows[1:]], [n for n, _ in rows[1:]],
                   hashlib.sha256(content).hexdigest())


def check_against_reference(dataset: Dataset, path: Path) -> None:
    """Re-run the reference program on every record's input; BadFile naming the file, line and
    first differing step of the first record whose recorded trace or output disagrees."""
    task, formulation = dataset.task, dataset.formulation
    for line, record in zip(dataset.lines, dataset.traces):
        where = f"{path}:{line}"
        try:
            value = task.parse_input(record["input"])
        except VerifierError as error:
            raise BadFile(f"{where}: {error}") from None
        run = run_reference(task, formulation, value)
        problems = filter(None, (task.observation_problem(s.observation) for s in run.steps))
        if (problem := next(problems, None)) is not None:
            raise PluginError(f"{task_label(task)}: {problem} (input "
                              f"{record['input']}, {where})")
        expected = trace_record(task, formulation, run)
        difference = _first_difference(task, record, expected)
        if difference is not None:
            raise BadFile(f"{where}: trace disagrees with the {formulation} reference program: "
                          f"{difference}")


def _first_difference(task: Task, recorded: dict[str, Any], expected: dict[str, Any]) -> str | None:
    for k, (mine, theirs) in enumerate(zip(recorded["steps"], expected["steps"]), start=1):
        if mine == theirs:
            continue
        (where, action), (their_where, their_action) = (_describe(task, mine),
                                                         _describe(task, theirs))
        if where == their_where:
            return f"step {k} {where}: recorded {action}, reference {their_action}"
        return f"step {k}: recorded {where}: {action}, reference {their_where}: {their_action}"
    if len(recorded["steps"]) != len(expected["steps"]):
        return (f"recorded {len(recorded['steps'])} steps, the reference program takes "
                f"{len(expected['steps'])}")
    if recorded["output"] != expected["output"]:
        return (f"recorded output {canonical_line(recorded['output'])}, reference output "
                f"{canonical_line(expected['output'])}")
    return None


def _describe(task: Task, step: Any) -> tuple[str, str]:
    """A step as its context (`in BSTEP() at depth 1, seeing ...`) and its action."""
    try:
        call = task.program(step["program"]).format_call(tuple(step["args"]))
        seen = task.format_observation(tuple(step["observation"]))
        action = _format_action(task, Action.from_json(step["action"]))
        return f"in {call} at depth {step['depth']}, seeing {seen}", action
    except (KeyError, TypeError, ValueError, IndexError, VerifierError):
        return "as", canonical_line(step)


@dataclass(frozen=True)
class TrainingSet:
    """Reference traces to train on, and where they came from (for the checkpoint)."""

    task: Task
    formulation: str
    records: list[dict[str, Any]]
    source: str  # the dataset file, or how the inputs were sampled
    sha256: str  # of the dataset file, or of the sampled records' canonical lines


def training_set_from_file(path: Path, task: Task, formulation: str | None) -> TrainingSet:
    """A dataset file's traces, each checked against the reference program."""
    data = read_dataset(path)
    if data.task is not task:
        raise VerifierError(f"{path} holds {data.task.name} traces, not {task.name}")
    if formulation not in (None, data.formulation):
        raise VerifierError(f"{path} holds {data.formulation} traces, not {formulation}")
    if not data.traces:
        raise BadFile(f"{path} holds no traces (only a header)")
    check_against_reference(data, path)
    return TrainingSet(task, data.formulation, data.traces, str(path), data.sha256)


def sampled_training_set(task: Task, formulation: str, sampling: Sampling) -> TrainingSet:
    """Reference traces of sampled inputs."""
    task.routines(formulation)
    source = (f"sampled: count={sampling.count} max_size={sampling.max_size} "
              f"cover={sampling.cover}")
    return training_set_of(task, formulation, sampling.inputs(task), source)


def training_set_of(task: Task, formulation: str, inputs: Iterable[Any], source: str) -> TrainingSet:
    """Reference traces of the given inputs; `source` says where the inputs came from."""
    records = [trace_record(task, formulation, run_reference(task, formulation, value))
               for value in inputs]
    digest = hashlib.sha256("\n".join(canonical_line(r) for r in records).encode()).hexdigest()
    return TrainingSet(task, formulation, records, source, digest)


def _validate_record(task: Task, formulation: str, record: Any, where: str) -> None:
    try:
        if record["task"] != task.name or record["formulation"] != formulation:
            raise BadFile(f"{where}: trace of {record['task']}/{record['formulation']}")
        missing = {"input", "output", "steps"} - set(record)
        if missing:
            raise BadFile(f"{where}: trace record lacks {', '.join(sorted(missing))}")
        for step in record["steps"]:
            program = task.program(step["program"])
            action = Action.from_json(step["action"])
            task.program(action.program)
            if program.primitive or len(step["observation"]) != len(task.observation_names):
                raise BadFile(f"{where}: malformed step {step}")
    except (KeyError, TypeError, ValueError, VerifierError) as error:
        if isinstance(error, BadFile):
            raise
        raise BadFile(f"{where}: malformed trace record ({error})") from None
