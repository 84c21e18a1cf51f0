"""Cold-certify fast paths give exactly what the slow paths give (issue 10): the proof bundle
made from the fixed point V was built from equals the one made by exploring it again, and the
interned fixed point explores exactly what a plain exploration over observation tuples does."""

from __future__ import annotations

import dataclasses
from collections import deque
from pathlib import Path
from typing import Any

import pytest
from verifier.bundle import build_bundle
from verifier.checkpoint import load_checkpoint
from verifier.runtime import reference_action
from verifier.smt import semantics_for
from verifier.tasks.base import NOP, RECURSIVE
from verifier.tasks.registry import get_task
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
