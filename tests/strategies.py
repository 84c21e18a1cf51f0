"""Hypothesis strategies for each task's inputs, independent of the tasks' own samplers."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from verifier.tasks.toposort.task import Graph


@st.composite
def dags(draw: Any, max_vertices: int) -> Graph:
    """A DAG: edges only go forward in a hidden random vertex order."""
    n = draw(st.integers(1, max_vertices))
    order = draw(st.permutations(range(1, n + 1)))
    pairs = st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda p: p[0] < p[1])
    index_pairs = draw(st.sets(pairs, max_size=3 * n)) if n > 1 else set()
    return Graph(n, tuple(sorted((order[i], order[j]) for i, j in index_pairs)))


def inputs(task_name: str, large: bool) -> st.SearchStrategy[Any]:
    """Valid inputs; `large` reaches far beyond any training size."""
    if task_name == "addition":
        top = 10**200 if large else 10**3
        return st.tuples(st.integers(0, top), st.integers(0, top))
    if task_name == "toposort":
        return dags(120 if large else 7)
    length = 100 if large else 6
    values = {
        "bubblesort-values": st.integers(0, 9),
        "bubblesort-int": st.integers(-(10**9), 10**9),  # its declared value range
    }.get(task_name, st.integers())
    return st.lists(values, min_size=1, max_size=length)
