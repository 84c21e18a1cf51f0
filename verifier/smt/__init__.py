"""Symbolic semantics of the tasks in Z3, and the abstract post they induce.

This package is the only code that imports z3. A task's `Semantics` describes an environment
of unbounded size with Z3 terms (the size `n` and array contents are unconstrained), its
initial states, its primitives, and an abstraction: the observation components followed by
hidden predicates (`Predicate` values: a name and the 0/1 term it gives on an environment).
The predicates are the task's declared hints followed by the ones `verifier.smt.discover` found
from generic templates over the vocabulary the semantics declares. `AbstractDomain` asks Z3
which abstract states can follow which under each primitive, for environments of every size.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import z3

from verifier.errors import PluginError, UndecidedPost, VerifierError
from verifier.smt.contracts import Contract, Specification
from verifier.smt.terms import subterms
from verifier.tasks.base import Args, Task

Abstract = tuple[int, ...]
SymEnv = dict[str, Any]  # name -> z3 term

QUERY_TIMEOUT_MS = 10_000
FALLBACK_CANDIDATES = 1 << 16  # most abstract states tested one by one after an unknown


def bit(condition: z3.BoolRef) -> z3.ArithRef:
    return z3.If(condition, z3.IntVal(1), z3.IntVal(0))


@dataclass(frozen=True)
class Universal:
    """A hidden predicate or axiom `for all x1..xk: body(x1, ..., xk)`, each variable of a named
    kind (say "vertex" or "index"). As a hidden predicate its value is 1 where the body holds
    for every choice of the variables. Z3 never sees the quantifier (see `AbstractDomain`)."""

    kinds: tuple[str, ...]
    body: Callable[..., z3.BoolRef]

    def instances(self, pool: dict[str, list[z3.ArithRef]]) -> list[z3.BoolRef]:
        return [self.body(*choice) for choice in itertools.product(*(pool[k] for k in self.kinds))]


Term = z3.ArithRef | Universal


@dataclass(frozen=True)
class Predicate:
    """A hidden predicate: its name and, for a symbolic environment, its term (0 or 1, or a
    `Universal`). Name and term travel together, so they cannot drift apart. A predicate that
    tracks a value (say the digit in a cell the pointers have left) declares `values`: its
    term then takes one of 0..values-1 on every environment of the task's domain."""

    name: str
    term: Callable[[SymEnv], Term]
    values: int = 2


@dataclass(frozen=True)
class Relation:
    """A relational predicate: its name and, for a call's entry environment and the
    environment now, its 0/1 term (say "the stack pointer is one below its value at entry",
    or "every frame below the entry's top is as it was"). Relations make function summaries
    relate a call's exit to its entry (see `AbstractDomain.ret`); like every abstract
    component, their values are computed by Z3, never assumed."""

    name: str
    term: Callable[[SymEnv, SymEnv], Term]


@dataclass(frozen=True)
class ArrayView:
    """An array of the vocabulary: `read(i)` is its cell at index i; `first` and `last` are
    the ends of the part that holds data (the templates compare cells at and next to them)."""

    name: str
    read: Callable[[Any], z3.ArithRef]
    first: z3.ArithRef
    last: z3.ArithRef


@dataclass(frozen=True)
class StackView:
    """A stack of frames: `depth` frames, numbered 1..depth from the bottom; `fields` gives
    each named field of frame k (say a frame's lo and hi bounds)."""

    name: str
    depth: z3.ArithRef
    fields: Mapping[str, Callable[[Any], z3.ArithRef]]


@dataclass(frozen=True)
class Vocabulary:
    """What predicate templates are built from (`verifier.smt.discover`): the size (None where
    the environment has none), named pointers, arrays, stacks, boolean flags, and the constants
    that cells are compared with."""

    size: z3.ArithRef | None = None
    pointers: Mapping[str, z3.ArithRef] = field(default_factory=dict)
    arrays: tuple[ArrayView, ...] = ()
    stacks: tuple[StackView, ...] = ()
    flags: Mapping[str, z3.BoolRef] = field(default_factory=dict)
    constants: tuple[int, ...] = ()


class Semantics(ABC):
    """A task's environment and primitives in Z3, plus its abstraction.

    The abstraction is the observation followed by `predicates`: the task's `hints()` (declared
    by hand, for facts no template expresses) and the predicates discovered from templates over
    `vocabulary(env)`, which `semantics_for` loads from the task package's `predicates.json`."""

    task: Task
    version = 1  # bump when the encoding or the predicates change (part of V's cache key)
    discovered: tuple[Predicate, ...] = ()

    @abstractmethod
    def fresh(self, tag: str) -> SymEnv:
        """A symbolic environment of unconstrained size and contents."""

    @abstractmethod
    def domain(self, env: SymEnv) -> z3.BoolRef:
        """Facts true of every environment of the task (e.g. n >= 1)."""

    @abstractmethod
    def initial(self, env: SymEnv) -> z3.BoolRef:
        """`env` is the initial environment of some valid input."""

    def initial_contents(self, env: SymEnv) -> z3.BoolRef:
        """More of what holds of a valid input's initial environment, left out of `initial`
        because the abstraction needs none of it and its quantifiers would burden every query
        of the fixed point: e.g. an array's initial contents. The whole proofs
        (`verifier.induction`) assume it beside `initial`, and the cross-check checks it of
        every concrete initial environment it meets."""
        return z3.BoolVal(True)

    @abstractmethod
    def apply(self, env: SymEnv, program: str, args: Args) -> SymEnv:
        """The environment after primitive `program(*args)`."""

    @abstractmethod
    def observation(self, env: SymEnv) -> list[z3.ArithRef]:
        """The task's observation, component by component, exactly as `Task.observe`."""

    def hints(self) -> tuple[Predicate, ...]:
        """Declared predicates: the ones no template of `verifier.smt.discover` finds."""
        return ()

    def relations(self) -> tuple[Relation, ...]:
        """Relational predicates between a call's entry environment and the environment now,
        carried by every point of the abstract fixed point after the abstraction (none by
        default: a call's summary then maps its entry state to its exit states alone)."""
        return ()

    def linked_components(self) -> tuple[str, ...] | None:
        """The names (observation names, then hidden predicates' names) of the components of
        the abstraction that a return query asks about (see `AbstractDomain.linked`), or None
        (the default) for every component that reads what some relation reads. Naming fewer
        only adds models to the query (sound) and keeps the number of distinct queries
        small."""
        return None

    def composes_every_return(self) -> bool:
        """Whether every call's exits are composed with its caller's entry through the
        relations (`AbstractDomain.ret`), also where the call keeps the relations' values
        (False by default: those values then carry over without a query). Composing removes
        the exits that contradict what the caller's entry fixed, say a cell the callee never
        changes."""
        return False

    def vocabulary(self, env: SymEnv) -> Vocabulary:
        """The size, pointers, arrays and stacks of `env` that predicate templates use."""
        return Vocabulary()

    @property
    def predicates(self) -> tuple[Predicate, ...]:
        """The hidden predicates: declared hints, then discovered ones."""
        return self.hints() + self.discovered

    @property
    def hidden_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.predicates)

    @property
    def declared_names(self) -> tuple[str, ...]:
        """The names of the declared predicates (hints); the others were discovered."""
        return tuple(p.name for p in self.hints())

    def hidden(self, env: SymEnv) -> list[Term]:
        """The hidden predicates' terms on `env`, in order."""
        return [p.term(env) for p in self.predicates]

    @abstractmethod
    def encode(self, env: Any) -> SymEnv:
        """A concrete Python environment as Z3 constants (for the cross-check)."""

    def contract(self, formulation: str, program: str, args: Args) -> Contract | None:
        """The contract of routine `program(*args)` of the reference program written in
        `formulation` (`verifier.smt.contracts`): None where the task declares none
        (precondition and postcondition true, no ranking function)."""
        return None

    def specification(self) -> Specification | None:
        """What the entry routine's result must satisfy; None where the task declares nothing
        (reference correctness then stays tested)."""
        return None

    def axioms(self, env: SymEnv) -> list[Universal]:
        """Universal facts true of every environment of the task (used by instances only)."""
        return []

    def instance_terms(
        self, envs: list[SymEnv], witnesses: dict[str, list[z3.ArithRef]]
    ) -> dict[str, list[z3.ArithRef]]:
        """The terms of each kind at which universal facts about `envs` are instantiated,
        given the fresh witnesses of the universal predicates that a query asserts false."""
        raise NotImplementedError(f"{type(self).__name__} declares no instance terms")

    def abstraction(self, env: SymEnv) -> list[Term]:
        return self.observation(env) + self.hidden(env)

    @property
    def observation_size(self) -> int:
        return len(self.task.observation_names)

    def ranges(self) -> list[int]:
        """Value ranges of the abstraction's components: observations as declared, hidden
        predicates 0/1 (or the values they declare)."""
        return [len(v) for v in self.task.observation_values] + [p.values for p in self.predicates]


@dataclass
class SolverStats:
    queries: int = 0
    unknown: int = 0
    seconds: float = 0.0


@dataclass
class AbstractDomain:
    """Abstract initial states and abstract posts of one task, computed by Z3 and cached.

    Every abstraction term is bound to an integer variable, and a query enumerates the values
    of those variables. A `Universal` term is bound without a quantifier: value 0 asserts its
    body false at fresh witnesses (exact), value 1 asserts its body at every combination of
    the semantics' instance terms (weaker than the universal statement). Both weakenings only
    add models, so the posts over-approximate and stay sound for environments of every size.

    Where the semantics declares relations (`Semantics.relations`), a point of the fixed point
    is the abstraction followed by the relations' values between the call's entry environment
    and the environment now: `enter` gives a call's first points, `post` moves the relations
    along with the abstraction, and `ret` composes a callee's exit with its caller's point.
    Without relations a point is the abstraction alone and `enter`, `ret` are identities."""

    semantics: Semantics
    timeout_ms: int = QUERY_TIMEOUT_MS
    stats: SolverStats = field(default_factory=SolverStats)
    _posts: dict[tuple[Abstract, str, Args], frozenset[Abstract]] = field(default_factory=dict)
    _templates: dict[tuple[str, Args], tuple] = field(default_factory=dict)
    _enters: dict[Abstract, frozenset[Abstract]] = field(default_factory=dict)
    _returns: dict[tuple[Abstract, Abstract, Abstract], frozenset[Abstract]] = field(
        default_factory=dict)
    _rets: dict[tuple[Abstract, Abstract, Abstract], frozenset[Abstract]] = field(
        default_factory=dict)
    _relational: dict[str, tuple] = field(default_factory=dict)
    _keeps: dict[tuple[str, Args], bool] = field(default_factory=dict)
    _keep_queries: dict[tuple[str, Args], Any] = field(default_factory=dict)
    _equal: dict[tuple[int, int], tuple[z3.ArithRef, z3.BoolRef, z3.BoolRef]] = field(
        default_factory=dict)

    @functools.cached_property
    def relations(self) -> tuple[Relation, ...]:
        return tuple(self.semantics.relations())

    @functools.cached_property
    def width(self) -> int:
        """The number of components of an abstract state (a call's entry state)."""
        return len(self.semantics.ranges())

    def initial_states(self) -> frozenset[Abstract]:
        sem = self.semantics
        env = sem.fresh("e")
        facts, (names,) = self._bind([env], [("abstract", sem.abstraction(env))])
        solver = self._new_solver()
        solver.add(sem.domain(env), sem.initial(env), *facts)
        return self._all_values(solver, names, sem.ranges())

    def enter(self, entry: Abstract) -> frozenset[Abstract]:
        """The first points of a call entered in abstract state `entry`: the state followed
        by each value the relations can take between an environment and itself."""
        if not self.relations:
            return frozenset([entry])
        if entry not in self._enters:
            solver, now, after = self._relational_template("enter")
            found = self._solve(solver, now, entry, after, [2] * len(self.relations))
            self._enters[entry] = frozenset(entry + r for r in found)
        return self._enters[entry]

    def post(self, state: Abstract, program: str, args: Args) -> frozenset[Abstract]:
        """The abstract states after primitive `program(*args)` from `state`. A primitive that
        leaves every relation's value as it was (`keeps_relations`) moves the abstraction
        alone and carries the relations' values over."""
        width = self.width
        if len(state) > width and self.keeps_relations(program, args):
            return frozenset(a + state[width:] for a in self.post(state[:width], program, args))
        key = (state, program, args)
        if key not in self._posts:
            relational = len(state) > width
            solver, now, after = self._template(program, args, relational)
            sizes = self.semantics.ranges() + [2] * (len(state) - width)
            self._posts[key] = self._solve(solver, now, state, after, sizes)
        return self._posts[key]

    def keeps_relations(self, program: str, args: Args) -> bool:
        """Whether Z3 proves that the primitive leaves the value of every relation between
        any entry environment and the environment it acts on unchanged (a universal relation:
        its body, at any choice of its variables). False where Z3 cannot decide."""
        if not self.relations:
            return True
        key = (program, args)
        if key not in self._keeps:
            sem = self.semantics
            entry, env = sem.fresh("entry"), sem.fresh("e")
            moved = sem.apply(env, program, args)
            same = []
            for relation in self.relations:
                before, after = relation.term(entry, env), relation.term(entry, moved)
                if isinstance(before, Universal):
                    chosen = [z3.Int(f"keep_x{m}") for m in range(len(before.kinds))]
                    before, after = before.body(*chosen), after.body(*chosen)
                same.append(before == after)
            solver = self._new_solver()
            solver.add(sem.domain(entry), sem.domain(env), z3.Not(z3.And(same)))
            self._keeps[key] = self._check(solver) == z3.unsat
            self._keep_queries[key] = solver.assertions()
        return self._keeps[key]

    def ret(self, entry: Abstract, site: Abstract, exit: Abstract) -> frozenset[Abstract]:
        """The caller's points after a call returns: the callee's exit abstraction with the
        caller's relations, for a caller entered in `entry` that made the call at point `site`
        and a callee exit `exit` (relations relative to the callee's entry). Empty where Z3
        finds no environments that fit all three: the exit cannot follow that call."""
        if not self.relations:
            return frozenset([exit])
        full = (entry, site, exit)
        if full in self._rets:
            return self._rets[full]
        width, linked = self.width, self.linked
        key = (tuple(entry[k] for k in linked), tuple(site[k] for k in linked) + site[width:],
               tuple(exit[k] for k in linked) + exit[width:])
        if key not in self._returns:
            solver, now, after = self._relational_template("return")
            self._returns[key] = self._solve(
                solver, now, key[0] + key[1] + key[2], after, [2] * len(self.relations))
        self._rets[full] = frozenset(exit[:width] + r for r in self._returns[key])
        return self._rets[full]

    @functools.cached_property
    def linked(self) -> tuple[int, ...]:
        """The components of the abstraction that `ret` asks about: those whose terms read an
        environment variable that some relation reads. Leaving the others out of its query
        only adds models (sound); with them, it grows with every combination of them. A
        semantics that names the components to ask about (`linked_components`) gets those."""
        sem = self.semantics
        named = sem.linked_components()
        if named is not None:
            names = tuple(sem.task.observation_names) + sem.hidden_names
            unknown = sorted(set(named) - set(names))
            if unknown:
                raise PluginError(f"{sem.task.name}: linked_components() names {unknown[0]!r}, "
                                  "which is no component of its abstraction")
            return tuple(sorted(names.index(name) for name in named))
        entry, env = sem.fresh("reads0"), sem.fresh("reads")
        read = set()
        for relation in self.relations:
            read |= _reads(relation.term(entry, env), entry) | _reads(relation.term(entry, env), env)
        return tuple(k for k, term in enumerate(sem.abstraction(env)) if _reads(term, env) & read)

    def _solve(
        self, solver: z3.Solver, now: list, state: Abstract, after: list, sizes: list[int]
    ) -> frozenset[Abstract]:
        solver.push()  # the state's values and the blocking clauses live in this scope
        _assert(solver, [self._is(name, v)[0] for name, v in zip(now, state, strict=True)])
        found = self._all_values(solver, after, sizes)
        solver.pop()
        return found

    def _is(self, name: z3.ArithRef, value: int) -> tuple[z3.BoolRef, z3.BoolRef]:
        """`name == value` and `name != value`, each made once: a fixed point asks about the
        same few values of the same variables thousands of times, and making a Z3 term in
        Python costs more than most of its queries."""
        found = self._equal.get((id(name), value))
        if found is None or found[0] is not name:  # the name is kept, so its id stays its own
            equal = name == value
            found = self._equal[(id(name), value)] = (name, equal, z3.Not(equal))
        return found[1], found[2]

    def _relate(self, entry: SymEnv, env: SymEnv) -> list[Term]:
        return [relation.term(entry, env) for relation in self.relations]

    def _template(
        self, program: str, args: Args, relational: bool = False
    ) -> tuple[z3.Solver, list, list]:
        """One solver per primitive, holding the domain and the terms before and after it bound
        to variables, built once and reused for every state (term building is slow in Python).
        A relational one adds the relations with a third environment, the call's entry."""
        key = (program, args, relational) if relational else (program, args)
        if key not in self._templates:
            sem = self.semantics
            env = sem.fresh("e")
            moved = sem.apply(env, program, args)
            now, after = sem.abstraction(env), sem.abstraction(moved)
            envs, domains = [env, moved], [sem.domain(env)]
            if relational:
                entry = sem.fresh("entry")
                now, after = now + self._relate(entry, env), after + self._relate(entry, moved)
                envs, domains = [env, moved, entry], domains + [sem.domain(entry)]
            facts, (now, after) = self._bind(envs, [("now", now), ("after", after)])
            solver = self._new_solver()
            solver.add(*domains, *facts)
            self._templates[key] = (solver, now, after)
        return self._templates[key]

    def _relational_template(self, kind: str) -> tuple[z3.Solver, list, list]:
        """The solver of `enter` (an environment's abstraction -> the relations between it and
        itself) or of `ret` (a caller's entry abstraction, its point at the call, the callee's
        exit point -> the relations between the caller's entry and the callee's exit)."""
        if kind not in self._relational:
            sem = self.semantics
            if kind == "enter":
                env = sem.fresh("e")
                envs = [env]
                groups = [("now", sem.abstraction(env)), ("after", self._relate(env, env))]
            else:
                outer, env, done = sem.fresh("entry"), sem.fresh("e"), sem.fresh("exit")
                envs = [env, outer, done]

                def linked(e: SymEnv) -> list[Term]:
                    terms = sem.abstraction(e)
                    return [terms[k] for k in self.linked]

                now = (linked(outer) + linked(env) + self._relate(outer, env)
                       + linked(done) + self._relate(env, done))
                groups = [("now", now), ("after", self._relate(outer, done))]
            facts, (now, after) = self._bind(envs, groups, axioms_of=envs)
            solver = self._new_solver()
            solver.add(*[sem.domain(e) for e in envs], *facts)
            self._relational[kind] = (solver, now, after)
        return self._relational[kind]

    def _bind(
        self, envs: list[SymEnv], groups: list[tuple[str, Sequence[Term]]],
        axioms_of: list[SymEnv] | None = None,
    ) -> tuple[list[z3.BoolRef], list[list[z3.ArithRef]]]:
        """Facts binding each term of each group to a fresh variable, plus the instances of the
        semantics' axioms (true of every environment) about `axioms_of` (the first of `envs`
        unless given) over the instance terms of `envs`."""
        facts: list[z3.BoolRef] = []
        bound: list[list[z3.ArithRef]] = []
        universals: list[tuple[z3.ArithRef, Universal]] = []
        witnesses: dict[str, list[z3.ArithRef]] = {}
        for tag, terms in groups:
            names = [z3.Int(f"{tag}_{k}") for k in range(len(terms))]
            for k, (name, term) in enumerate(zip(names, terms)):
                if not isinstance(term, Universal):
                    facts.append(name == term)
                    continue
                chosen = [z3.Int(f"{tag}_{k}_w{m}") for m in range(len(term.kinds))]
                for kind, witness in zip(term.kinds, chosen):
                    witnesses.setdefault(kind, []).append(witness)
                facts += [z3.Or(name == 0, name == 1), z3.Implies(name == 0, z3.Not(term.body(*chosen)))]
                universals.append((name, term))
            bound.append(names)
        axioms = [a for env in (axioms_of or envs[:1]) for a in self.semantics.axioms(env)]
        if universals or axioms:
            pool = self.semantics.instance_terms(envs, witnesses)
            for name, term in universals:
                facts.append(z3.Implies(name == 1, z3.And(term.instances(pool))))
            for axiom in axioms:
                facts += axiom.instances(pool)
        return facts, bound

    def _all_values(
        self, solver: z3.Solver, names: list[z3.ArithRef], sizes: list[int]
    ) -> frozenset[Abstract]:
        """Every value tuple the bound variables take on models of the solver's assertions
        (all-SAT with blocking clauses, which the caller's scope removes).

        If the solver answers `unknown`, fall back to testing each remaining candidate tuple in
        the terms' ranges (`sizes`) one by one against the assertions and keep the ones it
        cannot rule out (sound: the blocking clauses exclude only tuples already found), or
        raise UndecidedPost where there are too many candidates to test."""
        found: set[Abstract] = set()
        while True:
            result = self._check(solver)
            if result == z3.sat:
                model = solver.model()
                evaluated = [_numeral(model.eval(name, model_completion=True)) for name in names]
                if None not in evaluated:
                    values = tuple(evaluated)
                    found.add(values)
                    _assert(solver, [_any([self._is(name, v)[1] for name, v in zip(names, values)])])
                    continue
                self.stats.unknown += 1  # a model Z3 left unreduced
            if result == z3.unsat:
                return frozenset(found)
            premise = z3.And(solver.assertions())
            return frozenset(found | self._candidates_not_refuted(premise, names, found, sizes))

    def _candidates_not_refuted(
        self, premise: z3.BoolRef, names: list[z3.ArithRef], found: set[Abstract],
        sizes: list[int],
    ) -> set[Abstract]:
        if len(sizes) != len(names):
            raise ValueError(f"{len(names)} variables, {len(sizes)} ranges")
        if math.prod(sizes) > FALLBACK_CANDIDATES:
            raise UndecidedPost(
                f"{self.semantics.task.name}: Z3 could not decide an abstract post and "
                f"{math.prod(sizes):,} candidate states are too many to test one by one; "
                "the verification set cannot be proved complete"
            )
        ranges = [range(size) for size in sizes]
        kept = set()
        for candidate in itertools.product(*ranges):
            if candidate in found:
                continue
            solver = self._new_solver()
            solver.add(premise, *[name == v for name, v in zip(names, candidate)])
            if self._check(solver) != z3.unsat:
                kept.add(candidate)
        return kept

    def _new_solver(self) -> z3.Solver:
        solver = z3.Solver()
        solver.set("timeout", self.timeout_ms)
        return solver

    def _check(self, solver: z3.Solver) -> z3.CheckSatResult:
        started = time.perf_counter()
        result = solver.check()
        self.stats.queries += 1
        self.stats.seconds += time.perf_counter() - started
        if result == z3.unknown:
            self.stats.unknown += 1
        return result


def _numeral(term: z3.ExprRef) -> int | None:
    """The value of an integer numeral (None for any other term), through the C API:
    `is_int_value` and `as_long` ask for the term's sort in Python first."""
    context = term.ctx_ref()
    if z3.Z3_get_ast_kind(context, term.as_ast()) != z3.Z3_NUMERAL_AST:
        return None
    return int(z3.Z3_get_numeral_string(context, term.as_ast()))


def _assert(solver: z3.Solver, facts: Sequence[z3.BoolRef]) -> None:
    """`solver.add(*facts)` for facts that are Z3 booleans already, through the C API:
    `add` coerces each argument in Python, which costs more than most fixed-point queries."""
    context = solver.ctx.ref()
    for fact in facts:
        z3.Z3_solver_assert(context, solver.solver, fact.as_ast())


def _any(facts: Sequence[z3.BoolRef]) -> z3.BoolRef:
    """`z3.Or(facts)` for Z3 booleans, through the C API (without `Or`'s coercions)."""
    if not facts:
        return z3.BoolVal(False)
    context = facts[0].ctx
    asts = (z3.Ast * len(facts))(*[fact.as_ast() for fact in facts])
    return z3.BoolRef(z3.Z3_mk_or(context.ref(), len(facts), asts), context)


def _reads(term: Term, env: SymEnv) -> set[str]:
    """The names of the variables of `env` that a term (a universal's body) reads."""
    if isinstance(term, Universal):
        term = term.body(*[z3.Int(f"reads_x{m}") for m in range(len(term.kinds))])
    names = {str(value): name for name, value in env.items()}
    return {names[str(t)] for t in subterms(term) if z3.is_const(t)
            and t.decl().kind() == z3.Z3_OP_UNINTERPRETED and str(t) in names}


_SEMANTICS: dict[int, tuple[Task, Semantics | None]] = {}


def semantics_for(task: Task) -> Semantics | None:
    """The task's Z3 semantics (one instance per task, checked once), or None for a task
    that declares none (`symbolic = False`). PluginError where the task's `semantics()`
    fails or returns something that does not fit its observation."""
    cached = _SEMANTICS.get(id(task))
    if cached is not None and cached[0] is task:
        return cached[1]
    semantics = _checked_semantics(task) if task.symbolic else None
    _SEMANTICS[id(task)] = (task, semantics)
    return semantics


def _checked_semantics(task: Task) -> Semantics:
    from verifier.tasks.registry import describe_error, task_label

    where = task_label(task)
    try:
        semantics = task.semantics()
    except VerifierError:  # ours (a --timeout budget running out, a named bug): pass it on
        raise
    except Exception as error:
        raise PluginError(f"{where}: semantics() raised {describe_error(error)}") from None
    if not isinstance(semantics, Semantics):
        raise PluginError(f"{where}: semantics() must return a verifier.smt.Semantics, got "
                          f"{type(semantics).__name__}")
    try:
        env = semantics.fresh("check")
        observed = semantics.observation(env)
        initial = {"initial": semantics.initial(env),
                   "initial_contents": semantics.initial_contents(env)}
        hints = list(semantics.hints()) + [h for part in getattr(semantics, "parts", ())
                                          for h in part.hints()]
    except VerifierError:  # ours (a --timeout budget running out, a named bug): pass it on
        raise
    except Exception as error:
        raise PluginError(f"{where}: its semantics raised {describe_error(error)}") from None
    for name, term in initial.items():
        if not z3.is_bool(term):
            raise PluginError(f"{where}: its semantics' {name}() must give a Z3 boolean term, "
                              f"got {type(term).__name__}")
    if len(observed) != len(task.observation_names):
        raise PluginError(f"{where}: its semantics observe {len(observed)} components, the "
                          f"task {len(task.observation_names)}")
    bad = [h for h in hints if not isinstance(h, Predicate) or not isinstance(h.name, str)
           or not h.name or not callable(h.term)
           or isinstance(h.values, bool) or not isinstance(h.values, int) or h.values < 2]
    if bad:
        raise PluginError(f"{where}: hints() must return verifier.smt.Predicate values "
                          f"(a name, a function of the env and at least 2 values), got {bad[0]!r}")
    from verifier.smt.discover import load

    try:
        load(semantics)
        terms = semantics.hidden(env)
    except PluginError as error:
        raise PluginError(f"{where}: {error}") from None
    except VerifierError:  # ours (a --timeout budget running out, a named bug): pass it on
        raise
    except Exception as error:
        raise PluginError(f"{where}: its predicates raised {describe_error(error)}") from None
    names = semantics.hidden_names
    if len(set(names)) != len(names):
        repeated = next(n for n in names if names.count(n) > 1)
        raise PluginError(f"{where}: two hidden predicates are named {repeated!r}")
    for name, term in zip(names, terms, strict=True):
        if not isinstance(term, Universal) and not (isinstance(term, z3.ArithRef) and term.is_int()):
            raise PluginError(f"{where}: predicate {name!r} must give an integer (0/1) Z3 term "
                              f"or a Universal, got {type(term).__name__}")
    return semantics


def concrete_observation(semantics: Semantics, env: Any) -> Abstract:
    """The observation of a concrete environment, computed through Z3 (for cross-checks)."""
    return tuple(z3.simplify(t).as_long() for t in semantics.observation(semantics.encode(env)))


def is_initial(semantics: Semantics, env: Any) -> bool:
    """Whether a concrete initial environment satisfies the Z3 initial condition and axioms
    (by simplification, or by a solver where they compare arrays or have free arguments)."""
    symbolic = semantics.encode(env)
    facts = [semantics.domain(symbolic), semantics.initial(symbolic),
             semantics.initial_contents(symbolic)]
    for k, axiom in enumerate(semantics.axioms(symbolic)):  # at unconstrained arguments
        facts.append(axiom.body(*[z3.Int(f"axiom{k}_x{m}") for m in range(len(axiom.kinds))]))
    condition = z3.And(facts)
    simplified = z3.simplify(condition)
    if z3.is_true(simplified) or z3.is_false(simplified):
        return z3.is_true(simplified)
    solver = z3.Solver()
    solver.set("timeout", QUERY_TIMEOUT_MS)
    solver.add(z3.Not(condition))
    return solver.check() == z3.unsat


def concrete_observations(
    semantics: Semantics, env: Any, program: str, args: Args
) -> tuple[Abstract, Abstract]:
    """The observations of a concrete environment before and after a primitive, computed
    through Z3 from one encoding of it (the cross-check's two comparisons per step)."""
    symbolic = semantics.encode(env)
    after = semantics.apply(symbolic, program, args)
    return (
        tuple(z3.simplify(t).as_long() for t in semantics.observation(symbolic)),
        tuple(z3.simplify(t).as_long() for t in semantics.observation(after)),
    )


def concrete_observation_after(semantics: Semantics, env: Any, program: str, args: Args) -> Abstract:
    """The observation after a primitive on a concrete environment, computed through Z3."""
    after = semantics.apply(semantics.encode(env), program, args)
    return tuple(z3.simplify(t).as_long() for t in semantics.observation(after))


def distinct(terms: Sequence[Any]) -> list[Any]:
    """The terms without repeats, simplified (Z3 shares structurally equal terms, so their
    ids compare them): instance pools stay small."""
    unique: dict[int, Any] = {}
    for term in terms:
        term = z3.simplify(term)
        unique.setdefault(term.get_id(), term)
    return list(unique.values())


def array_of(values: Sequence[int], default: int = 0) -> z3.ArrayRef:
    """A Z3 array holding values[0..] at indices 1.. (1-based, like the tasks' rows)."""
    return array_at(dict(enumerate(values, start=1)), default)


def array_at(cells: Mapping[int, int], default: int = 0) -> z3.ArrayRef:
    """A Z3 array holding `cells` (index -> value) and `default` everywhere else.

    The same term `z3.Store` builds, through the C API: z3.Store's argument coercion is most
    of the cost of encoding concrete environments for the cross-check."""
    context = z3.main_ctx()
    array = z3.K(z3.IntSort(), _int_value(default))
    for index, value in sorted(cells.items()):
        stored = z3.Z3_mk_store(
            context.ref(), array.as_ast(), _int_value(index).as_ast(), _int_value(value).as_ast()
        )
        array = z3.ArrayRef(stored, context)
    return array


@functools.lru_cache(maxsize=4096)
def _int_value(value: int) -> z3.IntNumRef:
    return z3.IntVal(int(value))


def z3_version() -> str:
    return z3.get_version_string()
