"""Whole proofs for Towers of Hanoi (verifier.induction): termination is proved for every
number of disks; reference correctness is not claimed from the symbolic semantics, which
holds the disk counter alone; planted bugs are never proved."""

from __future__ import annotations

import pytest

import verifier.tasks.hanoi.semantics as hanoi_semantics
from verifier.induction import CORRECTNESS, PROVED, REFUTED, TERMINATION, UNKNOWN, Induction, prove
from verifier.smt import semantics_for
from verifier.smt.contracts import Contract
from verifier.tasks import get_task
from verifier.tasks.base import RECURSIVE
from verifier.vset.build import build_vset


def _induction() -> Induction:
    task = get_task("hanoi")
    vset = build_vset(task, RECURSIVE)
    assert vset.coverage_proved
    return prove(task, RECURSIVE, semantics_for(task), vset.states)


def _not_proved(found: Induction) -> list[tuple[str, str]]:
    return [(lemma.kind, lemma.status) for lemma in found.lemmas if lemma.status != PROVED]


def test_hanoi_terminates_for_every_number_of_disks() -> None:
    found = _induction()
    assert found.proved(TERMINATION), _not_proved(found)
    assert found.recursive_sites == 2
    assert {lemma.kind for lemma in found.of(TERMINATION)} == {"rank", "post", "pre", "entry"}
    # the pegs are not in the symbolic environment: correctness stays tested, and says why
    assert not found.proved(CORRECTNESS)
    assert _not_proved(found) == [("specification", UNKNOWN)]


def test_a_ranking_function_that_does_not_decrease_is_not_proved(monkeypatch: pytest.MonkeyPatch) -> None:
    contract = hanoi_semantics._HANOI
    monkeypatch.setattr(hanoi_semantics, "_HANOI", Contract(contract.pre, contract.post, lambda env: 5 - env["k"]))  # grows
    found = _induction()
    assert not found.proved(TERMINATION)
    assert {lemma.kind for lemma in found.of(TERMINATION) if lemma.status == REFUTED} == {"rank"}
