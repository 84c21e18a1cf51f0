"""Prefilling the prefix cache from the reference run changes no run, and stays bounded."""

from __future__ import annotations

import random
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_memo import MODELS, SHIPPED
from verifier.checkpoint import Checkpoint, load_checkpoint
from verifier.evaluation import prefilled_limits, prefilled_runs, run_model
from verifier.memo import PREFIX_WINDOW, PrefixCache, PrefixSet
from verifier.npi import NPIPolicy
from verifier.runtime import reference_call_local_steps, reference_execution
from verifier.tasks import TASKS
from verifier.tasks.base import Action

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@cache
def _checkpoint(name: str) -> Checkpoint:
    return load_checkpoint(MODELS / name)


def _runs(checkpoint: Checkpoint, values: list[Any], prefill: bool, batch: int,
          memo: PrefixCache | None = None) -> tuple[list[Any], NPIPolicy]:
    policy = NPIPolicy(checkpoint.model, checkpoint.task, cache=memo)
    runs = run_model(policy, checkpoint.task, checkpoint.formulation, values, batch_size=batch,
                     record=True, prefill=prefill)
    return [(run.steps, run.halted, run.stop_reason, checkpoint.task.output(run.env), limits)
            for run, limits in runs], policy


@pytest.mark.parametrize(("task_name", "model_name"), SHIPPED)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_prefilled_runs_equal_runs_without_prefill(
    task_name: str, model_name: str, data: Any
) -> None:
    """Step for step the same traces, stops and outputs, one input at a time and in lockstep,
    for every shipped model (recursive and non-recursive)."""
    checkpoint = _checkpoint(model_name)
    values = data.draw(st.lists(TASKS[task_name].strategy(large=False), min_size=1, max_size=3))
    batch = data.draw(st.sampled_from([1, len(values)]))
    with_prefill, _ = _runs(checkpoint, values, True, batch)
    without, _ = _runs(checkpoint, values, False, batch)
    assert with_prefill == without


def test_prefill_computes_the_first_visits_ahead_of_the_run() -> None:
    checkpoint = _checkpoint("addition.pt")
    task = checkpoint.task
    value = task.sample_input(random.Random(3), 60)
    with_prefill, filled = _runs(checkpoint, [value], True, 1)
    without, lazy = _runs(checkpoint, [value], False, 1)
    assert with_prefill == without and with_prefill[0][1]  # halted, the same run
    assert filled.cache is not None and lazy.cache is not None
    assert filled.cache.prefilled > 0 and lazy.cache.prefilled == 0
    # what was computed ahead is what the run would have computed one step at a time
    assert filled.cache.misses + filled.cache.prefilled == lazy.cache.misses
    assert filled.cache.misses < lazy.cache.misses // 10


def test_a_repeated_input_prefills_nothing() -> None:
    checkpoint = _checkpoint("addition.pt")
    value = checkpoint.task.sample_input(random.Random(8), 40)
    policy = NPIPolicy(checkpoint.model, checkpoint.task)
    assert policy.cache is not None
    run_model(policy, checkpoint.task, checkpoint.formulation, [value], 1)
    prefilled, misses, size = policy.cache.prefilled, policy.cache.misses, policy.cache.size
    run_model(policy, checkpoint.task, checkpoint.formulation, [value], 1)
    assert prefilled > 0 and policy.cache.prefilled == prefilled
    assert (policy.cache.misses, policy.cache.size) == (misses, size)


def test_a_warm_cache_is_prefilled_below_its_older_nodes() -> None:
    """A second input's prefixes extend nodes the first input left: they step from those
    nodes' states, and the runs are still those without prefill."""
    checkpoint = _checkpoint("addition.pt")
    rng = random.Random(9)
    values = [checkpoint.task.sample_input(rng, 25) for _ in range(3)]
    warm = NPIPolicy(checkpoint.model, checkpoint.task)
    batched = warm._first_visits  # one input at a time: only a prefill steps batches here
    from_older: list[int] = []

    def counted(queries: Any, states: Any) -> Any:
        from_older.append(len(queries))
        return batched(queries, states)

    warm._first_visits = counted  # type: ignore[method-assign]
    runs = [run_model(warm, checkpoint.task, checkpoint.formulation, [v], 1, record=True)[0][0]
            for v in values]
    without, _ = _runs(checkpoint, values, False, 1)
    assert [(r.steps, r.halted, checkpoint.task.output(r.env)) for r in runs] == [
        (steps, halted, output) for steps, halted, _, output, _ in without]
    assert sum(from_older) > 0


@pytest.mark.parametrize("max_nodes", [1, 5, 40])
def test_prefill_stays_within_the_cache_bound(max_nodes: int) -> None:
    checkpoint = _checkpoint("addition.pt")
    task = checkpoint.task
    value = task.sample_input(random.Random(4), 30)
    memo = PrefixCache(max_nodes=max_nodes, max_depth=64)
    policy = NPIPolicy(checkpoint.model, task, cache=memo)
    prefilled_limits(policy, task, checkpoint.formulation, [value])
    assert memo.size < max_nodes and memo.clears == 0
    assert memo.prefilled <= max(0, max_nodes - 1)
    # and the bounded, prefilled cache still runs the model exactly
    small, _ = _runs(checkpoint, [value], True, 1, PrefixCache(max_nodes=max_nodes, max_depth=3))
    without, _ = _runs(checkpoint, [value], False, 1)
    assert small == without


def test_the_collected_prefixes_are_the_reference_runs_call_local_prefixes() -> None:
    task = TASKS["addition"]
    value = task.sample_input(random.Random(5), 12)
    prefixes = PrefixSet(max_nodes=10_000, max_depth=3)
    reference_execution(task, "recursive", value, prefixes)
    _, steps = reference_call_local_steps(task, "recursive", value)
    expected: set[tuple[Any, ...]] = set()
    for (program, args, observations), _ in steps:
        for k in range(min(len(observations), 3) + 1):
            expected.add((program, args) + observations[:k])

    def walk(key: tuple[Any, ...], tree: dict[Any, Any]) -> None:
        collected.add(key)
        for observation, subtree in tree.items():
            walk(key + (observation,), subtree)

    collected: set[tuple[Any, ...]] = set()
    for root, tree in prefixes.roots.items():
        walk(root, tree)
    assert collected == expected and prefixes.size == len(expected) and prefixes.complete


def test_a_full_prefix_set_stops_growing() -> None:
    task = TASKS["addition"]
    prefixes = PrefixSet(max_nodes=25, max_depth=64)
    reference_execution(task, "recursive", task.sample_input(random.Random(6), 40), prefixes)
    assert prefixes.size == 25 and not prefixes.complete


def test_collecting_stops_where_new_prefixes_are_rare() -> None:
    """Bubble sort meets a few dozen prefixes in thousands of steps: once a replay is out of
    reach (here: prefixes deeper than the set keeps), after one window the reference run
    stops recording them (it would cost more than the steps it saves)."""
    task = TASKS["bubblesort"]
    value = task.sample_input(random.Random(7), 40)
    prefixes = PrefixSet(max_depth=2)
    run = reference_execution(task, "recursive", value, prefixes)
    assert run.step_count > 2 * PREFIX_WINDOW and prefixes.actions is None
    assert not prefixes.complete and 0 < prefixes.size < PREFIX_WINDOW // 16


def test_collecting_goes_on_while_the_run_can_be_replayed() -> None:
    """With every step's prefix collected, the whole run is recorded, however rare new
    prefixes are: a model that repeats it need not run at all."""
    task = TASKS["bubblesort"]
    prefixes = PrefixSet()
    reference_execution(task, "recursive", task.sample_input(random.Random(7), 40), prefixes)
    assert prefixes.complete and prefixes.actions and len(prefixes.actions) == prefixes.size - len(
        prefixes.roots)


def _plain(run: Any, limits: Any, task: Any) -> tuple:
    return (run.halted, run.stop_reason, run.step_count, run.max_depth,
            task.output(run.env) if run.halted else None, limits)


@pytest.mark.parametrize(("task_name", "model_name"), SHIPPED)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_replayed_runs_equal_model_runs(task_name: str, model_name: str, data: Any) -> None:
    """Where the model provably repeats the reference runs their result stands for its runs:
    the same stops, step counts, depths and outputs as running it, for every shipped model."""
    checkpoint = _checkpoint(model_name)
    task = checkpoint.task
    values = data.draw(st.lists(TASKS[task_name].strategy(large=False), min_size=1, max_size=3))
    batch = data.draw(st.sampled_from([1, len(values)]))
    runs = {}
    for prefill in (True, False):
        policy = NPIPolicy(checkpoint.model, task)
        runs[prefill] = [_plain(run, limits, task) for run, limits in run_model(
            policy, task, checkpoint.formulation, values, batch_size=batch, prefill=prefill)]
    assert runs[True] == runs[False]


def test_a_certified_model_is_replayed_and_one_changed_decision_is_not() -> None:
    checkpoint = _checkpoint("addition.pt")
    task = checkpoint.task
    value = task.sample_input(random.Random(5), 300)
    policy = NPIPolicy(checkpoint.model, task)
    (limits,), repeated = prefilled_runs(policy, task, checkpoint.formulation, [value])
    assert repeated is not None and repeated[0].step_count * 4 == limits.max_steps
    prefixes = PrefixSet()
    reference_execution(task, checkpoint.formulation, value, prefixes)
    assert policy.cache is not None and policy.cache.repeats(prefixes)
    node = next(iter(next(iter(policy.cache._roots.values())).children.values()))
    node.action = Action(node.action.program, node.action.args, not node.action.ret)
    assert not policy.cache.repeats(prefixes)


def test_a_model_that_leaves_the_reference_run_is_run() -> None:
    """The non-recursive bubble sort is wrong on long arrays: no replay, its own (wrong) run."""
    checkpoint = _checkpoint("bubblesort-non-recursive.pt")
    task = checkpoint.task
    value = task.sample_input(random.Random(2), 20)
    policy = NPIPolicy(checkpoint.model, task)
    _, repeated = prefilled_runs(policy, task, checkpoint.formulation, [value])
    assert repeated is None


def test_prefix_set_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        PrefixSet(max_depth=0)
