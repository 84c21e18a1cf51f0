"""The over-approximation of V: a least fixed point of call exploration over abstract
environment states, with abstract posts of primitives computed by Z3 for all sizes and
function summaries (design §5.2)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from verifier import smt
from verifier.errors import ReferenceBug, UnboundedCall
from verifier.runtime import StateKey, reference_action
from verifier.smt import Abstract, AbstractDomain, SolverStats
from verifier.smt.product import ProductDomain, ProductSemantics
from verifier.tasks.base import NOP, RECURSIVE, Action, Args, Observation, Routines, Task
from verifier.tasks.registry import task_label

MAX_CALL_STEPS = 64  # an abstract call longer than this loops (a non-recursive formulation)


@dataclass
class AbstractStates:
    """The over-approximation: call-local states with their reference actions."""

    actions: dict[StateKey, Action]
    contexts: int  # (program, args, entry abstract state) explored
    stats: SolverStats
    seconds: float
    # The fixed point itself, kept in memory (never cached) for the proof bundle, which
    # records it (`verifier.bundle`): each explored call and the domain's Z3 templates and
    # posts. None for a set read back from the V cache: the bundle then explores it again.
    record: FixedPoint | None = field(default=None, repr=False, compare=False)


Domain = AbstractDomain | ProductDomain


def domain_for(semantics: smt.Semantics) -> Domain:
    """The abstract domain of a task: part by part where its environment is a product."""
    if isinstance(semantics, ProductSemantics):
        return ProductDomain(semantics)
    return AbstractDomain(semantics)


Context = tuple[str, Args, Abstract]  # (program, args, abstract state at entry)
Point = tuple[int, Abstract]  # a call's observations so far (a prefix node), its state now


@dataclass
class _Call:
    """One explored context: the points reached in it, its exit states, and the points of
    its callers waiting for those exits."""

    seen: set[Point] = field(default_factory=set)
    exits: set[Abstract] = field(default_factory=set)
    return_sites: list[tuple[Context, int, bool]] = field(default_factory=list)


@dataclass(frozen=True)
class FixedPoint:
    """The explored calls of a fixed point and the domain that computed its posts; a point's
    prefix node k stands for the call-local state `prefixes[k]`."""

    calls: dict[Context, _Call]
    domain: Domain
    prefixes: list[StateKey]


def abstract_states(task: Task, domain: Domain, formulation: str = RECURSIVE) -> AbstractStates:
    """Least fixed point of call exploration with function summaries (design §5.2).

    A worklist of (context, observations, abstract state) items: the reference action depends
    only on the observations, and what follows only on the state now, so two histories that
    agree on both are explored once. A call to a subprogram records a return site with the
    callee; when the callee's exit set grows, only the new exits go to its return sites.

    The observations so far of a call are interned as nodes of a prefix forest (an integer
    each), so that a point is hashed, and its action found, without walking its history; and
    the successors of a node under one post are computed once, however many contexts reach
    them (most posts recur: the domain caches them)."""
    started = time.perf_counter()
    routines = task.routines(formulation)
    size = domain.semantics.observation_size
    primitive = {p.name for p in task.programs if p.primitive}
    actions: dict[StateKey, Action] = {}
    calls: dict[Context, _Call] = {}
    prefixes: list[StateKey] = []  # node -> (program, args, observations so far)
    labels: list[Action | None] = []  # node -> its reference action, once asked for
    nodes: dict[tuple[Any, ...], int] = {}  # (program, args, o1) or (parent node, o) -> node
    successors: dict[tuple[int, Any], list[tuple[int, Abstract]]] = {}
    # Last in, first out: a call that loops reaches MAX_CALL_STEPS without first exploring
    # every shorter history (the fixed point does not depend on the order).
    work: list[tuple[Context, int, Abstract]] = []
    exits: deque[tuple[Context, frozenset[Abstract]]] = deque()

    def node_of(parent: tuple[Any, ...], key: StateKey) -> int:
        node = nodes.get(parent)
        if node is None:
            node = nodes[parent] = len(prefixes)
            prefixes.append(key)
            labels.append(None)
        return node

    def following(node: int, after: Iterable[Abstract]) -> list[tuple[int, Abstract]]:
        """The (node, state) of each state in `after`, in sorted order, one observation on."""
        program, args, observed = prefixes[node]
        found = []
        for a in sorted(after):
            observation = a[:size]
            found.append((node_of((node, observation), (program, args, observed + (observation,))), a))
        return found

    def open_call(context: Context) -> _Call:
        if context not in calls:
            calls[context] = _Call()
            program, args, entry = context
            observation = entry[:size]
            node = node_of((program, args, observation), (program, args, (observation,)))
            work.append((context, node, entry))
        return calls[context]

    def continue_with(context: Context, node: int, ret: bool, after: Iterable[Abstract]) -> None:
        if ret:
            exits.append((context, frozenset(after)))
        else:
            work.extend([(context, n, a) for n, a in following(node, after)])

    for entry in sorted(domain.initial_states()):
        open_call((task.entry, (), entry))
    while work or exits:
        if exits:
            context, reached = exits.popleft()
            call = calls[context]
            new = reached - call.exits
            if new:
                call.exits |= new
                for site, node, ret in call.return_sites:
                    continue_with(site, node, ret, new)
            continue
        context, node, current = work.pop()
        seen = calls[context].seen
        point = (node, current)
        if point in seen:
            continue
        seen.add(point)
        action = labels[node]
        if action is None:
            program, args, observed = key = prefixes[node]
            if len(observed) > MAX_CALL_STEPS:
                loop = " ".join(_describe(task, routines, program, args, observed)[-8:])
                raise UnboundedCall(
                    program,
                    f"{program} runs more than {MAX_CALL_STEPS} steps in one call (it loops: ... "
                    f"{loop}); its call-local sequences are unbounded, so the verification set "
                    "is infinite",
                )
            try:
                action = reference_action(routines, program, args, observed)
            except ReferenceBug as error:
                raise ReferenceBug(f"{task_label(task, formulation)}: "
                                   f"{error}") from None
            labels[node] = actions[key] = action
        if action.program in primitive:
            if action.ret:
                after = (current,) if action.program == NOP else domain.post(
                    current, action.program, action.args)
                exits.append((context, frozenset(after)))
                continue
            if action.program == NOP:
                work.extend([(context, n, a) for n, a in following(node, (current,))])
                continue
            after = domain.post(current, action.program, action.args)
            # posts are cached by the domain: the same frozenset object for the same post
            step = (node, after)
            found = successors.get(step)
            if found is None:
                found = successors[step] = following(node, after)
            work.extend([(context, n, a) for n, a in found])
        else:
            callee = open_call((action.program, action.args, current))
            callee.return_sites.append((context, node, action.ret))
            continue_with(context, node, action.ret, callee.exits)
    stats = domain.stats  # a copy: the bundle's queries on the kept domain are not the fixed point's
    stats = SolverStats(stats.queries, stats.unknown, stats.seconds)
    return AbstractStates(actions, len(calls), stats, time.perf_counter() - started,
                          FixedPoint(calls, domain, prefixes))


def _describe(
    task: Task, routines: Routines, program: str, args: Args, observations: tuple[Observation, ...]
) -> tuple[str, ...]:
    """The reference actions of a call, formatted, after each prefix of `observations`."""
    return tuple(
        task.format_action(reference_action(routines, program, args, observations[: k + 1]))
        for k in range(len(observations))
    )
