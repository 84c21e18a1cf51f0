"""Grade-school addition on a 4-row scratch pad (NPI; C17 §4.1).

Rows IN1, IN2, CARRY, OUT; one pointer per row, all starting at the rightmost column. Cells
hold a digit 0-9 or the blank/end token 10; the pad is unbounded to both sides and blank
outside the written cells. The observation is the four symbols under the four pointers.
"""

from __future__ import annotations

import itertools
import random
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
    strict_int,
)
from verifier.tasks.registry import register

if TYPE_CHECKING:  # z3 is imported by semantics() alone, hypothesis by strategy()
    from hypothesis.strategies import SearchStrategy

    from verifier.smt import Semantics

# Python caps int<->str conversion at 4300 digits by default; the task is defined for operands
# of any length (the paper tests 5000 digits), so lift the cap for this process.
sys.set_int_max_str_digits(0)

BLANK = 10
IN1, IN2, CARRY, OUT = range(4)
LEFT, RIGHT = 0, 1
ROWS = ("IN1", "IN2", "CARRY", "OUT")
DIGITS = tuple(str(d) for d in range(10))


@dataclass
class Pad:
    """The scratch pad: `cells[row][column]`, columns numbered 0..width-1 left to right."""

    width: int
    cells: list[dict[int, int]] = field(default_factory=lambda: [{}, {}, {}, {}])
    pointers: list[int] = field(default_factory=list)


def _column_empty(obs: Observation) -> bool:
    return obs[IN1] == BLANK and obs[IN2] == BLANK and obs[CARRY] == BLANK


def _digit(symbol: int) -> int:
    return 0 if symbol == BLANK else symbol


def _add(args: Args, obs: Observation):
    if _column_empty(obs):
        yield RETURN
        return
    yield call("ADD1")
    yield call("LSHIFT")
    yield call("ADD", ret=True)


def _add_loop(args: Args, obs: Observation):
    while not _column_empty(obs):
        yield call("ADD1")
        obs = yield call("LSHIFT")
    yield RETURN


def _add1(args: Args, obs: Observation):
    total = _digit(obs[IN1]) + _digit(obs[IN2]) + _digit(obs[CARRY])
    if total >= 10:
        yield call("WRITE", OUT, total - 10)
        yield call("CARRY", ret=True)
    else:
        yield call("WRITE", OUT, total, ret=True)


def _carry(args: Args, obs: Observation):
    yield call("PTR", CARRY, LEFT)
    yield call("WRITE", CARRY, 1)
    yield call("PTR", CARRY, RIGHT, ret=True)


def _lshift(args: Args, obs: Observation):
    yield call("PTR", IN1, LEFT)
    yield call("PTR", IN2, LEFT)
    yield call("PTR", CARRY, LEFT)
    yield call("PTR", OUT, LEFT, ret=True)


@register
class Addition(Task):
    name = "addition"
    summary = "grade-school addition of two non-negative integers on a 4-row scratch pad"
    programs = (
        Program("ADD", False),
        Program("ADD1", False),
        Program("CARRY", False),
        Program("LSHIFT", False),
        Program("WRITE", True, (ROWS, DIGITS)),
        Program("PTR", True, (ROWS, ("LEFT", "RIGHT"))),
        NOP_PROGRAM,
    )
    entry = "ADD"
    observation_names = ROWS
    observation_values = (DIGITS + ("_",),) * 4
    input_example = "[123, 4567]"
    # The loop starts from 5 inputs of V's witness cover and may take 15 rounds: from 1, the
    # median over seeds 0-9 was 22 traces (issue 14's goal is at most 20); from 5 with 15
    # rounds, 18 on seeds 0-9 and 17 on fresh seeds 10-19, every seed certified
    # (docs/data-efficiency.md).
    loop_defaults = {"start": 5, "max_rounds": 15}

    def semantics(self) -> Semantics:
        from verifier.tasks.addition.semantics import AdditionSemantics

        return AdditionSemantics(self)

    def _routines(self, formulation: str) -> Routines:
        add = _add if formulation == RECURSIVE else _add_loop
        assert formulation in (RECURSIVE, NON_RECURSIVE)
        return {"ADD": add, "ADD1": _add1, "CARRY": _carry, "LSHIFT": _lshift}

    def parse_input(self, data: Any) -> tuple[int, int]:
        require(
            isinstance(data, list) and len(data) == 2,
            "addition input must be a JSON list of two non-negative integers, e.g. [123, 4567]",
        )
        for position, operand in enumerate(data):
            require(strict_int(operand), f"operand {position} must be an integer, got {operand!r}")
            require(operand >= 0, f"operand {position} must be non-negative, got {operand}")
        return (data[0], data[1])

    def input_to_json(self, value: tuple[int, int]) -> list[int]:
        return list(value)

    def sample_input(self, rng: random.Random, size: int) -> tuple[int, int]:
        """One operand with exactly `size` digits, the other with 1 to `size` digits."""
        longer = _random_number(rng, size)
        shorter = _random_number(rng, rng.randint(1, size))
        return (longer, shorter) if rng.random() < 0.5 else (shorter, longer)

    def strategy(self, large: bool = False) -> SearchStrategy[Any]:
        """Two operands drawn by hypothesis, not by the task's sampler: up to 200 digits each
        when `large`, else up to 1000."""
        from hypothesis import strategies as st

        top = 10**200 if large else 10**3
        return st.tuples(st.integers(0, top), st.integers(0, top))

    def input_size(self, value: tuple[int, int]) -> int:
        return max(len(str(value[0])), len(str(value[1])))

    def small_inputs(self, size: int, limit: int) -> list[Any] | None:
        """Every pair of one-digit operands; longer inputs come from `covering_inputs`, which
        reach with 6,758 inputs what all 9,900 two-digit pairs reach and more."""
        if size > 1 or 100 > limit:
            return None
        return [(a, b) for a in range(10) for b in range(10)]

    def min_reference_steps(self, value: tuple[int, int]) -> int:
        """Every column of the longer operand gets its output digit written and its four
        pointers moved left: at least five primitive steps a column."""
        return 5 * max(value[0].bit_length() * 3 // 10, 1)

    def covering_inputs(self) -> list[tuple[int, int]]:
        """A call sees two adjacent columns (digits or blank, and the carry into the lower
        one), so inputs that show every such window reach every call-local state:

        - windows of digits only: a column (x, y, carry-in) leads to any (x', y') with the
          carry x + y + carry-in >= 10, so these windows are the edges of a graph on 200
          columns where every column has 100 edges in and 100 out; an Euler circuit walks each
          edge once, cut into operands of CHUNK columns (a carry-making column below, a 1 on
          top so that no operand starts with 0);
        - windows with a blank (an operand ends): the window alone on top of nothing or of a
          column that makes a carry or none, and a 1 on top of an upper 0: 6,258 pairs of at
          most four digits."""
        inputs = _windows_with_blank()
        circuit = _digit_window_circuit()
        for start in range(0, len(circuit) - 1, CHUNK):
            columns = circuit[start : start + CHUNK + 1]
            below = [(5, 5)] if columns[0][2] else []
            inputs.append(_operands(below + [(x, y) for x, y, _ in columns] + [(1, 1)]))
        return sorted(set(inputs), key=lambda v: (self.input_size(v), v))

    def initial_env(self, value: tuple[int, int]) -> Pad:
        width = self.input_size(value) + 1
        pad = Pad(width, pointers=[width - 1] * 4)
        for row in (IN1, IN2):
            digits = str(value[row])
            for offset, char in enumerate(reversed(digits)):
                pad.cells[row][width - 1 - offset] = int(char)
        return pad

    def observe(self, env: Pad) -> Observation:
        cells, pointers = env.cells, env.pointers  # spelled out: every step of a run calls this
        return (
            cells[IN1].get(pointers[IN1], BLANK),
            cells[IN2].get(pointers[IN2], BLANK),
            cells[CARRY].get(pointers[CARRY], BLANK),
            cells[OUT].get(pointers[OUT], BLANK),
        )

    def apply(self, env: Pad, program: str, args: Args) -> None:
        row, value = args
        if program == "WRITE":
            env.cells[row][env.pointers[row]] = value
        else:  # PTR
            env.pointers[row] += 1 if value == RIGHT else -1

    def output(self, env: Pad) -> int | None:
        """The OUT row as a number: written cells must be contiguous and end at the last column."""
        written = env.cells[OUT]
        if not written or max(written) != env.width - 1 or len(written) != env.width - min(written):
            return None
        return int("".join(str(written[c]) for c in range(min(written), env.width)))

    def check(self, value: tuple[int, int], output: Any) -> bool:
        return strict_int(output) and output == value[0] + value[1]


CHUNK = 40  # columns per covering input cut from the Euler circuit


def _digit_window_circuit() -> list[tuple[int, int, int]]:
    """Columns (x, y, carry-in) in the order of an Euler circuit over digit windows."""
    import networkx as nx  # imported here: listing tasks must not pay for it

    graph = nx.MultiDiGraph()
    columns = [(x, y, c) for x in range(10) for y in range(10) for c in (0, 1)]
    for x, y, c in columns:
        carry = int(x + y + c >= 10)
        graph.add_edges_from(((x, y, c), (u, v, carry)) for u in range(10) for v in range(10))
    first = (0, 0, 0)
    return [first] + [v for _, v in nx.eulerian_circuit(graph, source=first)]


def _windows_with_blank() -> list[tuple[int, int]]:
    """Operand pairs showing each window (column k, column k+1) that has a blank cell, at
    k = 0, or at k = 1 above a column making no carry (0 + 0) or a carry (5 + 5)."""
    blank = None
    windows = [(d, e) for d in range(10) for e in (*range(10), blank)] + [(blank, blank)]
    pairs = []
    for below in (blank, 0, 5):
        for (x, x_up), (y, y_up) in itertools.product(windows, repeat=2):
            if blank not in (x, x_up, y, y_up):
                continue  # digit-only windows come from the circuit
            first, second = _operand(below, x, x_up), _operand(below, y, y_up)
            if first is not None and second is not None:
                pairs.append((first, second))
    return pairs


def _operand(below: int | None, digit: int | None, upper: int | None) -> int | None:
    """The number with these digits (least significant first, None for none), a 1 on top
    of an upper 0; None where that would start with a 0 or have no digit."""
    digits = [d for d in (below, digit, upper) if d is not None] + ([1] if upper == 0 else [])
    if not digits or (len(digits) > 1 and digits[-1] == 0):
        return None
    return int("".join(str(d) for d in reversed(digits)))


def _operands(columns: list[tuple[int, int]]) -> tuple[int, int]:
    """Two numbers from columns listed least significant first."""
    return tuple(int("".join(str(c[row]) for c in reversed(columns))) for row in (0, 1))  # type: ignore[return-value]


def _random_number(rng: random.Random, digits: int) -> int:
    if digits == 1:
        return rng.randint(0, 9)
    return rng.randint(10 ** (digits - 1), 10**digits - 1)
