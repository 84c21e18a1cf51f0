"""Grade-school addition on a 4-row scratch pad (NPI; C17 §4.1).

Rows IN1, IN2, CARRY, OUT; one pointer per row, all starting at the rightmost column. Cells
hold a digit 0-9 or the blank/end token 10; the pad is unbounded to both sides and blank
outside the written cells. The observation is the four symbols under the four pointers.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from typing import Any

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

    def input_size(self, value: tuple[int, int]) -> int:
        return max(len(str(value[0])), len(str(value[1])))

    def small_inputs(self, size: int, limit: int) -> list[Any] | None:
        """Every pair whose longer operand has exactly `size` digits."""
        top = 10**size
        if top * top > limit:
            return None
        low = 0 if size == 1 else 10 ** (size - 1)
        return [(a, b) for a in range(top) for b in range(top) if max(a, b) >= low]

    def initial_env(self, value: tuple[int, int]) -> Pad:
        width = self.input_size(value) + 1
        pad = Pad(width, pointers=[width - 1] * 4)
        for row in (IN1, IN2):
            digits = str(value[row])
            for offset, char in enumerate(reversed(digits)):
                pad.cells[row][width - 1 - offset] = int(char)
        return pad

    def observe(self, env: Pad) -> Observation:
        return tuple(env.cells[row].get(env.pointers[row], BLANK) for row in range(4))

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


def _random_number(rng: random.Random, digits: int) -> int:
    if digits == 1:
        return rng.randint(0, 9)
    return rng.randint(10 ** (digits - 1), 10**digits - 1)
