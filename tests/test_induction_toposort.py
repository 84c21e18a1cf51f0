"""Whole proofs for toposort (verifier.induction): the DFS terminates and returns a topological
order for every size, and planted bugs are never proved.

V is built once per session (`vset_of`). A bug in a routine is planted in V's labels (the state
keeps its observations, the routine takes another action there), so the induction sees the
buggy program's paths without a new fixed point; one test also rebuilds V for a buggy routine
(slow). The contracts are quantified, so Z3 answers a false lemma `unknown` at its time limit
rather than `refuted`: planted-bug tests lower the limit to 2 s (every true lemma takes well
under a second) and check that exactly the lemma the bug breaks is the one not proved."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest
import z3

import verifier.tasks.toposort.semantics as toposort_semantics
from tests.conftest import vset_of
from verifier import induction
from verifier.induction import CORRECTNESS, PROVED, REFUTED, TERMINATION, UNKNOWN, Induction, prove
from verifier.runtime import StateKey
from verifier.smt import semantics_for
from verifier.smt.contracts import Contract, Specification
from verifier.tasks import get_task
from verifier.tasks.base import NOP, RECURSIVE, RETURN, Action, Args, Observation, call
from verifier.tasks.toposort.task import (
    ACTIVE_STACK,
    COLOR_CURR,
    DOWN,
    P_RESULT,
    POP,
    RESULT,
    WHITE,
    WRITE_VALUES,
)  # fmt: skip
from verifier.vset.build import build_vset


def _induction(states: Mapping[StateKey, Action] | None = None) -> Induction:
    task = get_task("toposort")
    vset = vset_of("toposort")
    assert vset.coverage_proved
    chosen = states if states is not None else vset.states
    return prove(task, RECURSIVE, semantics_for(task), chosen)


def _not_proved(found: Induction) -> list[tuple[str, str]]:
    return [(lemma.kind, lemma.status) for lemma in found.lemmas if lemma.status != PROVED]


def _only_unproved(found: Induction) -> tuple[str, str]:
    """The one lemma not proved: its kind and the path it is about."""
    unproved = [lemma for lemma in found.lemmas if lemma.status != PROVED]
    assert len(unproved) == 1, [(lemma.kind, lemma.status, lemma.name) for lemma in unproved]
    assert unproved[0].status in (REFUTED, UNKNOWN)
    return unproved[0].kind, unproved[0].name


@pytest.fixture
def short_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(induction, "QUERY_TIMEOUT_MS", 2000)


def _relabelled(choose: Callable[[StateKey, Action], Action | None]) -> dict[StateKey, Action]:
    """V's states with the action at some of them replaced (`choose` gives the new one, or
    None to keep the reference action)."""
    states = dict(vset_of("toposort").states)
    changed = 0
    for key, action in states.items():
        new = choose(key, action)
        if new is not None:
            states[key] = new
            changed += 1
    assert changed, "the planted bug changed no state"
    return states


def _contract(routine: tuple[str, Args], **parts: object) -> Contract:
    old = toposort_semantics._CONTRACTS[routine]
    fields = {"pre": old.pre, "post": old.post, "rank": old.rank, "text": old.text, **parts}
    return Contract(**fields)  # type: ignore[arg-type]


def test_toposort_terminates_and_returns_a_topological_order_for_every_size() -> None:
    found = _induction()
    assert found.proved(TERMINATION) and found.proved(CORRECTNESS), _not_proved(found)
    kinds = {lemma.kind for lemma in found.lemmas}
    assert {"rank", "pre", "post", "entry", "specification"} <= kinds
    assert found.recursive_sites == 5  # TOPOSORT, NEXT_START, CHECK_CHILD, EXPLORE (push and pop)
    assert "topological order" in found.specification


def test_a_finished_vertex_left_out_of_the_result_is_not_proved(short_limit: None) -> None:
    def skip(key: StateKey, action: Action) -> Action | None:  # EXPLORE pops without RESULT
        if key[0] == "EXPLORE" and action == Action("WRITE", (RESULT, 0)):
            return Action(NOP, ())
        return None

    found = _induction(_relabelled(skip))
    assert not found.proved(CORRECTNESS)
    kind, name = _only_unproved(found)  # EXPLORE's own call: a black vertex not placed
    assert kind == "pre" and name.startswith("EXPLORE() after [WRITE(COLOR_CURR, BLACK), NOP()")


def test_a_vertex_finished_without_turning_black_is_not_proved(short_limit: None) -> None:
    def grey(key: StateKey, action: Action) -> Action | None:  # pops the vertex, leaves it grey
        black = Action("WRITE", (COLOR_CURR, WRITE_VALUES.index("BLACK")))
        if key[0] == "EXPLORE" and action == black:
            return Action(NOP, ())
        return None

    found = _induction(_relabelled(grey))
    assert not found.proved(CORRECTNESS)
    kind, name = _only_unproved(found)  # a grey vertex off the stack
    assert kind == "pre" and name.startswith("EXPLORE() after [NOP(), WRITE(RESULT, GREY)")


def test_a_result_pointer_that_never_moves_is_not_proved(short_limit: None) -> None:
    def stay(key: StateKey, action: Action) -> Action | None:  # every vertex written to cell n
        if key[0] == "EXPLORE" and action == Action("MOVE", (P_RESULT, DOWN)):
            return Action(NOP, ())
        return None

    found = _induction(_relabelled(stay))
    assert not found.proved(CORRECTNESS)
    kind, name = _only_unproved(found)  # p_result no longer counts the free cells
    assert kind == "pre" and "NOP(), STACK(POP)" in name


def test_a_ranking_function_that_does_not_decrease_is_not_proved(
    monkeypatch: pytest.MonkeyPatch, short_limit: None
) -> None:
    # white + p_stack stays the same where a white child is pushed
    wrong = _contract(("EXPLORE", ()), rank=lambda env: env["white"] + env["p_stack"])
    monkeypatch.setitem(toposort_semantics._CONTRACTS, ("EXPLORE", ()), wrong)
    found = _induction()
    assert found.proved(CORRECTNESS)
    assert not found.proved(TERMINATION)
    kind, name = _only_unproved(found)
    assert kind == "rank" and "STACK(PUSH)" in name


def test_the_issues_ranking_function_counts_no_grey_vertex(
    monkeypatch: pytest.MonkeyPatch, short_limit: None
) -> None:
    """The number of white vertices alone does not decrease where a vertex is finished."""
    white = _contract(("EXPLORE", ()), rank=lambda env: env["white"])
    monkeypatch.setitem(toposort_semantics._CONTRACTS, ("EXPLORE", ()), white)
    found = _induction()
    assert not found.proved(TERMINATION)
    kind, name = _only_unproved(found)
    assert kind == "rank" and "STACK(POP)" in name


def test_a_recursive_routine_without_a_ranking_function_is_not_proved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unranked = _contract(("CHECK_CHILD", ()), rank=None)
    monkeypatch.setitem(toposort_semantics._CONTRACTS, ("CHECK_CHILD", ()), unranked)
    found = _induction()
    assert not found.proved(TERMINATION)
    assert ("ranking", "unknown") in _not_proved(found)


def test_an_order_with_children_first_is_not_the_specification(
    monkeypatch: pytest.MonkeyPatch, short_limit: None
) -> None:
    """The specification is not vacuous: its mirror image (every child before its parent) is
    refuted from the same postcondition."""

    def reversed_order(initial: dict, final: dict) -> z3.BoolRef:
        u, k = z3.Ints("u k")
        at, kid = final["at"], final["kid"]
        return z3.ForAll([u, k], z3.Implies(
            z3.And(u >= 1, u <= final["n"], k >= 0, k < final["nchild"][u]), at[kid[u][k]] < at[u]))

    semantics = type(semantics_for(get_task("toposort")))
    monkeypatch.setattr(semantics, "specification",
                        lambda self: Specification(reversed_order, "children first"))
    found = _induction()
    assert not found.proved(CORRECTNESS)
    assert _only_unproved(found)[0] == "specification"


def test_the_white_list_accounts_for_every_white_vertex() -> None:
    """The ghosts of a concrete state as `encode` gives them satisfy the white-list invariant
    (so the initial condition and the cross-check see consistent values)."""
    task = get_task("toposort")
    semantics = semantics_for(task)
    env = task.initial_env(task.parse_input({"vertices": 4, "edges": [[1, 2], [3, 2]]}))
    env.color[2] = 1  # grey
    env.color[3] = 2  # black
    symbolic = semantics.encode(env)
    solver = z3.Solver()
    solver.add(z3.Not(toposort_semantics._listed(symbolic)))
    assert solver.check() == z3.unsat
    assert z3.simplify(symbolic["white"]).as_long() == sum(c == WHITE for c in env.color[1:])


@pytest.mark.slow  # 70 s: V rebuilt for the buggy program; the other planted bugs run by default
def test_a_dfs_that_never_moves_the_result_pointer_is_not_proved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same bug as above, planted in the routine itself: V is rebuilt for it (slow)."""
    import verifier.tasks.toposort.task as toposort_task

    def explore(args: Args, obs: Observation):
        if obs[2]:
            yield RETURN
            return
        if obs[1] == WHITE:
            yield from toposort_task._explore_once(obs)
        else:
            yield call("WRITE", COLOR_CURR, WRITE_VALUES.index("BLACK"))
            yield call("WRITE", RESULT, 0)
            yield call("STACK", POP)
            yield call("WRITE", ACTIVE_STACK, 0)
        yield call("CHECK_CHILD")
        yield call("EXPLORE", ret=True)

    task = get_task("toposort")
    original = task._routines
    monkeypatch.setattr(
        task, "_routines", lambda formulation: {**original(formulation), "EXPLORE": explore})
    vset = build_vset(task, RECURSIVE)
    found = prove(task, RECURSIVE, semantics_for(task), vset.states)
    assert not found.proved(CORRECTNESS)
    assert ("pre", UNKNOWN) in _not_proved(found) or ("pre", REFUTED) in _not_proved(found)
