"""Certification verdicts: reference certified, planted bugs refuted, unknowns inconclusive."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import z3

from tests.conftest import vset_of, weaken_bubblesort
from verifier.check import check_function
from verifier.errors import UndecidedPost
from verifier.evaluation import model_limits
from verifier.runtime import Query, ReferencePolicy, StateKey, execute, reference_action
from verifier.smt import AbstractDomain, semantics_for
from verifier.tasks import TASKS
from verifier.tasks.base import RETURN, Action
from verifier.verify import Subject, Verdict, certify_subject
from verifier.vset.build import build_vset

# the exhaustive check; tasks with numeric observations are certified symbolically
# (tests/test_symbolic.py)
FINITE = sorted(name for name, task in TASKS.items() if not task.numeric_slots)


class StatePolicy:
    """A policy that is the reference program except on `overrides` (call-local states)."""

    def __init__(self, task_name: str, overrides: dict | None = None) -> None:
        self.task = TASKS[task_name]
        self.routines = self.task.routines("recursive")
        self.overrides = overrides or {}

    def decide(self, key: StateKey) -> Action:
        program, args, observations = key
        if key in self.overrides:
            return self.overrides[key]
        try:
            return reference_action(self.routines, program, args, observations)
        except ValueError:  # a history the reference never produces (after an override)
            return RETURN

    def step(self, queries: Sequence[Query]) -> list[tuple[Action, Any]]:
        out = []
        for q in queries:
            history = (q.memory or ()) + (q.observation,)
            out.append((self.decide((q.program, q.args, history)), history))
        return out

    def subject(self) -> Subject:
        return Subject(self.task, "recursive", self, lambda states: check_function(self.decide, states))


@pytest.mark.slow
@pytest.mark.parametrize("task_name", FINITE)
def test_reference_policy_is_certified(task_name: str) -> None:
    outcome = certify_subject(StatePolicy(task_name).subject(), vset=vset_of(task_name))
    assert outcome.verdict == Verdict.CERTIFIED, outcome.reason
    statuses = {o.name: o.status for o in outcome.obligations}
    assert statuses == {"semantics": "checked", "coverage": "proved", "agreement": "checked",
                        "termination": "tested", "reference-correctness": "tested"}


def test_without_z3_semantics_the_reference_is_never_certified(monkeypatch: pytest.MonkeyPatch) -> None:
    """Coverage only tested: the verdict stays inconclusive even for a perfect policy."""
    task_name = "toposort"
    monkeypatch.setattr("verifier.vset.build.semantics_for", lambda task: None)
    outcome = certify_subject(StatePolicy(task_name).subject())
    assert outcome.verdict == Verdict.INCONCLUSIVE
    assert {o.name: o.status for o in outcome.obligations}["coverage"] == "tested"


def _wrong_action(task_name: str, action: Action) -> Action:
    task = TASKS[task_name]
    if action != RETURN:
        return RETURN
    return Action(next(p.name for p in task.programs if not p.primitive), (0,) * task.program(
        next(p.name for p in task.programs if not p.primitive)).arity, False)


@pytest.mark.slow
@pytest.mark.soundness
@pytest.mark.parametrize("task_name", FINITE)
@pytest.mark.parametrize("pick", [0, 17, 33])
def test_one_wrong_reachable_state_is_refuted_with_a_replayable_counterexample(
    task_name: str, pick: int
) -> None:
    vset = vset_of(task_name)
    witnessed = sorted(vset.concrete.actions)
    state = witnessed[pick % len(witnessed)]
    policy = StatePolicy(task_name, {state: _wrong_action(task_name, vset.states[state])})
    outcome = certify_subject(policy.subject(), vset=vset)
    assert outcome.verdict == Verdict.REFUTED
    assert [d.state for d in outcome.check.disagreements] == [state]
    example = outcome.counterexample
    task = TASKS[task_name]
    # the counterexample reproduces: the planted policy fails on that input, at that step
    limits = model_limits(task, "recursive", example.input)
    (run,) = execute(task, policy, [example.input], limits)
    reference = execute(task, ReferencePolicy(task, "recursive"), [example.input])[0]
    first = next(k for k, (a, b) in enumerate(zip(run.steps, reference.steps)) if a.action != b.action)
    assert first + 1 == example.step
    assert run.steps[first].program == example.program == state[0]
    assert example.model_action == run.steps[first].action != example.reference_action
    assert example.model_halted == run.halted
    if run.halted:
        assert example.model_output == task.output(run.env)


@pytest.mark.slow
@pytest.mark.soundness
def test_wrong_only_on_unwitnessed_states_is_inconclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    task = weaken_bubblesort(monkeypatch)  # V is exact on every shipped task
    vset = build_vset(task)
    assert len(vset.unwitnessed) == 34
    state = sorted(vset.unwitnessed)[0]
    policy = StatePolicy("bubblesort", {state: _wrong_action("bubblesort", vset.states[state])})
    outcome = certify_subject(policy.subject(), vset=vset)
    assert outcome.verdict == Verdict.INCONCLUSIVE
    assert outcome.counterexample is None


def test_a_solver_unknown_never_certifies(monkeypatch: pytest.MonkeyPatch) -> None:
    original = AbstractDomain._check
    calls = {"n": 0}

    def first_unknown(self: AbstractDomain, solver: z3.Solver) -> z3.CheckSatResult:
        calls["n"] += 1
        if calls["n"] == 1:
            self.stats.queries += 1
            self.stats.unknown += 1
            return z3.unknown
        return original(self, solver)

    monkeypatch.setattr(AbstractDomain, "_check", first_unknown)
    outcome = certify_subject(StatePolicy("bubblesort").subject())
    assert outcome.verdict == Verdict.INCONCLUSIVE
    assert {o.name: o.status for o in outcome.obligations}["coverage"] == "unknown"


def test_an_undecidable_post_with_too_many_candidates_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Toposort has 2**18 hidden predicate values: after an unknown, testing them one by one
    would take hours, so the fixed point stops with an error (exit code 3) instead."""
    monkeypatch.setattr(AbstractDomain, "_check", lambda self, solver: z3.unknown)
    with pytest.raises(UndecidedPost, match="cannot be proved complete") as error:
        AbstractDomain(semantics_for(TASKS["toposort"])).initial_states()
    assert error.value.exit_code == 3


@pytest.mark.slow
def test_counterexample_prefers_an_input_with_a_wrong_answer() -> None:
    """Stopping CHECK_CHILD at a black child leaves the output right on the smallest input that
    reaches the state (the black child is the last one) and wrong on a larger one: replay
    reports the larger one, and says the answer is wrong."""
    vset = vset_of("toposort")
    task = vset.task
    state = ("CHECK_CHILD", (), ((1, 2, 0),))
    policy = StatePolicy("toposort", {state: RETURN})
    smallest = vset.concrete.witness[state]
    (run,) = execute(task, policy, [smallest])
    assert run.halted and task.check(smallest, task.output(run.env))
    example = certify_subject(policy.subject(), vset=vset).counterexample
    assert example is not None and not example.output_correct and example.model_halted
    (run,) = execute(task, policy, [example.input])
    assert not task.check(example.input, task.output(run.env))
    assert task.input_size(example.input) >= task.input_size(smallest)
    assert "which is wrong" in example.describe(task)
