"""SMT-LIB2 scripts (verifier.smt.script): a Binderless memo shared between scripts changes
no text, only how often shared terms are walked."""

from __future__ import annotations

import re

import z3

from verifier.smt.script import smt2
from verifier.smt.terms import Binderless


def _formulas() -> list[list[z3.BoolRef]]:
    i, j, n = z3.Ints("i j n")
    a = z3.Array("a", z3.IntSort(), z3.IntSort())
    shared = z3.And([a[k] + n >= k for k in range(20)])  # a large term without binders
    shifted = z3.Lambda([i], z3.If(i == n, 0, a[i]))
    inner = z3.ForAll([j], z3.Implies(j < n, z3.Select(shifted, j) >= 0))
    return [
        [shared, z3.Select(shifted, n + 1) == 3],
        [shared, inner, a == shifted],
        [shared, z3.Exists([i], z3.Select(z3.Lambda([j], a[j] + i), i) == 0)],
    ]


def test_a_shared_memo_gives_the_text_of_fresh_scripts() -> None:
    """Every array lambda is reduced away, with or without a memo shared between scripts."""
    alone = [smt2(assertions) for assertions in _formulas()]
    memo = Binderless()
    together = [smt2(assertions, memo) for assertions in _formulas()]
    assert together == alone
    assert not any(re.search(r"\(lambda \(", text) for text in together)


def test_binderless_tells_terms_with_binders_apart() -> None:
    i, n = z3.Ints("i n")
    memo = Binderless()
    assert memo(i + n > 2)
    assert not memo(z3.ForAll([i], i + n > 2))
    assert not memo(z3.And(n > 0, z3.Select(z3.Lambda([i], i + 1), n) > 1))
    assert memo(z3.And(n > 0, n < 3))


def test_binderless_walks_terms_deeper_than_pythons_stack() -> None:
    """A chain of 5,000 stores (a long run's array) is answered without recursion."""
    a = z3.Array("a", z3.IntSort(), z3.IntSort())
    deep = a
    for k in range(5_000):
        deep = z3.Store(deep, k, k)
    memo = Binderless()
    assert memo(deep[3] == 3)
    assert not memo(z3.ForAll([z3.Int("i")], deep[z3.Int("i")] >= 0))
