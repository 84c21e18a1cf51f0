"""A content-addressed cache of verification sets, so that V is built once per machine.

An entry is named by the sha256 of its key: the task, the formulation, the runtime semantics,
the task's Z3 semantics (class and version) and hidden predicates, the npi-verify and Z3
versions, and the sha256 of every source file the construction of V depends on (the task
module, its Z3 module, vset, smt, runtime, ...). Any change to any of them gives another key,
so an entry can only be found by the code that would build exactly the same V.

Entries live in `$NPI_VERIFY_CACHE_DIR`, else `$XDG_CACHE_HOME/npi-verify`, else
`~/.cache/npi-verify`. A file is gzip-compressed JSON (never pickle): one header line with the
key, the sha256 of the payload and a digest of the header itself, then the payload. It is
written to a temporary file and renamed into place, so a reader never sees half an entry. An
entry whose digests do not match its content (corrupt or edited), whose key is not the one
asked for (foreign: another version, another task) or whose payload does not decode is
ignored and rebuilt, never trusted.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verifier import __version__
from verifier.errors import VerifierError
from verifier.runtime import SEMANTICS, StateKey
from verifier.smt import SolverStats, semantics_for, z3_version
from verifier.tasks.base import Action, Task
from verifier.tasks.registry import definition_of
from verifier.vset.build import build_vset
from verifier.vset.concrete import ConcreteStates
from verifier.vset.crosscheck import CrossCheck
from verifier.vset.fixpoint import AbstractStates
from verifier.vset.result import LargeReferenceRuns, VerificationSet

CACHE_FORMAT = "npi-verify-vset-cache/1"
ENV_VAR = "NPI_VERIFY_CACHE_DIR"
BUILT, REUSED, OFF = "built", "reused", "off"
# Modules whose code decides what V is; the task's own definition is digested per task.
CORE_MODULES = (
    "verifier.runtime",
    "verifier.smt",
    "verifier.smt.product",
    "verifier.smt.discover",
    "verifier.tasks.registry",
    "verifier.tasks.base",
    "verifier.traces",
    "verifier.vcache",
    "verifier.vset.build",
    "verifier.vset.concrete",
    "verifier.vset.crosscheck",
    "verifier.vset.fixpoint",
    "verifier.vset.result",
)


@dataclass(frozen=True)
class CacheInfo:
    """What the cache did for one verification set."""

    status: str  # BUILT, REUSED or OFF (bypassed)
    key_digest: str
    note: str = ""  # why an entry was rebuilt, or why a built one was not stored

    def evidence(self) -> dict[str, Any]:
        data: dict[str, Any] = {"vset_cache": self.status, "vset_cache_key": self.key_digest}
        if self.note:
            data["vset_cache_note"] = self.note
        return data


def cache_dir() -> Path:
    """Where entries live: $NPI_VERIFY_CACHE_DIR, $XDG_CACHE_HOME/npi-verify, ~/.cache/npi-verify."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "npi-verify"


def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_key(task: Task, formulation: str) -> dict[str, Any]:
    """Everything V depends on; two equal keys build the same V."""
    semantics = semantics_for(task)
    sources = {}
    for name in CORE_MODULES:
        __import__(name)
        sources[name] = sha256(Path(sys.modules[name].__file__ or "").read_bytes())
    return {
        "format": CACHE_FORMAT,
        "task": task.name,
        "formulation": formulation,
        "runtime_semantics": SEMANTICS,
        "z3_semantics": None if semantics is None
        else f"{type(semantics).__name__}/{semantics.version}",
        "predicates": list(semantics.hidden_names) if semantics is not None else [],
        "npi-verify": __version__,
        "z3": z3_version(),
        "sources": sources,
        "task_definition": definition_of(task).to_json(),
    }


def entry_path(key: dict[str, Any]) -> Path:
    return cache_dir() / "vsets" / f"{key['task']}-{key['formulation']}-{sha256(canonical(key))}.json.gz"


def load_or_build(
    task: Task,
    formulation: str,
    progress: Callable[[str], None] | None = None,
    use_cache: bool = True,
) -> tuple[VerificationSet, CacheInfo]:
    """V from the cache when a valid entry for exactly this key exists, else built (and
    stored, where the cache directory can be written). `use_cache=False` neither reads nor
    writes the cache."""
    key = cache_key(task, formulation)
    digest = sha256(canonical(key))
    if not use_cache:
        return build_vset(task, formulation, progress=progress), CacheInfo(OFF, digest)
    path = entry_path(key)
    vset, why = read_entry(path, task, key)
    if vset is not None:
        return vset, CacheInfo(REUSED, digest)
    vset = build_vset(task, formulation, progress=progress)
    vset.witness_cover()  # computed now, so that the entry holds them
    vset.large_reference_runs()
    why = store(lambda: write_entry(path, key, vset), _not_storable(vset, key), why)
    return vset, CacheInfo(BUILT, digest, why)


def store(write: Callable[[], None], problem: str | None, why: str) -> str:
    """Write an entry (`write`) unless `problem` says it must not be stored; returns `why`
    (what happened to the entry that was there) with the reason it was not stored, if not."""
    if problem is None:
        try:
            write()
        except (OSError, ValueError) as error:
            problem = str(error)
    if problem is not None:
        why = f"{why}; not stored: {problem}" if why else f"not stored: {problem}"
    return why


def _not_storable(vset: VerificationSet, key: dict[str, Any]) -> str | None:
    """Why `vset` must not be kept, or None. A V whose coverage proof did not go through (a
    solver `unknown`, which a busy machine can cause, or a cross-check mismatch) is rebuilt
    every time rather than remembered; a V that does not match its key (built without the Z3
    semantics the key names) is never stored."""
    if (vset.abstract is None) != (key["z3_semantics"] is None):
        return "V was not built with the Z3 semantics its key names"
    if vset.abstract is not None and not vset.coverage_proved:
        return "its coverage proof did not go through"
    return None


def write_entry(path: Path, key: dict[str, Any], vset: VerificationSet) -> None:
    write_sealed(path, CACHE_FORMAT, key, encode(vset))


def write_sealed(path: Path, format_name: str, key: dict[str, Any], data: Any) -> None:
    """A cache entry: a header sealing the format, the key and the payload's digest, then the
    payload (`data` as canonical JSON); written atomically, a temporary file in the same
    folder renamed into place."""
    payload = canonical(data)
    header = {"format": format_name, "key": key, "key_digest": sha256(canonical(key)),
              "payload_sha256": sha256(payload)}
    header["digest"] = sha256(canonical(header))
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json.gz")
    try:
        with os.fdopen(handle, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
            out.write(canonical(header) + b"\n" + payload)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_entry(path: Path, task: Task, key: dict[str, Any]) -> tuple[VerificationSet | None, str]:
    """The entry's V, or None and why it cannot be used (absent, corrupt, edited, foreign)."""
    data, why = read_sealed(path, CACHE_FORMAT, key, "entry", "V cache")
    if data is None:
        return None, why
    try:
        vset = decode(data, task, key["formulation"])
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, VerifierError) as error:
        return None, f"corrupt entry ignored ({type(error).__name__})"
    problem = _not_storable(vset, key)
    if problem is not None:
        return None, f"foreign entry ignored ({problem})"
    return vset, ""


def read_sealed(
    path: Path, format_name: str, key: dict[str, Any], noun: str, cache: str
) -> tuple[Any | None, str]:
    """The payload (parsed JSON) of an entry `write_sealed` wrote for `key`, or None and why it
    cannot be used (absent: no reason; corrupt, edited or foreign: a reason naming the
    `noun`, e.g. "corrupt entry ignored")."""
    if not path.exists():
        return None, ""
    try:
        data = gzip.decompress(path.read_bytes())
        head, _, payload = data.partition(b"\n")
        header = json.loads(head)
    except (OSError, EOFError, zlib.error, ValueError) as error:
        return None, f"corrupt {noun} ignored ({type(error).__name__})"
    if not isinstance(header, dict) or header.get("format") != format_name:
        return None, f"foreign {noun} ignored (not an npi-verify {cache} entry)"
    claimed = header.get("digest")
    if claimed != sha256(canonical({k: v for k, v in header.items() if k != "digest"})):
        return None, f"edited {noun} ignored (header digest does not match)"
    if header.get("key") != key or header.get("key_digest") != sha256(canonical(key)):
        return None, f"foreign {noun} ignored (its key is not this one)"
    if header.get("payload_sha256") != sha256(payload):
        return None, f"edited {noun} ignored (payload digest does not match)"
    try:
        return json.loads(payload), ""
    except ValueError as error:
        return None, f"corrupt {noun} ignored ({type(error).__name__})"


def encode(vset: VerificationSet) -> dict[str, Any]:
    """V as JSON: states in order, actions in a table, inputs once, key sets as indices."""
    task = vset.task
    action_ids: dict[Action, int] = {}
    state_ids: dict[StateKey, int] = {}
    states = []
    for key, action in vset.states.items():
        state_ids[key] = len(states)
        program, args, observations = key
        states.append([program, list(args), [list(o) for o in observations],
                       action_ids.setdefault(action, len(action_ids))])
    concrete = vset.concrete
    inputs, input_ids = [], {}
    for value, _ in concrete.per_input:
        input_ids.setdefault(repr(value), len(inputs))
        inputs.append(_input_json(task, value))
    missing = [k for k in concrete.actions if k not in state_ids]
    if missing:
        raise ValueError("concrete states outside V")
    return {
        "actions": [a.to_json() for a in action_ids],
        "states": states,
        "abstract": None if vset.abstract is None else {
            "contexts": vset.abstract.contexts,
            "queries": vset.abstract.stats.queries,
            "unknown": vset.abstract.stats.unknown,
            "z3_seconds": vset.abstract.stats.seconds,
            "seconds": vset.abstract.seconds,
        },
        "concrete": {
            "inputs": inputs,
            "keys": [sorted(state_ids[k] for k in keys) for _, keys in concrete.per_input],
            "actions": [[state_ids[k], action_ids.setdefault(a, len(action_ids))]
                        for k, a in concrete.actions.items()],
            "witness": [input_ids[repr(concrete.witness[k])] for k in concrete.actions],
            "counts_by_size": [list(c) for c in concrete.counts_by_size],
            "inputs_run": concrete.inputs_run,
            "saturated": concrete.saturated,
            "non_halting": concrete.non_halting,
            "wrong": concrete.wrong,
        },
        "cross": None if vset.cross is None else {
            "steps": vset.cross.steps, "mismatches": vset.cross.mismatches,
        },
        "predicates": list(vset.predicates),
        "seconds": vset.seconds,
        "cover": [_input_json(task, v) for v in vset.witness_cover()],
        "large": vars(vset.large_reference_runs()),
    }


def _input_json(task: Task, value: Any) -> Any:
    """The input as JSON, refusing (ValueError: not stored) one that does not read back as
    itself."""
    data = task.input_to_json(value)
    if repr(task.parse_input(data)) != repr(value):
        raise ValueError(f"{task.name} input {data} does not read back as itself")
    return data


def decode(data: dict[str, Any], task: Task, formulation: str) -> VerificationSet:
    """The inverse of `encode`; raises on anything malformed."""
    actions = [Action.from_json(a) for a in data["actions"]]
    keys: list[StateKey] = []
    states: dict[StateKey, Action] = {}
    for program, args, observations, action in data["states"]:
        key = (str(program), tuple(int(a) for a in args),
               tuple(tuple(int(v) for v in o) for o in observations))
        keys.append(key)
        states[key] = actions[action]
    if len(states) != len(keys):
        raise ValueError("repeated states")
    raw = data["concrete"]
    inputs = [task.parse_input(value) for value in raw["inputs"]]
    concrete = ConcreteStates(
        per_input=[(inputs[k], frozenset(keys[i] for i in ids)) for k, ids in enumerate(raw["keys"])],
        counts_by_size=[(int(s), int(n)) for s, n in raw["counts_by_size"]],
        inputs_run=int(raw["inputs_run"]),
        saturated=bool(raw["saturated"]),
        non_halting=int(raw["non_halting"]),
        wrong=int(raw["wrong"]),
    )
    if len(raw["witness"]) != len(raw["actions"]) or len(raw["keys"]) != len(inputs):
        raise ValueError("concrete tables differ in length")
    for (state, action), witness in zip(raw["actions"], raw["witness"]):
        concrete.actions[keys[state]] = actions[action]
        concrete.witness[keys[state]] = inputs[witness]
    abstract = None
    if data["abstract"] is not None:
        raw = data["abstract"]
        stats = SolverStats(int(raw["queries"]), int(raw["unknown"]), float(raw["z3_seconds"]))
        abstract = AbstractStates(dict(states), int(raw["contexts"]), stats, float(raw["seconds"]))
    cross = None
    if data["cross"] is not None:
        cross = CrossCheck(int(data["cross"]["steps"]), [str(m) for m in data["cross"]["mismatches"]])
    vset = VerificationSet(task, formulation, states, concrete, abstract,
                           tuple(str(p) for p in data["predicates"]), cross, float(data["seconds"]))
    vset._cover = [task.parse_input(value) for value in data["cover"]]
    large = data["large"]
    vset._large = LargeReferenceRuns(int(large["inputs"]), int(large["size"]),
                                     int(large["non_halting"]), int(large["wrong"]))
    return vset
