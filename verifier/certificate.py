"""Certificates (design §6): schema, canonical JSON with a digest, write, read and re-check.

The digest is the sha256 of the canonical JSON (sorted keys, no spaces) of the certificate
without its `digest` field, so any edit of the file is detected.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from verifier import __version__
from verifier.bundle import BUNDLE_FORMAT
from verifier.checkpoint import Checkpoint, file_sha256, load_checkpoint
from verifier.errors import BadFile, EditedCertificate, PluginError, UnknownName, VerifierError
from verifier.runtime import SEMANTICS, StateKey
from verifier.smt import z3_version
from verifier.tasks import Task, get_task
from verifier.tasks.registry import definition_of
from verifier.tasks.base import NOP, Action
from verifier.verify import Outcome, Verdict, certify

CERTIFICATE_FORMAT = "npi-verify-certificate/1"
REQUIRED = ("format", "task", "task_definition", "formulation", "verdict", "model", "semantics",
            "verification_set", "obligations", "min_margin", "versions", "seconds",
            "digest")  # fmt: skip


def canonical(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def digest_of(data: dict[str, Any]) -> str:
    body = {k: v for k, v in data.items() if k != "digest"}
    return hashlib.sha256(canonical(body).encode()).hexdigest()


def build_certificate(
    checkpoint: Checkpoint, model_path: Path, outcome: Outcome, bundle: bool = True
) -> dict[str, Any]:
    """The certificate of a certification; with `bundle`, its proof bundle too (a Certificate
    carrying the bytes for `write_certificate`; building it re-explores V's fixed point)."""
    task = checkpoint.task
    vset = outcome.vset
    data: dict[str, Any] = {
        "format": CERTIFICATE_FORMAT,
        "task": task.name,
        "task_definition": definition_of(task).to_json(),
        "formulation": checkpoint.formulation,
        "verdict": outcome.verdict.label,
        "reason": outcome.reason,
        "model": {"path": str(model_path), "sha256": checkpoint.sha256,
                  "weights_sha256": checkpoint.weights_sha256},
        "semantics": SEMANTICS,
        "verification_set": None if vset is None else {
            "call_local_states": len(vset.states),
            "per_program": vset.per_program(),
            "tree_nodes": vset.tree_nodes(),
            "unwitnessed": len(vset.unwitnessed),
            "exact": vset.exact,
            "witness_inputs": [task.input_to_json(v) for v in vset.witness_cover()],
            "calls": call_graph(task, vset.states),
        },
        "obligations": [
            {"name": o.name, "status": o.status, "evidence": o.evidence} for o in outcome.obligations
        ],
        "min_margin": None if outcome.check is None else _finite(outcome.check.min_margin),
        "versions": {"npi-verify": __version__, "torch": str(torch.__version__), "z3": z3_version()},
        "seconds": round(outcome.seconds, 2),
    }
    if outcome.counterexample is not None:
        example = outcome.counterexample
        data["counterexample"] = {
            "input": task.input_to_json(example.input),
            "step": example.step,
            "program": example.program,
            "observations": example.observations,
            "model_action": example.model_action.to_json(),
            "reference_action": example.reference_action.to_json(),
            "model_output": example.model_output,
            "model_halted": example.model_halted,
            "output_correct": example.output_correct,
            "summary": example.describe(task),
        }
    made = _bundle(checkpoint, outcome) if bundle else _Bundle(
        {"format": BUNDLE_FORMAT, "unavailable": "not written (no certificate file)"}, None)
    data["bundle"] = made.record
    data["digest"] = digest_of(data)
    return Certificate(data, bundle=made.data)


class Certificate(dict):  # type: ignore[type-arg]
    """A certificate's fields, carrying the bytes of its proof bundle (None where there is
    none) for `write_certificate` to put beside it."""

    def __init__(self, data: dict[str, Any], bundle: bytes | None = None) -> None:
        super().__init__(data)
        self.bundle = bundle


@dataclass(frozen=True)
class _Bundle:
    record: dict[str, Any]
    data: bytes | None


def _bundle(checkpoint: Checkpoint, outcome: Outcome) -> _Bundle:
    """The proof bundle of a certification (`verifier.bundle`) and the certificate's record of
    it: its file name suffix and sha256, or why there is none."""
    from verifier.bundle import build_bundle, bundle_sha256, bundle_unavailable

    reason = "the verdict is not certified" if outcome.verdict != Verdict.CERTIFIED else (
        bundle_unavailable(checkpoint, outcome.vset))
    if reason is not None:
        return _Bundle({"format": BUNDLE_FORMAT, "unavailable": reason}, None)
    assert outcome.vset is not None
    try:
        data = build_bundle(checkpoint, outcome.vset, outcome.induction)
    except VerifierError as error:  # the fixed point cannot be recorded: say why, certify on
        return _Bundle({"format": BUNDLE_FORMAT, "unavailable": str(error)}, None)
    return _Bundle({"format": BUNDLE_FORMAT, "sha256": bundle_sha256(data)}, data)


def call_graph(task: Task, states: Mapping[StateKey, Action]) -> dict[str, list[str]]:
    """Each program of V -> the non-primitive programs its reference actions call on V
    (read off the reference programs: BSTEP -> BSTEP, COMPSWAP, RSHIFT in bubble sort)."""
    edges: dict[str, set[str]] = {}
    for (caller, _, _), action in states.items():
        callees = edges.setdefault(caller, set())
        if action.program != NOP and not task.program(action.program).primitive:
            callees.add(action.program)
    return {caller: sorted(callees) for caller, callees in sorted(edges.items())}


def _finite(value: float) -> float | None:
    return None if value == float("inf") else round(value, 6)


def write_certificate(path: Path, data: dict[str, Any]) -> None:
    """Write the certificate, and its proof bundle beside it (`verifier.bundle.bundle_path`:
    `x.json` -> `x.bundle.json.gz`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bundle = getattr(data, "bundle", None)
    if bundle is not None:
        from verifier.bundle import bundle_path

        bundle_path(path).write_bytes(bundle)
    path.write_text(json.dumps(data, sort_keys=True, indent=2) + "\n", encoding="utf-8")


def read_certificate(path: Path) -> dict[str, Any]:
    """Parse a certificate and verify its digest; BadFile for anything edited or malformed."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadFile(f"cannot read certificate {path}: {error}") from None
    if not isinstance(data, dict) or data.get("format") != CERTIFICATE_FORMAT:
        raise BadFile(f"{path} is not an npi-verify certificate ({CERTIFICATE_FORMAT})")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        older = " (written by an older npi-verify: certify the model again)" if (
            missing == ["task_definition"]) else ""
        raise BadFile(f"{path} lacks {', '.join(missing)}{older}")
    if data["digest"] != digest_of(data):
        raise EditedCertificate(f"{path} was edited: its digest does not match its content")
    _validate_fields(path, data)
    return data


def _validate_fields(path: Path, data: dict[str, Any]) -> None:
    """Field types, checked even where the digest matches: the digest detects accidental and
    naive edits, but anyone can recompute it, so nothing in the file is trusted blindly."""
    model = data["model"]
    if not (isinstance(model, dict) and isinstance(model.get("path"), str)
            and isinstance(model.get("sha256"), str) and len(model["sha256"]) == 64):
        raise BadFile(f"{path}: model must name a path and a sha256")
    weights = model.get("weights_sha256")  # absent in certificates written before it existed
    if weights is not None and not (isinstance(weights, str) and len(weights) == 64):
        raise BadFile(f"{path}: model weights_sha256 must be a sha256")
    for name in ("task", "formulation", "verdict"):
        if not isinstance(data[name], str):
            raise BadFile(f"{path}: {name} must be a string")
    definition = data["task_definition"]
    if not (isinstance(definition, dict)
            and all(isinstance(definition.get(k), str) for k in ("module", "origin", "sha256"))
            and len(definition["sha256"]) == 64):
        raise BadFile(f"{path}: task_definition must name a module, an origin and a sha256")
    if data["verdict"] not in {v.label for v in Verdict}:
        raise BadFile(f"{path}: unknown verdict {data['verdict']!r}")
    vset = data["verification_set"]
    if vset is not None and not (
        isinstance(vset, dict) and isinstance(vset.get("call_local_states"), int)
    ):
        raise BadFile(f"{path}: verification_set must record call_local_states")


# Why a certificate fails the gate: the rule id (SARIF `ruleId`, JUnit `type`) and its meaning.
FAILURES: dict[str, str] = {
    "certificate-malformed": "the file is not a readable npi-verify certificate (exit 2)",
    "certificate-edited": "the certificate's digest does not match its content (exit 2)",
    "task-unknown": "the certified task is not defined here (its plug-in is not installed and no "
                    "--task-module defines it), or its definition is broken (exit 2)",
    "task-changed": "the task's definition (the source of its package or module) differs from "
                    "the certified one (exit 1)",
    "model-invalid": "the certified model cannot be loaded, or is for another task or "
                     "formulation (exit 2)",
    "model-missing": "the certified model is not found where the certificate says (exit 1)",
    "model-changed": "the model's weights (or, in a certificate without a weights digest, its "
                     "file's sha256) differ from the certified ones (exit 1)",
    "verdict-changed": "certifying the model again gives another verdict (exit 1)",
    "states-changed": "certifying the model again finds another number of call-local states "
                      "(exit 1)",
    "obligation-changed": "certifying the model again gives an obligation another status, e.g. "
                          "termination no longer proved (exit 1)",
    "not-certified": "the certificate holds, but its verdict is not `certified` (exit 3)",
    "budget-exceeded": "the --timeout budget ran out before this re-check finished (exit 4)",
}


@dataclass(frozen=True)
class Recheck:
    """What the gate found for one certificate.

    `task` is None where the certificate could not be trusted (unreadable or edited); `verdict`
    and `states` are what certifying the model again found, None where the gate stopped
    before that; `seconds` is the wall time this re-check took."""

    path: Path
    code: int  # 0 holds and certified; 1 no longer holds; 2 edited/malformed; 3 not certified
    message: str
    failure: str | None = None  # a key of FAILURES; None when the certificate holds
    task: str | None = None
    verdict: str | None = None
    states: int | None = None
    seconds: float = 0.0
    vset_cache: str | None = None  # "built", "reused" or "off": what the V cache did


def recheck(path: Path, use_cache: bool = True) -> Recheck:
    """Verify the digest and the model's identity, then certify the model again and compare.

    The model is identified by its file's sha256 and, in certificates that record it, by the
    canonical digest of its config and weights. When only the file differs (a checkpoint
    re-saved, converted to another format, or retrained with other provenance metadata) the
    proof still concerns exactly these weights: the re-check proceeds and says "same weights,
    different file". `use_cache=False` rebuilds V rather than reusing it from the V cache."""
    start = time.perf_counter()
    result = _recheck(path, use_cache)
    return replace(result, seconds=time.perf_counter() - start)


def _recheck(path: Path, use_cache: bool) -> Recheck:
    try:
        data = read_certificate(path)
    except EditedCertificate as error:
        return Recheck(path, 2, str(error), "certificate-edited")
    except BadFile as error:
        return Recheck(path, 2, str(error), "certificate-malformed")
    task = data["task"]
    definition = data["task_definition"]
    try:
        current = definition_of(get_task(task))
    except PluginError as error:  # defined, but broken
        return Recheck(path, 2, str(error), "task-unknown", task)
    except UnknownName:
        return Recheck(path, 2, f"task {task} is not defined here (it was defined by "
                       f"{definition['origin']}, module {definition['module']}); install its "
                       "plug-in or pass --task-module PATH", "task-unknown", task)
    if current.sha256 != definition["sha256"]:
        return Recheck(path, 1, f"the definition of task {task} changed since it was certified "
                       f"(module {current.module}, {current.origin})", "task-changed", task)
    named = data["model"]["path"]
    model_path = (path.parent / named).resolve()
    if not model_path.is_file():
        return Recheck(path, 1, f"model {named} not found next to the certificate",
                       "model-missing", task)
    same_file = file_sha256(model_path) == data["model"]["sha256"]
    weights = data["model"].get("weights_sha256")
    if not same_file and weights is None:
        return Recheck(path, 1, f"model {named} changed since it was certified",
                       "model-changed", task)
    try:
        checkpoint = load_checkpoint(model_path)
    except VerifierError as error:
        return Recheck(path, 2, str(error), "model-invalid", task)
    if weights is not None and checkpoint.weights_sha256 != weights:
        if same_file:
            return Recheck(path, 2, f"weights_sha256 does not match model {named}, whose file "
                           "is the certified one: the certificate was edited",
                           "certificate-edited", task)
        return Recheck(path, 1, f"model {named} changed since it was certified (other weights)",
                       "model-changed", task)
    if checkpoint.task.name != task or checkpoint.formulation != data["formulation"]:
        return Recheck(path, 2, f"certificate is for {task}/{data['formulation']}, model "
                       f"is {checkpoint.task.name}/{checkpoint.formulation}", "model-invalid", task)
    outcome = certify(checkpoint, use_cache=use_cache)
    verdict = outcome.verdict.label
    states = None if outcome.vset is None else len(outcome.vset.states)
    found = {"task": task, "verdict": verdict, "states": states,
             "vset_cache": None if outcome.cache is None else outcome.cache.status}
    if verdict != data["verdict"]:
        return Recheck(path, 1, f"re-check gives {verdict}, certificate says {data['verdict']}",
                       "verdict-changed", **found)
    recorded = (data["verification_set"] or {}).get("call_local_states")
    if states != recorded:
        return Recheck(path, 1, f"re-check finds {states} call-local states, certificate "
                       f"{recorded}", "states-changed", **found)
    claimed = {o.get("name"): o.get("status") for o in data.get("obligations") or []}
    for obligation in outcome.obligations:  # a proof claimed must be a proof found again
        if claimed.get(obligation.name) != obligation.status:
            return Recheck(path, 1, f"re-check gives {obligation.name} {obligation.status}, "
                           f"certificate says {claimed.get(obligation.name)}",
                           "obligation-changed", **found)
    note = "" if same_file else f"same weights, different file ({named}); "
    if verdict != "certified":
        return Recheck(path, 3, f"{note}valid, but the verdict is {data['verdict']}: "
                       f"{data.get('reason')}", "not-certified", **found)
    return Recheck(path, 0, f"{note}certified; re-checked {states} call-local states "
                   f"in {outcome.seconds:.1f} s", **found)
