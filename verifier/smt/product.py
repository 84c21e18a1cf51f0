"""Environments made of independent parts, and the abstract domain they allow.

Some environments are a product: the scratch pad of addition is four rows, each with its own
cells and pointer, and every primitive touches exactly one row. Each part is then a small
`Semantics` of its own (its observation components and hidden predicates: its hints and the
predicates discovered from its vocabulary, `verifier.smt.discover`), the initial
condition is a conjunction over the parts, and a primitive's post changes one part's abstract
state and leaves the others as they were. `ProductDomain` asks Z3 only about the part a
primitive touches, so the number of queries grows with the sum of the parts' abstract states,
not with their product. Independence is structural: parts share no Z3 variable (names are
prefixed by the part), and `route` sends each primitive to exactly one part.
"""

from __future__ import annotations

import functools
import itertools
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import z3

from verifier.smt import Abstract, AbstractDomain, Predicate, Semantics, SolverStats, SymEnv, Term
from verifier.tasks.base import Args, Task


class Part(Semantics):
    """One independent part of a product environment.

    `components` are the indices of the task's observation components this part produces, in
    order; `observation` returns exactly those."""

    name: str
    components: tuple[int, ...]
    value_counts: tuple[int, ...]  # range of each of this part's observation components

    @property
    def observation_size(self) -> int:
        return len(self.components)

    def ranges(self) -> list[int]:
        return list(self.value_counts) + [p.values for p in self.predicates]


class ProductSemantics(Semantics):
    """A task's semantics as the product of independent parts."""

    parts: tuple[Part, ...]

    def __init__(self, task: Task, parts: tuple[Part, ...]) -> None:
        self.task = task
        self.parts = parts
        owned = sorted(c for part in parts for c in part.components)
        assert owned == list(range(len(task.observation_names))), "parts must own each component once"

    @property
    def predicates(self) -> tuple[Predicate, ...]:
        """Each part's predicates (hints, then discovered), named `part: predicate`, as
        functions of the joint environment."""
        return tuple(
            Predicate(f"{part.name}: {p.name}", functools.partial(self._on_part, k, p.term),
                      p.values)
            for k, part in enumerate(self.parts)
            for p in part.predicates
        )

    @property
    def declared_names(self) -> tuple[str, ...]:
        return tuple(f"{part.name}: {p.name}" for part in self.parts for p in part.hints())

    def _on_part(self, k: int, term: Callable[[SymEnv], Term], env: SymEnv) -> Term:
        return term(self._split(env, k))

    @abstractmethod
    def route(self, program: str, args: Args) -> int:
        """The index of the one part that primitive `program(*args)` reads or changes."""

    def _split(self, env: SymEnv, k: int) -> SymEnv:
        prefix = f"{self.parts[k].name}."
        return {name[len(prefix):]: v for name, v in env.items() if name.startswith(prefix)}

    def _join(self, envs: list[SymEnv]) -> SymEnv:
        return {f"{p.name}.{name}": v for p, env in zip(self.parts, envs) for name, v in env.items()}

    def fresh(self, tag: str) -> SymEnv:
        return self._join([p.fresh(f"{tag}_{p.name}") for p in self.parts])

    def domain(self, env: SymEnv) -> z3.BoolRef:
        return z3.And([p.domain(self._split(env, k)) for k, p in enumerate(self.parts)])

    def initial(self, env: SymEnv) -> z3.BoolRef:
        return z3.And([p.initial(self._split(env, k)) for k, p in enumerate(self.parts)])

    def initial_contents(self, env: SymEnv) -> z3.BoolRef:
        return z3.And([p.initial_contents(self._split(env, k)) for k, p in enumerate(self.parts)])

    def apply(self, env: SymEnv, program: str, args: Args) -> SymEnv:
        target = self.route(program, args)
        envs = [self._split(env, k) for k in range(len(self.parts))]
        envs[target] = self.parts[target].apply(envs[target], program, args)
        return self._join(envs)

    def observation(self, env: SymEnv) -> list[z3.ArithRef]:
        terms: list[Any] = [None] * self.observation_size
        for k, part in enumerate(self.parts):
            for component, term in zip(part.components, part.observation(self._split(env, k))):
                terms[component] = term
        return terms

    def encode(self, env: Any) -> SymEnv:
        return self._join([p.encode(env) for p in self.parts])


@dataclass
class ProductDomain:
    """Abstract initial states and posts of a product environment, part by part.

    A joint abstract state is laid out like `Semantics.abstraction`: the task's observation
    components, then each part's hidden predicates in part order."""

    semantics: ProductSemantics
    domains: list[AbstractDomain] = field(init=False)
    _posts: dict[tuple[Abstract, str, Args], frozenset[Abstract]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.domains = [AbstractDomain(part) for part in self.semantics.parts]
        self._hidden_at = []
        offset = self.semantics.observation_size
        for part in self.semantics.parts:
            self._hidden_at.append(tuple(range(offset, offset + len(part.hidden_names))))
            offset += len(part.hidden_names)

    @property
    def stats(self) -> SolverStats:
        total = SolverStats()
        for domain in self.domains:
            total.queries += domain.stats.queries
            total.unknown += domain.stats.unknown
            total.seconds += domain.stats.seconds
        return total

    def _indices(self, k: int) -> tuple[int, ...]:
        return self.semantics.parts[k].components + self._hidden_at[k]

    def _project(self, state: Abstract, k: int) -> Abstract:
        return tuple(state[i] for i in self._indices(k))

    def _replace(self, state: Abstract, k: int, local: Abstract) -> Abstract:
        joint = list(state)
        for i, value in zip(self._indices(k), local, strict=True):
            joint[i] = value
        return tuple(joint)

    def initial_states(self) -> frozenset[Abstract]:
        size = self.semantics.observation_size + len(self.semantics.hidden_names)
        per_part = [sorted(d.initial_states()) for d in self.domains]
        states = set()
        for choice in itertools.product(*per_part):
            state = (0,) * size
            for k, local in enumerate(choice):
                state = self._replace(state, k, local)
            states.add(state)
        return frozenset(states)

    @property
    def width(self) -> int:
        return self.semantics.observation_size + len(self.semantics.hidden_names)

    def enter(self, entry: Abstract) -> frozenset[Abstract]:
        """A call's first point is its entry state (parts declare no relations)."""
        return frozenset([entry])

    def ret(self, entry: Abstract, site: Abstract, exit: Abstract) -> frozenset[Abstract]:
        """The caller continues in the callee's exit state."""
        return frozenset([exit])

    def keeps_relations(self, program: str, args: Args) -> bool:
        return True  # there are none

    def post(self, state: Abstract, program: str, args: Args) -> frozenset[Abstract]:
        key = (state, program, args)
        found = self._posts.get(key)
        if found is None:
            k = self.semantics.route(program, args)
            local = self.domains[k].post(self._project(state, k), program, args)
            found = self._posts[key] = frozenset(self._replace(state, k, after) for after in local)
        return found
