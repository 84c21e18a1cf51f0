"""Building V: the abstract fixed point and the cross-check where the task has Z3 semantics,
the concrete search for witnesses, and, without Z3 semantics, detection of calls that grow
with the input (their call-local sequences, and so V, are unbounded)."""

from __future__ import annotations

import itertools
import random
import time
from collections import defaultdict
from collections.abc import Callable

from verifier.errors import PluginError, UnboundedCall
from verifier.runtime import run_reference, split_calls
from verifier.smt import semantics_for
from verifier.tasks.base import RECURSIVE, Task
from verifier.tasks.registry import task_label
from verifier.vset.concrete import concrete_states
from verifier.vset.crosscheck import CROSS_CHECK_STEPS, CrossCheckElsewhere
from verifier.vset.fixpoint import abstract_states, domain_for
from verifier.vset.result import VerificationSet

GROWTH_SIZES = (8, 16, 32)  # input sizes at which call lengths are compared ...
GROWTH_SAMPLES = 10  # ... on this many random inputs each (a bounded call reaches its bound)


def build_vset(
    task: Task,
    formulation: str = RECURSIVE,
    progress: Callable[[str], None] | None = None,
) -> VerificationSet:
    """Concrete states, and where the task has Z3 semantics the abstract fixed point and the
    cross-check; UnboundedCall when some call's sequences grow without bound."""
    started = time.perf_counter()
    say = progress or (lambda text: None)
    semantics = semantics_for(task)
    abstract = None
    cross = None
    if semantics is not None:
        # The cross-check needs nothing from the fixed point: on a second core it runs
        # meanwhile, in a process of its own, with the same seed, so the same result.
        pending = CrossCheckElsewhere(task, CROSS_CHECK_STEPS)
        say("abstract fixed point (Z3)")
        try:
            abstract = abstract_states(task, domain_for(semantics), formulation)
        except BaseException:
            pending.cancel()
            raise
        say("cross-checking Z3 semantics against the Python environment")
        cross = pending.result()
        if cross.mismatches:  # the task's two halves describe different environments
            raise PluginError(
                f"{task_label(task)}: its Z3 semantics disagree with its "
                f"Python environment ({len(cross.mismatches)} mismatches in {cross.steps} "
                f"replayed steps), e.g. {cross.mismatches[0]}"
            )
    if abstract is None:
        raise_if_growing(task, formulation)
    say("concrete reference runs on small inputs")
    concrete = concrete_states(
        task,
        formulation,
        progress=lambda size, n: say(f"size {size}: {n} states"),
        target=abstract.actions if abstract else (),
    )
    if abstract is not None:
        missing = set(concrete.actions) - set(abstract.actions)
        if missing:  # the over-approximation must contain every concrete state
            raise PluginError(
                f"{task_label(task)}: its Z3 semantics disagree with its "
                f"Python environment: the abstract "
                f"fixed point misses {len(missing)} concrete states, e.g. {min(missing)}"
            )
    states = dict(abstract.actions if abstract else concrete.actions)
    names = tuple(semantics.hidden_names) if semantics else ()
    return VerificationSet(
        task, formulation, states, concrete, abstract, names, cross, time.perf_counter() - started
    )


def raise_if_growing(task: Task, formulation: str) -> None:
    """Without Z3 semantics: a program whose longest call keeps growing with the input size
    (8, 16, 32) loops inside one call, so its call-local sequences are unbounded."""
    rng = random.Random(0)
    longest: dict[str, list[int]] = defaultdict(list)
    for size in GROWTH_SIZES:
        per_program: dict[str, int] = defaultdict(int)
        for _ in range(GROWTH_SAMPLES):
            value = task.sample_input(rng, size)
            for call in split_calls(run_reference(task, formulation, value).steps):
                per_program[call[0].program] = max(per_program[call[0].program], len(call))
        for program, length in per_program.items():
            longest[program].append(length)
    for program, lengths in sorted(longest.items()):
        if len(lengths) == len(GROWTH_SIZES) and all(a < b for a, b in itertools.pairwise(lengths)):
            sizes = ", ".join(f"{n} at size {s}" for n, s in zip(lengths, GROWTH_SIZES))
            raise UnboundedCall(
                program,
                f"the longest call of {program} grows with the input ({sizes} steps): it loops, "
                "so its call-local sequences are unbounded and the verification set is infinite",
            )
