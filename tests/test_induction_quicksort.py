"""Whole proofs for quicksort (verifier.induction): termination and reference correctness are
proved for the shipped reference program and its contracts, and never for planted bugs."""

from __future__ import annotations

import pytest
import z3

import verifier.tasks.quicksort.semantics as quicksort_semantics
from verifier.induction import CORRECTNESS, PROVED, REFUTED, TERMINATION, Induction, prove
from verifier.smt import semantics_for
from verifier.smt.contracts import Contract
from verifier.tasks import get_task
from verifier.tasks.base import RECURSIVE, RETURN, Args, Observation, call
from verifier.tasks.quicksort.task import LE, MOVABLE, PIVOT, RIGHT, J
from verifier.vset.build import build_vset
from verifier.vset.result import VerificationSet


@pytest.fixture(scope="module")
def vset() -> VerificationSet:
    found = build_vset(get_task("quicksort"), RECURSIVE)
    assert found.coverage_proved
    return found


def _prove(vset: VerificationSet) -> Induction:
    task = get_task("quicksort")
    return prove(task, RECURSIVE, semantics_for(task), vset.states)


def _not_proved(found: Induction) -> list[tuple[str, str]]:
    return [(lemma.kind, lemma.status) for lemma in found.lemmas if lemma.status != PROVED]


def _planted(monkeypatch: pytest.MonkeyPatch, program: str, routine) -> Induction:
    """The induction over a V built again with `program`'s reference routine replaced."""
    task = get_task("quicksort")
    original = task._routines
    monkeypatch.setattr(task, "_routines", lambda formulation: {**original(formulation), program: routine})
    return _prove(build_vset(task, RECURSIVE))


def _replace(monkeypatch: pytest.MonkeyPatch, program: str, **parts) -> None:
    contract = quicksort_semantics._CONTRACTS[program]
    fields = {"pre": contract.pre, "post": contract.post, "rank": contract.rank, **parts}
    monkeypatch.setitem(quicksort_semantics._CONTRACTS, program, Contract(**fields))


def test_quicksort_terminates_and_is_correct_for_every_size(vset: VerificationSet) -> None:
    found = _prove(vset)
    assert found.proved(TERMINATION) and found.proved(CORRECTNESS), _not_proved(found)
    kinds = {lemma.kind for lemma in found.lemmas}
    assert {"rank", "pre", "post", "entry", "specification", "permutation"} <= kinds
    assert found.recursive_sites == 3  # QUICKSORT twice, COMPSWAP_LOOP once
    # the recursive case, which V reaches through its 7 unwitnessed states too, is proved
    assert any(lemma.kind == "post" and "QUICKSORT(), QUICKSORT()+ret" in lemma.name
               for lemma in found.lemmas)


def test_a_ranking_function_that_does_not_decrease_is_not_proved(
    vset: VerificationSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    _replace(monkeypatch, "COMPSWAP_LOOP", rank=lambda env: env["j"])  # grows as j moves right
    found = _prove(vset)
    assert found.proved(CORRECTNESS)
    assert not found.proved(TERMINATION)
    assert {lemma.kind for lemma in found.of(TERMINATION) if lemma.status == REFUTED} == {"rank"}


def test_a_recursive_loop_without_a_ranking_function_is_not_proved(
    vset: VerificationSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    _replace(monkeypatch, "COMPSWAP_LOOP", rank=None)
    found = _prove(vset)
    assert not found.proved(TERMINATION)
    assert ("ranking", "unknown") in _not_proved(found)


def test_a_quicksort_that_does_not_promise_order_leaves_the_specification_unproved(
    vset: VerificationSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unordered(entry, exit):  # everything but A[lo..hi] sorted
        return z3.And(exit["sp"] == entry["sp"] - 1,
                      quicksort_semantics.unchanged_outside(entry["A"], exit["A"], entry["plo"], entry["phi"]))

    _replace(monkeypatch, "QUICKSORT", post=unordered)
    found = _prove(vset)
    assert ("specification", REFUTED) in _not_proved(found)
    assert not found.proved(CORRECTNESS)


def test_a_lomuto_postcondition_the_partition_does_not_keep_is_refuted(
    vset: VerificationSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    def strict(entry, exit):  # claims A[lo..pivot-1] < A[pivot]: false with duplicates
        a, p, x = exit["A"], exit["piv"], z3.Int("x")
        left = z3.ForAll([x], z3.Implies(z3.And(entry["plo"] <= x, x < p), a[x] < a[p]))
        return z3.And(quicksort_semantics._partition_post(entry, exit), left)

    _replace(monkeypatch, "PARTITION", post=strict)
    found = _prove(vset)
    # refuted, or unknown where Z3 finds no counter-model in time (quantified facts): never proved
    partition = [lemma for lemma in found.lemmas if "postcondition of PARTITION" in lemma.name]
    assert partition and all(lemma.status != PROVED for lemma in partition)
    assert not found.proved(CORRECTNESS)


def test_a_swap_that_loses_an_element_breaks_the_permutation_lemma(
    vset: VerificationSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    semantics = semantics_for(get_task("quicksort"))
    apply = type(semantics).apply

    def copying(self, env, program, args):  # SWAP copies A[q] over A[p]: A[p] is lost
        after = apply(self, env, program, args)
        if program == "SWAP":
            p, q = (env[quicksort_semantics._POINTER[k]] for k in args)
            both = z3.And(self._valid(env, args[0]), self._valid(env, args[1]))
            after["A"] = z3.If(both, z3.Store(env["A"], p, env["A"][q]), env["A"])
        return after

    monkeypatch.setattr(type(semantics), "apply", copying)
    found = prove(get_task("quicksort"), RECURSIVE, semantics, vset.states)
    assert ("permutation", REFUTED) in _not_proved(found)
    assert not found.proved(CORRECTNESS)


@pytest.mark.slow
def test_a_partition_that_never_places_its_pivot_is_not_proved(monkeypatch: pytest.MonkeyPatch) -> None:
    def partition(args: Args, obs: Observation):  # the final SWAP(PIVOT, HI) left out
        yield call("SET_PIVOT_LO")
        yield call("SET_J_LO")
        yield call("COMPSWAP_LOOP")
        yield call("SET_J_NULL", ret=True)

    found = _planted(monkeypatch, "PARTITION", partition)
    assert not found.proved(CORRECTNESS)
    assert ("post", REFUTED) in _not_proved(found)


@pytest.mark.slow
def test_a_comparison_turned_round_is_not_proved(monkeypatch: pytest.MonkeyPatch) -> None:
    def compswap(args: Args, obs: Observation):  # moves the larger cells left of the pivot
        if not obs[LE]:
            yield call("SWAP", PIVOT, J)
            yield call("MOVE", MOVABLE.index(PIVOT), RIGHT, ret=True)
        else:
            yield RETURN

    found = _planted(monkeypatch, "COMPSWAP", compswap)
    assert not found.proved(CORRECTNESS)
    assert ("post", REFUTED) in _not_proved(found)
