"""The over-approximation of V: a least fixed point of call exploration over abstract
environment states, with abstract posts of primitives computed by Z3 for all sizes and
function summaries (design §5.2)."""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from verifier import smt
from verifier.errors import ReferenceBug, UnboundedCall
from verifier.runtime import StateKey, reference_action
from verifier.smt import Abstract, AbstractDomain, SolverStats
from verifier.smt.product import ProductDomain, ProductSemantics
from verifier.tasks.base import NOP, RECURSIVE, Action, Args, Observation, Routines, Task
from verifier.tasks.registry import task_label

MAX_CALL_STEPS = 64  # an abstract call longer than this loops (a non-recursive formulation)


Domain = AbstractDomain | ProductDomain


@dataclass
class AbstractStates:
    """The over-approximation: call-local states with their reference actions. `explored`
    keeps the domain (with the answers of its queries) and the calls it was computed with,
    in memory only, for the proof bundle that records them (None for a V read from the
    cache: the bundle then explores again)."""

    actions: dict[StateKey, Action]
    contexts: int  # (program, args, entry abstract state) explored
    stats: SolverStats
    seconds: float
    explored: tuple[Domain, dict[Context, Call]] | None = field(default=None, repr=False,
                                                                compare=False)


def domain_for(semantics: smt.Semantics) -> Domain:
    """The abstract domain of a task: part by part where its environment is a product."""
    if isinstance(semantics, ProductSemantics):
        return ProductDomain(semantics)
    return AbstractDomain(semantics)


Context = tuple[str, Args, Abstract]  # (program, args, abstract state at entry)
# A call-local prefix (program, args, observations so far), interned: each distinct prefix is
# one node of a prefix forest, numbered in order of discovery; `Prefixes.keys` names them.
Node = int
Point = tuple[Node, Abstract]  # a call's observations so far, its state now
# A caller's point waiting for a callee's exits: its context, observations, whether the call
# returns, and its state at the call.
ReturnSite = tuple[Context, Node, bool, Abstract]


class Prefixes:
    """Call-local prefixes interned as nodes of a prefix forest, so that the fixed point
    hashes a number, not a growing tuple of observations, and builds each prefix once."""

    def __init__(self) -> None:
        self.keys: list[StateKey] = []  # node -> (program, args, observations)
        self._roots: dict[tuple[str, Args, Observation], Node] = {}
        self._children: dict[tuple[Node, Observation], Node] = {}

    def root(self, program: str, args: Args, observation: Observation) -> Node:
        """The prefix of a call that has seen its first observation."""
        found = self._roots.get((program, args, observation))
        if found is None:
            found = self._roots[(program, args, observation)] = len(self.keys)
            self.keys.append((program, args, (observation,)))
        return found

    def child(self, node: Node, observation: Observation) -> Node:
        """The prefix `node` followed by one more observation."""
        found = self._children.get((node, observation))
        if found is None:
            found = self._children[(node, observation)] = len(self.keys)
            program, args, observed = self.keys[node]
            self.keys.append((program, args, observed + (observation,)))
        return found


@dataclass
class Call:
    """One explored context: the points reached in it, its exit states, and the points of
    its callers waiting for those exits. A state is the abstraction, followed by the values
    of the semantics' relations between the call's entry and now where it declares any.
    `prefixes` names the nodes of its points."""

    prefixes: Prefixes
    points: set[Point] = field(default_factory=set)
    exits: set[Abstract] = field(default_factory=set)
    return_sites: list[ReturnSite] = field(default_factory=list)
    keeps: bool = True  # every primitive it ran, and every call it made, keeps the relations

    @property
    def seen(self) -> set[tuple[tuple[Observation, ...], Abstract]]:
        """The points, each with its observations so far spelled out."""
        keys = self.prefixes.keys
        return {(keys[node][2], state) for node, state in self.points}


def abstract_states(task: Task, domain: Domain, formulation: str = RECURSIVE) -> AbstractStates:
    """The over-approximation of V: the reference actions of every call-local state of the
    abstract fixed point (`explore`)."""
    started = time.perf_counter()
    actions, calls = explore(task, domain, formulation)
    stats = dataclasses.replace(domain.stats)  # what the fixed point asked, not what comes later
    return AbstractStates(actions, len(calls), stats, time.perf_counter() - started,
                          explored=(domain, calls))


def explore(
    task: Task, domain: Domain, formulation: str = RECURSIVE
) -> tuple[dict[StateKey, Action], dict[Context, Call]]:
    """Least fixed point of call exploration with function summaries (design §5.2).

    A worklist of (context, observations, abstract state) items: the reference action depends
    only on the observations, and what follows only on the state now, so two histories that
    agree on both are explored once. A call to a subprogram records a return site with the
    callee; when the callee's exit set grows, only the new exits go to its return sites.

    A summary relates a call's exits to its entry through the domain: `enter` gives a call's
    first points, and `ret` the caller's points after each exit, given the caller's entry and
    its point at the call (where the semantics declares relations, an exit that no
    environment fitting all three can reach is dropped there). A call that has so far run only
    primitives that keep every relation's value (`keeps_relations`), and made only such calls,
    hands its exits back with the caller's relation values unchanged, without asking Z3
    (unless the semantics `composes_every_return`); once it runs one that does not, it hands
    every exit back again through `ret`, and so does every call waiting for it. Returns the
    reference actions and the explored calls."""
    routines = task.routines(formulation)
    size = domain.semantics.observation_size
    primitive = {p.name for p in task.programs if p.primitive}
    actions: dict[StateKey, Action] = {}
    prefixes = Prefixes()
    action_of: list[Action | None] = []  # node -> its reference action, once explored
    calls: dict[Context, Call] = {}
    # Last in, first out: a call that loops reaches MAX_CALL_STEPS without first exploring
    # every shorter history (the fixed point does not depend on the order).
    work: list[tuple[Context, Node, Abstract]] = []
    exits: deque[tuple[Context, frozenset[Abstract]]] = deque()

    width = domain.width
    compose_all = domain.semantics.composes_every_return()

    def open_call(context: Context) -> Call:
        if context not in calls:
            calls[context] = Call(prefixes)
            program, args, entry = context
            first = prefixes.root(program, args, entry[:size])
            work.extend((context, first, state) for state in sorted(domain.enter(entry)))
        return calls[context]

    def returned(callee: Call, site: ReturnSite, reached: Iterable[Abstract]) -> None:
        context, node, ret, at = site
        after = set()
        for exit in sorted(reached):
            if callee.keeps and not compose_all:  # the caller's relations hold as they did
                # at the call
                after.add(exit[:width] + at[width:])
            else:
                after |= domain.ret(context[2], at, exit)
        continue_with(context, node, ret, after)

    def lose_keeps(call: Call) -> None:
        pending = [call]
        while pending:
            call = pending.pop()
            if call.keeps:
                call.keeps = False
                for site in call.return_sites:
                    returned(call, site, call.exits)
                    pending.append(calls[site[0]])

    def continue_with(context: Context, node: Node, ret: bool, after: Iterable[Abstract]) -> None:
        if ret:
            exits.append((context, frozenset(after)))
        else:
            child = prefixes.child
            work.extend((context, child(node, a[:size]), a) for a in sorted(after))

    for entry in sorted(domain.initial_states()):
        open_call((task.entry, (), entry))
    while work or exits:
        if exits:
            context, reached = exits.popleft()
            call = calls[context]
            new = reached - call.exits
            if new:
                call.exits |= new
                for site in call.return_sites:
                    returned(call, site, new)
            continue
        context, node, current = work.pop()
        points = calls[context].points
        point = (node, current)
        if point in points:
            continue
        points.add(point)
        while len(action_of) <= node:
            action_of.append(None)
        action = action_of[node]
        if action is None:
            key = prefixes.keys[node]
            program, args, observed = key
            if len(observed) > MAX_CALL_STEPS:
                loop = " ".join(_describe(task, routines, program, args, observed)[-8:])
                raise UnboundedCall(
                    program,
                    f"{program} runs more than {MAX_CALL_STEPS} steps in one call (it loops: "
                    f"... {loop}); its call-local sequences are unbounded, so the verification "
                    "set is infinite",
                )
            try:
                action = actions[key] = reference_action(routines, program, args, observed)
            except ReferenceBug as error:
                raise ReferenceBug(f"{task_label(task, formulation)}: "
                                   f"{error}") from None
            action_of[node] = action
        if action.program in primitive:
            if action.program == NOP:
                after: Iterable[Abstract] = (current,)
            else:
                after = domain.post(current, action.program, action.args)
                if not domain.keeps_relations(action.program, action.args):
                    lose_keeps(calls[context])
            continue_with(context, node, action.ret, after)
        else:
            callee = open_call((action.program, action.args, current[:width]))
            site = (context, node, action.ret, current)
            callee.return_sites.append(site)
            returned(callee, site, callee.exits)
            if not callee.keeps:
                lose_keeps(calls[context])
    return actions, calls


def _describe(
    task: Task, routines: Routines, program: str, args: Args, observations: tuple[Observation, ...]
) -> tuple[str, ...]:
    """The reference actions of a call, formatted, after each prefix of `observations`."""
    return tuple(
        task.format_action(reference_action(routines, program, args, observations[: k + 1]))
        for k in range(len(observations))
    )
