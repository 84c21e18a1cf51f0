"""Reverse an array in place: the worked example of docs/new-task.md, a single-file task.

Environment: the array A[1..n] and two pointers, i (starts at 1) and j (starts at n).
REVERSE swaps A[i] and A[j], moves i right and j left, and calls itself until i >= j.
The model sees one bit: whether i < j.

Load it with `npi-verify --task-module docs/examples/reverse_task.py COMMAND ...`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import z3

from verifier.smt import Semantics, SymEnv, array_of, bit
from verifier.smt.contracts import Contract, Permutation, Specification
from verifier.tasks import register
from verifier.tasks.base import (
    NON_RECURSIVE, NOP_PROGRAM, RECURSIVE, RETURN, Args, Observation, Program, Routines,
    SortingTask, call,
)  # fmt: skip

I, J = 0, 1  # pointer arguments of MOVE
RIGHT, LEFT = 0, 1  # direction arguments of MOVE


@dataclass
class Array:
    """The environment: the values and the two 1-based pointers."""

    values: list[int]
    i: int
    j: int


def _routines(formulation: str) -> Routines:
    """The reference program: a routine per non-primitive program. Each routine sees its
    call's arguments and observations and nothing else; `obs = yield action` receives the
    observation after the action."""

    def reverse(args: Args, obs: Observation):
        if not obs[0]:  # i >= j: nothing left to swap
            yield RETURN
            return
        yield call("SWAP")
        yield call("MOVE", I, RIGHT)
        yield call("MOVE", J, LEFT)
        yield call("REVERSE", ret=True)  # tail call: the NPI returns after it

    def reverse_loop(args: Args, obs: Observation):  # one call loops: V is infinite
        while obs[0]:
            yield call("SWAP")
            yield call("MOVE", I, RIGHT)
            obs = yield call("MOVE", J, LEFT)
        yield RETURN

    return {"REVERSE": reverse if formulation == RECURSIVE else reverse_loop}


@register
class Reverse(SortingTask):  # SortingTask: input is a non-empty JSON list of integers
    name = "reverse"
    summary = "reverse an array in place with two pointers"
    programs = (
        Program("REVERSE", False),
        Program("SWAP", True),
        Program("MOVE", True, (("I", "J"), ("RIGHT", "LEFT"))),
        NOP_PROGRAM,
    )
    entry = "REVERSE"
    formulations = (RECURSIVE, NON_RECURSIVE)
    observation_names = ("i<j",)
    observation_values = (("0", "1"),)
    input_example = "[1, 2, 3]"

    def _routines(self, formulation: str) -> Routines:
        return _routines(formulation)

    def sample_input(self, rng: random.Random, size: int) -> list[int]:
        return [rng.randint(-9, 9) for _ in range(size)]

    def small_inputs(self, size: int, limit: int) -> list[Any] | None:
        return [list(range(size))]  # only the length matters to what the program observes

    def min_reference_steps(self, value: list[int]) -> int:
        return 4 * (len(value) // 2)

    def initial_env(self, value: list[int]) -> Array:
        return Array(list(value), 1, len(value))

    def observe(self, env: Array) -> Observation:
        return (int(env.i < env.j),)

    def apply(self, env: Array, program: str, args: Args) -> None:
        if program == "MOVE":
            pointer, direction = args
            step = 1 if direction == RIGHT else -1
            if pointer == I:
                env.i += step
            else:
                env.j += step
        else:  # SWAP, a no-op unless both pointers are in range
            n = len(env.values)
            if 1 <= env.i <= n and 1 <= env.j <= n:
                a = env.values
                a[env.i - 1], a[env.j - 1] = a[env.j - 1], a[env.i - 1]

    def output(self, env: Array) -> list[int]:
        return list(env.values)

    def check(self, value: list[int], output: Any) -> bool:
        return output == list(reversed(value))

    def semantics(self) -> ReverseSemantics:
        return ReverseSemantics(self)


class ReverseSemantics(Semantics):
    """The same environment in Z3, for arrays of every size: size n, array A (1-based),
    pointers i and j. Each method mirrors the task's method of the same job."""

    def __init__(self, task: Reverse) -> None:
        self.task = task

    def fresh(self, tag: str) -> SymEnv:
        return {"n": z3.Int(f"{tag}_n"), "i": z3.Int(f"{tag}_i"), "j": z3.Int(f"{tag}_j"),
                "A": z3.Array(f"{tag}_A", z3.IntSort(), z3.IntSort())}

    def domain(self, env: SymEnv) -> z3.BoolRef:  # true of every environment
        return env["n"] >= 1

    def initial(self, env: SymEnv) -> z3.BoolRef:  # initial_env
        return z3.And(env["i"] == 1, env["j"] == env["n"])

    def apply(self, env: SymEnv, program: str, args: Args) -> SymEnv:  # apply
        after = dict(env)
        if program == "MOVE":
            name = "i" if args[0] == I else "j"
            after[name] = env[name] + (1 if args[1] == RIGHT else -1)
        else:
            a, i, j, n = env["A"], env["i"], env["j"], env["n"]
            swapped = z3.Store(z3.Store(a, i, a[j]), j, a[i])
            after["A"] = z3.If(z3.And(i >= 1, i <= n, j >= 1, j <= n), swapped, a)
        return after

    def observation(self, env: SymEnv) -> list[z3.ArithRef]:  # observe
        return [bit(env["i"] < env["j"])]

    # No hints(): the observation alone makes V exact (section 7 of the tutorial).

    def contract(self, formulation: str, program: str, args: Args) -> Contract | None:
        """REVERSE reverses the window A[i..j] and leaves the rest alone; it keeps i + j = n + 1,
        and j - i shrinks at every call (section 8 of the tutorial: whole proofs)."""
        if formulation != RECURSIVE:
            return None  # the loop form's V is infinite: nothing to prove it over
        return Contract(
            pre=lambda e: z3.And(e["i"] >= 1, e["j"] <= e["n"], e["i"] + e["j"] == e["n"] + 1),
            post=lambda entry, exit: _reversed_window(entry, exit["A"]),
            rank=lambda e: e["j"] - e["i"],
            text="pre: 1 <= i, j <= n, i + j = n + 1; post: A[i..j] reversed, the rest "
                 "unchanged; rank j - i",
        )

    def specification(self) -> Specification:
        return Specification(
            holds=lambda initial, final: _reversed_window(initial, final["A"]),
            text="the output is the input reversed",
            permutation=Permutation("A", lambda env: z3.IntVal(1), lambda env: env["n"],
                                    lambda env, program, args: (env["i"], env["j"])
                                    if program == "SWAP" else None),
        )

    def encode(self, env: Array) -> SymEnv:  # a concrete environment, for the cross-check
        return {"n": z3.IntVal(len(env.values)), "i": z3.IntVal(env.i), "j": z3.IntVal(env.j),
                "A": array_of(env.values)}


def _reversed_window(before: SymEnv, after: z3.ArrayRef) -> z3.BoolRef:
    """`after` is `before`'s array with A[i..j] reversed (i, j as in `before`) and every
    other cell of A[1..n] unchanged."""
    a, i, j, n = before["A"], before["i"], before["j"], before["n"]
    k = z3.Int("k")
    return z3.ForAll([k], z3.Implies(z3.And(1 <= k, k <= n), after[k] == z3.If(
        z3.And(i <= k, k <= j), a[i + j - k], a[k])))
