"""Symbolic semantics of the tasks in Z3, and the abstract post they induce.

This package is the only code that imports z3. A task's `Semantics` describes an environment
of unbounded size with Z3 terms (the size `n` and array contents are unconstrained), its
initial states, its primitives, and an abstraction: the observation components followed by
hidden predicates, each a small integer-valued term. `AbstractDomain` asks Z3 which abstract
states can follow which under each primitive, for environments of every size.
"""

from __future__ import annotations

import itertools
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import z3

from verifier.tasks.base import Args, Task

Abstract = tuple[int, ...]
SymEnv = dict[str, Any]  # name -> z3 term

QUERY_TIMEOUT_MS = 10_000


def bit(condition: z3.BoolRef) -> z3.ArithRef:
    return z3.If(condition, z3.IntVal(1), z3.IntVal(0))


class Semantics(ABC):
    """A task's environment and primitives in Z3, plus its abstraction."""

    task: Task
    hidden_names: tuple[str, ...]

    @abstractmethod
    def fresh(self, tag: str) -> SymEnv:
        """A symbolic environment of unconstrained size and contents."""

    @abstractmethod
    def domain(self, env: SymEnv) -> z3.BoolRef:
        """Facts true of every environment of the task (e.g. n >= 1)."""

    @abstractmethod
    def initial(self, env: SymEnv) -> z3.BoolRef:
        """`env` is the initial environment of some valid input."""

    @abstractmethod
    def apply(self, env: SymEnv, program: str, args: Args) -> SymEnv:
        """The environment after primitive `program(*args)`."""

    @abstractmethod
    def observation(self, env: SymEnv) -> list[z3.ArithRef]:
        """The task's observation, component by component, exactly as `Task.observe`."""

    @abstractmethod
    def hidden(self, env: SymEnv) -> list[z3.ArithRef]:
        """Hidden predicates, each 0 or 1, that make the abstraction precise."""

    @abstractmethod
    def encode(self, env: Any) -> SymEnv:
        """A concrete Python environment as Z3 constants (for the cross-check)."""

    def abstraction(self, env: SymEnv) -> list[z3.ArithRef]:
        return self.observation(env) + self.hidden(env)

    @property
    def observation_size(self) -> int:
        return len(self.task.observation_names)

    def ranges(self) -> list[int]:
        """Value ranges of the abstraction's components: observations as declared, hidden
        predicates 0/1."""
        return [len(v) for v in self.task.observation_values] + [2] * len(self.hidden_names)


@dataclass
class SolverStats:
    queries: int = 0
    unknown: int = 0
    seconds: float = 0.0


@dataclass
class AbstractDomain:
    """Abstract initial states and abstract posts of one task, computed by Z3 and cached."""

    semantics: Semantics
    timeout_ms: int = QUERY_TIMEOUT_MS
    stats: SolverStats = field(default_factory=SolverStats)
    _posts: dict[tuple[Abstract, str, Args], frozenset[Abstract]] = field(default_factory=dict)
    _templates: dict[tuple[str, Args], tuple] = field(default_factory=dict)

    def initial_states(self) -> frozenset[Abstract]:
        env = self.semantics.fresh("e")
        premise = z3.And(self.semantics.domain(env), self.semantics.initial(env))
        terms = self.semantics.abstraction(env)
        solver, names = self._solver(premise, terms, "abstract")
        return self._all_values(solver, names, terms)

    def post(self, state: Abstract, program: str, args: Args) -> frozenset[Abstract]:
        key = (state, program, args)
        if key not in self._posts:
            solver, now, after, names = self._template(program, args)
            solver.push()  # the state's values and the blocking clauses live in this scope
            solver.add(*[t == v for t, v in zip(now, state, strict=True)])
            self._posts[key] = self._all_values(solver, names, after)
            solver.pop()
        return self._posts[key]

    def _template(self, program: str, args: Args) -> tuple[z3.Solver, list, list, list]:
        """One solver per primitive, holding the domain and the post's terms bound to
        variables, built once and reused for every state (term building is slow in Python)."""
        key = (program, args)
        if key not in self._templates:
            sem = self.semantics
            env = sem.fresh("e")
            now, after = sem.abstraction(env), sem.abstraction(sem.apply(env, program, args))
            solver, names = self._solver(sem.domain(env), after, "after")
            self._templates[key] = (solver, now, after, names)
        return self._templates[key]

    def _solver(
        self, premise: z3.BoolRef, terms: Sequence[z3.ArithRef], tag: str
    ) -> tuple[z3.Solver, list[z3.ArithRef]]:
        """A solver asserting `premise`, with each term bound to a variable: the model gives
        the variable's value even where the term holds a quantifier that model evaluation
        would leave unreduced."""
        solver = z3.Solver()
        solver.set("timeout", self.timeout_ms)
        names = [z3.Int(f"{tag}_{k}") for k in range(len(terms))]
        solver.add(premise, *[name == term for name, term in zip(names, terms)])
        return solver, names

    def _all_values(
        self,
        solver: z3.Solver,
        names: list[z3.ArithRef],
        terms: Sequence[z3.ArithRef],
    ) -> frozenset[Abstract]:
        """Every value tuple the bound terms take on models of the solver's assertions
        (all-SAT with blocking clauses, which the caller's scope removes).

        If the solver answers `unknown`, fall back to testing each remaining candidate tuple in
        the terms' declared ranges one by one against the assertions and keep the ones it
        cannot rule out (sound: the blocking clauses exclude only tuples already found)."""
        found: set[Abstract] = set()
        while True:
            result = self._check(solver)
            if result == z3.unsat:
                return frozenset(found)
            if result == z3.unknown:
                premise = z3.And(solver.assertions())
                return frozenset(found | self._candidates_not_refuted(premise, terms, found))
            model = solver.model()
            evaluated = [model.eval(name, model_completion=True) for name in names]
            if not all(z3.is_int_value(v) for v in evaluated):  # a model Z3 left unreduced
                self.stats.unknown += 1
                premise = z3.And(solver.assertions())
                return frozenset(found | self._candidates_not_refuted(premise, terms, found))
            values = tuple(v.as_long() for v in evaluated)
            found.add(values)
            solver.add(z3.Or([name != v for name, v in zip(names, values)]))

    def _candidates_not_refuted(
        self, premise: z3.BoolRef, terms: Sequence[z3.ArithRef], found: set[Abstract]
    ) -> set[Abstract]:
        ranges = [range(size) for size in self.semantics.ranges()]
        kept = set()
        for candidate in itertools.product(*ranges):
            if candidate in found:
                continue
            solver = z3.Solver()
            solver.set("timeout", self.timeout_ms)
            solver.add(premise, *[t == v for t, v in zip(terms, candidate)])
            if self._check(solver) != z3.unsat:
                kept.add(candidate)
        return kept

    def _check(self, solver: z3.Solver) -> z3.CheckSatResult:
        started = time.perf_counter()
        result = solver.check()
        self.stats.queries += 1
        self.stats.seconds += time.perf_counter() - started
        if result == z3.unknown:
            self.stats.unknown += 1
        return result


def concrete_observation(semantics: Semantics, env: Any) -> Abstract:
    """The observation of a concrete environment, computed through Z3 (for cross-checks)."""
    return tuple(z3.simplify(t).as_long() for t in semantics.observation(semantics.encode(env)))


def is_initial(semantics: Semantics, env: Any) -> bool:
    """Whether a concrete initial environment satisfies the Z3 initial condition."""
    symbolic = semantics.encode(env)
    return z3.is_true(z3.simplify(z3.And(semantics.domain(symbolic), semantics.initial(symbolic))))


def concrete_observation_after(semantics: Semantics, env: Any, program: str, args: Args) -> Abstract:
    """The observation after a primitive on a concrete environment, computed through Z3."""
    after = semantics.apply(semantics.encode(env), program, args)
    return tuple(z3.simplify(t).as_long() for t in semantics.observation(after))


def array_of(values: Sequence[int], default: int = 0) -> z3.ArrayRef:
    """A Z3 array holding values[0..] at indices 1.. (1-based, like the tasks' rows)."""
    array = z3.K(z3.IntSort(), z3.IntVal(default))
    for index, value in enumerate(values, start=1):
        array = z3.Store(array, index, value)
    return array


def z3_version() -> str:
    return z3.get_version_string()
