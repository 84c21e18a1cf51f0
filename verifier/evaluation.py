"""Running a trained model on inputs: limits, batched runs, accuracy per size."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from verifier.memo import PrefixSet
from verifier.npi import NPIPolicy
from verifier.runtime import Execution, Limits, execute, reference_execution
from verifier.tasks import Task

STEP_FACTOR = 4  # a model may take 4x the reference program's steps ...
DEPTH_FACTOR = 4  # ... and 4x its call depth (+ DEPTH_SLACK) before it is stopped
DEPTH_SLACK = 8


def model_limits(task: Task, formulation: str, value: Any) -> Limits:
    """Limits derived from the reference program's cost on the same input (design §3)."""
    return limits_after(reference_execution(task, formulation, value))


def prefilled_limits(
    policy: NPIPolicy, task: Task, formulation: str, values: Sequence[Any]
) -> list[Limits]:
    """`model_limits` of each input, and, for a memoized policy, its cache prefilled with the
    call-local prefixes those reference runs visited (`NPIPolicy.prefill`): as long as the
    model agrees with the reference program it meets the same prefixes, and computing them
    together, one batched step per depth, costs far less than one sequential step each.
    Where the model goes its own way it computes its new prefixes as it meets them."""
    return prefilled_runs(policy, task, formulation, values)[0]


def prefilled_runs(
    policy: NPIPolicy, task: Task, formulation: str, values: Sequence[Any]
) -> tuple[list[Limits], list[Execution] | None]:
    """`prefilled_limits`, and the model's runs on `values` where they are known without
    running it: when the prefilled cache decides, after every call-local prefix the
    reference runs visited, the action they took there (`PrefixCache.repeats`), the model's
    run on each input is the reference program's, step for step (its steps not recorded).
    None otherwise (some prefix uncollected, or the model disagrees somewhere)."""
    if policy.cache is None:
        return [model_limits(task, formulation, value) for value in values], None
    prefixes = PrefixSet.for_cache(policy.cache)
    references = [reference_execution(task, formulation, value, prefixes) for value in values]
    policy.prefill(prefixes)
    repeated = references if policy.cache.repeats(prefixes) else None
    policy.cache.replayed += len(values) if repeated else 0
    return [limits_after(reference) for reference in references], repeated


def limits_after(reference: Execution) -> Limits:
    """A model's limits given the reference program's run on the same input."""
    return Limits(
        STEP_FACTOR * reference.step_count, DEPTH_FACTOR * reference.max_depth + DEPTH_SLACK
    )


def run_model(
    policy: NPIPolicy,
    task: Task,
    formulation: str,
    values: Sequence[Any],
    batch_size: int,
    record: bool = False,
    progress: Callable[[int, int], None] | None = None,
    prefill: bool = True,
) -> list[tuple[Execution, Limits]]:
    """Run the model on every input, `batch_size` inputs at a time in lockstep. `progress` is
    told how many inputs have stopped so far and how many steps the current batch has run.
    With `prefill` (and a memoized policy), each batch's reference prefixes are computed ahead
    of its run, and a batch on which the model provably repeats the reference runs is not run
    again (`prefilled_runs`, unless `record`); the runs are the same either way."""
    results: list[tuple[Execution, Limits]] = []
    for start in range(0, len(values), batch_size):
        chunk = values[start : start + batch_size]
        limits, repeated = (prefilled_runs(policy, task, formulation, chunk) if prefill
                            else ([model_limits(task, formulation, v) for v in chunk], None))
        if repeated is not None and not record:
            results.extend(zip(repeated, limits))
            if progress is not None:
                progress(start + len(chunk), max(r.step_count for r in repeated))
            continue
        report = None if progress is None else (
            lambda stopped, steps, start=start: progress(start + stopped, steps)
        )
        runs = execute(task, policy, chunk, limits, record=record, progress=report)
        results.extend(zip(runs, limits))
    return results


def correct(task: Task, run: Execution) -> bool:
    return run.halted and task.check(run.input, task.output(run.env))


@dataclass(frozen=True)
class SizeResult:
    size: int
    samples: int
    accuracy: float

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "samples": self.samples, "accuracy": self.accuracy}


def evaluation_inputs(task: Task, size: int, samples: int, seed: int) -> list[Any]:
    """The random problems of one size; the same (seed, size) always gives the same inputs."""
    rng = random.Random(f"npi-verify-evaluate:{seed}:{size}")
    return [task.sample_input(rng, size) for _ in range(samples)]
