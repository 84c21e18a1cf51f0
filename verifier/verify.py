"""Certification: V, the exhaustive check, the verdict and the counterexample (design §5.3-5.5).

The verdict is the worst finding (an ordered enum): a real counterexample refutes; a
disagreement only on unwitnessed states, or a coverage proof that did not go through (no Z3
semantics for the task yet, a solver `unknown`, a cross-check mismatch), is inconclusive; an
unbounded call makes the model uncertifiable.
"""

from __future__ import annotations

import enum
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from verifier.check import NOISE_MARGIN, CheckResult, Disagreement, check_model
from verifier.checkpoint import Checkpoint
from verifier.errors import UnboundedCall
from verifier.evaluation import correct, limits_after
from verifier.heap import collector_paused
from verifier.induction import ARGUMENT, CORRECTNESS, TERMINATION, Induction, prove
from verifier.npi import NPIPolicy
from verifier.proofcache import load_or_prove
from verifier.runtime import (
    SEMANTICS,
    Execution,
    Policy,
    StateKey,
    execute,
    run_reference,
    split_calls,
)
from verifier.smt import semantics_for
from verifier.tasks import Task
from verifier.tasks.base import NOP, Action
from verifier.vcache import OFF, CacheInfo, load_or_build
from verifier.vset.result import VerificationSet

REPLAY_CANDIDATES = 64  # inputs reaching a disagreement replayed to find a wrong answer
LISTED_UNWITNESSED = 50  # unwitnessed states listed in the coverage evidence


class Verdict(enum.IntEnum):
    """Ordered: the worst finding wins."""

    CERTIFIED = 0
    INCONCLUSIVE = 1
    UNCERTIFIABLE = 2
    REFUTED = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def exit_code(self) -> int:
        return {0: 0, 1: 3, 2: 3, 3: 1}[self.value]


PROVED, CHECKED, TESTED, FAILED, UNKNOWN = "proved", "checked", "tested", "failed", "unknown"


@dataclass
class Counterexample:
    input: Any
    step: int
    program: str
    observations: list[list[int]]
    model_action: Action
    reference_action: Action
    model_output: Any
    model_halted: bool
    output_correct: bool  # the model left the reference program but its answer still passes

    def describe(self, task: Task) -> str:
        model = _describe_action(task, self.model_action)
        reference = _describe_action(task, self.reference_action)
        if not self.model_halted:
            ending = "the model does not halt"
        elif self.output_correct:
            ending = (
                f"model output {self.model_output}, which passes the task's check: the model "
                "leaves the reference program, but no input tried shows a wrong answer"
            )
        else:
            ending = f"model output {self.model_output}, which is wrong"
        return (
            f"{task.name}: input {task.input_to_json(self.input)}: step {self.step} in "
            f"{self.program}: model {model}, reference {reference}; {ending}"
        )


def _describe_action(task: Task, action: Action) -> str:
    if action.program == NOP:
        return "returned" if action.ret else "did nothing"
    text = f"called {task.format_action(action)}"
    return text + " and returned" if action.ret else text


@dataclass
class Obligation:
    name: str
    status: str
    evidence: dict[str, Any]


@dataclass
class Outcome:
    verdict: Verdict
    reason: str
    vset: VerificationSet | None
    check: CheckResult | None
    obligations: list[Obligation] = field(default_factory=list)
    counterexample: Counterexample | None = None
    seconds: float = 0.0
    induction: Induction | None = None  # the lemmas of the whole proof, where attempted
    cache: CacheInfo | None = None  # what the V cache did (None: V was given)


@dataclass(frozen=True)
class Subject:
    """What is certified: a policy for a task, with its exhaustive checker over V."""

    task: Task
    formulation: str
    policy: Policy
    check: Callable[[Mapping[StateKey, Action]], CheckResult]


def model_subject(checkpoint: Checkpoint) -> Subject:
    task = checkpoint.task
    return Subject(
        task,
        checkpoint.formulation,
        NPIPolicy(checkpoint.model, task),
        lambda states: check_model(checkpoint.model, task, states),
    )


def certify(checkpoint: Checkpoint, progress: Any = None, use_cache: bool = True) -> Outcome:
    """Build V for the model's task and formulation (or reuse it from the V cache), check the
    model on all of it, decide. A task with numeric observation slots is checked
    symbolically (verifier.symbolic)."""
    if checkpoint.task.numeric_slots:
        from verifier.symbolic import certify_symbolic

        return certify_symbolic(checkpoint, progress)
    return certify_subject(model_subject(checkpoint), progress, use_cache=use_cache)


@collector_paused
def certify_subject(
    subject: Subject,
    progress: Any = None,
    vset: VerificationSet | None = None,
    use_cache: bool = True,
) -> Outcome:
    """Certify any policy; `vset` may be given when it was built already for this task, else
    it comes from the V cache (`verifier.vcache`) or is built."""
    started = time.perf_counter()
    task, formulation = subject.task, subject.formulation
    cache = None
    try:
        if vset is None:
            vset, cache = load_or_build(task, formulation, progress, use_cache)
    except UnboundedCall as error:
        outcome = Outcome(Verdict.UNCERTIFIABLE, str(error), None, None)
        outcome.obligations = [Obligation("coverage", FAILED, {"unbounded_call": error.program})]
        outcome.seconds = time.perf_counter() - started
        return outcome
    result = subject.check(vset.states)
    vset.witness_cover()  # the certificate lists it; its time counts as certifying time
    outcome = _decide(subject, vset, result)
    outcome.cache = cache
    outcome.obligations = _obligations(vset, result, outcome)
    outcome.seconds = time.perf_counter() - started
    return outcome


def _decide(subject: Subject, vset: VerificationSet, result: CheckResult) -> Outcome:
    witnessed = [d for d in result.disagreements if d.state in vset.concrete.actions]
    if witnessed:
        example = replay(subject, witnessed, vset)
        return Outcome(Verdict.REFUTED, f"model disagrees with the reference on "
                       f"{len(result.disagreements)} of {result.checked} states", vset, result,
                       counterexample=example)
    if result.disagreements:
        return Outcome(Verdict.INCONCLUSIVE, f"model disagrees only on {len(result.disagreements)} "
                       "states that no input was found to reach", vset, result)
    if result.near_tie:
        return Outcome(Verdict.INCONCLUSIVE, f"a decision is within {NOISE_MARGIN} of a tie "
                       f"(minimum margin {result.min_margin:.2e}): too close to trust", vset, result)
    if result.fragile_flipped:
        return Outcome(Verdict.INCONCLUSIVE, f"{result.fragile_flipped} near-tie decisions change "
                       "in float64", vset, result)
    if not vset.coverage_proved:
        return Outcome(Verdict.INCONCLUSIVE, "the model agrees on every state found, but coverage "
                       "of all reachable states is not proved for this task", vset, result)
    return Outcome(Verdict.CERTIFIED, f"model agrees with the reference on all {result.checked} "
                   "call-local states of V, which covers every input of every size", vset, result)


def replay(subject: Subject, disagreements: list[Disagreement], vset: VerificationSet) -> Counterexample:
    """Run the model on inputs that reach a disagreement, smallest first, and report the first
    divergence on the smallest one where the model's answer is wrong or it does not halt.

    Diverging from the reference program does not always spoil the answer (a topological
    order is not unique), so up to REPLAY_CANDIDATES inputs are tried; where the model's
    answer passes the task's check on all of them, the smallest of them is reported with
    `output_correct` set."""
    task, formulation = subject.task, subject.formulation
    states = {d.state for d in disagreements}
    reaching = {repr(v): v for v in (vset.concrete.witness[s] for s in states)}
    for value, keys in vset.concrete.per_input:
        if len(reaching) >= REPLAY_CANDIDATES:
            break
        if not keys.isdisjoint(states):
            reaching.setdefault(repr(value), value)
    candidates = sorted(reaching.values(), key=lambda v: (task.input_size(v), repr(v)))
    candidates = candidates[:REPLAY_CANDIDATES]
    references = [run_reference(task, formulation, v) for v in candidates]
    runs = execute(task, subject.policy, candidates, [limits_after(r) for r in references])
    chosen = next((k for k, run in enumerate(runs) if not correct(task, run)), 0)
    value, run, reference = candidates[chosen], runs[chosen], references[chosen]
    for index, (mine, theirs) in enumerate(zip(run.steps, reference.steps)):
        if mine.action != theirs.action:
            break
    else:  # pragma: no cover - an input reaching a disagreement always shows it in the replay
        raise AssertionError("witnessed disagreement did not reproduce")
    return counterexample_at(task, value, run, index, theirs.action)


def counterexample_at(
    task: Task, value: Any, run: Execution, index: int, reference: Action
) -> Counterexample:
    """The counterexample of a model run that first leaves the reference program at step
    `index` (0-based), where the reference program takes `reference`."""
    mine = run.steps[index]
    call = next(c for c in split_calls(run.steps[: index + 1]) if c[-1] is mine)
    return Counterexample(
        value,
        index + 1,
        mine.program,
        [list(s.observation) for s in call],
        mine.action,
        reference,
        task.output(run.env) if run.halted else None,
        run.halted,
        correct(task, run),
    )


def _obligations(vset: VerificationSet, result: CheckResult, outcome: Outcome) -> list[Obligation]:
    task = vset.task
    # The proof cache is used where the V cache is: not with --no-cache, nor for a given V.
    cached = outcome.cache is not None and outcome.cache.status != OFF
    proof, proof_cache = _induction(task, vset.formulation, vset, cached)
    outcome.induction = proof if isinstance(proof, Induction) else None
    abstract = vset.abstract
    coverage: dict[str, Any] = {
        "concrete_states": len(vset.concrete.actions),
        "concrete_inputs_run": vset.concrete.inputs_run,
        "concrete_states_by_size": vset.concrete.counts_by_size,
        "concrete_saturated": vset.concrete.saturated,
        "exact": vset.exact,
        "unwitnessed": len(vset.unwitnessed),
        "unwitnessed_states": [
            _state_json(key, vset.states[key])
            for key in sorted(vset.unwitnessed)[:LISTED_UNWITNESSED]
        ],
    }
    if abstract is not None and vset.cross is not None:
        coverage.update(
            abstract_states=len(abstract.actions),
            abstract_contexts=abstract.contexts,
            hidden_predicates=list(vset.predicates),
            z3_queries=abstract.stats.queries,
            z3_unknown=abstract.stats.unknown,
            z3_seconds=round(abstract.stats.seconds, 3),
            cross_checked_steps=vset.cross.steps,
            cross_check_mismatches=vset.cross.mismatches[:5],
        )
        status = PROVED if vset.coverage_proved else (UNKNOWN if abstract.stats.unknown else FAILED)
    else:
        coverage["note"] = ("no Z3 semantics for this task yet: V is the set of states reached by "
                            "reference runs until it stopped growing, which is tested, not proved")
        status = TESTED
    if outcome.cache is not None:  # whether V was built now or reused from the V cache
        coverage.update(outcome.cache.evidence())
    agreement = {
        "states": result.checked,
        "disagreements": len(result.disagreements),
        "min_margin": result.min_margin,
        "fragile_decisions": result.fragile,
        "fragile_changed_in_float64": result.fragile_flipped,
        "margin_histogram": {
            "bucket": "decisions with margin in [10^k, 10^(k+1)); k null: margin <= 0",
            "counts": [[k, n] for k, n in result.margin_histogram],
        },
    }
    return [
        Obligation("semantics", CHECKED, {
            "runtime": SEMANTICS,
            "claim": "every call starts from a zero hidden state; a caller resumes with its own",
        }),
        Obligation("coverage", status, coverage),
        Obligation("agreement", CHECKED if result.agrees else FAILED, agreement),
        *_reference_obligations(task, vset.formulation, vset, proof, proof_cache),
    ]


def _state_json(key: StateKey, action: Action) -> dict[str, Any]:
    program, args, observations = key
    return {"program": program, "args": list(args),
            "observations": [list(o) for o in observations], "action": action.to_json()}


def _reference_obligations(
    task: Task, formulation: str, vset: VerificationSet, proof: Induction | str,
    proof_cache: dict[str, str] | None = None,
) -> list[Obligation]:
    """Termination and correctness of the reference program: proved for every size from the
    task's contracts over V (`verifier.induction`) where coverage is proved and every lemma
    goes through, tested otherwise (on every small input run for V and on random inputs far
    beyond the training sizes), the certificate then naming the lemmas that did not."""
    large = vset.large_reference_runs()
    non_halting = vset.concrete.non_halting + large.non_halting
    wrong = vset.concrete.wrong + large.wrong
    small = vset.concrete.per_input
    tests = {
        "inputs": len(small) + large.inputs,
        "small_inputs": len(small),
        "random_inputs": large.inputs,
        "random_input_size": large.size,
    }
    return [
        _reference_obligation(TERMINATION, proof, non_halting,
                              {**tests, "non_halting": non_halting}, proof_cache),
        _reference_obligation(CORRECTNESS, proof, wrong, {
            **tests, "wrong_outputs": wrong, "oracle": "the task's independent check"},
            proof_cache),
    ]


def _induction(
    task: Task, formulation: str, vset: VerificationSet, use_cache: bool
) -> tuple[Induction | str, dict[str, str] | None]:
    """The lemmas over V, or why they were not attempted; with what the proof cache did
    (`verifier.proofcache`; None where it was not used)."""
    if not vset.coverage_proved:
        return "V's coverage is not proved, so V's paths need not cover every call", None
    semantics = semantics_for(task)
    assert semantics is not None  # coverage is proved only with Z3 semantics
    if not use_cache:
        return prove(task, formulation, semantics, vset.states), None
    proof, status, note = load_or_prove(task, formulation, semantics, vset.states)
    return proof, {"proof_cache": status, **({"proof_cache_note": note} if note else {})}


def _reference_obligation(
    name: str, proof: Induction | str, failures: int, tests: dict[str, Any],
    proof_cache: dict[str, str] | None = None,
) -> Obligation:
    """`failed` when a test fails, `proved` when every lemma is, else `tested`, naming the
    lemmas that are not proved (refuted, unknown, or missing) and why."""
    if failures:
        return Obligation(name, FAILED, tests)
    if isinstance(proof, str):
        return Obligation(name, TESTED, {**tests, "proof": {"attempted": False, "why": proof}})
    lemmas = proof.of(name)
    record: dict[str, Any] = {
        "lemmas": len(lemmas),
        "kinds": dict(sorted(Counter(lemma.kind for lemma in lemmas).items())),
        "routines": proof.routines,
        "paths": proof.paths,
        "z3_seconds": round(proof.seconds, 3),
        "contracts": proof.contracts,
        **(proof_cache or {}),  # whether the lemmas were proved now or reused
    }
    if name == CORRECTNESS:
        record["specification"] = proof.specification
    if name == TERMINATION:
        record.update(recursive_call_sites=proof.recursive_sites, argument=ARGUMENT)
    if proof.proved(name):
        return Obligation(name, PROVED, {**tests, "proof": record})
    unproved = [lemma.to_json() for lemma in lemmas if lemma.status != PROVED]
    if not lemmas:
        unproved = [{"lemma": name, "why": "the task declares nothing to prove it from"}]
    record.update(not_proved=len(unproved), lemmas_not_proved=unproved[:LISTED_UNWITNESSED])
    return Obligation(name, TESTED, {**tests, "proof": record})
