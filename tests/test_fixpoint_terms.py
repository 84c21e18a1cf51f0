"""The fixed point's term helpers (verifier.smt): the C-API shortcuts build the terms the
Python API builds, and `name == value` is made once per variable and value."""

from __future__ import annotations

import z3

from verifier.smt import AbstractDomain, _any, _assert, semantics_for
from verifier.tasks import get_task


def test_the_c_api_shortcuts_build_what_the_python_api_builds() -> None:
    x, y = z3.Ints("x y")
    facts = [x > 1, y == 2, x != y]
    assert _any(facts).eq(z3.Or(facts))
    assert z3.is_false(_any([]))
    solver = z3.Solver()
    _assert(solver, facts)
    assert [str(a) for a in solver.assertions()] == [str(f) for f in facts]
    solver.add(x == 0)
    assert solver.check() == z3.unsat


def test_an_equality_is_made_once_per_variable_and_value() -> None:
    domain = AbstractDomain(semantics_for(get_task("bubblesort")))
    x, y = z3.Int("x"), z3.Int("y")
    equal, differ = domain._is(x, 3)
    assert equal.eq(x == 3) and differ.eq(z3.Not(x == 3))
    assert domain._is(x, 3)[0] is equal
    assert domain._is(y, 3)[0].eq(y == 3) and domain._is(x, 4)[0].eq(x == 4)
    twin = z3.Int("x")  # another Python object for the same term: its own entry, same term
    assert domain._is(twin, 3)[0].eq(equal)
