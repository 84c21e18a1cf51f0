"""Topological sort in Z3: the graph, the colors, the explicit stack and the DFS variables.

The graph is immutable: `nchild[v]` children `kid[v][0..]`, each a vertex, and a rank `r`
that every edge increases (a topological numbering, which exists because the graph is a DAG).
Two ghost arrays, which the Python environment does not hold, carry the facts that depth-first
search relies on:

- `r`, the rank, never changes; any rank the graph admits will do;
- `pos[v]` is where STACK_PUSH last stored `v` on the stack (updated by STACK_PUSH only).

The hidden predicates say that grey vertices are exactly the ones on the stack (with the one
grey vertex a push is about to store as the exception), that ranks rise up the stack and that
the active vertex is its top. Together with the edge facts they give what the observations
need: a child of the active vertex is never grey, the stack is empty exactly when nothing is
grey, and the start vertex turns black exactly when the last vertex leaves the stack.

Eight predicates and the edge axiom are `Universal` (over vertices, stack positions or child
slots). Z3 never sees them as quantifiers: `AbstractDomain` gives a false one fresh witnesses
and instantiates a true one at the terms `instance_terms` names, so every query is
quantifier-free. With these terms the fixed point is exact (83 states, each witnessed).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import networkx as nx
import z3

from verifier.smt import (
    Predicate, Semantics, StackView, SymEnv, Term, Universal, Vocabulary, array_at, bit, distinct,
)  # fmt: skip
from verifier.tasks.base import Args, Task
from verifier.tasks.toposort.task import (
    ACTIVE_NEIGHB, ACTIVE_STACK, ACTIVE_START, BLACK, CHILD_ACTIVE, CHILD_SAVE, COLOR_CURR,
    COLOR_NEXT, GREY, INVALID, P_RESULT, P_STACK, P_START, RESULT, SAVE, STACK_POP, STACK_PUSH,
    UP, WHITE, WRITE_VALUES, Search,
)  # fmt: skip

_INTS = ("n", "p_result", "p_stack", "p_start", "active", "save")
_ARRAYS = ("color", "child", "nchild", "stack", "result", "r", "pos")
_POINTER = {P_RESULT: "p_result", P_STACK: "p_stack", P_START: "p_start"}
_INT_ARRAY = z3.ArraySort(z3.IntSort(), z3.IntSort())


_HINTS = (
        "active==top", "p_stack>=1 and stack[0]==null", "active grey",
        "save==active (a vertex)", "active (a vertex) stored at p_stack", "stack[p_stack]==null",
        "stack empty or top grey", "top null",
        # universal
        "greys on stack", "greys but active on stack", "greys but active's child on stack",
        "ranks rise up the stack", "stack below top grey", "stack ranks below active",
        "stack null above p_stack", "vertices white, grey or black",
)  # fmt: skip


class TopoSortSemantics(Semantics):
    """Declares the 16 predicates above (hints); three more are discovered from templates
    over the vocabulary (predicates.json): active == p_start, the stack's bottom vertex is
    p_start, and the stack holds one vertex. They replace four declared ones (the last also
    made `active a vertex`, which the search found V does not need)."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self._last: tuple[SymEnv, list[Term]] | None = None

    def hints(self) -> tuple[Predicate, ...]:
        return tuple(Predicate(name, functools.partial(self._hint, k)) for k, name in enumerate(_HINTS))

    def _hint(self, k: int, env: SymEnv) -> Term:
        """Hint k on `env`: an abstraction asks for every hint of one env in a row, and their
        terms share sub-terms, so the last env's terms are built together and kept."""
        if self._last is None or self._last[0] is not env:
            self._last = (env, self._hint_terms(env))
        return self._last[1][k]

    def fresh(self, tag: str) -> SymEnv:
        env: SymEnv = {name: z3.Int(f"{tag}_{name}") for name in _INTS}
        for name in _ARRAYS:
            env[name] = z3.Array(f"{tag}_{name}", z3.IntSort(), z3.IntSort())
        env["kid"] = z3.Array(f"{tag}_kid", z3.IntSort(), _INT_ARRAY)
        return env

    def _vertex(self, env: SymEnv, v: Any) -> z3.BoolRef:
        return z3.And(v >= 1, v <= env["n"])

    def domain(self, env: SymEnv) -> z3.BoolRef:
        return env["n"] >= 1

    def axioms(self, env: SymEnv) -> list[Universal]:
        """Every child of a vertex is a vertex of higher rank."""

        def edge(v: Any, k: Any) -> z3.BoolRef:
            kid = env["kid"][v][k]
            return z3.Implies(
                z3.And(self._vertex(env, v), k >= 0, k < env["nchild"][v]),
                z3.And(self._vertex(env, kid), env["r"][v] < env["r"][kid]),
            )

        return [Universal(("vertex", "slot"), edge)]

    def initial(self, env: SymEnv) -> z3.BoolRef:
        white = z3.K(z3.IntSort(), z3.IntVal(WHITE))
        null = z3.K(z3.IntSort(), z3.IntVal(0))
        return z3.And(
            env["color"] == white, env["child"] == null, env["stack"] == null,
            env["p_stack"] == 1, env["p_start"] == 1, env["p_result"] == env["n"],
            env["active"] == 0, env["save"] == 0, env["pos"] == null,
        )  # fmt: skip

    def _has_child(self, env: SymEnv) -> z3.BoolRef:
        v = env["active"]
        index = env["child"][v]
        return z3.And(self._vertex(env, v), index >= 0, index < env["nchild"][v])

    def _child(self, env: SymEnv) -> z3.ArithRef:
        """The active vertex's current child, 0 (null) where there is none."""
        v = env["active"]
        return z3.If(self._has_child(env), env["kid"][v][env["child"][v]], 0)

    def apply(self, env: SymEnv, program: str, args: Args) -> SymEnv:
        after = dict(env)
        if program == "MOVE":
            pointer, direction = args
            step = 1 if direction == UP else -1
            if pointer in _POINTER:
                after[_POINTER[pointer]] = env[_POINTER[pointer]] + step
            else:
                v = env["active"] if pointer == CHILD_ACTIVE else env["save"]
                assert pointer in (CHILD_ACTIVE, CHILD_SAVE)
                moved = z3.Store(env["child"], v, env["child"][v] + step)
                after["child"] = z3.If(self._vertex(env, v), moved, env["child"])
            return after
        target, value = args
        color = GREY if WRITE_VALUES[value] == "GREY" else BLACK
        if target in (COLOR_CURR, COLOR_NEXT):
            v = env["active"] if target == COLOR_CURR else self._child(env)
            painted = z3.Store(env["color"], v, color)
            after["color"] = z3.If(self._vertex(env, v), painted, env["color"])
        elif target == ACTIVE_START:
            after["active"] = z3.If(self._vertex(env, env["p_start"]), env["p_start"], 0)
        elif target == ACTIVE_NEIGHB:
            after["active"] = self._child(env)
        elif target == ACTIVE_STACK:
            after["active"] = env["stack"][env["p_stack"] - 1]
        elif target == SAVE:
            after["save"] = env["active"]
        elif target == STACK_PUSH:
            after["stack"] = z3.Store(env["stack"], env["p_stack"], env["active"])
            after["pos"] = z3.Store(env["pos"], env["active"], env["p_stack"])
        elif target == STACK_POP:
            after["stack"] = z3.Store(env["stack"], env["p_stack"] - 1, 0)
        else:
            assert target == RESULT
            p = env["p_result"]
            stored = z3.Store(env["result"], p, env["active"])
            after["result"] = z3.If(z3.And(p >= 1, p <= env["n"]), stored, env["result"])
        return after

    def observation(self, env: SymEnv) -> list[z3.ArithRef]:
        start, color = env["p_start"], env["color"]
        return [
            z3.If(self._vertex(env, start), color[start], INVALID),
            z3.If(self._has_child(env), color[self._child(env)], INVALID),
            bit(env["p_stack"] == 1),
        ]

    def _hint_terms(self, env: SymEnv) -> list[Term]:
        stack, pos, r, color = env["stack"], env["pos"], env["r"], env["color"]
        active, p_stack = env["active"], env["p_stack"]
        top = stack[p_stack - 1]
        # Universal predicates are instantiated at every pair of pool terms: the sub-terms of
        # one term are built once (Z3 shares equal terms anyway; building them is the cost).
        memo: dict[tuple[str, int], Any] = {}

        def once(name: str, make: Callable[[Any], Any]) -> Callable[[Any], Any]:
            def made(term: Any) -> Any:
                key = (name, term.get_id())
                if key not in memo:
                    memo[key] = (term, make(term))  # the term kept alive keeps its id unique
                return memo[key][1]

            return made

        entry_at = once("stack", lambda i: stack[i])
        rank_at = once("rank", lambda i: r[entry_at(i)])
        vertex_at = once("vertex", lambda i: self._vertex(env, entry_at(i)))

        grey = once("grey", lambda u: z3.And(self._vertex(env, u), color[u] == GREY))
        in_stack = once("in_stack", lambda k: z3.And(k >= 1, k < p_stack))

        def greys_on_stack(*exempt: Any) -> Universal:
            def body(v: Any) -> z3.BoolRef:
                on_stack = z3.And(in_stack(pos[v]), stack[pos[v]] == v)
                return z3.Implies(z3.And(grey(v), *[v != u for u in exempt]), on_stack)

            return Universal(("vertex",), body)

        def rising(i: Any, j: Any) -> z3.BoolRef:
            above = z3.And(in_stack(i), in_stack(j), i < j, vertex_at(j))
            return z3.Implies(above, rank_at(i) < rank_at(j))

        def below_top(i: Any) -> z3.BoolRef:
            return z3.Implies(z3.And(in_stack(i), i < p_stack - 1), grey(entry_at(i)))

        def below_active(i: Any) -> z3.BoolRef:
            return z3.Implies(z3.And(in_stack(i), vertex_at(i)), rank_at(i) < r[active])

        def null_above(i: Any) -> z3.BoolRef:
            return z3.Implies(i > p_stack, stack[i] == 0)

        def colored(v: Any) -> z3.BoolRef:
            colors = z3.Or(color[v] == WHITE, color[v] == GREY, color[v] == BLACK)
            return z3.Implies(self._vertex(env, v), colors)

        empty, vertex_active = p_stack <= 1, self._vertex(env, active)
        return [
            bit(active == top),
            bit(z3.And(p_stack >= 1, stack[0] == 0)),
            bit(grey(active)),
            bit(z3.And(vertex_active, env["save"] == active)),
            bit(z3.And(vertex_active, stack[p_stack] == active, pos[active] == p_stack)),
            bit(stack[p_stack] == 0),
            bit(z3.Or(empty, grey(top))),
            bit(top == 0),
            greys_on_stack(),
            greys_on_stack(active),
            greys_on_stack(self._child(env)),
            Universal(("index", "upper"), rising),
            Universal(("index",), below_top),
            Universal(("index",), below_active),
            Universal(("index",), null_above),
            Universal(("vertex",), colored),
        ]

    def vocabulary(self, env: SymEnv) -> Vocabulary:
        """The size, the active and start vertices, and the stack as frames 1..p_stack-1 of
        one field, the vertex stored there. Kept small: each trial of the search is a fixed
        point with the universal hints (4 s on an idle machine)."""
        stack = env["stack"]
        return Vocabulary(
            size=env["n"],
            pointers={"active": env["active"], "p_start": env["p_start"]},
            stacks=(StackView("stack", env["p_stack"] - 1, {"v": lambda k: stack[k]}),),
        )

    def instance_terms(
        self, envs: list[SymEnv], witnesses: dict[str, list[z3.ArithRef]]
    ) -> dict[str, list[z3.ArithRef]]:
        """Vertices: the variables, the current child, the top entries of the stack and the
        witnesses. Stack positions: the witnesses, the top ones, and where the current
        children and the vertex witnesses were stored before the step; as the upper position
        of a pair, only the witnesses and the top ones. Child slots: the child pointers of the
        active and the saved vertex."""
        vertex_witnesses = witnesses.get("vertex", [])
        index_witnesses = witnesses.get("index", []) + witnesses.get("upper", [])
        vertices, tops, slots = list(vertex_witnesses), list(index_witnesses), []
        for env in envs:
            stack, p_stack = env["stack"], env["p_stack"]
            vertices += [env["active"], env["save"], env["p_start"], self._child(env)]
            vertices += [stack[p_stack - 1], stack[p_stack - 2], stack[1]]
            vertices += [stack[i] for i in index_witnesses]
            tops += [p_stack - 2, p_stack - 1, p_stack]
            slots += [env["child"][env["active"]], env["child"][env["save"]]]
        stored = [self._child(env) for env in envs] + vertex_witnesses
        indices = tops + [z3.IntVal(1)] + [envs[0]["pos"][v] for v in stored]
        return {
            "vertex": distinct(vertices),
            "index": distinct(indices),
            "upper": distinct(tops),
            "slot": distinct(slots),
        }

    def encode(self, env: Search) -> SymEnv:
        """The ghosts as a concrete run determines them: the rank is the position in the
        lexicographically first topological order, `pos` the stack position of each vertex
        on the stack (the only ones the predicates read it for)."""
        n = env.n
        graph = nx.DiGraph()
        graph.add_nodes_from(range(1, n + 1))
        graph.add_edges_from((u, w) for u in range(1, n + 1) for w in env.children[u])
        rank = {u: k for k, u in enumerate(nx.lexicographical_topological_sort(graph))}
        kid = z3.K(z3.IntSort(), z3.K(z3.IntSort(), z3.IntVal(0)))
        for u in range(1, n + 1):
            kid = z3.Store(kid, u, array_at(dict(enumerate(env.children[u]))))
        stack = {k: (w or 0) for k, w in env.stack.items()}
        position = {w: k for k, w in sorted(env.stack.items()) if w is not None}
        symbolic: SymEnv = {
            "n": z3.IntVal(n),
            "p_result": z3.IntVal(env.p_result),
            "p_stack": z3.IntVal(env.p_stack),
            "p_start": z3.IntVal(env.p_start),
            "active": z3.IntVal(env.active or 0),
            "save": z3.IntVal(env.save or 0),
            "color": array_at(dict(enumerate(env.color))),
            "child": array_at(dict(enumerate(env.child))),
            "nchild": array_at({u: len(kids) for u, kids in enumerate(env.children)}),
            "stack": array_at(stack),
            "result": array_at({k: (w or 0) for k, w in enumerate(env.result)}),
            "r": array_at(rank),
            "pos": array_at(position),
            "kid": kid,
        }
        return symbolic

