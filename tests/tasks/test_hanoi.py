"""Towers of Hanoi: what the generic tests cannot know about it (its input, its illegal
moves, its independent check, V) and the shipped model's generalization to 20 disks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from verifier.cli import main
from verifier.errors import InvalidInput
from verifier.vset.build import build_vset
from verifier.runtime import run_reference
from verifier.tasks import TASKS
from verifier.tasks.hanoi.task import AUX, DST, SRC

HANOI = TASKS["hanoi"]
ROOT = Path(__file__).resolve().parents[2]


def solved(n: int) -> list[list[int]]:
    return [[], [], list(range(n, 0, -1))]


@pytest.mark.parametrize("data", [0, 65, -3, True, "3", 3.5, [3], {"disks": 3}, None])
def test_only_a_number_of_disks_in_1_to_64_is_an_input(data: object) -> None:
    with pytest.raises(InvalidInput, match="hanoi input must be"):
        HANOI.parse_input(data)


def test_illegal_moves_leave_the_pegs_and_are_counted() -> None:
    env = HANOI.initial_env(2)  # A: [2, 1]
    HANOI.apply(env, "MOVE", (AUX, DST))  # from an empty peg
    HANOI.apply(env, "MOVE", (SRC, SRC))  # onto the same peg
    HANOI.apply(env, "MOVE", (SRC, DST))  # disk 1 to C: legal
    HANOI.apply(env, "MOVE", (SRC, DST))  # disk 2 onto disk 1
    assert env.pegs == [[2], [], [1]] and (env.moves, env.illegal_moves) == (1, 3)


def test_roles_and_counter_primitives() -> None:
    env = HANOI.initial_env(1)
    HANOI.apply(env, "SWAP", (AUX, DST))
    HANOI.apply(env, "MOVE", (SRC, AUX))  # AUX is now peg C
    assert env.pegs == solved(1) and env.roles == [0, 2, 1]
    HANOI.apply(env, "DEC", ())
    HANOI.apply(env, "DEC", ())  # stops at 0
    assert env.k == 0 and HANOI.observe(env) == (1,)
    HANOI.apply(env, "INC", ())
    assert env.k == 1 and HANOI.observe(env) == (0,)


def test_check_wants_every_disk_on_c_in_order_and_no_illegal_move() -> None:
    right = {"pegs": solved(3), "moves": 7, "illegal_moves": 0}
    assert HANOI.check(3, right)
    assert HANOI.check(3, dict(right, moves=9))  # extra legal moves are not judged
    assert not HANOI.check(3, dict(right, illegal_moves=1))
    assert not HANOI.check(3, dict(right, pegs=[[], [], [3, 1, 2]]))
    assert not HANOI.check(3, dict(right, pegs=[[], [3, 2, 1], []]))
    assert not HANOI.check(3, [[], [], [3, 2, 1]])


@pytest.mark.parametrize("formulation", HANOI.formulations)
def test_reference_makes_the_optimal_2_to_the_n_minus_1_moves(formulation: str) -> None:
    for n in range(1, 11):
        run = run_reference(HANOI, formulation, n, record=False)
        assert HANOI.output(run.env) == {"pegs": solved(n), "moves": 2**n - 1, "illegal_moves": 0}


def test_v_is_exact_with_no_hidden_predicates_and_2_disks_witness_it() -> None:
    vset = build_vset(HANOI)
    assert vset.coverage_proved and vset.exact and len(vset.states) == 11
    assert vset.witness_cover() == [2]


@pytest.mark.parametrize("disks", [12, pytest.param(20, marks=pytest.mark.slow)])
def test_shipped_model_trained_on_3_disks_is_right_far_beyond(disks: int) -> None:
    """20 disks: 1,048,575 moves, 6,291,447 model steps (a minute or two)."""
    result = CliRunner().invoke(main, ["run", str(ROOT / "models/hanoi.pt"), "--input",
                                       str(disks), "--json", "--expect-correct"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["correct"] and record["output"]["moves"] == 2**disks - 1
