"""Quicksort with the Lomuto partition (C17 §4.3, Algorithm 3).

Environment: the array A[1..n]; a stack of (lo, hi) frames, starting with (1, n); pointers
p_lo, p_hi (always equal to the top frame while the stack is non-empty), p_pivot and p_j
(None = null, pointing nowhere). The observation is
(A[p_j] <= A[p_hi], p_j == p_hi, top lo < top hi, stack empty), each 0 or 1; the comparison
and equality bits are 0 when p_j is null or a pointer is outside 1..n.

Each QUICKSORT call consumes exactly the top frame: if lo >= hi it pops it; otherwise it
partitions, replaces the frame by the second recursive call's (pivot+1, hi) (STACK
PUSH_CALL2), pushes the first call's (lo, pivot-1) (STACK PUSH_CALL1), and calls itself twice.
POP copies the new top frame into p_lo, p_hi, so each callee finds its arguments there. The
non-recursive formulation runs the same primitive actions in one loop over the stack.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from verifier.tasks.base import (
    NON_RECURSIVE,
    NOP_PROGRAM,
    RECURSIVE,
    RETURN,
    Args,
    Observation,
    Program,
    Routines,
    SortingTask,
    call,
)
from verifier.tasks.registry import register

if TYPE_CHECKING:  # z3 is imported by semantics() alone
    from verifier.smt import Semantics

LO, HI, PIVOT, J = range(4)
POINTERS = ("LO", "HI", "PIVOT", "J")
LEFT, RIGHT = 0, 1
MOVABLE = (PIVOT, J)  # MOVE's first argument indexes this
PIVOT_LO, J_LO, J_NULL = range(3)
PUSH_CALL1, PUSH_CALL2, POP = range(3)
LE, J_IS_HI, LO_LT_HI, EMPTY = range(4)
BITS = ("0", "1")


@dataclass
class Partitioned:
    values: list[int]
    frames: list[tuple[int, int]]
    pointers: list[int | None] = field(default_factory=lambda: [None] * 4)

    def valid(self, pointer: int) -> bool:
        position = self.pointers[pointer]
        return position is not None and 1 <= position <= len(self.values)

    def sync_bounds(self) -> None:
        if self.frames:
            self.pointers[LO], self.pointers[HI] = self.frames[-1]


def _quicksort(args: Args, obs: Observation):
    if not obs[LO_LT_HI]:
        yield call("STACK", POP, ret=True)
        return
    yield call("PARTITION")
    yield call("STACK", PUSH_CALL2)
    yield call("STACK", PUSH_CALL1)
    yield call("QUICKSORT")
    yield call("QUICKSORT", ret=True)


def _quicksort_loop(args: Args, obs: Observation):
    while not obs[EMPTY]:
        if obs[LO_LT_HI]:
            yield call("PARTITION")
            yield call("STACK", PUSH_CALL2)
            obs = yield call("STACK", PUSH_CALL1)
        else:
            obs = yield call("STACK", POP)
    yield RETURN


def _partition(args: Args, obs: Observation):
    yield call("SET_PIVOT_LO")
    yield call("SET_J_LO")
    yield call("COMPSWAP_LOOP")
    yield call("SWAP", PIVOT, HI)
    yield call("SET_J_NULL", ret=True)


def _compswap_loop(args: Args, obs: Observation):
    if obs[J_IS_HI]:
        yield RETURN
        return
    yield call("COMPSWAP")
    yield call("MOVE", MOVABLE.index(J), RIGHT)
    yield call("COMPSWAP_LOOP", ret=True)


def _compswap_loop_iterative(args: Args, obs: Observation):
    while not obs[J_IS_HI]:
        yield call("COMPSWAP")
        obs = yield call("MOVE", MOVABLE.index(J), RIGHT)
    yield RETURN


def _compswap(args: Args, obs: Observation):
    if obs[LE]:
        yield call("SWAP", PIVOT, J)
        yield call("MOVE", MOVABLE.index(PIVOT), RIGHT, ret=True)
    else:
        yield RETURN


def _setter(target: int):
    def routine(args: Args, obs: Observation):
        yield call("WRITE", target, ret=True)

    return routine


@register
class QuickSort(SortingTask):
    name = "quicksort"
    summary = "recursive quicksort of integers with the Lomuto partition"
    programs = (
        Program("QUICKSORT", False),
        Program("PARTITION", False),
        Program("COMPSWAP_LOOP", False),
        Program("COMPSWAP", False),
        Program("SET_PIVOT_LO", False),
        Program("SET_J_LO", False),
        Program("SET_J_NULL", False),
        Program("STACK", True, (("PUSH_CALL1", "PUSH_CALL2", "POP"),)),
        Program("MOVE", True, (tuple(POINTERS[p] for p in MOVABLE), ("LEFT", "RIGHT"))),
        Program("SWAP", True, (POINTERS, POINTERS)),
        Program("WRITE", True, (("PIVOT_LO", "J_LO", "J_NULL"),)),
        NOP_PROGRAM,
    )
    entry = "QUICKSORT"
    observation_names = ("A[j]<=A[hi]", "j==hi", "lo<hi", "stack_empty")
    observation_values = (BITS,) * 4
    input_example = "[8, 2, 1, 2, 0]"

    def semantics(self) -> Semantics:
        from verifier.tasks.quicksort.semantics import QuickSortSemantics

        return QuickSortSemantics(self)

    def _routines(self, formulation: str) -> Routines:
        assert formulation in (RECURSIVE, NON_RECURSIVE)
        recursive = formulation == RECURSIVE
        return {
            "QUICKSORT": _quicksort if recursive else _quicksort_loop,
            "PARTITION": _partition,
            "COMPSWAP_LOOP": _compswap_loop if recursive else _compswap_loop_iterative,
            "COMPSWAP": _compswap,
            "SET_PIVOT_LO": _setter(PIVOT_LO),
            "SET_J_LO": _setter(J_LO),
            "SET_J_NULL": _setter(J_NULL),
        }

    def min_reference_steps(self, value: list[int]) -> int:
        """The first partition compares every other element with the pivot."""
        return len(value) - 1

    def sample_input(self, rng: random.Random, size: int) -> list[int]:
        return [rng.randint(0, 9) for _ in range(size)]

    def initial_env(self, value: list[int]) -> Partitioned:
        env = Partitioned(list(value), [(1, len(value))])
        env.sync_bounds()
        return env

    def observe(self, env: Partitioned) -> Observation:
        j, hi = env.pointers[J], env.pointers[HI]
        both = env.valid(J) and env.valid(HI)
        le = both and env.values[j - 1] <= env.values[hi - 1]
        top_lt = bool(env.frames) and env.frames[-1][0] < env.frames[-1][1]
        return (int(le), int(j is not None and j == hi), int(top_lt), int(not env.frames))

    def apply(self, env: Partitioned, program: str, args: Args) -> None:
        if program == "MOVE":
            pointer = MOVABLE[args[0]]
            if env.pointers[pointer] is not None:
                env.pointers[pointer] += 1 if args[1] == RIGHT else -1
        elif program == "SWAP":
            if env.valid(args[0]) and env.valid(args[1]):
                p, q = (env.pointers[k] - 1 for k in args)
                env.values[p], env.values[q] = env.values[q], env.values[p]
        elif program == "WRITE":
            target = args[0]
            if target == J_NULL:
                env.pointers[J] = None
            else:
                env.pointers[PIVOT if target == PIVOT_LO else J] = env.pointers[LO]
        else:
            _stack(env, args[0])

    def output(self, env: Partitioned) -> list[int]:
        return list(env.values)


def _stack(env: Partitioned, operation: int) -> None:
    """STACK: each operation is a no-op where it has nothing to act on."""
    if not env.frames:
        return
    if operation == POP:
        env.frames.pop()
        env.sync_bounds()
        return
    pivot = env.pointers[PIVOT]
    if pivot is None:
        return
    if operation == PUSH_CALL2:
        env.frames[-1] = (pivot + 1, env.frames[-1][1])
    else:  # PUSH_CALL1: p_lo still holds the partitioned frame's lo
        env.frames.append((env.pointers[LO], pivot - 1))
        env.sync_bounds()
