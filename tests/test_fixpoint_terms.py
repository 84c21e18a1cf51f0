"""The fixed point's term helpers (verifier.smt): the C-API shortcuts build the terms the
Python API builds, and `name == value` is made once per variable and value."""

from __future__ import annotations

import z3

from verifier.smt import AbstractDomain, _any, _assert, _numeral, semantics_for
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


def test_a_numeral_is_read_and_any_other_term_is_not() -> None:
    x = z3.Int("x")
    assert [_numeral(z3.IntVal(v)) for v in (0, 7, -3, 10**20)] == [0, 7, -3, 10**20]
    assert _numeral(x) is None and _numeral(x + 1) is None
    solver = z3.Solver()
    solver.add(x == -4)
    assert solver.check() == z3.sat and _numeral(solver.model().eval(x, True)) == -4
