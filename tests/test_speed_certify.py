"""Cold-certify fast paths give exactly what the slow paths give (issue 10): the proof bundle
made from the fixed point V was built from equals the one made by exploring it again, and the
interned fixed point explores exactly what a plain exploration over observation tuples does."""

from __future__ import annotations

import dataclasses
import random
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from verifier.bundle import build_bundle
from verifier.checkpoint import load_checkpoint
from verifier.errors import ReferenceBug
from verifier.runtime import (
    call_local_steps,
    reference_action,
    reference_call_local_steps,
    reference_execution,
    run_reference,
)
from verifier.smt import semantics_for
from verifier.tasks.base import NOP, RECURSIVE, Action, call
from verifier.tasks.registry import TASKS, get_task
from verifier.vset.build import build_vset
from verifier.vset.fixpoint import abstract_states, domain_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("task_name", ["hanoi", "bubblesort"])
def test_bundle_from_the_recorded_fixed_point_equals_a_second_exploration(task_name: str) -> None:
    checkpoint = load_checkpoint(ROOT / "models" / f"{task_name}.pt")
    vset = build_vset(checkpoint.task)
    assert vset.abstract is not None and vset.abstract.record is not None
    queries = vset.abstract.stats.queries
    reused = build_bundle(checkpoint, vset)
    assert vset.abstract.stats.queries == queries  # the bundle's queries are not the fixed point's
    again = dataclasses.replace(vset, abstract=dataclasses.replace(vset.abstract, record=None))
    assert build_bundle(checkpoint, again) == reused


def _plain_fixed_point(task_name: str) -> tuple[dict[Any, Any], dict[Any, Any], dict[Any, Any]]:
    """The fixed point as `abstract_states` once computed it: points keyed by observation
    tuples, nothing interned, nothing cached but the domain's posts."""
    task = get_task(task_name)
    domain = domain_for(semantics_for(task))
    routines = task.routines(RECURSIVE)
    size = domain.semantics.observation_size
    primitive = {p.name for p in task.programs if p.primitive}
    actions: dict[Any, Any] = {}
    seen: dict[Any, set[Any]] = {}
    exits: dict[Any, set[Any]] = {}
    sites: dict[Any, list[Any]] = {}
    work: list[Any] = []
    done: deque[Any] = deque()

    def open_call(context: Any) -> None:
        if context not in seen:
            seen[context], exits[context], sites[context] = set(), set(), []
            work.append((context, (context[2][:size],), context[2]))

    def go_on(context: Any, observed: Any, ret: bool, after: Any) -> None:
        if ret:
            done.append((context, frozenset(after)))
        else:
            work.extend((context, observed + (a[:size],), a) for a in sorted(after))

    for entry in sorted(domain.initial_states()):
        open_call((task.entry, (), entry))
    while work or done:
        if done:
            context, reached = done.popleft()
            new = reached - exits[context]
            if new:
                exits[context] |= new
                for site, observed, ret in sites[context]:
                    go_on(site, observed, ret, new)
            continue
        context, observed, current = work.pop()
        if (observed, current) in seen[context]:
            continue
        seen[context].add((observed, current))
        key = (context[0], context[1], observed)
        if key not in actions:
            actions[key] = reference_action(routines, *key)
        action = actions[key]
        if action.program in primitive:
            after = (current,) if action.program == NOP else domain.post(
                current, action.program, action.args)
            go_on(context, observed, action.ret, after)
        else:
            callee = (action.program, action.args, current)
            open_call(callee)
            sites[callee].append((context, observed, action.ret))
            go_on(context, observed, action.ret, exits[callee])
    return actions, seen, exits


@pytest.mark.parametrize("task_name", ["hanoi", "bubblesort"])
def test_interned_fixed_point_explores_what_a_plain_one_does(task_name: str) -> None:
    task = get_task(task_name)
    found = abstract_states(task, domain_for(semantics_for(task)))
    actions, seen, exits = _plain_fixed_point(task_name)
    assert list(found.actions.items()) == list(actions.items())  # the same order, too
    record = found.record
    assert record is not None
    assert {context: {(record.prefixes[node][2], state) for node, state in call.seen}
            for context, call in record.calls.items()} == seen
    assert {context: call.exits for context, call in record.calls.items()} == exits


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
