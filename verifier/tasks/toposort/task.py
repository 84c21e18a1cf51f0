"""Topological sort by depth-first search with an explicit stack (C17 §4.4, Algorithm 2).

Input: a DAG on vertices 1..n; an edge [u, v] means u must come before v. Children of each
vertex are visited in increasing order. State: colors (white/grey/black), the result array
filled from position n down to 1 (reverse post-order, so it reads as a topological order), the
stack with pointer p_stack (1 = empty), p_start, the variables v_active and v_save, and a child
pointer childList[v] per vertex.

Observation: (color of vertex p_start, color of v_active's current child, p_stack == 1), with
color INVALID for a pointer past the end (or a null vertex).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any


from verifier.tasks.base import (
    NON_RECURSIVE,
    NOP_PROGRAM,
    RECURSIVE,
    RETURN,
    Args,
    Observation,
    Program,
    Routines,
    Task,
    call,
    require,
    strict_int,
)
from verifier.tasks.registry import register

if TYPE_CHECKING:  # z3 is imported by semantics() alone, hypothesis by strategy()
    from hypothesis.strategies import SearchStrategy

    from verifier.smt import Semantics

WHITE, GREY, BLACK, INVALID = range(4)
COLORS = ("WHITE", "GREY", "BLACK", "INVALID")
TARGETS = (
    "COLOR_CURR", "COLOR_NEXT", "ACTIVE_START", "ACTIVE_NEIGHB", "ACTIVE_STACK",
    "SAVE", "STACK_PUSH", "STACK_POP", "RESULT",
)  # fmt: skip
(COLOR_CURR, COLOR_NEXT, ACTIVE_START, ACTIVE_NEIGHB, ACTIVE_STACK,
 SAVE, STACK_PUSH, STACK_POP, RESULT) = range(len(TARGETS))  # fmt: skip
WRITE_VALUES = ("GREY", "BLACK")  # WRITE's second argument; ignored by non-color targets
POINTERS = ("P_RESULT", "P_STACK", "P_START", "CHILD_ACTIVE", "CHILD_SAVE")
P_RESULT, P_STACK, P_START, CHILD_ACTIVE, CHILD_SAVE = range(len(POINTERS))
UP, DOWN = 0, 1
PUSH, POP = 0, 1
START_COLOR, CHILD_COLOR, STACK_EMPTY = range(3)


@dataclass(frozen=True)
class Graph:
    vertices: int
    edges: tuple[tuple[int, int], ...]


@dataclass
class Search:
    """The DFS state; vertex-indexed lists have an unused slot 0."""

    children: list[list[int]]
    color: list[int]
    result: list[int | None]
    child: list[int]
    stack: dict[int, int | None] = field(default_factory=dict)
    p_result: int = 0
    p_stack: int = 1
    p_start: int = 1
    active: int | None = None
    save: int | None = None

    @property
    def n(self) -> int:
        return len(self.color) - 1

    def vertex(self, v: int | None) -> bool:
        return v is not None and 1 <= v <= self.n

    def current_child(self) -> int | None:
        v = self.active
        if self.vertex(v) and 0 <= self.child[v] < len(self.children[v]):
            return self.children[v][self.child[v]]
        return None


def _toposort(args: Args, obs: Observation):
    if obs[START_COLOR] == INVALID:
        yield RETURN
        return
    yield call("TRAVERSE")
    yield call("NEXT_START")
    yield call("TOPOSORT", ret=True)


def _toposort_loop(args: Args, obs: Observation):
    while obs[START_COLOR] != INVALID:
        yield call("TRAVERSE")
        obs = yield call("NEXT_START")
    yield RETURN


def _traverse(args: Args, obs: Observation):
    yield call("WRITE", ACTIVE_START, 0)
    yield call("WRITE", COLOR_CURR, WRITE_VALUES.index("GREY"))
    yield call("STACK", PUSH)
    yield call("CHECK_CHILD")
    yield call("EXPLORE", ret=True)


def _next_start(args: Args, obs: Observation):
    if obs[START_COLOR] in (WHITE, INVALID):
        yield RETURN
        return
    yield call("MOVE", P_START, UP)
    yield call("NEXT_START", ret=True)


def _next_start_loop(args: Args, obs: Observation):
    while obs[START_COLOR] not in (WHITE, INVALID):
        obs = yield call("MOVE", P_START, UP)
    yield RETURN


def _check_child(args: Args, obs: Observation):
    if obs[CHILD_COLOR] not in (GREY, BLACK):
        yield RETURN
        return
    yield call("MOVE", CHILD_ACTIVE, UP)
    yield call("CHECK_CHILD", ret=True)


def _check_child_loop(args: Args, obs: Observation):
    while obs[CHILD_COLOR] in (GREY, BLACK):
        obs = yield call("MOVE", CHILD_ACTIVE, UP)
    yield RETURN


def _explore_once(obs: Observation):
    """One DFS move: descend into the white child, or finish the active vertex and pop."""
    if obs[CHILD_COLOR] == WHITE:
        yield call("WRITE", COLOR_NEXT, WRITE_VALUES.index("GREY"))
        yield call("WRITE", SAVE, 0)
        yield call("WRITE", ACTIVE_NEIGHB, 0)
        yield call("MOVE", CHILD_SAVE, UP)
        yield call("STACK", PUSH)
    else:
        yield call("WRITE", COLOR_CURR, WRITE_VALUES.index("BLACK"))
        yield call("WRITE", RESULT, 0)
        yield call("MOVE", P_RESULT, DOWN)
        yield call("STACK", POP)
        yield call("WRITE", ACTIVE_STACK, 0)


def _explore(args: Args, obs: Observation):
    if obs[STACK_EMPTY]:
        yield RETURN
        return
    yield from _explore_once(obs)
    yield call("CHECK_CHILD")
    yield call("EXPLORE", ret=True)


def _explore_loop(args: Args, obs: Observation):
    while not obs[STACK_EMPTY]:
        yield from _explore_once(obs)
        obs = yield call("CHECK_CHILD")
    yield RETURN


def _stack(args: Args, obs: Observation):
    if args[0] == PUSH:
        yield call("WRITE", STACK_PUSH, 0)
        yield call("MOVE", P_STACK, UP, ret=True)
    else:
        yield call("WRITE", STACK_POP, 0)
        yield call("MOVE", P_STACK, DOWN, ret=True)


@register
class TopoSort(Task):
    name = "toposort"
    summary = "topological sort of a DAG by depth-first search with an explicit stack"
    programs = (
        Program("TOPOSORT", False),
        Program("TRAVERSE", False),
        Program("CHECK_CHILD", False),
        Program("EXPLORE", False),
        Program("STACK", False, (("PUSH", "POP"),)),
        Program("NEXT_START", False),
        Program("WRITE", True, (TARGETS, WRITE_VALUES)),
        Program("MOVE", True, (POINTERS, ("UP", "DOWN"))),
        NOP_PROGRAM,
    )
    entry = "TOPOSORT"
    observation_names = ("color[p_start]", "color[child]", "stack_empty")
    observation_values = (COLORS, COLORS, ("0", "1"))
    input_example = '{"vertices": 5, "edges": [[1, 2], [1, 5], [2, 4], [2, 5], [3, 5]]}'

    def semantics(self) -> Semantics:
        from verifier.tasks.toposort.semantics import TopoSortSemantics

        return TopoSortSemantics(self)

    def _routines(self, formulation: str) -> Routines:
        assert formulation in (RECURSIVE, NON_RECURSIVE)
        recursive = formulation == RECURSIVE
        return {
            "TOPOSORT": _toposort if recursive else _toposort_loop,
            "TRAVERSE": _traverse,
            "CHECK_CHILD": _check_child if recursive else _check_child_loop,
            "EXPLORE": _explore if recursive else _explore_loop,
            "STACK": _stack,
            "NEXT_START": _next_start if recursive else _next_start_loop,
        }

    def parse_input(self, data: Any) -> Graph:
        require(
            isinstance(data, dict) and set(data) == {"vertices", "edges"},
            'toposort input must be a JSON object {"vertices": n, "edges": [[u, v], ...]}',
        )
        n, edges = data["vertices"], data["edges"]
        require(strict_int(n) and n >= 1, f"vertices must be a positive integer, got {n!r}")
        require(isinstance(edges, list), f"edges must be a list of [u, v] pairs, got {edges!r}")
        seen: set[tuple[int, int]] = set()
        ordered: list[tuple[int, int]] = []
        for position, edge in enumerate(edges):
            require(
                isinstance(edge, list) and len(edge) == 2 and all(strict_int(x) for x in edge),
                f"edges[{position}] must be a pair of integers [u, v], got {edge!r}",
            )
            u, v = edge
            for vertex in (u, v):
                require(1 <= vertex <= n, f"edges[{position}] names vertex {vertex}, not in 1..{n}")
            require(u != v, f"edges[{position}] is a self-loop on vertex {u}")
            require((u, v) not in seen, f"edges[{position}] repeats the edge [{u}, {v}]")
            seen.add((u, v))
            ordered.append((u, v))
        import networkx as nx  # here, not at the top: listing tasks must not pay for it

        graph = nx.DiGraph(list(seen))
        if not nx.is_directed_acyclic_graph(graph):
            cycle = [u for u, _ in nx.find_cycle(graph)]
            path = " -> ".join(str(v) for v in cycle + cycle[:1])
            require(False, f"graph is not acyclic: it has the cycle {path}")
        return Graph(n, tuple(ordered))

    def input_to_json(self, value: Graph) -> dict[str, Any]:
        return {"vertices": value.vertices, "edges": [list(e) for e in value.edges]}

    def sample_input(self, rng: random.Random, size: int) -> Graph:
        """A random DAG: a hidden vertex order, and about 1.5 edges per vertex along it."""
        order = list(range(1, size + 1))
        rng.shuffle(order)
        pairs = size * (size - 1) // 2
        count = min(pairs, rng.randint(size // 2, 2 * size))
        edges: set[tuple[int, int]] = set()
        while len(edges) < count:
            i, j = sorted(rng.sample(range(size), 2))
            edges.add((order[i], order[j]))
        return Graph(size, tuple(sorted(edges)))

    def strategy(self, large: bool = False) -> SearchStrategy[Any]:
        """DAGs drawn by hypothesis, not by the task's sampler: up to 120 vertices when
        `large`, else 7; edges only go forward in a hidden random vertex order."""
        from hypothesis import strategies as st

        @st.composite
        def dags(draw: Any, max_vertices: int) -> Graph:
            n = draw(st.integers(1, max_vertices))
            order = draw(st.permutations(range(1, n + 1)))
            pairs = st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(
                lambda p: p[0] < p[1]
            )
            index_pairs = draw(st.sets(pairs, max_size=3 * n)) if n > 1 else set()
            return Graph(n, tuple(sorted((order[i], order[j]) for i, j in index_pairs)))

        return dags(120 if large else 7)

    def input_size(self, value: Graph) -> int:
        return value.vertices

    def min_reference_steps(self, value: Graph) -> int:
        """Every vertex is written to the result once."""
        return value.vertices

    def small_inputs(self, size: int, limit: int) -> list[Any] | None:
        """Every DAG on `size` vertices (each pair: no edge, or an edge either way)."""
        pairs = [(u, v) for u in range(1, size + 1) for v in range(u + 1, size + 1)]
        if 3 ** len(pairs) > limit:
            return None
        import networkx as nx

        graphs = []
        for choice in itertools.product((0, 1, 2), repeat=len(pairs)):
            edges = [(u, v) if c == 1 else (v, u) for (u, v), c in zip(pairs, choice) if c]
            if nx.is_directed_acyclic_graph(nx.DiGraph(edges)) or not edges:
                graphs.append(Graph(size, tuple(sorted(edges))))
        return graphs

    def initial_env(self, value: Graph) -> Search:
        n = value.vertices
        children: list[list[int]] = [[] for _ in range(n + 1)]
        for u, v in value.edges:
            children[u].append(v)
        for kids in children:
            kids.sort()
        return Search(children, [WHITE] * (n + 1), [None] * (n + 1), [0] * (n + 1), p_result=n)

    def observe(self, env: Search) -> Observation:
        start = env.color[env.p_start] if env.vertex(env.p_start) else INVALID
        kid = env.current_child()
        return (start, INVALID if kid is None else env.color[kid], int(env.p_stack == 1))

    def apply(self, env: Search, program: str, args: Args) -> None:
        if program == "MOVE":
            _move(env, *args)
        else:
            _write(env, *args)

    def output(self, env: Search) -> list[int | None]:
        return env.result[1:]

    def check(self, value: Graph, output: Any) -> bool:
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_nodes_from(range(1, value.vertices + 1))
        graph.add_edges_from(value.edges)
        if not isinstance(output, list) or len(output) != value.vertices:
            return False
        if set(output) != set(graph.nodes):
            return False
        position = {v: k for k, v in enumerate(output)}
        return all(position[u] < position[v] for u, v in graph.edges)


def _move(env: Search, pointer: int, direction: int) -> None:
    delta = 1 if direction == UP else -1
    if pointer == P_RESULT:
        env.p_result += delta
    elif pointer == P_STACK:
        env.p_stack += delta
    elif pointer == P_START:
        env.p_start += delta
    else:
        v = env.active if pointer == CHILD_ACTIVE else env.save
        if env.vertex(v):
            env.child[v] += delta


def _write(env: Search, target: int, value: int) -> None:
    """WRITE: each target is a no-op where its operand is null or out of range."""
    if target in (COLOR_CURR, COLOR_NEXT):
        v = env.active if target == COLOR_CURR else env.current_child()
        if env.vertex(v):
            env.color[v] = GREY if WRITE_VALUES[value] == "GREY" else BLACK
    elif target == ACTIVE_START:
        env.active = env.p_start if env.vertex(env.p_start) else None
    elif target == ACTIVE_NEIGHB:
        env.active = env.current_child()
    elif target == ACTIVE_STACK:
        env.active = env.stack.get(env.p_stack - 1)
    elif target == SAVE:
        env.save = env.active
    elif target == STACK_PUSH:
        env.stack[env.p_stack] = env.active
    elif target == STACK_POP:
        env.stack.pop(env.p_stack - 1, None)
    elif 1 <= env.p_result <= env.n:  # RESULT
        env.result[env.p_result] = env.active
