"""A content-addressed cache of whole proofs (`verifier.induction`), beside the V cache.

The lemmas of termination and reference correctness depend on the task, its formulation, V
and the code that states and solves them, never on the model: the proof gate re-checking
several models of a task, or the same model again, asks Z3 the same few hundred queries each
time. An entry is named by the sha256 of its key: the V cache key (`verifier.vcache`: task,
formulation, semantics, predicates, versions, the sources V depends on), the sha256 of V's
states with their reference actions, and the sha256 of every source file the lemmas depend
on. It is stored like a V cache entry (gzip-compressed JSON, one header line with the key
and the digests of header and payload, written atomically) in the same folder, and read
back only when every digest matches; anything else is ignored and proved anew, never trusted.

Only proofs whose every lemma was decided are stored: a solver `unknown`, which a busy
machine can cause, is proved anew next time rather than remembered.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from verifier.errors import VerifierError
from verifier.induction import UNKNOWN, Induction, Lemma, prove
from verifier.runtime import StateKey
from verifier.smt import Semantics
from verifier.tasks.base import Action, Task
from verifier.vcache import (
    BUILT, REUSED, cache_dir, cache_key, canonical, read_sealed, sha256, store, write_sealed,
)

PROOF_FORMAT = "npi-verify-proof-cache/1"
# Modules whose code decides the lemmas and their answers (V's own are in the V cache key).
PROOF_MODULES = (
    "verifier.induction",
    "verifier.proofcache",
    "verifier.smt",
    "verifier.smt.contracts",
    "verifier.smt.instantiate",
    "verifier.smt.script",
    "verifier.smt.terms",
)


def proof_key(task: Task, formulation: str, states: Mapping[StateKey, Action]) -> dict[str, Any]:
    """Everything the lemmas depend on; two equal keys state and decide the same lemmas."""
    sources = {}
    for name in PROOF_MODULES:
        __import__(name)
        sources[name] = sha256(Path(sys.modules[name].__file__ or "").read_bytes())
    rows = sorted([program, list(args), [list(o) for o in observed], action.to_json()]
                  for (program, args, observed), action in states.items())
    return {
        "format": PROOF_FORMAT,
        "vset": cache_key(task, formulation),
        "states_sha256": sha256(canonical(rows)),
        "sources": sources,
    }


def entry_path(key: dict[str, Any]) -> Path:
    task, formulation = key["vset"]["task"], key["vset"]["formulation"]
    return cache_dir() / "proofs" / f"{task}-{formulation}-{sha256(canonical(key))}.json.gz"


def load_or_prove(
    task: Task, formulation: str, semantics: Semantics, states: Mapping[StateKey, Action]
) -> tuple[Induction, str, str]:
    """The proof from the cache when a valid entry for exactly this key exists (REUSED), else
    proved now and stored where it can be (BUILT); with why an entry was not used or not
    stored ("" when nothing needs saying)."""
    started = time.perf_counter()
    key = proof_key(task, formulation, states)
    path = entry_path(key)
    found, why = read_entry(path, key)
    if found is not None:
        found.seconds = time.perf_counter() - started
        return found, REUSED, ""
    proof = prove(task, formulation, semantics, states)
    unknown = any(lemma.status == UNKNOWN and lemma.smt2 for lemma in proof.lemmas)
    why = store(lambda: write_entry(path, key, proof),
                "a lemma's query was answered unknown" if unknown else None, why)
    return proof, BUILT, why


def write_entry(path: Path, key: dict[str, Any], proof: Induction) -> None:
    write_sealed(path, PROOF_FORMAT, key, encode(proof))


def read_entry(path: Path, key: dict[str, Any]) -> tuple[Induction | None, str]:
    """The entry's proof, or None and why it cannot be used (absent, corrupt, edited, foreign)."""
    data, why = read_sealed(path, PROOF_FORMAT, key, "proof entry", "proof cache")
    if data is None:
        return None, why
    try:
        return decode(data), ""
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, VerifierError) as error:
        return None, f"corrupt proof entry ignored ({type(error).__name__})"


def encode(proof: Induction) -> dict[str, Any]:
    """The proof as JSON: every lemma with its queries, and what the certificate reports."""
    return {
        "lemmas": [{
            "obligation": lemma.obligation, "kind": lemma.kind, "name": lemma.name,
            "status": lemma.status, "detail": lemma.detail, "smt2": list(lemma.smt2),
            "routine": None if lemma.routine is None else [lemma.routine[0], list(lemma.routine[1])],
            "actions": [a.to_json() for a in lemma.actions],
        } for lemma in proof.lemmas],
        "routines": proof.routines,
        "paths": proof.paths,
        "recursive_sites": proof.recursive_sites,
        "contracts": proof.contracts,
        "specification": proof.specification,
    }


def decode(data: dict[str, Any]) -> Induction:
    """The inverse of `encode` (the time is the time it takes now); raises on anything
    malformed."""
    lemmas = []
    for raw in data["lemmas"]:
        routine = raw["routine"]
        lemmas.append(Lemma(
            str(raw["obligation"]), str(raw["kind"]), str(raw["name"]), str(raw["status"]),
            str(raw["detail"]), tuple(str(s) for s in raw["smt2"]),
            None if routine is None else (str(routine[0]), tuple(int(a) for a in routine[1])),
            tuple(Action.from_json(a) for a in raw["actions"]),
        ))
    contracts = {str(k): str(v) for k, v in data["contracts"].items()}
    return Induction(lemmas, int(data["routines"]), int(data["paths"]),
                     int(data["recursive_sites"]), contracts, str(data["specification"]))
