"""Cold-certify fast paths give exactly what the slow paths give (issue 10): the lean reference
loop, the shared actions and the agreement check's gathering."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from verifier.checkpoint import load_checkpoint
from verifier.errors import ReferenceBug
from verifier.runtime import (
    call_local_steps,
    reference_call_local_steps,
    reference_execution,
    run_reference,
)
from verifier.tasks.base import RECURSIVE, Action, call
from verifier.tasks.registry import TASKS, get_task
from verifier.vset.build import build_vset

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_call_local_reference_steps_are_those_of_the_trace(task_name: str) -> None:
    """The concrete search's interpreter loop gives each step's call-local state and action in
    the order `call_local_steps` reads them off a recorded trace, and the same run."""
    task = get_task(task_name)
    rng = random.Random(7)
    for formulation in task.formulations:
        for size in (1, 2, 3, 5):
            value = task.sample_input(rng, size)
            run = run_reference(task, formulation, value)
            fast, steps = reference_call_local_steps(task, formulation, value)
            assert steps == [(key, step.action) for key, step in call_local_steps(run.steps)]
            assert (fast.halted, fast.step_count, fast.max_depth, fast.steps) == (
                run.halted, run.step_count, run.max_depth, [])
            assert task.output(fast.env) == task.output(run.env)
            lean = reference_execution(task, formulation, value)  # what sets a model's limits
            assert (lean.halted, lean.step_count, lean.max_depth, lean.steps) == (
                run.halted, run.step_count, run.max_depth, [])
            assert task.output(lean.env) == task.output(run.env)


@pytest.mark.parametrize("broken", ["raises", "stops", "not-an-action"])
def test_a_broken_routine_fails_alike_on_both_paths(
    monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    task = get_task("bubblesort")
    routines = dict(task.routines(RECURSIVE))
    name = max(p.name for p in task.programs if not p.primitive)

    def faulty(args: Any, observation: Any) -> Any:
        if broken == "raises":
            raise IndexError("tuple index out of range")
        if broken == "not-an-action":
            yield 3
        return
        yield  # a generator that ends without returning an action

    routines[name] = faulty
    monkeypatch.setattr(task, "routines", lambda formulation: routines)
    value = task.sample_input(random.Random(0), 4)
    with pytest.raises(ReferenceBug) as slow:
        run_reference(task, RECURSIVE, value)
    with pytest.raises(ReferenceBug) as fast:
        reference_call_local_steps(task, RECURSIVE, value)
    with pytest.raises(ReferenceBug) as lean:
        reference_execution(task, RECURSIVE, value)
    assert str(fast.value) == str(slow.value) == str(lean.value)


def test_call_hands_out_one_action_per_value() -> None:
    first = call("SWAP", 1, 2, ret=True)
    assert first == Action("SWAP", (1, 2), True) and call("SWAP", 1, 2, ret=True) is first
    assert call("SWAP", 1, 2) == Action("SWAP", (1, 2), False)


def test_check_gathers_each_parent_state_across_chunks() -> None:
    """The agreement check keeps a level's (h, c) as columns and gathers each step's parent
    column: in chunks of 5 (parents spread over many chunks) it finds what one chunk finds,
    and both agree with replaying each state's whole call through the LSTM."""
    import torch

    from verifier.check import check_model
    from verifier.npi import Decider, pad_args

    checkpoint = load_checkpoint(ROOT / "models" / "bubblesort.pt")
    model, task = checkpoint.model.eval(), checkpoint.task
    states = build_vset(task).states
    one, chunked = check_model(model, task, states), check_model(model, task, states, batch_size=5)
    assert (one.checked, one.disagreements, one.fragile) == (chunked.checked, chunked.disagreements,
                                                            chunked.fragile)
    assert chunked.min_margin == pytest.approx(one.min_margin, abs=1e-5)
    decide = Decider(model.config, task)
    names = model.config.program_names
    with torch.no_grad():
        for (program, args, observations), action in states.items():
            end, programs, arguments, _ = model(
                torch.tensor([names.index(program)]), torch.tensor([pad_args(args)]),
                torch.tensor([list(observations)]))
            (chosen,), _ = decide(end[:, -1], programs[:, -1], arguments[:, -1])
            assert (chosen == action) == (not one.disagreements)


@pytest.mark.parametrize("task_name", ["bubblesort", "quicksort"])
def test_the_fixed_point_builds_each_call_local_prefix_once(task_name: str) -> None:
    """Prefix interning: every call of the fixed point names its points by nodes of one
    shared prefix forest, whose nodes are exactly V's call-local states, each built once."""
    from verifier.smt import semantics_for
    from verifier.vset.fixpoint import domain_for, explore

    task = get_task(task_name)
    actions, calls = explore(task, domain_for(semantics_for(task)))
    (prefixes,) = {id(call.prefixes): call.prefixes for call in calls.values()}.values()
    assert len(prefixes.keys) == len(set(prefixes.keys)) == len(actions)
    assert set(prefixes.keys) == set(actions)
    for (program, args, _), explored in calls.items():
        assert all(prefixes.keys[node][:2] == (program, args) for node, _ in explored.points)
        assert explored.seen == {(prefixes.keys[node][2], state) for node, state in explored.points}
