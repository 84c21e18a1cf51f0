"""Quantifier-free forms of lemma queries (verifier.smt.instantiate): memos shared between the
queries of one proof give exactly the ground queries made without them."""

from __future__ import annotations

import z3

from verifier.smt.instantiate import ground
from verifier.smt.terms import ArrayIndices, Binderless


def _queries() -> list[tuple[list[z3.BoolRef], z3.BoolRef]]:
    i, j, n = z3.Ints("i j n")
    a = z3.Array("a", z3.IntSort(), z3.IntSort())
    sorted_prefix = z3.ForAll([i], z3.Implies(z3.And(0 <= i, i < n), a[i] <= a[i + 1]))
    shared = [n >= 2, sorted_prefix, a[0] >= 0]
    return [
        (shared, a[1] >= 0),
        (shared, z3.ForAll([j], z3.Implies(z3.And(0 <= j, j <= n), a[j] >= 0))),
        ([*shared, z3.Implies(n > 5, z3.ForAll([j], a[j] == 0))], a[n] >= a[0]),
        ([*shared, z3.Exists([j], a[j] < 0)], a[1] >= 0),  # an existential hypothesis: none
    ]


def test_shared_memos_give_the_ground_queries_of_fresh_ones() -> None:
    alone = [ground(facts, goal) for facts, goal in _queries()]
    binderless, indices = Binderless(), ArrayIndices()
    together = [ground(facts, goal, binderless, indices) for facts, goal in _queries()]
    assert [None if q is None else (list(map(str, q[0])), str(q[1])) for q in together] == [
        None if q is None else (list(map(str, q[0])), str(q[1])) for q in alone]
    assert alone[-1] is None and all(q is not None for q in alone[:-1])


def test_a_ground_query_is_unsat_where_the_lemma_holds() -> None:
    facts, goal = ground(*_queries()[0])  # type: ignore[misc]
    solver = z3.Solver()
    solver.add(*facts, z3.Not(goal))
    assert solver.check() == z3.unsat
