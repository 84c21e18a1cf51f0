"""Topological sort in Z3: the graph, the colors, the explicit stack and the DFS variables.

The graph is immutable: `nchild[v]` children `kid[v][0..]`, each a vertex, and a rank `r`
that every edge increases (a topological numbering, which exists because the graph is a DAG).
Two ghost arrays, which the Python environment does not hold, carry the facts that depth-first
search relies on:

- `r`, the rank, never changes; any rank the graph admits will do;
- `pos[v]` is where STACK_PUSH last stored `v` on the stack (updated by STACK_PUSH only).

Four more ghosts serve the whole proof (`contract`), none read by a predicate, so V does not
depend on them: `white` counts the white vertices and `wl[1..white]` lists them, `wi[v]` being
where v stands (both held as offsets from the identity, so the initial list is the constant
array 0); a color write that paints a white vertex moves the list's last entry into its place.
A white vertex therefore implies white >= 1, the counting fact that EXPLORE's ranking function
needs and that Z3 could not derive from the colors alone. `at[v]` is the result cell where
RESULT wrote v. The initial condition also states the edge axiom as a formula, since the
induction assumes of an input only `domain` and `initial`.

The hidden predicates say that grey vertices are exactly the ones on the stack (with the one
grey vertex a push is about to store as the exception), that ranks rise up the stack and that
the active vertex is its top. Together with the edge facts they give what the observations
need: a child of the active vertex is never grey, the stack is empty exactly when nothing is
grey, and the start vertex turns black exactly when the last vertex leaves the stack.

Eight predicates and the edge axiom are `Universal` (over vertices, stack positions or child
slots). Z3 never sees them as quantifiers: `AbstractDomain` gives a false one fresh witnesses
and instantiates a true one at the terms `instance_terms` names, so every query of the fixed
point is quantifier-free but the one for the initial states (whose edge formula Z3 satisfies
at once: nothing else there reads the graph). With these terms the fixed point is exact
(83 states, each witnessed).
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
from verifier.smt.contracts import Contract, Specification
from verifier.tasks.base import RECURSIVE, Args, Task
from verifier.tasks.toposort.task import (
    ACTIVE_NEIGHB, ACTIVE_STACK, ACTIVE_START, BLACK, CHILD_ACTIVE, CHILD_SAVE, COLOR_CURR,
    COLOR_NEXT, GREY, INVALID, P_RESULT, P_STACK, P_START, POP, PUSH, RESULT, SAVE, STACK_POP,
    STACK_PUSH, UP, WHITE, WRITE_VALUES, Search,
)  # fmt: skip

_INTS = ("n", "p_result", "p_stack", "p_start", "active", "save", "white")
_ARRAYS = ("color", "child", "nchild", "stack", "result", "r", "pos", "wl", "wi", "at")
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

        return [Universal(("vertex", "slot"), functools.partial(_edge, env))]

    def initial(self, env: SymEnv) -> z3.BoolRef:
        white = z3.K(z3.IntSort(), z3.IntVal(WHITE))
        null = z3.K(z3.IntSort(), z3.IntVal(0))
        return z3.And(
            env["color"] == white, env["child"] == null, env["stack"] == null,
            env["p_stack"] == 1, env["p_start"] == 1, env["p_result"] == env["n"],
            env["active"] == 0, env["save"] == 0, env["pos"] == null,
            env["white"] == env["n"], env["wl"] == null, env["wi"] == null, _edges(env),
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
            after.update(_unlist(env, z3.And(self._vertex(env, v), env["color"][v] == WHITE), v))
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
            inside = z3.And(p >= 1, p <= env["n"])
            after["result"] = z3.If(inside, stored, env["result"])
            after["at"] = z3.If(inside, z3.Store(env["at"], env["active"], p), env["at"])
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
        listed = [u for u in range(1, n + 1) if env.color[u] == WHITE]
        order = listed + [u for u in range(1, n + 1) if env.color[u] != WHITE]
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
            "white": z3.IntVal(len(listed)),
            "wl": array_at({k: u - k for k, u in enumerate(order, 1) if u != k}),
            "wi": array_at({u: k - u for k, u in enumerate(order, 1) if u != k}),
            "at": array_at({w: k for k, w in enumerate(env.result) if w is not None}),
            "kid": kid,
        }
        return symbolic



    def contract(self, formulation: str, program: str, args: Args) -> Contract | None:
        """The recursive program's contracts: DFS's invariant between moves (`_search`) at
        EXPLORE's calls, and with the stack empty (`_settled`) at TRAVERSE's and TOPOSORT's;
        ranking functions n + 1 - p_start (TOPOSORT, NEXT_START), the children left to look at
        (CHECK_CHILD) and 2 * white + p_stack (EXPLORE). The non-recursive formulation has
        none: its loops are not routines the induction can take apart."""
        if formulation != RECURSIVE:
            return None
        return _CONTRACTS.get((program, args))

    def specification(self) -> Specification:
        return Specification(
            holds=lambda initial, final: _output(final),
            text="every vertex stands in result[1..n] (n cells: each exactly once), before all "
                 "of its children (a topological order)",
        )

def listed_at(env: SymEnv, i: Any) -> z3.ArithRef:
    """The white list's entry i (ghost `wl` holds it as an offset from i)."""
    return i + env["wl"][i]


def list_index(env: SymEnv, v: Any) -> z3.ArithRef:
    """Where vertex v stands in the white list (ghost `wi` holds it as an offset from v)."""
    return v + env["wi"][v]


def _unlist(env: SymEnv, whitened: z3.BoolRef, v: Any) -> SymEnv:
    """The ghosts after vertex v leaves the white list where `whitened` (v was a white vertex
    and is painted): the list's last entry takes v's place and the list is one shorter."""
    last, here = listed_at(env, env["white"]), list_index(env, v)
    return {
        "white": z3.If(whitened, env["white"] - 1, env["white"]),
        "wl": z3.If(whitened, z3.Store(env["wl"], here, last - here), env["wl"]),
        "wi": z3.If(whitened, z3.Store(env["wi"], last, here - last), env["wi"]),
    }


# --- contracts of the recursive formulation -------------------------------------------------


def _is_vertex(env: SymEnv, v: Any) -> z3.BoolRef:
    return z3.And(v >= 1, v <= env["n"])


def _every_vertex(env: SymEnv, body: Callable[[Any], z3.BoolRef]) -> z3.BoolRef:
    v = z3.Int("v")
    return z3.ForAll([v], z3.Implies(_is_vertex(env, v), body(v)))


def _edge(env: SymEnv, v: Any, k: Any) -> z3.BoolRef:
    """Child k of vertex v, where v has one, is a vertex of higher rank."""
    kid = env["kid"][v][k]
    return z3.Implies(
        z3.And(_is_vertex(env, v), k >= 0, k < env["nchild"][v]),
        z3.And(_is_vertex(env, kid), env["r"][v] < env["r"][kid]),
    )


def _edges(env: SymEnv) -> z3.BoolRef:
    """The task's axiom as a formula: every child of a vertex is a vertex of higher rank."""
    v, k = z3.Ints("v k")
    return z3.ForAll([v, k], _edge(env, v, k))


def _listed(env: SymEnv) -> z3.BoolRef:
    """The white list: every white vertex stands in wl[1..white], at wi[v]."""
    def body(v: Any) -> z3.BoolRef:
        i = list_index(env, v)
        return z3.Implies(env["color"][v] == WHITE,
                          z3.And(1 <= i, i <= env["white"], listed_at(env, i) == v))
    return z3.And(env["white"] >= 0, _every_vertex(env, body))


def _colored(env: SymEnv) -> z3.BoolRef:
    """Every vertex is white, grey or black."""
    color = env["color"]
    return _every_vertex(
        env, lambda v: z3.Or(color[v] == WHITE, color[v] == GREY, color[v] == BLACK))


def _counted(env: SymEnv) -> z3.BoolRef:
    """The free result cells are as many as the white and the grey (stacked) vertices."""
    return z3.And(env["p_result"] == env["white"] + env["p_stack"] - 1, env["p_result"] <= env["n"])


def _placed(env: SymEnv) -> z3.BoolRef:
    """Every black vertex stands in the filled part of the result, at at[v]."""
    def body(v: Any) -> z3.BoolRef:
        at = env["at"][v]
        return z3.Implies(env["color"][v] == BLACK, z3.And(
            env["p_result"] < at, at <= env["n"], env["result"][at] == v))
    return _every_vertex(env, body)


def _stacked(env: SymEnv) -> z3.BoolRef:
    """The grey vertices are exactly the stack's entries 1..p_stack-1, each at pos[v]."""
    stack, pos, p_stack, color = env["stack"], env["pos"], env["p_stack"], env["color"]

    def grey(v: Any) -> z3.BoolRef:
        return z3.Implies(color[v] == GREY,
                          z3.And(1 <= pos[v], pos[v] < p_stack, stack[pos[v]] == v))

    i = z3.Int("i")
    entry = stack[i]
    entries = z3.ForAll([i], z3.Implies(z3.And(1 <= i, i < p_stack), z3.And(
        _is_vertex(env, entry), color[entry] == GREY, pos[entry] == i)))
    return z3.And(p_stack >= 1, _every_vertex(env, grey), entries)


def _children(env: SymEnv) -> z3.BoolRef:
    """Child pointers are never negative, and a white vertex's is still 0."""
    child = env["child"]
    return _every_vertex(env, lambda v: z3.And(
        child[v] >= 0, z3.Implies(env["color"][v] == WHITE, child[v] == 0)))


def _done(env: SymEnv) -> z3.BoolRef:
    """Every child of a black vertex is black and placed after it in the result."""
    u, k = z3.Ints("u k")
    kid, color, at = env["kid"][u][k], env["color"], env["at"]
    return z3.ForAll([u, k], z3.Implies(
        z3.And(_is_vertex(env, u), color[u] == BLACK, k >= 0, k < env["nchild"][u]),
        z3.And(color[kid] == BLACK, at[u] < at[kid])))


def _progress(env: SymEnv) -> z3.BoolRef:
    """The children a stacked vertex has moved past are black, except, below the top, the last
    one: the vertex above it on the stack."""
    i, k = z3.Ints("i k")
    stack, p_stack = env["stack"], env["p_stack"]
    u = stack[i]
    kid, passed = env["kid"][u][k], env["child"][u]
    return z3.ForAll([i, k], z3.Implies(
        z3.And(1 <= i, i < p_stack, k >= 0, k < passed, k < env["nchild"][u]),
        z3.Or(env["color"][kid] == BLACK,
              z3.And(i < p_stack - 1, k == passed - 1, kid == stack[i + 1]))))


def _search(env: SymEnv) -> z3.BoolRef:
    """DFS's invariant between moves."""
    top = z3.Implies(env["p_stack"] >= 2, env["active"] == env["stack"][env["p_stack"] - 1])
    return z3.And(_edges(env), top, _colored(env), _listed(env), _counted(env), _placed(env),
                  _stacked(env), env["stack"][0] == 0, _children(env), _done(env), _progress(env))


def _settled(env: SymEnv) -> z3.BoolRef:
    """No search under way: the stack is empty (so no vertex is grey)."""
    return z3.And(_edges(env), env["p_stack"] == 1, _colored(env), _listed(env), _counted(env),
                  _placed(env), _stacked(env), env["stack"][0] == 0, _children(env), _done(env))


def _kept(entry: SymEnv, exit: SymEnv) -> z3.BoolRef:
    """Colors only move on: a vertex that is not white stays so, a black one stays black."""
    before, after = entry["color"], exit["color"]
    return _every_vertex(entry, lambda v: z3.And(
        z3.Implies(before[v] != WHITE, after[v] != WHITE),
        z3.Implies(before[v] == BLACK, after[v] == BLACK)))


def _black_below(env: SymEnv, start: Any) -> z3.BoolRef:
    return _every_vertex(env, lambda v: z3.Implies(v < start, env["color"][v] == BLACK))


def _output(env: SymEnv) -> z3.BoolRef:
    """Every vertex v stands in result[1..n], at at[v], and before each of its children."""
    at = env["at"]
    u, k = z3.Ints("u k")
    ordered = z3.ForAll([u, k], z3.Implies(
        z3.And(_is_vertex(env, u), k >= 0, k < env["nchild"][u]), at[u] < at[env["kid"][u][k]]))
    placed = _every_vertex(
        env, lambda v: z3.And(1 <= at[v], at[v] <= env["n"], env["result"][at[v]] == v))
    return z3.And(placed, ordered)


def _check_child_post(entry: SymEnv, exit: SymEnv) -> z3.BoolRef:
    """Only the active vertex's child pointer moves, up over black children, to one neither
    grey nor black or past the last."""
    v, child = entry["active"], entry["child"]
    start, end = child[v], exit["child"][v]
    k = z3.Int("k")
    passed = z3.ForAll([k], z3.Implies(z3.And(start <= k, k < end),
                                       entry["color"][entry["kid"][v][k]] == BLACK))
    has = z3.And(_is_vertex(exit, v), end >= 0, end < exit["nchild"][v])
    found = exit["color"][exit["kid"][v][end]]
    stops = z3.Implies(has, z3.And(found != GREY, found != BLACK))
    return z3.And(exit["child"] == z3.Store(child, v, end), start <= end, passed, stops)


def _toposort_pre(env: SymEnv) -> z3.BoolRef:
    start = env["p_start"]
    return z3.And(_settled(env), 1 <= start, start <= env["n"] + 1, _black_below(env, start))


def _next_start_post(entry: SymEnv, exit: SymEnv) -> z3.BoolRef:
    start, end = entry["p_start"], exit["p_start"]
    skipped = _every_vertex(entry, lambda v: z3.Implies(z3.And(start <= v, v < end),
                                                        entry["color"][v] == BLACK))
    color = entry["color"][start]
    moved = z3.Implies(z3.And(_is_vertex(entry, start), z3.Or(color == GREY, color == BLACK)),
                       end > start)
    return z3.And(start <= end, end <= entry["n"] + 1, moved, skipped)


def _stack_post(direction: int) -> Callable[[SymEnv, SymEnv], z3.BoolRef]:
    def post(entry: SymEnv, exit: SymEnv) -> z3.BoolRef:
        p, stack = entry["p_stack"], entry["stack"]
        if direction == PUSH:
            return z3.And(exit["p_stack"] == p + 1,
                          exit["stack"] == z3.Store(stack, p, entry["active"]),
                          exit["pos"] == z3.Store(entry["pos"], entry["active"], p))
        return z3.And(exit["p_stack"] == p - 1, exit["stack"] == z3.Store(stack, p - 1, 0))
    return post


_CONTRACTS = {
    ("TOPOSORT", ()): Contract(
        pre=_toposort_pre,
        post=lambda entry, exit: z3.And(_placed(exit), _done(exit), exit["p_result"] >= 0,
                                        _black_below(exit, exit["n"] + 1)),
        rank=lambda e: e["n"] + 1 - e["p_start"],
        text="pre: no search under way (as TRAVERSE), 1 <= p_start <= n + 1, every vertex "
             "below p_start black; post: every vertex black, and placed in result[p_result+1..n] "
             "before its children, p_result >= 0; "
             "rank n + 1 - p_start",
    ),
    ("TRAVERSE", ()): Contract(
        pre=_settled,
        post=lambda entry, exit: z3.And(_settled(exit), _kept(entry, exit),
                                        exit["color"][entry["p_start"]] == BLACK),
        text="pre and post: no search under way: the stack empty, every vertex white, grey or "
             "black, white ones in the white list and with child pointer 0, p_result = white, "
             "black ones placed in result[p_result+1..n] before their children, which are "
             "black; post: colors only move on, p_start black",
    ),
    ("EXPLORE", ()): Contract(
        pre=_search,
        post=lambda entry, exit: z3.And(_settled(exit), _kept(entry, exit)),
        rank=lambda e: 2 * e["white"] + e["p_stack"],
        text="pre: as TRAVERSE's but with a search under way: the stack holds exactly the grey "
             "vertices, the active one on top, p_result = white + p_stack - 1, the children a "
             "stacked vertex has passed are black but for the one above it; post: no search "
             "under way, colors only move on; rank 2 * white + p_stack (= 2 * white + grey + 1: a "
             "push trades a white vertex for a grey one, a pop blackens a grey one)",
    ),
    ("CHECK_CHILD", ()): Contract(
        post=_check_child_post,
        rank=lambda e: e["nchild"][e["active"]] - e["child"][e["active"]],
        text="post: only the active vertex's child pointer moves, up over black children, to "
             "one neither grey nor black or past the last; rank: children left to look at",
    ),
    ("NEXT_START", ()): Contract(
        pre=lambda e: z3.And(1 <= e["p_start"], e["p_start"] <= e["n"] + 1),
        post=_next_start_post,
        rank=lambda e: e["n"] + 1 - e["p_start"],
        text="pre: 1 <= p_start <= n + 1; post: p_start moves up, to at most n + 1, over black "
             "vertices only, and at least one step from a grey or black vertex; "
             "rank n + 1 - p_start",
    ),
    ("STACK", (PUSH,)): Contract(
        post=_stack_post(PUSH), text="post: the active vertex stored at p_stack (pos too), "
                                     "p_stack one up"),
    ("STACK", (POP,)): Contract(
        post=_stack_post(POP), text="post: stack[p_stack - 1] cleared, p_stack one down"),
}
