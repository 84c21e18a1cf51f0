"""Whole proofs for Towers of Hanoi (verifier.induction): termination and reference
correctness are proved for every number of disks, from a symbolic environment that holds the
pegs, the role table and the illegal moves beside the disk counter; planted bugs are never
proved."""

from __future__ import annotations

import pytest
import z3

import verifier.tasks.hanoi.semantics as hanoi_semantics
from verifier import induction
from verifier.induction import CORRECTNESS, PROVED, TERMINATION, Induction, prove
from verifier.smt import semantics_for
from verifier.smt.contracts import Contract
from verifier.tasks import get_task
from verifier.tasks.base import RECURSIVE, RETURN, Args, Observation, call
from verifier.tasks.hanoi.task import AUX, DST, SRC, Hanoi, Towers
from verifier.vset.build import build_vset
from verifier.vset.result import VerificationSet


def _induction(vset: VerificationSet | None = None) -> Induction:
    task = get_task("hanoi")
    vset = vset or build_vset(task, RECURSIVE)
    assert vset.coverage_proved
    return prove(task, RECURSIVE, semantics_for(task), vset.states)


def _quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """A short budget per query: a lemma that is false answers `unknown` rather than `sat`
    under the quantified contracts, and only after its whole budget; not proved either way."""
    monkeypatch.setattr(induction, "QUERY_TIMEOUT_MS", 2_000)


@pytest.fixture(scope="module")
def vset() -> VerificationSet:
    return build_vset(get_task("hanoi"), RECURSIVE)


def _not_proved(found: Induction) -> list[tuple[str, str]]:
    return [(lemma.kind, lemma.status) for lemma in found.lemmas if lemma.status != PROVED]


def _planted(monkeypatch: pytest.MonkeyPatch, routine) -> Induction:
    """The induction over a V built again with HANOI's reference routine replaced."""
    _quick(monkeypatch)
    task = get_task("hanoi")
    monkeypatch.setattr(task, "_routines", lambda formulation: {"HANOI": routine})
    return _induction()


def test_hanoi_terminates_and_is_correct_for_every_number_of_disks(vset: VerificationSet) -> None:
    found = _induction(vset)
    assert found.proved(TERMINATION) and found.proved(CORRECTNESS), _not_proved(found)
    assert found.recursive_sites == 2
    assert {lemma.kind for lemma in found.lemmas} == {"rank", "pre", "post", "entry",
                                                      "specification"}


def test_a_ranking_function_that_does_not_decrease_is_not_proved(
        monkeypatch: pytest.MonkeyPatch, vset: VerificationSet) -> None:
    _quick(monkeypatch)
    contract = hanoi_semantics._HANOI
    monkeypatch.setattr(hanoi_semantics, "_HANOI", Contract(contract.pre, contract.post, lambda env: 5 - env["k"]))  # grows
    found = _induction(vset)
    assert not found.proved(TERMINATION)
    # refuted or, with the quantified contracts, unknown: never proved
    assert {lemma.kind for lemma in found.of(TERMINATION) if lemma.status != PROVED} == {"rank"}


def test_a_move_onto_the_spare_peg_is_not_proved(monkeypatch: pytest.MonkeyPatch) -> None:
    found = _planted(monkeypatch, _hanoi(one_disk_to=AUX, second=(SRC, AUX)))
    assert not found.proved(CORRECTNESS)
    assert "post" in {kind for kind, _ in _not_proved(found)}


@pytest.mark.slow  # 8-20 s: its false lemmas answer unknown only after their budget
def test_a_second_call_with_the_wrong_roles_is_not_proved(monkeypatch: pytest.MonkeyPatch) -> None:
    """The k-1 disks of the second call are moved by the wrong roles, not onto DST."""
    found = _planted(monkeypatch, _hanoi(one_disk_to=DST, second=(AUX, DST)))
    assert not found.proved(CORRECTNESS)
    assert {kind for kind, _ in _not_proved(found)} & {"pre", "post"}


def _hanoi(one_disk_to: int, second: tuple[int, int]):
    """HANOI's reference routine (`verifier.tasks.hanoi.task._hanoi`) with the one-disk case
    moving to role `one_disk_to` and SWAP(*second) around the second call: the reference is
    DST and (SRC, AUX)."""

    def hanoi(args: Args, obs: Observation):
        if obs[0]:
            yield RETURN
            return
        obs = yield call("DEC")
        if obs[0]:
            yield call("MOVE", SRC, one_disk_to)
            yield call("INC", ret=True)
            return
        yield call("SWAP", AUX, DST)
        yield call("HANOI")
        yield call("SWAP", AUX, DST)
        yield call("MOVE", SRC, DST)
        yield call("SWAP", *second)
        yield call("HANOI")
        yield call("SWAP", *second)
        yield call("INC", ret=True)

    return hanoi


def test_a_postcondition_that_forgets_the_illegal_moves_is_not_proved(
        monkeypatch: pytest.MonkeyPatch, vset: VerificationSet) -> None:
    """Without `illegal` in HANOI's postcondition the specification's `no illegal move` does
    not follow: the specification lemma is refuted."""
    contract = hanoi_semantics._HANOI

    def post(entry, exit):
        return z3.And([c for c in z3.simplify(contract.post(entry, exit)).children()
                       if "illegal" not in str(c)])

    monkeypatch.setattr(hanoi_semantics, "_HANOI", Contract(contract.pre, post, contract.rank))
    found = _induction(vset)
    assert not found.proved(CORRECTNESS)
    assert "specification" in {kind for kind, _ in _not_proved(found)}


@pytest.mark.parametrize("program, args", [("MOVE", (SRC, DST)), ("MOVE", (AUX, SRC)),
                                           ("MOVE", (DST, DST)), ("SWAP", (SRC, DST)),
                                           ("DEC", ()), ("INC", ())])
def test_the_symbolic_primitives_are_the_tasks(program: str, args: Args) -> None:
    """Every component of the symbolic environment after a primitive is what `Hanoi.apply`
    leaves, on concrete towers with legal and illegal moves alike."""
    task: Hanoi = get_task("hanoi")
    semantics = semantics_for(task)
    for pegs, roles in [([[3, 2, 1], [], []], [0, 1, 2]), ([[3], [2, 1], []], [2, 0, 1]),
                        ([[], [1], [3, 2]], [1, 2, 0]), ([[2], [], [3, 1]], [0, 2, 1])]:
        env = Towers([list(p) for p in pegs], 2, list(roles))
        after = semantics.apply(semantics.encode(env), program, args)
        task.apply(env, program, args)
        expected = semantics.encode(env)
        solver = z3.Solver()
        differs = [after["k"] != expected["k"], after["illegal"] != expected["illegal"]]
        differs += [after["R"][r] != expected["R"][r] for r in range(3)]
        for p in range(3):
            height = len(env.pegs[p])
            differs.append(after["H"][p] != height)
            differs += [after["P"][p][j] != expected["P"][p][j] for j in range(height)]
        solver.add(z3.Or(differs))
        assert solver.check() == z3.unsat, (pegs, roles, program, args)
