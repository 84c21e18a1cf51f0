"""Towers of Hanoi: move n disks from peg A to peg C, one at a time, never a larger disk
onto a smaller one.

Environment: the three pegs (disk sizes, bottom first), a *role table* that says which
physical peg currently plays source, spare and target, a disk counter k (starts at n), and
the number of legal and of illegal moves made so far.

Programs: HANOI (no arguments) moves the top k disks from the source role to the target role
and leaves k and the role table as it found them. The primitives are DEC and INC (the
counter), SWAP(r1, r2) (exchange two roles) and MOVE(r1, r2) (move the top disk of role r1's
peg onto role r2's peg). Arguments are roles, never sizes: the unbounded quantity, k, reaches
a routine only through the observation, the one bit `k == 0`.

The recursive reference is the textbook one with non-tail recursion, the roles permuted in
the environment (so every call of HANOI has the same, empty, argument tuple):

    HANOI: DEC; if k == 0: MOVE(SRC, DST); INC, return
           SWAP(AUX, DST); HANOI; SWAP(AUX, DST)      # the top k-1 disks to the spare peg
           MOVE(SRC, DST)                             # the largest of the k disks
           SWAP(SRC, AUX); HANOI; SWAP(SRC, AUX)      # the k-1 disks onto it
           INC, return

A move from an empty peg, onto the same peg or onto a smaller disk is illegal: it leaves the
pegs as they are and is counted, so `check` sees it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from verifier.tasks import register
from verifier.tasks.base import (
    NON_RECURSIVE,
    NOP_PROGRAM,
    RECURSIVE,
    RETURN,
    Args,
    Observation,
    Program,
    Routines,
    Task,
    call,
    require,
)

if TYPE_CHECKING:  # z3 and hypothesis load only when asked for
    from hypothesis.strategies import SearchStrategy

    from verifier.tasks.hanoi.semantics import HanoiSemantics

SRC, AUX, DST = 0, 1, 2  # roles: argument values of SWAP and MOVE
ROLES = ("SRC", "AUX", "DST")
MAX_DISKS = 64  # 2^64 - 1 moves: no run of a larger input could ever finish


@dataclass
class Towers:
    """The environment. `pegs[p]` lists the disks on physical peg p (A, B, C), bottom first;
    `roles[r]` is the physical peg playing role r (SRC, AUX, DST)."""

    pegs: list[list[int]]
    k: int
    roles: list[int] = field(default_factory=lambda: [0, 1, 2])
    moves: int = 0
    illegal_moves: int = 0


def _hanoi(args: Args, obs: Observation):
    """Recursive: two calls of HANOI around one move; every call runs at most 9 steps."""
    if obs[0]:  # k == 0: nothing to move (never reached from a valid input)
        yield RETURN
        return
    obs = yield call("DEC")
    if obs[0]:  # k was 1: move the one disk
        yield call("MOVE", SRC, DST)
        yield call("INC", ret=True)
        return
    yield call("SWAP", AUX, DST)
    yield call("HANOI")
    yield call("SWAP", AUX, DST)
    yield call("MOVE", SRC, DST)
    yield call("SWAP", SRC, AUX)
    yield call("HANOI")
    yield call("SWAP", SRC, AUX)
    yield call("INC", ret=True)


def _hanoi_loop(args: Args, obs: Observation):
    """Non-recursive: one call makes every move, the recursion of `_hanoi` run as a loop over
    an explicit stack of resume points kept in this routine (built from this call's own
    observations). It emits the same primitive actions as the recursive program; its call
    grows with n, so its V is infinite."""
    if obs[0]:  # k == 0: nothing to move (never reached from a valid input)
        yield RETURN
        return
    START, AFTER_FIRST, AFTER_SECOND = 0, 1, 2
    pending = [START]  # what is left to do of each open sub-problem, innermost last
    while pending:
        point = pending.pop()
        if point == START:
            obs = yield call("DEC")
            if obs[0]:  # one disk
                yield call("MOVE", SRC, DST)
                yield call("INC")
                continue
            yield call("SWAP", AUX, DST)
            pending += [AFTER_FIRST, START]
        elif point == AFTER_FIRST:
            yield call("SWAP", AUX, DST)
            yield call("MOVE", SRC, DST)
            yield call("SWAP", SRC, AUX)
            pending += [AFTER_SECOND, START]
        else:
            yield call("SWAP", SRC, AUX)
            yield call("INC")
    yield RETURN


@register
class Hanoi(Task):
    name = "hanoi"
    summary = "Towers of Hanoi: n disks from peg A to peg C (non-tail recursion)"
    programs = (
        Program("HANOI", False),
        Program("DEC", True),
        Program("INC", True),
        Program("SWAP", True, (ROLES, ROLES)),
        Program("MOVE", True, (ROLES, ROLES)),
        NOP_PROGRAM,
    )
    entry = "HANOI"
    formulations = (RECURSIVE, NON_RECURSIVE)
    observation_names = ("k==0",)
    observation_values = (("0", "1"),)
    input_example = "3"
    large_test_size = 12  # 4,095 moves, four times the largest training size

    def _routines(self, formulation: str) -> Routines:
        return {"HANOI": _hanoi if formulation == RECURSIVE else _hanoi_loop}

    def parse_input(self, data: Any) -> int:
        """The number of disks, a JSON integer in 1..64."""
        require(isinstance(data, int) and not isinstance(data, bool),
                f"hanoi input must be a JSON integer (the number of disks), got {json.dumps(data)}")
        require(1 <= data <= MAX_DISKS,
                f"hanoi input must be a number of disks in 1..{MAX_DISKS}, got {data}")
        return data

    def input_to_json(self, value: int) -> int:
        return value

    def sample_input(self, rng: random.Random, size: int) -> int:
        return size  # one input per size: the program sees nothing else

    def input_size(self, value: int) -> int:
        return value

    def strategy(self, large: bool = False) -> SearchStrategy[int]:
        """Numbers of disks: 1..6, or with `large` 7..12 (a run makes 2^n - 1 moves)."""
        from hypothesis import strategies as st

        return st.integers(7, self.large_test_size) if large else st.integers(1, 6)

    def small_inputs(self, size: int, limit: int) -> list[Any] | None:
        return [size]

    def min_reference_steps(self, value: int) -> int:
        # recursive: 6 * 2^n - 9 steps; non-recursive: 5 * 2^n - 6
        return 5 * 2**value - 9

    def initial_env(self, value: int) -> Towers:
        return Towers([list(range(value, 0, -1)), [], []], value)

    def observe(self, env: Towers) -> Observation:
        return (int(env.k == 0),)

    def apply(self, env: Towers, program: str, args: Args) -> None:
        if program == "DEC":
            env.k = max(env.k - 1, 0)
        elif program == "INC":
            env.k += 1
        elif program == "SWAP":
            r1, r2 = args
            env.roles[r1], env.roles[r2] = env.roles[r2], env.roles[r1]
        else:  # MOVE
            src, dst = env.pegs[env.roles[args[0]]], env.pegs[env.roles[args[1]]]
            if src is dst or not src or (dst and dst[-1] < src[-1]):
                env.illegal_moves += 1
            else:
                dst.append(src.pop())
                env.moves += 1

    def output(self, env: Towers) -> dict[str, Any]:
        return {"pegs": [list(p) for p in env.pegs], "moves": env.moves,
                "illegal_moves": env.illegal_moves}

    def check(self, value: int, output: Any) -> bool:
        """Right when every disk is on peg C, largest at the bottom, and no move was illegal
        (independent of how the moves were chosen; the number of moves is not judged)."""
        return (isinstance(output, dict) and output.get("illegal_moves") == 0
                and output.get("pegs") == [[], [], list(range(value, 0, -1))])

    def semantics(self) -> HanoiSemantics:
        from verifier.tasks.hanoi.semantics import HanoiSemantics

        return HanoiSemantics(self)
