"""Generic checks of every task's reference programs, parametrized over the registry."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from verifier.runtime import reference_action, run_reference, split_calls
from verifier.tasks import TASKS
from verifier.tasks.base import NOP, RECURSIVE

TASK_FORMULATIONS = [(t, f) for t in TASKS for f in TASKS[t].formulations]


@pytest.mark.parametrize("task_name,formulation", TASK_FORMULATIONS)
@given(data=st.data())
def test_reference_output_passes_independent_check_on_large_inputs(
    task_name: str, formulation: str, data: st.DataObject
) -> None:
    task = TASKS[task_name]
    value = data.draw(TASKS[task_name].strategy(large=True))
    run = run_reference(task, formulation, value, record=False)
    assert run.halted
    assert task.check(value, task.output(run.env)), (value, task.output(run.env))


@pytest.mark.parametrize("task_name", list(TASKS))
def test_sampled_inputs_of_every_size_are_valid_and_sorted_out(task_name: str) -> None:
    task = TASKS[task_name]
    rng = random.Random(7)
    for size in (1, 2, 5, task.large_test_size):
        value = task.sample_input(rng, size)
        assert task.input_size(value) == size
        assert task.parse_input(task.input_to_json(value)) == value
        run = run_reference(task, RECURSIVE, value, record=False)
        assert task.check(value, task.output(run.env))


def _longest_call(task_name: str, formulation: str, size: int, seed: int) -> int:
    task = TASKS[task_name]
    value = task.sample_input(random.Random(seed), size)
    steps = run_reference(task, formulation, value).steps
    return max(len(call) for call in split_calls(steps))


def _two_sizes(task_name: str) -> tuple[int, int]:
    """A small and a large input size: 10 and 100, or, for a task whose runs grow fast (a
    lower `large_test_size`: Hanoi's are 2^n - 1 moves), half of that size and that size."""
    large = TASKS[task_name].large_test_size
    return (10, 100) if large >= 40 else (large // 2, large)


@pytest.mark.parametrize("task_name", list(TASKS))
def test_recursive_call_local_length_is_bounded(task_name: str) -> None:
    lengths = {_longest_call(task_name, RECURSIVE, size, seed)
               for size in _two_sizes(task_name) for seed in (1, 2)}
    assert len(lengths) == 1, lengths


@pytest.mark.parametrize(
    "task_name,formulation", [(t, f) for t, f in TASK_FORMULATIONS if f != RECURSIVE]
)
def test_looping_formulations_grow_with_size(task_name: str, formulation: str) -> None:
    small, large = _two_sizes(task_name)
    assert _longest_call(task_name, formulation, large, 1) > 2 * _longest_call(
        task_name, formulation, small, 1
    )


def _primitive_actions(task_name: str, formulation: str, value: object) -> list[tuple]:
    task = TASKS[task_name]
    steps = run_reference(task, formulation, value).steps
    return [
        (s.action.program, s.action.args)
        for s in steps
        if task.program(s.action.program).primitive and s.action.program != NOP
    ]


@pytest.mark.parametrize("task_name", list(TASKS))
@given(data=st.data())
def test_formulations_emit_identical_primitive_actions(task_name: str, data: st.DataObject) -> None:
    value = data.draw(TASKS[task_name].strategy(large=False))
    task = TASKS[task_name]
    sequences = {f: _primitive_actions(task_name, f, value) for f in task.formulations}
    reference = sequences[RECURSIVE]  # may be empty (reversing one element moves nothing)
    for formulation, sequence in sequences.items():
        assert sequence == reference, formulation


@pytest.mark.parametrize("task_name,formulation", TASK_FORMULATIONS)
def test_policy_is_a_function_of_call_local_observations(task_name: str, formulation: str) -> None:
    """Replaying a fresh routine on a call's observations reproduces each recorded action."""
    task = TASKS[task_name]
    routines = task.routines(formulation)
    value = task.sample_input(random.Random(3), 6)
    for call in split_calls(run_reference(task, formulation, value).steps):
        observations = [s.observation for s in call]
        for k, step in enumerate(call):
            assert reference_action(routines, step.program, step.args, observations[: k + 1]) == step.action
        assert call[-1].action.ret and not any(s.action.ret for s in call[:-1])


@pytest.mark.parametrize("task_name", list(TASKS))
def test_observations_are_small_integers_in_declared_ranges(task_name: str) -> None:
    task = TASKS[task_name]
    value = task.sample_input(random.Random(4), 8)
    for step in run_reference(task, RECURSIVE, value).steps:
        assert len(step.observation) == len(task.observation_names)
        for slot, (v, names) in enumerate(zip(step.observation, task.observation_values)):
            if slot in task.numeric_slots:  # an integer in the task's declared range
                assert task.value_range[0] <= v <= task.value_range[1]
            else:
                assert 0 <= v < len(names)


def test_each_paper_json_names_tasks_of_its_own_package() -> None:
    """A task's published numbers sit next to its module, keyed by its name: a key that names
    no task of that package (a typo, a task moved elsewhere) would be read by nobody."""
    packages: dict[Path, set[str]] = {}
    for name, task in TASKS.items():
        folder = Path(str(sys.modules[type(task).__module__].__file__)).parent
        packages.setdefault(folder, set()).add(name)
    for folder, names in packages.items():
        file = folder / "paper.json"
        if file.is_file():
            assert set(json.loads(file.read_text(encoding="utf-8"))) <= names, file


def test_paper_numbers_are_read_through_the_task() -> None:
    from verifier.appendix import paper

    assert TASKS["toposort"].paper()["verification_set"] == paper.verification_set("toposort")
    assert paper.accuracy("addition", "c17-addition", RECURSIVE) == {5000: "100"}
    assert TASKS["bubblesort-int"].paper() is None  # C17 has no such task
    assert paper.verification_set("bubblesort-int") is None
