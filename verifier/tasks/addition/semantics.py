"""Addition in Z3: the scratch pad as four independent rows.

Every primitive touches one row (PTR and WRITE name it), rows share no cell, and the rows'
observations do not depend on absolute column numbers, so the pad is the product of its rows
(`verifier.smt.product`). Two kinds of row:

- an operand row holds digits in the columns [L, S] (S the start column, L the leading digit,
  which is 0 only for a one-digit operand) and is blank elsewhere;
- a written row (CARRY, OUT) starts blank and holds what WRITE stored, between its leftmost
  and rightmost written columns W and R; a column never written reads blank (a WRITE that
  widens [W, R] fills the columns it skips with blank, as a lambda term).

Predicates are declared (hints), not discovered. The vocabulary below expresses them: the
14 templates `p==D.last`, `p==D.first`, `p<D.first`, `p>D.last` (each operand row),
`p>C.first`, `p==C.first+1`, `C[p-1]==1`, `C[p+1]==10`, `C[p+1]==1` (carry) and `p>C.first`
(output) give the same exact V (77,056 states). But `verifier.smt.discover` cannot reach them
from the observation: the rows multiply, so every coarser abstraction it would start from
(no predicates, every pointer template, one row unrefined) has a joint fixed point too large
to compute in minutes.

Quantifier-free: instead of saying "blank outside [L, S]", a read is the array cell inside the
interval and blank outside it. Semantics are given for the primitives the reference program
executes (pointer moves on every row, WRITE on the written rows), which is what the abstract
fixed point and the cross-check apply.
"""

from __future__ import annotations

import functools
from typing import Any

import z3

from verifier.errors import VerifierError
from verifier.smt import ArrayView, Predicate, SymEnv, Vocabulary, array_at, bit
from verifier.smt.product import Part, ProductSemantics
from verifier.tasks.addition.task import BLANK, CARRY, IN1, IN2, OUT, RIGHT, ROWS, Pad
from verifier.tasks.base import Args, Task

_SYMBOLS = BLANK + 1  # digits 0-9 and the blank


def _digits_around(array: z3.ArrayRef, p: z3.ArithRef) -> list[z3.BoolRef]:
    return [z3.And(array[i] >= 0, array[i] <= 9) for i in (p - 1, p, p + 1)]


class _Row(Part):
    value_counts = (_SYMBOLS,)

    def __init__(self, task: Task, row: int) -> None:
        self.task = task
        self.row = row
        self.name = ROWS[row]
        self.components = (row,)

    def _move(self, env: SymEnv, args: Args) -> SymEnv:
        return {**env, "p": env["p"] + (1 if args[1] == RIGHT else -1)}


class OperandRow(_Row):
    """Digits in [L, S]; pointer p. Predicates say where p lies relative to the digits."""

    def hints(self) -> tuple[Predicate, ...]:
        return (
            Predicate("p==S", lambda env: bit(env["p"] == env["S"])),
            Predicate("p==L", lambda env: bit(env["p"] == env["L"])),
            Predicate("p<L", lambda env: bit(env["p"] < env["L"])),
            Predicate("p>S", lambda env: bit(env["p"] > env["S"])),
        )

    def fresh(self, tag: str) -> SymEnv:
        ints = {name: z3.Int(f"{tag}_{name}") for name in ("p", "L", "S")}
        return {**ints, "D": z3.Array(f"{tag}_D", z3.IntSort(), z3.IntSort())}

    def domain(self, env: SymEnv) -> z3.BoolRef:
        d, lead = env["D"], env["L"]
        leading = z3.Or(lead == env["S"], d[lead] != 0)  # no leading zero
        return z3.And(lead <= env["S"], leading, *_digits_around(d, env["p"]))

    def initial(self, env: SymEnv) -> z3.BoolRef:
        return env["p"] == env["S"]

    def apply(self, env: SymEnv, program: str, args: Args) -> SymEnv:
        if program != "PTR":
            raise VerifierError(f"addition semantics: {program} on operand row {self.name} is not modelled")
        return self._move(env, args)

    def _read(self, env: SymEnv, p: Any) -> z3.ArithRef:
        return z3.If(z3.And(env["L"] <= p, p <= env["S"]), env["D"][p], BLANK)

    def observation(self, env: SymEnv) -> list[z3.ArithRef]:
        return [self._read(env, env["p"])]

    def vocabulary(self, env: SymEnv) -> Vocabulary:
        read = functools.partial(self._read, env)
        return Vocabulary(pointers={"p": env["p"]}, arrays=(ArrayView("D", read, env["L"], env["S"]),))

    def encode(self, pad: Pad) -> SymEnv:
        cells = pad.cells[self.row]
        return {
            "p": z3.IntVal(pad.pointers[self.row]),
            "L": z3.IntVal(min(cells)),
            "S": z3.IntVal(pad.width - 1),
            "D": array_at(cells, 0),
        }


class WrittenRow(_Row):
    """Cells written so far, inside [W, R]; pointer p.

    The predicates describe the neighbours of p that the reference program moves to: whether
    the left one was never written; for the carry row, which moves back right after writing,
    also whether the left one is the leftmost written one holding 1, and whether the right
    one is blank or 1."""

    def __init__(self, task: Task, row: int, moves_right: bool) -> None:
        super().__init__(task, row)
        self.moves_right = moves_right

    def hints(self) -> tuple[Predicate, ...]:
        left_unwritten = Predicate("p-1<W", lambda env: bit(env["p"] - 1 < env["W"]))
        if not self.moves_right:
            return (left_unwritten,)
        return (
            left_unwritten,
            Predicate("p-1==W and cell[p-1]==1", lambda env: bit(z3.And(
                env["p"] - 1 == env["W"], self._read(env, env["p"] - 1) == 1))),
            Predicate("cell[p+1]==_", lambda env: bit(self._read(env, env["p"] + 1) == BLANK)),
            Predicate("cell[p+1]==1", lambda env: bit(self._read(env, env["p"] + 1) == 1)),
        )

    def fresh(self, tag: str) -> SymEnv:
        ints = {name: z3.Int(f"{tag}_{name}") for name in ("p", "S", "W", "R")}
        return {**ints, "C": z3.Array(f"{tag}_C", z3.IntSort(), z3.IntSort())}

    def domain(self, env: SymEnv) -> z3.BoolRef:
        p, c = env["p"], env["C"]
        symbols = [z3.Or(c[i] == BLANK, z3.And(c[i] >= 0, c[i] <= 9)) for i in (p - 1, p, p + 1)]
        return z3.And(env["W"] <= env["R"] + 1, *symbols)

    def initial(self, env: SymEnv) -> z3.BoolRef:
        s = env["S"]
        return z3.And(env["p"] == s, env["W"] == s + 1, env["R"] == s)

    def apply(self, env: SymEnv, program: str, args: Args) -> SymEnv:
        if program == "PTR":
            return self._move(env, args)
        p, w, r = env["p"], env["W"], env["R"]
        i = z3.Int("column")
        gap = z3.Or(z3.And(p < i, i < w), z3.And(r < i, i < p))  # now inside [W, R], never written
        after = dict(env)
        after["C"] = z3.Lambda([i], z3.If(i == p, args[1], z3.If(gap, BLANK, env["C"][i])))
        after["W"] = z3.If(p < w, p, w)
        after["R"] = z3.If(p > r, p, r)
        return after

    def _read(self, env: SymEnv, p: Any) -> z3.ArithRef:
        return z3.If(z3.And(env["W"] <= p, p <= env["R"]), env["C"][p], BLANK)

    def observation(self, env: SymEnv) -> list[z3.ArithRef]:
        return [self._read(env, env["p"])]

    def vocabulary(self, env: SymEnv) -> Vocabulary:
        read = functools.partial(self._read, env)
        return Vocabulary(pointers={"p": env["p"]}, arrays=(ArrayView("C", read, env["W"], env["R"]),),
                          constants=(1, BLANK))

    def encode(self, pad: Pad) -> SymEnv:
        cells = pad.cells[self.row]
        start = pad.width - 1
        return {
            "p": z3.IntVal(pad.pointers[self.row]),
            "S": z3.IntVal(start),
            "W": z3.IntVal(min(cells, default=start + 1)),
            "R": z3.IntVal(max(cells, default=start)),
            "C": array_at(cells, BLANK),
        }


class AdditionSemantics(ProductSemantics):
    """The pad as the product of rows IN1, IN2 (operands) and CARRY, OUT (written)."""

    def __init__(self, task: Task) -> None:
        rows = (
            OperandRow(task, IN1),
            OperandRow(task, IN2),
            WrittenRow(task, CARRY, moves_right=True),
            WrittenRow(task, OUT, moves_right=False),
        )
        super().__init__(task, rows)

    def route(self, program: str, args: Args) -> int:
        return args[0]  # PTR and WRITE both name the row first
