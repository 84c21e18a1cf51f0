"""The under-approximation of V: call-local states seen on reference runs of small inputs,
each with its reference action and its smallest witness input."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from verifier.errors import PluginError, ReferenceBug
from verifier.runtime import StateKey, reference_call_local_steps
from verifier.tasks.base import RECURSIVE, Action, Task
from verifier.tasks.registry import task_label

EXHAUSTIVE_LIMIT = 20_000  # inputs per size enumerated exhaustively, else sampled
SAMPLES_PER_SIZE = 1_000  # random inputs per size where enumeration is too large
SATURATION_PATIENCE = 2  # sizes in a row that add no state before concrete search stops
SMALL_INPUT_STEPS = 1_000_000  # a reference run on a small input longer than this is a bug


@dataclass
class ConcreteStates:
    """Call-local states seen on reference runs, each with its action and smallest witness."""

    actions: dict[StateKey, Action] = field(default_factory=dict)
    witness: dict[StateKey, Any] = field(default_factory=dict)
    per_input: list[tuple[Any, frozenset[StateKey]]] = field(default_factory=list)
    counts_by_size: list[tuple[int, int]] = field(default_factory=list)  # (size, |V| so far)
    inputs_run: int = 0
    saturated: bool = False  # the search stopped because sizes stopped adding states
    non_halting: int = 0  # reference runs that did not halt (never, for a sound reference)
    wrong: int = 0  # reference outputs that fail the task's independent check

    def add_run(self, task: Task, formulation: str, value: Any) -> frozenset[StateKey]:
        keys = set()
        run, steps = reference_call_local_steps(task, formulation, value, SMALL_INPUT_STEPS)
        if not run.halted:  # the search's inputs are small: a reference this long loops
            raise ReferenceBug(f"{task_label(task, formulation)}: the reference program does not "
                               f"halt within {SMALL_INPUT_STEPS:,} steps on the small input "
                               f"{task.input_to_json(value)}")
        self.non_halting += not run.halted
        self.wrong += run.halted and not task.check(value, task.output(run.env))
        for key, action in steps:
            keys.add(key)
            known = self.actions.get(key)
            if known is None:
                if problem := task.observation_problem(key[2][-1]):
                    raise PluginError(f"{task_label(task)}: {problem} (input "
                                      f"{task.input_to_json(value)})")
                self.actions[key] = action
                self.witness[key] = value
            elif known != action:  # not a function of the call-local state
                raise ReferenceBug(
                    f"{task_label(task, formulation)}: the reference "
                    f"program reads more than its call's arguments and observations: after "
                    f"{key[0]}{list(key[1])} observed {list(key[2])} it does "
                    f"{task.format_action(self.actions[key])} on input "
                    f"{task.input_to_json(self.witness[key])} but "
                    f"{task.format_action(action)} on input {task.input_to_json(value)}"
                )
        self.inputs_run += 1
        return frozenset(keys)


def concrete_states(
    task: Task,
    formulation: str = RECURSIVE,
    max_size: int = 12,
    samples: int = SAMPLES_PER_SIZE,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    target: Iterable[StateKey] = (),
) -> ConcreteStates:
    """Reference runs on all small inputs, size by size; then the task's covering inputs;
    then random inputs of growing size. Stops when every state of `target` has a witness,
    when SATURATION_PATIENCE sizes in a row add nothing, or after `max_size`."""
    wanted = set(target)
    found = ConcreteStates()
    rng = random.Random(seed)
    quiet = 0

    def run_size(size: int, inputs: list[Any]) -> bool:
        """Run one size's inputs; True when the search is done."""
        nonlocal quiet
        before = len(found.actions)
        for value in inputs:
            keys = found.add_run(task, formulation, value)
            found.per_input.append((value, keys))
        found.counts_by_size.append((size, len(found.actions)))
        if progress:
            progress(size, len(found.actions))
        quiet = quiet + 1 if len(found.actions) == before else 0
        # With an over-approximation as target, the search only collects witnesses, so one
        # size without news is enough; alone it must see SATURATION_PATIENCE such sizes.
        found.saturated = quiet >= (1 if wanted else SATURATION_PATIENCE) or bool(
            wanted and wanted <= found.actions.keys()
        )
        return found.saturated

    size = 1
    while size <= max_size and (inputs := task.small_inputs(size, EXHAUSTIVE_LIMIT)) is not None:
        if run_size(size, inputs):
            return found
        size += 1
    covering = [v for v in task.covering_inputs() if task.input_size(v) >= size]
    for covering_size in sorted({task.input_size(v) for v in covering}):
        if run_size(covering_size, [v for v in covering if task.input_size(v) == covering_size]) and (
            wanted <= found.actions.keys()
        ):
            return found
    quiet = 0
    for sampled in range(size, max_size + 1):
        if run_size(sampled, [task.sample_input(rng, sampled) for _ in range(samples)]):
            break
    return found
