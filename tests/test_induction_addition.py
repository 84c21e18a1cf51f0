"""Whole proofs for addition (verifier.induction): the reference program terminates and adds
correctly for every size; planted bugs are never proved.

Building addition's V takes about half a minute, so the tests that need all of it are slow
(CI runs them: they guard soundness). The fast ones prove the lemmas over the paths that
reference runs on a few inputs take (a part of V): enough to refute a planted bug on the path
where it shows, and the shipped program's contracts hold on the same paths."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import z3

from verifier.induction import CORRECTNESS, PROVED, REFUTED, TERMINATION, UNKNOWN, Induction, prove
from verifier.runtime import StateKey, run_reference
from verifier.smt import semantics_for
from verifier.smt.contracts import Contract
from verifier.tasks import get_task
from verifier.tasks.addition.task import BLANK, IN1, IN2, LEFT, OUT
from verifier.tasks.base import RECURSIVE, RETURN, Action, Args, Observation, call
from verifier.vset.build import build_vset
from verifier.vset.concrete import ConcreteStates

Routine = Callable[[Args, Observation], Iterator]

# Carries into a blank column (5 + 5, 95 + 8, 99 + 1), none at all (0 + 0, 123 + 4567), and
# operands of different lengths either way round.
INPUTS = [(0, 0), (5, 5), (95, 8), (8, 95), (99, 1), (123, 4567), (9999, 1)]


def _on_runs(inputs: list[tuple[int, int]] = INPUTS) -> Induction:
    """The lemmas over the paths that reference runs on `inputs` take."""
    task = get_task("addition")
    seen = ConcreteStates()
    for value in inputs:
        seen.add_run(task, RECURSIVE, value)
    return _prove(seen.actions)


def _prove(states: dict[StateKey, Action]) -> Induction:
    task = get_task("addition")
    return prove(task, RECURSIVE, semantics_for(task), states)


def _planted(monkeypatch: pytest.MonkeyPatch, routines: dict[str, Routine]) -> None:
    task = get_task("addition")
    original = task._routines
    monkeypatch.setattr(task, "_routines", lambda formulation: {**original(formulation), **routines})


def _contract(monkeypatch: pytest.MonkeyPatch, program: str, contract: Contract) -> None:
    contracts = semantics_for(get_task("addition"))._contracts  # type: ignore[union-attr]
    monkeypatch.setitem(contracts, program, contract)


def _not_proved(found: Induction) -> list[tuple[str, str]]:
    return [(lemma.kind, lemma.status) for lemma in found.lemmas if lemma.status != PROVED]


def _add_dropping_the_final_carry(args: Args, obs: Observation):
    """Stops once both operands are blank, though a carry is left in the column."""
    if obs[IN1] == BLANK and obs[IN2] == BLANK:
        yield RETURN
        return
    yield call("ADD1")
    yield call("LSHIFT")
    yield call("ADD", ret=True)


@pytest.mark.slow
@pytest.mark.soundness
def test_addition_terminates_and_is_correct_for_every_size() -> None:
    task = get_task("addition")
    vset = build_vset(task, RECURSIVE)
    assert vset.coverage_proved
    found = _prove(vset.states)
    assert found.proved(TERMINATION) and found.proved(CORRECTNESS), _not_proved(found)
    assert {"rank", "pre", "post", "entry", "specification"} <= {lemma.kind for lemma in found.lemmas}
    assert found.recursive_sites == 1  # ADD calls itself, once


@pytest.mark.slow
@pytest.mark.soundness
def test_an_addition_that_drops_the_final_carry_is_not_proved_over_its_whole_v(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _planted(monkeypatch, {"ADD": _add_dropping_the_final_carry})
    task = get_task("addition")
    vset = build_vset(task, RECURSIVE)
    found = _prove(vset.states)
    assert not found.proved(CORRECTNESS)
    assert ("post", REFUTED) in _not_proved(found)


def _satisfiable(formula: z3.BoolRef) -> bool:
    solver = z3.Solver()
    solver.add(formula)
    answer = solver.check()
    assert answer != z3.unknown
    return answer == z3.sat


@pytest.mark.parametrize("value", INPUTS)
def test_the_specification_holds_of_the_pad_a_run_ends_with_and_of_no_other(value: tuple[int, int]) -> None:
    """On concrete pads: the sum the reference writes satisfies it; the same pad with its
    leading output digit dropped (a lost final carry, or an empty output for 0 + 0), or with
    its units digit changed, does not."""
    task = get_task("addition")
    semantics = semantics_for(task)
    spec = semantics.specification()  # type: ignore[union-attr]
    start = semantics.encode(task.initial_env(value))  # type: ignore[union-attr]
    final = run_reference(task, RECURSIVE, value).env
    assert task.check(value, task.output(final))
    assert not _satisfiable(z3.Not(spec.holds(start, semantics.encode(final))))  # type: ignore[union-attr]
    out = final.cells[OUT]
    units = max(out)
    wrong_units = {**out, units: (out[units] + 1) % 10}
    dropped = {column: digit for column, digit in out.items() if column != min(out)}
    for cells in (wrong_units, dropped):
        final.cells[OUT] = cells
        assert not _satisfiable(spec.holds(start, semantics.encode(final)))  # type: ignore[union-attr]


def test_the_contracts_hold_on_the_paths_of_small_runs() -> None:
    found = _on_runs()
    assert found.proved(TERMINATION) and found.proved(CORRECTNESS), _not_proved(found)
    assert found.recursive_sites == 1


def test_an_addition_that_drops_the_final_carry_is_not_proved(monkeypatch: pytest.MonkeyPatch) -> None:
    _planted(monkeypatch, {"ADD": _add_dropping_the_final_carry})
    found = _on_runs()
    assert not found.proved(CORRECTNESS)
    refuted = [lemma.name for lemma in found.lemmas if lemma.status == REFUTED]
    assert refuted == ["ADD() after [NOP()+ret]: postcondition of ADD"]
    assert ("post", REFUTED) in _not_proved(found)


def test_an_addition_that_ignores_the_carry_in_is_not_proved(monkeypatch: pytest.MonkeyPatch) -> None:
    def add1(args: Args, obs: Observation):  # 5 + 5 + 1 written as 0, not 1
        total = sum(0 if obs[row] == BLANK else obs[row] for row in (IN1, IN2))
        if total >= 10:
            yield call("WRITE", OUT, total - 10)
            yield call("CARRY", ret=True)
        else:
            yield call("WRITE", OUT, total, ret=True)

    _planted(monkeypatch, {"ADD1": add1})
    found = _on_runs()
    assert not found.proved(CORRECTNESS)
    assert ("post", REFUTED) in _not_proved(found)


def test_a_shift_that_leaves_the_carry_row_behind_is_not_proved(monkeypatch: pytest.MonkeyPatch) -> None:
    def lshift(args: Args, obs: Observation):  # the rows fall out of lockstep
        yield call("PTR", IN1, LEFT)
        yield call("PTR", IN2, LEFT)
        yield call("PTR", OUT, LEFT, ret=True)

    _planted(monkeypatch, {"LSHIFT": lshift})
    found = _on_runs([(5, 5), (123, 4567)])
    assert not found.proved(CORRECTNESS)
    assert ("post", REFUTED) in _not_proved(found)


def test_a_postcondition_that_forgets_the_empty_column_leaves_the_specification_unproved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    semantics = semantics_for(get_task("addition"))
    shipped = semantics._contracts["ADD"]  # type: ignore[union-attr]
    weak = Contract(shipped.pre, lambda entry, exit: semantics._added(exit), shipped.rank)  # type: ignore[union-attr]
    _contract(monkeypatch, "ADD", weak)
    found = _on_runs()
    assert ("specification", REFUTED) in _not_proved(found)
    assert not found.proved(CORRECTNESS)


def test_a_ranking_function_that_does_not_decrease_is_not_proved(monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = semantics_for(get_task("addition"))._contracts["ADD"]  # type: ignore[union-attr]
    growing = Contract(shipped.pre, shipped.post, lambda env: env["IN1.S"] - env["IN1.p"], shipped.text)
    _contract(monkeypatch, "ADD", growing)
    found = _on_runs()
    assert found.proved(CORRECTNESS)
    assert not found.proved(TERMINATION)
    assert [lemma.kind for lemma in found.of(TERMINATION) if lemma.status == REFUTED] == ["rank"]


def test_a_recursive_routine_without_a_ranking_function_is_not_proved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shipped = semantics_for(get_task("addition"))._contracts["ADD"]  # type: ignore[union-attr]
    _contract(monkeypatch, "ADD", Contract(shipped.pre, shipped.post))
    found = _on_runs()
    assert not found.proved(TERMINATION)
    assert ("ranking", UNKNOWN) in _not_proved(found)
