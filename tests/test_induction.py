"""Whole proofs (verifier.induction): termination and reference correctness for every size are
proved for the shipped reference programs, and never for planted bugs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

import verifier.tasks.bubblesort.semantics as bubblesort_semantics
from verifier.induction import CORRECTNESS, PROVED, REFUTED, TERMINATION, Induction, prove
from verifier.smt import semantics_for
from verifier.smt.contracts import Contract
from verifier.tasks import get_task
from verifier.tasks.base import RECURSIVE, RETURN, Args, Observation, call
from verifier.tasks.bubblesort.task import I1, I2, I3, RIGHT
from verifier.vset.build import build_vset

Routine = Callable[[Args, Observation], Iterator]


def _induction(name: str) -> Induction:
    task = get_task(name)
    vset = build_vset(task, RECURSIVE)
    assert vset.coverage_proved
    return prove(task, RECURSIVE, semantics_for(task), vset.states)


def _planted(monkeypatch: pytest.MonkeyPatch, name: str, routines: dict[str, Routine]) -> Induction:
    """The induction for task `name` with some reference routines replaced by buggy ones."""
    task = get_task(name)
    original = task._routines

    def patched(formulation: str):
        return {**original(formulation), **routines}

    monkeypatch.setattr(task, "_routines", patched)
    return _induction(name)


def _not_proved(found: Induction) -> list[tuple[str, str]]:
    return [(lemma.kind, lemma.status) for lemma in found.lemmas if lemma.status != PROVED]


def test_bubblesort_terminates_and_is_correct_for_every_size() -> None:
    found = _induction("bubblesort")
    assert found.proved(TERMINATION) and found.proved(CORRECTNESS), _not_proved(found)
    kinds = {lemma.kind for lemma in found.lemmas}
    assert {"rank", "pre", "post", "entry", "specification", "permutation"} <= kinds
    assert found.recursive_sites == 3  # BUBBLESORT, BSTEP and LSHIFT call themselves


def test_a_pass_that_skips_a_pair_is_not_proved(monkeypatch: pytest.MonkeyPatch) -> None:
    def bubble(args: Args, obs: Observation):  # starts one pair late: A[1], A[2] never compared
        yield call("PTR", I2, RIGHT)
        yield call("PTR", I1, RIGHT)
        yield call("PTR", I2, RIGHT)
        yield call("BSTEP", ret=True)

    found = _planted(monkeypatch, "bubblesort", {"BUBBLE": bubble})
    assert not found.proved(CORRECTNESS)
    assert ("pre", REFUTED) in _not_proved(found)


def test_a_comparison_turned_round_is_not_proved(monkeypatch: pytest.MonkeyPatch) -> None:
    def compswap(args: Args, obs: Observation):  # swaps pairs already in order
        if obs[0] and obs[1] and obs[2]:
            yield call("SWAP", I1, I2, ret=True)
        else:
            yield RETURN

    found = _planted(monkeypatch, "bubblesort", {"COMPSWAP": compswap})
    assert not found.proved(CORRECTNESS)
    assert ("post", REFUTED) in _not_proved(found)


def test_a_ranking_function_that_does_not_decrease_is_not_proved(monkeypatch: pytest.MonkeyPatch) -> None:
    contract = bubblesort_semantics._CONTRACTS["LSHIFT"]
    wrong = Contract(contract.pre, contract.post, lambda env: env["n"] - env["i1"], contract.text)
    monkeypatch.setitem(bubblesort_semantics._CONTRACTS, "LSHIFT", wrong)
    found = _induction("bubblesort")
    assert found.proved(CORRECTNESS)
    assert not found.proved(TERMINATION)
    assert [lemma.kind for lemma in found.of(TERMINATION) if lemma.status == REFUTED] == ["rank"]


def test_a_recursive_routine_without_a_ranking_function_is_not_proved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    contract = bubblesort_semantics._CONTRACTS["BSTEP"]
    monkeypatch.setitem(bubblesort_semantics._CONTRACTS, "BSTEP", Contract(contract.pre, contract.post))
    found = _induction("bubblesort")
    assert not found.proved(TERMINATION)
    assert ("ranking", "unknown") in _not_proved(found)


def test_a_weaker_postcondition_leaves_the_specification_unproved(monkeypatch: pytest.MonkeyPatch) -> None:
    contract = bubblesort_semantics._CONTRACTS["BUBBLESORT"]
    weak = Contract(contract.pre, lambda entry, exit: exit["i3"] == exit["n"], contract.rank)
    monkeypatch.setitem(bubblesort_semantics._CONTRACTS, "BUBBLESORT", weak)
    found = _induction("bubblesort")
    assert ("specification", REFUTED) in _not_proved(found)
    assert not found.proved(CORRECTNESS)


def test_a_swap_outside_the_array_breaks_the_permutation_lemma(monkeypatch: pytest.MonkeyPatch) -> None:
    semantics = semantics_for(get_task("bubblesort"))
    apply = type(semantics).apply

    def leaky(self, env, program, args):  # SWAP without its range check
        if program != "SWAP":
            return apply(self, env, program, args)
        p, q = (env[bubblesort_semantics.POINTER_NAMES[k]] for k in args)
        a = env["A"]
        import z3
        return {**env, "A": z3.Store(z3.Store(a, p, a[q]), q, a[p])}

    monkeypatch.setattr(type(semantics), "apply", leaky)
    task = get_task("bubblesort")
    vset = build_vset(task, RECURSIVE)
    found = prove(task, RECURSIVE, semantics, vset.states)
    assert ("permutation", REFUTED) in _not_proved(found)



def test_a_reference_that_never_halts_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Termination is never assumed: a pass counter that skips past n recurses forever, and
    the concrete search says so instead of running on."""
    import verifier.vset.concrete as concrete
    from verifier.errors import ReferenceBug

    def bubblesort(args: Args, obs: Observation):
        if obs[3]:
            yield RETURN
            return
        yield call("BUBBLE")
        yield call("RESET")
        yield call("PTR", I3, RIGHT)
        yield call("PTR", I3, RIGHT)
        yield call("BUBBLESORT", ret=True)

    monkeypatch.setattr(concrete, "SMALL_INPUT_STEPS", 20_000)
    with pytest.raises(ReferenceBug, match=r"does not halt within 20,000 steps on the small input \[0\]"):
        _planted(monkeypatch, "bubblesort", {"BUBBLESORT": bubblesort})


def test_a_contract_that_raises_is_a_one_line_plugin_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from verifier.errors import PluginError

    contract = bubblesort_semantics._CONTRACTS["LSHIFT"]
    broken = Contract(contract.pre, contract.post, lambda env: env["missing"], contract.text)
    monkeypatch.setitem(bubblesort_semantics._CONTRACTS, "LSHIFT", broken)
    with pytest.raises(PluginError, match=r"task 'bubblesort', recursive: its contracts or "
                                          r"specification raised KeyError"):
        _induction("bubblesort")
