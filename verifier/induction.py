"""Whole proofs: the reference program terminates and is correct on inputs of every size.

V's coverage proof says that every call-local state of every run on a valid input lies in V.
So every call of a routine follows one of V's paths through that routine: a sequence of
actions, each taken after an observation sequence of V. For each routine and each distinct
sequence of actions in V (the observation sequences leading to it form its path condition, one
disjunct each), Z3 proves for a symbolic environment of unbounded size that satisfies the
routine's precondition (`verifier.smt.contracts`):

- `pre`: every subprogram the routine calls is entered in the subprogram's precondition;
- `rank`: every call into the routine's own strongly connected component of the call graph (a
  recursive call) enters with a smaller ranking value, while the routine's own is non-negative;
- `post`: the routine returns in its postcondition;

taking a primitive step by the task's symbolic semantics, and a subprogram call by the callee's
postcondition plus the frame rule: the callee changes only the environment components that the
primitives of its call tree in V change, and which components a primitive may change is itself
decided by Z3. Then `entry`: a valid input's initial environment satisfies the entry routine's
precondition; `specification`: the entry routine's postcondition from an initial environment
implies the task's specification; and where the specification says the program only permutes an
array, `permutation`: each primitive action of V leaves that array alone or exchanges two cells
inside it.

The argument. By induction on the number of returns, every call that returns satisfies its
postcondition (`pre`, `post`), so by `entry` and `specification` a run that halts is correct
(`permutation`: exchanges compose to a permutation). Along any chain of nested recursive calls
the ranking values strictly decrease and stay non-negative while the chain goes on (`rank`), so
every chain is finite; each call takes at most the bounded number of steps of V's paths
between its calls; so every call tree is finite and every run halts.

Each lemma is one query whose answer `unsat` proves it. A query answered `sat` (refuted) or
`unknown`, or a recursive routine without a ranking function, leaves its obligation unproved.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import z3

from verifier.errors import PluginError, VerifierError
from verifier.runtime import StateKey
from verifier.smt import Semantics, SymEnv
from verifier.smt.contracts import Contract
from verifier.smt.instantiate import conjuncts, ground
from verifier.smt.script import smt2
from verifier.smt.terms import ArrayIndices, Binderless
from verifier.tasks.base import NOP, Action, Args, Observation, Task
from verifier.tasks.registry import describe_error, task_label

TERMINATION = "termination"
CORRECTNESS = "reference-correctness"
PROVED, REFUTED, UNKNOWN = "proved", "refuted", "unknown"
QUERY_TIMEOUT_MS = 30_000
GROUND_TIMEOUT_MS = 2_000  # the quantifier-free attempt: where it fails, the quantified query
ARGUMENT = (
    "every call that returns satisfies its postcondition (induction on returns; lemmas pre and "
    "post); along a chain of nested recursive calls the ranking values strictly decrease and "
    "are non-negative while the chain goes on (lemmas rank), so every chain is finite; every "
    "call takes at most the bounded number of steps of its paths in V between calls; so every "
    "call tree is finite and every run halts"
)

SHARED = ("pre", "post", "entry")  # correctness lemmas that termination's ranking lemmas assume

Routine = tuple[str, Args]


@dataclass(frozen=True)
class Lemma:
    """One proof obligation: its query (SMT-LIB2; `unsat` proves it) and what the solver said."""

    obligation: str
    kind: str  # pre, rank, post, entry, specification, permutation, ranking (none declared)
    name: str
    status: str
    detail: str
    smt2: tuple[str, ...]  # one query per conjunct of the goal; `unsat` for each proves it
    routine: Routine | None = None  # the routine and action sequence of a path lemma
    actions: tuple[Action, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"lemma": self.name, "kind": self.kind, "status": self.status, "why": self.detail}


@dataclass
class Induction:
    """The lemmas of both obligations, in a fixed order."""

    lemmas: list[Lemma] = field(default_factory=list)
    routines: int = 0
    paths: int = 0
    recursive_sites: int = 0
    contracts: dict[str, str] = field(default_factory=dict)  # routine -> its contract in words
    specification: str = ""
    seconds: float = 0.0

    def of(self, obligation: str) -> list[Lemma]:
        """The lemmas an obligation rests on: termination also on the contracts (`pre`, `post`,
        `entry`), which its ranking lemmas assume."""
        shared = SHARED if obligation == TERMINATION else ()
        return [lemma for lemma in self.lemmas
                if lemma.obligation == obligation or lemma.kind in shared]

    def proved(self, obligation: str) -> bool:
        lemmas = self.of(obligation)
        return bool(lemmas) and all(lemma.status == PROVED for lemma in lemmas)


def prove(
    task: Task, formulation: str, semantics: Semantics, states: Mapping[StateKey, Action]
) -> Induction:
    """Every lemma of termination and reference correctness over V's paths (`states`: V with
    its reference actions, whose coverage the caller has proved)."""
    started = time.perf_counter()
    prover = _Prover(task, formulation, semantics, states)
    try:
        found = prover.run()
    except VerifierError:
        raise  # ours, a --timeout budget among them
    except Exception as error:  # the task's contracts or specification are broken: name them
        raise PluginError(f"{task_label(task, formulation)}: its contracts or specification "
                          f"raised {describe_error(error)}") from None
    found.seconds = time.perf_counter() - started
    return found


@dataclass
class _Path:
    """Paths through one routine that take the same actions: their observation sequences."""

    routine: Routine
    actions: tuple[Action, ...]
    alternatives: list[tuple[Observation, ...]]


class _Prover:
    def __init__(
        self, task: Task, formulation: str, semantics: Semantics, states: Mapping[StateKey, Action]
    ) -> None:
        self.task = task
        self.formulation = formulation
        self.sem = semantics
        self.states = states
        self.primitive = {p.name for p in task.programs if p.primitive}
        self.lemmas: list[Lemma] = []
        self.names = itertools.count()
        self.calls = self._call_graph()
        self.components = self._components()
        self._changes: dict[Routine, frozenset[str]] = {}
        self._primitive: dict[Routine, frozenset[str]] = {}
        self.binderless = Binderless()  # the lemmas' queries and scripts share most of their
        self.indices = ArrayIndices()  # terms: what is known of a term is remembered

    # --- structure of V -------------------------------------------------------------------

    def _call_graph(self) -> nx.DiGraph:
        """Routines and the calls between them in V; also each routine's primitive actions."""
        graph = nx.DiGraph()
        self.primitives_of: dict[Routine, set[Routine]] = defaultdict(set)
        for (program, args, _), action in self.states.items():
            graph.add_node((program, args))
            if action.program not in self.primitive:
                graph.add_edge((program, args), (action.program, action.args))
            else:
                self.primitives_of[(program, args)].add((action.program, action.args))
        return graph

    def _components(self) -> dict[Routine, int]:
        component = {}
        for k, members in enumerate(nx.strongly_connected_components(self.calls)):
            for routine in members:
                component[routine] = k
        return component

    def recursive(self, caller: Routine, callee: Routine) -> bool:
        """A call inside a cycle of the call graph (a routine calling itself, or through others)."""
        return self.components[caller] == self.components[callee] and (
            caller != callee or self.calls.has_edge(caller, caller)
        )

    def paths(self) -> tuple[list[_Path], list[_Path]]:
        """V's paths grouped by routine and action sequence: those ending in a subprogram call
        (for pre and rank) and those ending in a return (for post)."""
        calls: dict[tuple[Routine, tuple[Action, ...]], list] = defaultdict(list)
        returns: dict[tuple[Routine, tuple[Action, ...]], list] = defaultdict(list)
        for (program, args, observed), action in self.states.items():
            if action.program in self.primitive and not action.ret:
                continue
            actions = tuple(
                self.states[(program, args, observed[: k + 1])] for k in range(len(observed))
            )
            key = ((program, args), actions)
            if action.program not in self.primitive:
                calls[key].append(observed)
            if action.ret:
                returns[key].append(observed)
        build = lambda found: [_Path(r, a, sorted(o)) for (r, a), o in sorted(found.items(), key=_order)]
        return build(calls), build(returns)

    def changes(self, routine: Routine) -> frozenset[str]:
        """The environment components a call of `routine` may change: those its primitives
        may change, over its call tree in V."""
        if routine not in self._changes:
            found: set[str] = set()
            # sorted: the order in which primitives are first examined decides which Z3 terms
            # exist when scripts are printed, so a set's (hash-seeded) order would change them
            for callee in sorted(nx.descendants(self.calls, routine) | {routine}):
                for program, args in sorted(self.primitives_of[callee]):
                    found |= self._primitive_changes(program, args)
            self._changes[routine] = frozenset(found)
        return self._changes[routine]

    def _primitive_changes(self, program: str, args: Args) -> frozenset[str]:
        """The components a primitive may change (an `unknown` counts as a change)."""
        key = (program, args)
        if key not in self._primitive:
            changed = set()
            if program != NOP:
                env = self.sem.fresh(f"f{next(self.names)}")
                after = self.sem.apply(env, program, args)
                solver = _solver()
                solver.add(self.sem.domain(env))
                for name in env:
                    if after[name] is env[name] or z3.eq(after[name], env[name]):
                        continue  # the same term: unchanged without asking
                    solver.push()
                    solver.add(after[name] != env[name])
                    if solver.check() != z3.unsat:
                        changed.add(name)
                    solver.pop()
            self._primitive[key] = frozenset(changed)
        return self._primitive[key]

    # --- the lemmas ---------------------------------------------------------------------------

    def run(self) -> Induction:
        call_paths, return_paths = self.paths()
        routines = sorted({(p, a) for p, a, _ in self.states})
        for routine in routines:
            if self._in_cycle(routine) and self._contract(routine).rank is None:
                self._note(TERMINATION, "ranking", f"{_label(routine)}: ranking function",
                           UNKNOWN, f"{_label(routine)} is recursive and declares no ranking function")
        sites = 0
        for path in call_paths:
            callee = (path.actions[-1].program, path.actions[-1].args)
            self._path_lemma(path, "pre")  # trivially true where the callee declares none
            if self.recursive(path.routine, callee):
                sites += 1
                if self._contract(path.routine).rank is not None and self._contract(callee).rank is not None:
                    self._path_lemma(path, "rank")
        for path in return_paths:
            self._path_lemma(path, "post")
        self._entry_lemmas()
        contracts = {_label(r): self._contract(r).text for r in routines if self._contract(r).text}
        spec = self.sem.specification()
        return Induction(self.lemmas, len(routines), len(call_paths) + len(return_paths), sites,
                         contracts, spec.text if spec is not None else "")

    def _in_cycle(self, routine: Routine) -> bool:
        return any(self.recursive(routine, callee) for callee in self.calls.successors(routine))

    def _contract(self, routine: Routine) -> Contract:
        return self.sem.contract(self.formulation, *routine) or Contract()

    def _path_lemma(self, path: _Path, kind: str) -> None:
        """pre or rank at the call that ends `path`, or post at its return."""
        routine = path.routine
        tag = f"q{next(self.names)}"
        entry = self.sem.fresh(f"{tag}_0")
        facts = [self.sem.domain(entry)]
        contract = self._contract(routine)
        if contract.pre is not None:
            facts.append(contract.pre(entry))
        envs = [entry]
        last = len(path.actions) - 1
        for k, action in enumerate(path.actions):
            if k < last or kind == "post":
                after, more = self._step(envs[k], action, f"{tag}_{k + 1}")
                envs.append(after)
                facts += more
        where = f"{_label(routine)} after {_actions(self.task, path.actions)}"
        if kind == "post":
            goal = contract.post(entry, envs[-1]) if contract.post is not None else z3.BoolVal(True)
            name = f"{where}: postcondition of {routine[0]}"
        else:
            action = path.actions[-1]
            callee = self._contract((action.program, action.args))
            at = envs[last]
            if kind == "pre":
                goal = callee.pre(at) if callee.pre is not None else z3.BoolVal(True)
                name = f"{where}: precondition of {_label((action.program, action.args))}"
            else:
                assert contract.rank is not None and callee.rank is not None
                goal = z3.And(contract.rank(entry) >= 0, callee.rank(at) < contract.rank(entry))
                name = f"{where}: ranking decreases"
        obligation = TERMINATION if kind == "rank" else CORRECTNESS
        # First with each step's observation in the set seen at that step (implied by the path
        # condition, much smaller where observations carry values); where that does not prove
        # the lemma, with the exact disjunction of the observation sequences.
        stepwise = self._stepwise_condition(envs, path.alternatives)
        site = (routine, path.actions)
        if self._solve(obligation, kind, name, facts, goal, entry, False, site, stepwise):
            return
        exact = self._path_condition(envs, path.alternatives)
        self._solve(obligation, kind, name, facts, goal, entry, True, site, exact)

    def _step(self, env: SymEnv, action: Action, tag: str) -> tuple[SymEnv, list[z3.BoolRef]]:
        """The environment after `action` and the facts that define it."""
        if action.program == NOP:
            return env, []
        if action.program in self.primitive:
            return self.sem.apply(env, action.program, action.args), []
        callee = (action.program, action.args)
        after = self.sem.fresh(tag)
        changes = self.changes(callee)
        facts = [self.sem.domain(after)]
        facts += [after[name] == env[name] for name in env if name not in changes]
        contract = self._contract(callee)
        if contract.post is not None:
            facts.append(contract.post(env, after))
        return after, facts

    def _stepwise_condition(
        self, envs: Sequence[SymEnv], alternatives: Sequence[tuple[Observation, ...]]
    ) -> z3.BoolRef:
        """Each step's observation is one of those seen at that step on some path."""
        steps = len(alternatives[0])
        seen = [sorted({observed[k] for observed in alternatives}) for k in range(steps)]
        terms = [self.sem.observation(envs[k]) for k in range(steps)]
        return z3.And([
            z3.Or([z3.And([term == value for term, value in zip(terms[k], observation, strict=True)])
                   for observation in seen[k]])
            for k in range(steps)
        ])

    def _path_condition(
        self, envs: Sequence[SymEnv], alternatives: Iterable[tuple[Observation, ...]]
    ) -> z3.BoolRef:
        seen = [self.sem.observation(env) for env in envs]
        return z3.Or([
            z3.And([term == value for k, observation in enumerate(observed)
                    for term, value in zip(seen[k], observation, strict=True)])
            for observed in alternatives
        ])

    def _entry_lemmas(self) -> None:
        entry_routine = (self.task.entry, ())
        contract = self._contract(entry_routine)
        start = self.sem.fresh("init")
        facts = [self.sem.domain(start), self.sem.initial(start), self.sem.initial_contents(start)]
        goal = contract.pre(start) if contract.pre is not None else z3.BoolVal(True)
        self._solve(CORRECTNESS, "entry", f"a valid input's initial environment satisfies the "
                    f"precondition of {self.task.entry}", facts, goal, start)
        spec = self.sem.specification()
        if spec is None:
            self._note(CORRECTNESS, "specification", "the task's specification", UNKNOWN,
                       "the task declares no specification in Z3")
            return
        end = self.sem.fresh("final")
        result = [self.sem.domain(end)]
        result += [end[name] == start[name] for name in start if name not in self.changes(entry_routine)]
        if contract.post is not None:
            result.append(contract.post(start, end))
        self._solve(CORRECTNESS, "specification", f"the postcondition of {self.task.entry} implies "
                    f"the specification ({spec.text})", facts + result, spec.holds(start, end), start)
        if spec.permutation is not None:
            self._permutation_lemmas(spec.permutation)

    def _permutation_lemmas(self, permutation: Any) -> None:
        actions = sorted({(a.program, a.args) for a in self.states.values()
                          if a.program in self.primitive and a.program != NOP})
        for program, args in actions:
            env = self.sem.fresh(f"p{next(self.names)}")
            after = self.sem.apply(env, program, args)
            name = permutation.array
            before_cells, after_cells = env[name], after[name]
            low, high = permutation.low(env), permutation.high(env)
            same_range = z3.And(permutation.low(after) == low, permutation.high(after) == high)
            swapped = permutation.swapped(env, program, args)
            allowed = after_cells == before_cells
            if swapped is not None:
                p, q = swapped
                exchange = z3.Store(z3.Store(before_cells, p, before_cells[q]), q, before_cells[p])
                inside = z3.And(low <= p, p <= high, low <= q, q <= high)
                allowed = z3.Or(allowed, z3.And(inside, after_cells == exchange))
            label = self.task.format_action(Action(program, args))
            self._solve(CORRECTNESS, "permutation", f"{label} leaves {name} alone or exchanges two "
                        "of its cells", [self.sem.domain(env)], z3.And(same_range, allowed), env)

    # --- solving ------------------------------------------------------------------------------

    def _note(self, obligation: str, kind: str, name: str, status: str, detail: str) -> None:
        self.lemmas.append(Lemma(obligation, kind, name, status, detail, ()))

    def _solve(self, obligation: str, kind: str, name: str, facts: list[z3.BoolRef],
               goal: z3.BoolRef, entry: SymEnv, final: bool = True,
               site: tuple[Routine, tuple[Action, ...]] | None = None,
               condition: z3.BoolRef | None = None) -> bool:
        """Record the lemma `facts and condition -> goal` with the solver's answers; whether it
        is proved. The goal's conjuncts are proved one query each (smaller queries, which the
        re-checker's cvc5 also decides), each first quantifier-free. With `final` false, record
        it only if it is proved (a first, cheaper attempt). `condition` is a path condition:
        quantifier-free, left out of instantiation."""
        extra = [] if condition is None else [condition]
        scripts, status, detail = [], PROVED, ""
        for part in conjuncts([goal]) or [goal]:  # an empty conjunction: one query still
            answer, solver, used = self._prove_part(facts, part, extra)
            if answer != z3.unsat and not final:
                return False
            scripts.append(_benchmark(*used, self.binderless))
            if answer == z3.sat and status == PROVED:
                status = REFUTED
                detail = "counter-model: " + _describe_model(solver.model(), entry)
            elif answer != z3.unsat and status == PROVED:
                status = UNKNOWN
                detail = f"the solver answered unknown ({solver.reason_unknown()})"
        routine, actions = site if site is not None else (None, ())
        self.lemmas.append(Lemma(obligation, kind, name, status, detail, tuple(scripts), routine,
                                 actions))
        return status == PROVED

    def _prove_part(
        self, facts: list[z3.BoolRef], goal: z3.BoolRef, extra: list[z3.BoolRef]
    ) -> tuple[z3.CheckSatResult, z3.Solver, tuple[list[z3.BoolRef], z3.BoolRef]]:
        """One conjunct: quantifier-free first (see verifier.smt.instantiate), else as written;
        the answer, the solver, and the query answered."""
        grounded = ground(facts, goal, self.binderless, self.indices)
        if grounded is not None:
            answer, solver = _check(grounded[0] + extra, grounded[1],
                                    min(GROUND_TIMEOUT_MS, QUERY_TIMEOUT_MS))
            if answer == z3.unsat:
                return answer, solver, (grounded[0] + extra, grounded[1])
        answer, solver = _check(facts + extra, goal)
        return answer, solver, (facts + extra, goal)


def _check(
    facts: list[z3.BoolRef], goal: z3.BoolRef, timeout_ms: int | None = None
) -> tuple[z3.CheckSatResult, z3.Solver]:
    solver = _solver(timeout_ms)
    solver.add(*facts)
    solver.add(z3.Not(goal))
    return solver.check(), solver


def _solver(timeout_ms: int | None = None) -> z3.Solver:
    """A solver with a time limit: `timeout_ms`, else QUERY_TIMEOUT_MS as it is now."""
    solver = z3.Solver()
    solver.set("timeout", QUERY_TIMEOUT_MS if timeout_ms is None else timeout_ms)
    return solver


def _benchmark(facts: list[z3.BoolRef], goal: z3.BoolRef, binderless: Binderless) -> str:
    """The lemma's query as one SMT-LIB2 script: declarations, assertions, (check-sat)."""
    return smt2([*facts, z3.Not(goal)], binderless) + "(check-sat)\n"


def _describe_model(model: z3.ModelRef, env: SymEnv) -> str:
    """The integer components of the entry environment in a counter-model."""
    shown = []
    for name, term in env.items():
        if z3.is_int(term) or z3.is_bool(term):
            shown.append(f"{name}={model.eval(term, model_completion=True)}")
    return " ".join(shown)


def _label(routine: Routine) -> str:
    program, args = routine
    return f"{program}({', '.join(map(str, args))})"


def _actions(task: Task, actions: Sequence[Action]) -> str:
    return "[" + ", ".join(task.format_action(a) + ("+ret" if a.ret else "") for a in actions) + "]"


def _order(item: Any) -> Any:
    (routine, actions), _ = item
    return routine, tuple((a.program, a.args, a.ret) for a in actions)
