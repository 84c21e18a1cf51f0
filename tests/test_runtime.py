from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest

from verifier.errors import PolicyError
from verifier.runtime import (
    DEPTH_LIMIT,
    STEP_LIMIT,
    Limits,
    Query,
    ReferencePolicy,
    execute,
    run_reference,
)
from verifier.tasks import TASKS
from verifier.tasks.base import RETURN, Action, call


class Scripted:
    """A policy from a function of (program, args, call-local observations)."""

    def __init__(self, decide: Any) -> None:
        self.decide = decide
        self.first_memories: list[Any] = []

    def step(self, queries: Sequence[Query]) -> list[tuple[Action, Any]]:
        answers = []
        for q in queries:
            history = (q.memory or ()) + (q.observation,)
            answers.append((self.decide(q.program, q.args, history), history))
        return answers


@pytest.mark.parametrize("task_name", list(TASKS))
def test_lockstep_batch_equals_one_at_a_time(task_name: str) -> None:
    task = TASKS[task_name]
    rng = random.Random(11)
    values = [task.sample_input(rng, rng.randint(1, 9)) for _ in range(12)]
    batch = execute(task, ReferencePolicy(task, "recursive"), values)
    for value, run in zip(values, batch):
        alone = run_reference(task, "recursive", value)
        assert run.steps == alone.steps
        assert task.output(run.env) == task.output(alone.env)


def test_step_limit_is_reported() -> None:
    task = TASKS["bubblesort"]
    forever = Scripted(lambda program, args, history: call("PTR", 0, 1))
    (run,) = execute(task, forever, [[2, 1]], Limits(max_steps=50))
    assert not run.halted and run.stop_reason == STEP_LIMIT and run.step_count == 50
    assert run.describe_stop(Limits(max_steps=50)) == "did not halt within 50 steps"


def test_depth_limit_is_reported() -> None:
    task = TASKS["bubblesort"]
    descend = Scripted(lambda program, args, history: call("BUBBLE"))
    (run,) = execute(task, descend, [[2, 1]], Limits(max_steps=1000, max_depth=7))
    assert not run.halted and run.stop_reason == DEPTH_LIMIT and run.max_depth == 7


def test_each_call_starts_with_fresh_memory_and_caller_resumes_its_own() -> None:
    """The NPI's hidden-state reset: a callee never sees its caller's memory, and back."""
    task = TASKS["bubblesort"]

    def decide(program: str, args: tuple, history: tuple) -> Action:
        if program == "BUBBLESORT":
            return [call("RESET"), call("RESET"), RETURN][len(history) - 1]
        assert len(history) == 1  # every RESET call begins afresh
        return RETURN

    (run,) = execute(task, Scripted(decide), [[1, 2]])
    assert run.halted
    assert [(s.depth, s.program) for s in run.steps] == [
        (0, "BUBBLESORT"), (1, "RESET"), (0, "BUBBLESORT"), (1, "RESET"), (0, "BUBBLESORT")
    ]


def test_return_flag_on_a_call_returns_after_the_callee() -> None:
    task = TASKS["bubblesort"]
    script = {"BUBBLESORT": call("RESET", ret=True), "RESET": call("PTR", 2, 1, ret=True)}
    (run,) = execute(task, Scripted(lambda p, a, h: script[p]), [[1, 2]])
    assert run.halted and run.step_count == 2 and run.env.pointers[2] == 1


def test_illegal_action_is_refused() -> None:
    task = TASKS["bubblesort"]
    with pytest.raises(PolicyError):
        execute(task, Scripted(lambda p, a, h: Action("PTR", (0,))), [[1]])
    with pytest.raises(PolicyError):
        execute(task, Scripted(lambda p, a, h: Action("PTR", (3, 1))), [[1]])


def test_a_budget_running_out_inside_a_routine_stays_a_budget_error() -> None:
    """A --timeout expiring while a reference routine runs is exit 4, not turned into the
    broken-routine error (exit 2) that a routine's own exceptions become."""
    from verifier.budget import BudgetExceeded
    from verifier.runtime import ReferencePolicy, reference_action

    task = TASKS["bubblesort"]

    def expire(args, obs):
        raise BudgetExceeded("time budget of 1 s ran out")
        yield  # a generator, like every routine

    policy = ReferencePolicy(task, "recursive")
    policy.routines = {**policy.routines, "BUBBLESORT": expire}
    with pytest.raises(BudgetExceeded):
        execute(task, policy, [[2, 1]])
    with pytest.raises(BudgetExceeded):
        reference_action({"BUBBLESORT": expire}, "BUBBLESORT", (), [(1, 1, 1, 0)])
