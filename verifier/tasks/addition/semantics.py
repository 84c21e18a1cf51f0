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

Whole proofs (`verifier.induction`): the recursive program's contracts and the specification
close the file. The abstraction never relates the rows, but the contracts do: ADD keeps the four
pointers in lockstep and the columns it has passed added by the schoolbook ripple-carry relation
(OUT[j] + 10*CARRY[j+1] = IN1[j] + IN2[j] + CARRY[j], quantified over the column j), and the
specification states that relation for the whole result, which is integer addition (see
`AdditionSemantics._sum_written`).
"""

from __future__ import annotations

import functools
from typing import Any

import z3

from verifier.errors import VerifierError
from verifier.smt import ArrayView, Predicate, SymEnv, Vocabulary, array_at, bit
from verifier.smt.contracts import Contract, Specification
from verifier.smt.product import Part, ProductSemantics
from verifier.tasks.addition.task import BLANK, CARRY, IN1, IN2, LEFT, OUT, RIGHT, ROWS, Pad
from verifier.tasks.base import RECURSIVE, Args, Task

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

    def read(self, env: SymEnv, p: Any) -> z3.ArithRef:
        return z3.If(z3.And(env["L"] <= p, p <= env["S"]), env["D"][p], BLANK)

    def observation(self, env: SymEnv) -> list[z3.ArithRef]:
        return [self.read(env, env["p"])]

    def vocabulary(self, env: SymEnv) -> Vocabulary:
        read = functools.partial(self.read, env)
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
                env["p"] - 1 == env["W"], self.read(env, env["p"] - 1) == 1))),
            Predicate("cell[p+1]==_", lambda env: bit(self.read(env, env["p"] + 1) == BLANK)),
            Predicate("cell[p+1]==1", lambda env: bit(self.read(env, env["p"] + 1) == 1)),
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
        return self.write(env, args[1])

    def write(self, env: SymEnv, value: Any) -> SymEnv:
        """The row after WRITE stores `value` (a digit, or a term for one) at p."""
        p, w, r = env["p"], env["W"], env["R"]
        i = z3.Int("column")
        gap = z3.Or(z3.And(p < i, i < w), z3.And(r < i, i < p))  # now inside [W, R], never written
        after = dict(env)
        after["C"] = z3.Lambda([i], z3.If(i == p, value, z3.If(gap, BLANK, env["C"][i])))
        after["W"] = z3.If(p < w, p, w)
        after["R"] = z3.If(p > r, p, r)
        return after

    def read(self, env: SymEnv, p: Any) -> z3.ArithRef:
        return z3.If(z3.And(env["W"] <= p, p <= env["R"]), env["C"][p], BLANK)

    def observation(self, env: SymEnv) -> list[z3.ArithRef]:
        return [self.read(env, env["p"])]

    def vocabulary(self, env: SymEnv) -> Vocabulary:
        read = functools.partial(self.read, env)
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
        operands = (OperandRow(task, IN1), OperandRow(task, IN2))
        written = (WrittenRow(task, CARRY, moves_right=True), WrittenRow(task, OUT, moves_right=False))
        self.rows: tuple[OperandRow | WrittenRow, ...] = (*operands, *written)
        self.written = {CARRY: written[0], OUT: written[1]}
        super().__init__(task, self.rows)

    def route(self, program: str, args: Args) -> int:
        return args[0]  # PTR and WRITE both name the row first

    # --- whole proofs: contracts and specification (verifier.induction) -------------------------

    def contract(self, formulation: str, program: str, args: Args) -> Contract | None:
        """The recursive program's contracts. Columns are counted by their offset j from each
        row's start column S (j = 0 the units); the rows' pointers move in lockstep, so one
        offset k = S - p is the column ADD is at. ADD's invariant (`_added`): columns 0..k-1 are
        added (`_ripple`), the output is written exactly there, the carry row holds nothing left
        of column k and nothing in column 0, and column k is at most one past the longer operand
        (and holds a carry only while some operand digit lies in column k - 1 or further left).
        ADD returns with column k empty; ADD1, CARRY and LSHIFT are described exactly."""
        if formulation != RECURSIVE:
            return None
        return self._contracts.get(program)

    def specification(self) -> Specification:
        return Specification(holds=self._sum_written, text=SPECIFICATION)

    @functools.cached_property
    def _contracts(self) -> dict[str, Contract]:
        return {
            "ADD": Contract(
                pre=self._added,
                post=lambda entry, exit: z3.And(self._added(exit), self._column_empty(exit)),
                rank=self._columns_left,
                text="pre: the pointers in lockstep at column k >= 0, columns 0..k-1 added "
                     "(OUT[j] + 10*CARRY[j+1] = IN1[j] + IN2[j] + CARRY[j], OUT[j] a digit), OUT "
                     "written exactly in them, CARRY blank in column 0 and left of column k, k at "
                     "most one past the longer operand and a carry in column k only with an "
                     "operand digit in column k - 1 or further left; post: the same at the exit "
                     "column, which is empty; rank max(IN1.p - IN1.L, IN2.p - IN2.L) + 2",
            ),
            "ADD1": Contract(
                post=self._column_added,
                text="post: with t = IN1[p] + IN2[p] + CARRY[p] (blank as 0), OUT[p] := t mod 10 "
                     "and, where t >= 10, CARRY[p - 1] := 1 (the pad exactly as WRITE and CARRY "
                     "leave it)",
            ),
            "CARRY": Contract(
                post=lambda entry, exit: _same(exit, self._carry_written(entry)),
                text="post: CARRY[p - 1] := 1, the carry pointer back at p",
            ),
            "LSHIFT": Contract(
                post=lambda entry, exit: z3.And(
                    [exit[f"{row}.p"] == entry[f"{row}.p"] - 1 for row in ROWS]),
                text="post: every pointer one column left",
            ),
        }

    def _cell(self, env: SymEnv, row: int, offset: Any = None, column: Any = None) -> z3.ArithRef:
        """The symbol of `row` in the column `offset` left of the row's start column, or in
        `column` itself where given."""
        local = self._split(env, row)
        return self.rows[row].read(local, local["S"] - offset if column is None else column)

    def _digit(self, env: SymEnv, row: int, offset: Any = None, column: Any = None) -> z3.ArithRef:
        """That symbol as a digit, blank read as 0."""
        cell = self._cell(env, row, offset, column)
        return z3.If(cell == BLANK, 0, cell)

    def _ripple(self, operands: SymEnv, written: SymEnv, c: Any) -> z3.BoolRef:
        """The column at offset j = IN1.S - c is added: OUT[j] is a digit and OUT[j] +
        10*CARRY[j+1] = IN1[j] + IN2[j] + CARRY[j], operands read from `operands`, the written
        rows from `written`. (The column is named by IN1's column c, so that IN1.D[c] is a
        trigger of the quantifier over it with no arithmetic, which cvc5 needs.)"""
        j = operands["IN1.S"] - c
        out = self._cell(written, OUT, j)
        return z3.And(0 <= out, out <= 9,
                      out + 10 * self._digit(written, CARRY, j + 1)
                      == self._digit(operands, IN1, j, column=c) + self._digit(operands, IN2, j)
                      + self._digit(written, CARRY, j))

    def _rippled(self, operands: SymEnv, written: SymEnv, columns: z3.ArithRef) -> z3.BoolRef:
        """The columns at offsets 0..columns-1 are added."""
        c = z3.Int("c")
        j = operands["IN1.S"] - c
        return z3.ForAll([c], z3.Implies(z3.And(0 <= j, j < columns), self._ripple(operands, written, c)),
                         patterns=[operands["IN1.D"][c]])

    def _added(self, env: SymEnv) -> z3.BoolRef:
        """ADD's invariant at column k (see `contract`)."""
        k = env["IN1.S"] - env["IN1.p"]
        lockstep = [env[f"{row}.S"] - env[f"{row}.p"] == k for row in ROWS[1:]]
        near = lambda row, d: env[f"{row}.p"] >= env[f"{row}.L"] - d
        return z3.And(
            k >= 0, *lockstep,
            env["OUT.W"] == env["OUT.p"] + 1, env["OUT.R"] == env["OUT.S"],
            env["CARRY.W"] >= env["CARRY.p"], env["CARRY.R"] == env["CARRY.S"],
            self._cell(env, CARRY, 0) == BLANK,
            z3.Or(near("IN1", 2), near("IN2", 2)),
            z3.Implies(self._cell(env, CARRY, k) == 1, z3.Or(near("IN1", 1), near("IN2", 1))),
            self._rippled(env, env, k),
        )

    def _column_empty(self, env: SymEnv) -> z3.BoolRef:
        k = env["IN1.S"] - env["IN1.p"]
        return z3.And([self._cell(env, row, k) == BLANK for row in (IN1, IN2, CARRY)])

    def _columns_left(self, env: SymEnv) -> z3.ArithRef:
        """ADD's ranking: the columns left before one past the longer operand."""
        left1, left2 = env["IN1.p"] - env["IN1.L"], env["IN2.p"] - env["IN2.L"]
        return z3.If(left1 > left2, left1, left2) + 2

    def _write(self, env: SymEnv, row: int, value: Any) -> SymEnv:
        """The pad after WRITE(row, value), `value` a digit term."""
        rows = [self._split(env, k) for k in range(len(self.parts))]
        rows[row] = self.written[row].write(rows[row], value)
        return self._join(rows)

    def _carry_written(self, env: SymEnv) -> SymEnv:
        """The pad after CARRY's three steps."""
        env = self.apply(env, "PTR", (CARRY, LEFT))
        env = self._write(env, CARRY, 1)
        return self.apply(env, "PTR", (CARRY, RIGHT))

    def _column_added(self, entry: SymEnv, exit: SymEnv) -> z3.BoolRef:
        """ADD1's effect: the column's sum t (each row's symbol under its own pointer) written
        to OUT mod 10; where t >= 10, a 1 written to CARRY one column left, its pointer back.
        One equation per component, the carry row's cells as one lambda: Z3 finds counter-models
        of a broken contract in seconds (an If over two whole pads took it minutes)."""
        total = sum(self._digit(entry, row, column=entry[f"{ROWS[row]}.p"]) for row in (IN1, IN2, CARRY))
        carry = total >= 10
        written = self._write(entry, OUT, z3.If(carry, total - 10, total))
        carried = self._carry_written(written)
        i = z3.Int("column")
        expected = {**written, **{name: z3.If(carry, carried[name], written[name])
                                  for name in ("CARRY.W", "CARRY.R")}}
        expected["CARRY.C"] = z3.Lambda([i], z3.If(carry, carried["CARRY.C"][i], entry["CARRY.C"][i]))
        return _same(exit, expected)

    def _sum_written(self, initial: SymEnv, final: SymEnv) -> z3.BoolRef:
        """The specification: OUT holds n >= 1 digits ending in its start column, every operand
        digit lies in those n columns, and they are the ripple-carry sum of the operands with no
        carry into column 0 and none out of column n - 1.

        Why that is addition: write o_j, a_j, b_j, c_j for column j's digits (blank as 0). Then
        sum_j o_j 10^j = sum_j (a_j + b_j + c_j - 10 c_(j+1)) 10^j over j < n; the carries
        telescope to c_0 - 10^n c_n = 0, and a, b have no digit at or beyond column n, so OUT,
        read as the number `Addition.output` reads (its cells are digits from W to S), is
        a + b, which is what `Addition.check` asks for."""
        n = final["OUT.S"] - final["OUT.W"] + 1
        return z3.And(
            n >= 1, final["OUT.R"] == final["OUT.S"],
            initial["IN1.L"] > initial["IN1.S"] - n, initial["IN2.L"] > initial["IN2.S"] - n,
            self._digit(final, CARRY, 0) == 0, self._digit(final, CARRY, n) == 0,
            self._rippled(initial, final, n),
        )


SPECIFICATION = (
    "OUT holds n >= 1 digits ending in the start column, every operand digit lies in those n "
    "columns, and column by column OUT[j] + 10*CARRY[j+1] = IN1[j] + IN2[j] + CARRY[j] (blank as "
    "0) with CARRY[0] = CARRY[n] = 0; so OUT read as a number is IN1 + IN2 (multiply column j by "
    "10^j and sum: the carries telescope to CARRY[0] - 10^n CARRY[n] = 0)"
)


def _same(env: SymEnv, expected: SymEnv) -> z3.BoolRef:
    """Every component of `env` equals that of `expected`."""
    return z3.And([env[name] == expected[name] for name in env])
