"""`VerificationSet`: V with everything a certificate reports about how it was obtained, the
witness inputs that cover it, and the reference runs far beyond the sizes searched."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from verifier.runtime import StateKey, reference_execution
from verifier.tasks.base import Action, Task
from verifier.traces import greedy_cover_sets
from verifier.vset.concrete import ConcreteStates
from verifier.vset.crosscheck import CrossCheck
from verifier.vset.fixpoint import AbstractStates

COVER_PROBES = 50  # random inputs offered to the witness cover besides the inputs searched ...
COVER_PROBE_SIZE = 24  # ... each of at most this size
LARGE_TEST_INPUTS = 10  # random inputs of the task's large_test_size for the reference obligations


@dataclass
class LargeReferenceRuns:
    """Reference runs on random inputs far beyond the sizes searched."""

    inputs: int
    size: int
    non_halting: int = 0
    wrong: int = 0


@dataclass
class VerificationSet:
    """V with everything the certificate reports about how it was obtained."""

    task: Task
    formulation: str
    states: dict[StateKey, Action]  # the abstract over-approximation where it exists
    concrete: ConcreteStates
    abstract: AbstractStates | None
    predicates: tuple[str, ...]
    cross: CrossCheck | None
    seconds: float
    _cover: list[Any] | None = field(default=None, init=False, repr=False)
    _large: LargeReferenceRuns | None = field(default=None, init=False, repr=False)

    @property
    def coverage_proved(self) -> bool:
        """V contains every reachable call-local state, for inputs of every size."""
        return (
            self.abstract is not None
            and self.abstract.stats.unknown == 0
            and self.cross is not None
            and not self.cross.mismatches
        )

    @property
    def unwitnessed(self) -> list[StateKey]:
        return [k for k in self.states if k not in self.concrete.actions]

    @property
    def exact(self) -> bool:
        return self.coverage_proved and not self.unwitnessed

    def witness_cover(self, extra: int = COVER_PROBES, seed: int = 0) -> list[Any]:
        """A small set of inputs whose reference runs reach every witnessed state of V,
        picked greedily from the inputs searched plus `extra` random inputs up to twice the
        largest size searched (longer inputs reach more states at once), at most
        COVER_PROBE_SIZE. Computed once per set with the default arguments."""
        default = (extra, seed) == (COVER_PROBES, 0)
        if default and self._cover is not None:
            return self._cover
        pool = list(self.concrete.per_input)
        rng = random.Random(seed)
        top = min(2 * max(size for size, _ in self.concrete.counts_by_size), COVER_PROBE_SIZE)
        probe = ConcreteStates()
        for _ in range(extra):
            value = self.task.sample_input(rng, rng.randint(1, top))
            pool.append((value, probe.add_run(self.task, self.formulation, value)))
        searched = len(self.concrete.per_input)  # their states are all in the concrete set
        sets = [
            keys if k < searched else keys & self.concrete.actions.keys()
            for k, (_, keys) in enumerate(pool)
        ]
        cover = [pool[k][0] for k in greedy_cover_sets(sets)]
        if default:
            self._cover = cover
        return cover

    def large_reference_runs(self) -> LargeReferenceRuns:
        """The reference program on LARGE_TEST_INPUTS random inputs of the task's
        `large_test_size` (seed 0), far beyond the sizes searched: evidence for termination and
        correctness (tested, not proved). Computed once per set."""
        if self._large is None:
            rng = random.Random(0)
            size = self.task.large_test_size
            large = [self.task.sample_input(rng, size) for _ in range(LARGE_TEST_INPUTS)]
            found = LargeReferenceRuns(len(large), size)
            for value in large:
                run = reference_execution(self.task, self.formulation, value)
                found.non_halting += not run.halted
                found.wrong += run.halted and not self.task.check(value, self.task.output(run.env))
            self._large = found
        return self._large

    def per_program(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for program, _, _ in self.states:
            counts[program] += 1
        return dict(sorted(counts.items()))

    def tree_nodes(self) -> int:
        """Nodes of the prefix trees: V is prefix-closed, so one per element."""
        return len(self.states)
