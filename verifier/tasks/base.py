"""What every task declares: programs, actions, environment hooks and reference routines.

A reference program is a set of *routines*, one per non-primitive program. A routine is a
generator function `routine(args, first_observation)` that yields one `Action` per step and
receives the next observation from the interpreter after the action has run. It sees the
call's arguments and the observations of its own call and nothing else, so the reference
program is a function of (program, arguments, call-local observations), exactly like an NPI.
"""

from __future__ import annotations

import itertools
import json
import random
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from verifier.errors import InvalidInput, UnknownName

if TYPE_CHECKING:  # z3 and hypothesis are imported only by what uses them
    from hypothesis.strategies import SearchStrategy

    from verifier.smt import Semantics

Observation = tuple[int, ...]
Args = tuple[int, ...]
NOP = "NOP"



class Formulation(StrEnum):
    """How a reference program is written: C17's recursive form (every call bounded), the
    loop form of the original NPI, or bubble sort's partially recursive form."""

    RECURSIVE = "recursive"
    NON_RECURSIVE = "non-recursive"
    PARTIAL = "partial"


RECURSIVE = Formulation.RECURSIVE
NON_RECURSIVE = Formulation.NON_RECURSIVE
PARTIAL = Formulation.PARTIAL
FORMULATIONS: tuple[str, ...] = tuple(f.value for f in Formulation)


@dataclass(frozen=True)
class Program:
    """A program the NPI can call. `arg_names[k]` names the values of argument slot k."""

    name: str
    primitive: bool
    arg_names: tuple[tuple[str, ...], ...] = ()

    @property
    def arity(self) -> int:
        return len(self.arg_names)

    @cached_property
    def arg_ranges(self) -> tuple[int, ...]:
        return tuple(len(values) for values in self.arg_names)

    def format_call(self, args: Args) -> str:
        shown = ", ".join(self.arg_names[k][a] for k, a in enumerate(args))
        return f"{self.name}({shown})"


NOP_PROGRAM = Program(NOP, primitive=True)


@dataclass(frozen=True)
class Action:
    """What one step emits: the next program with its arguments, and the return flag."""

    program: str
    args: Args = ()
    ret: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"program": self.program, "args": list(self.args), "return": self.ret}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Action:
        return cls(str(data["program"]), tuple(int(a) for a in data["args"]), bool(data["return"]))


RETURN = Action(NOP, (), True)


def call(program: str, *args: int, ret: bool = False) -> Action:
    """The action that runs `program(*args)`, then returns from this call if `ret`.

    Actions are immutable values, and a task has few distinct ones: each is made once and
    handed out again (making a frozen dataclass was a third of a reference run's time)."""
    key = (program, args, ret)
    action = _CALLS.get(key)
    if action is None:
        if len(_CALLS) >= _MAX_CALLS:
            _CALLS.clear()
        action = _CALLS[key] = Action(program, tuple(args), ret)
    return action


_CALLS: dict[tuple[str, tuple[int, ...], bool], Action] = {}
_MAX_CALLS = 100_000  # distinct actions kept (a task has programs x argument values of them)


Routine = Callable[[Args, Observation], Generator[Action, Observation, None]]
Routines = Mapping[str, Routine]


class Task(ABC):
    """A task: input type, environment, observation, programs and reference routines.

    Environments are mutable per-input objects owned by the interpreter; the routines never
    see them. Subclasses set the class attributes and implement the abstract methods.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    programs: ClassVar[tuple[Program, ...]]
    entry: ClassVar[str]
    formulations: ClassVar[tuple[str, ...]] = (RECURSIVE, NON_RECURSIVE)
    observation_names: ClassVar[tuple[str, ...]]
    observation_values: ClassVar[tuple[tuple[str, ...], ...]]
    input_example: ClassVar[str]
    # Observation slots that hold unbounded integers (fed to the NPI as numbers, verified
    # symbolically); empty for a finite alphabet. Such a task names the finite-alphabet task
    # whose observations are its abstraction (`abstract_task`, `abstract_observation`).
    numeric_slots: ClassVar[tuple[int, ...]] = ()
    numeric_scale: ClassVar[int] = 1
    value_range: ClassVar[tuple[int, int] | None] = None
    abstract_task: ClassVar[str | None] = None
    # Whether the task has Z3 semantics (`semantics()`): without them V cannot be proved
    # complete and no model of the task is ever certified. Declaring them and not defining
    # `semantics()` is refused when the task registers.
    symbolic: ClassVar[bool] = True
    # The size of the random inputs, far beyond training sizes, that `certify` runs the
    # reference program on (termination and correctness: tested) and that the default
    # `strategy(large=True)` draws up to. A task whose reference run grows fast with the size
    # lowers it (Towers of Hanoi makes 2^n - 1 moves).
    large_test_size: ClassVar[int] = 40
    # The options of `train --until-certified` (verifier.cegis.LoopConfig: start, max_rounds,
    # per_round, start_size) that this task's loop uses by default instead of the loop's own;
    # the command's flags override them. A task whose loop needs more than the general
    # defaults to reach a certificate from few traces declares them here, with the reason
    # (docs/data-efficiency.md measures every task with its defaults).
    loop_defaults: ClassVar[Mapping[str, int]] = {}

    def semantics(self) -> Semantics | None:
        """The task's environment and primitives in Z3 with its hidden predicates (the only z3
        code of a task; import z3 inside this method, so tasks load without it)."""
        return None

    def strategy(self, large: bool = False) -> SearchStrategy[Any]:
        """A hypothesis strategy for valid inputs (`large`: far beyond training sizes). The
        default draws a size and a seed for `sample_input`; a task may override it with a
        strategy independent of its own sampler (stronger tests)."""
        from hypothesis import strategies as st

        sizes = st.integers(1, self.large_test_size if large else 6)
        seeds = st.integers(0, 2**32 - 1)
        return st.tuples(sizes, seeds).map(lambda p: self.sample_input(random.Random(p[1]), p[0]))

    def paper(self) -> dict[str, Any] | None:
        """The published numbers for this task (the appendix compares with them): its entry in
        the `paper.json` file next to the task's module (task name -> numbers); None where
        there is none."""
        module = sys.modules.get(type(self).__module__)
        file = Path(getattr(module, "__file__", None) or ".").parent / "paper.json"
        if not file.is_file():
            return None
        return json.loads(file.read_text(encoding="utf-8")).get(self.name)

    def abstract_observation(self, observation: Observation) -> Observation:
        """The observation of `abstract_task` that this concrete observation belongs to."""
        return observation

    # -- programs -------------------------------------------------------------------------
    def program(self, name: str) -> Program:
        try:
            return self._program_index[name]
        except KeyError:
            raise UnknownName(f"task {self.name} has no program {name!r}") from None

    @cached_property
    def _program_index(self) -> dict[str, Program]:
        return {program.name: program for program in self.programs}

    def routines(self, formulation: str) -> Routines:
        """The reference program in `formulation`: a routine per non-primitive program."""
        if formulation not in self.formulations:
            known = ", ".join(self.formulations)
            raise UnknownName(
                f"task {self.name} has no formulation {formulation!r} (known: {known})"
            )
        return self._routines(formulation)

    @abstractmethod
    def _routines(self, formulation: str) -> Routines: ...

    # -- inputs ---------------------------------------------------------------------------
    @abstractmethod
    def parse_input(self, data: Any) -> Any:
        """Validate decoded JSON and return the task's input value; raise InvalidInput."""

    @abstractmethod
    def input_to_json(self, value: Any) -> Any: ...

    @abstractmethod
    def sample_input(self, rng: random.Random, size: int) -> Any:
        """A random valid input of the given size (digits, array length, vertex count)."""

    @abstractmethod
    def input_size(self, value: Any) -> int: ...

    def small_inputs(self, size: int, limit: int) -> list[Any] | None:
        """Every input of `size` up to what the observation can tell apart, or None when
        there are more than `limit` (the caller then samples)."""
        return None

    def min_reference_steps(self, value: Any) -> int:
        """A lower bound on the reference program's step count on `value`, in every
        formulation, cheap to compute: budgets refuse inputs that cannot fit before running."""
        return 0

    def covering_inputs(self) -> list[Any]:
        """Inputs built to reach call-local states that random small inputs rarely do, smallest
        first (the concrete search runs them after the exhaustive sizes). A task whose
        exhaustive sizes reach everything returns none. Whatever they reach is still only a
        witness: V's exactness is shown by comparison with the abstract fixed point."""
        return []

    # -- environment ----------------------------------------------------------------------
    @abstractmethod
    def initial_env(self, value: Any) -> Any: ...

    @abstractmethod
    def observe(self, env: Any) -> Observation:
        """The encoder's input: a tuple of small integers, one per `observation_names`."""

    @abstractmethod
    def apply(self, env: Any, program: str, args: Args) -> None:
        """Run primitive `program(*args)` on `env` (never called for NOP)."""

    @abstractmethod
    def output(self, env: Any) -> Any:
        """The task's answer as JSON-able data (None where the environment holds no answer)."""

    @abstractmethod
    def check(self, value: Any, output: Any) -> bool:
        """Independent correctness check of `output` for input `value`."""

    def observation_problem(self, observation: Observation) -> str | None:
        """What is wrong with an observation `observe` returned (not a tuple of one integer per
        component, or a finite component outside its declared values), or None."""
        if not isinstance(observation, tuple) or len(observation) != len(self.observation_names):
            return f"observe returned {observation!r}, not a tuple of {len(self.observation_names)}"
        for k, (value, values) in enumerate(zip(observation, self.observation_values)):
            if not strict_int(value):
                return f"observe returned {observation!r}: component {k} is not an integer"
            if k not in self.numeric_slots and not 0 <= value < len(values):
                return (f"observe returned {observation!r}: {self.observation_names[k]}={value} "
                        f"is outside its declared values 0..{len(values) - 1}")
        return None

    # -- display --------------------------------------------------------------------------
    def format_observation(self, observation: Observation) -> str:
        return " ".join(
            f"{name}={values[v] if 0 <= v < len(values) else v}"
            for name, values, v in zip(
                self.observation_names, self.observation_values, observation, strict=True
            )
        )

    def format_action(self, action: Action) -> str:
        return self.program(action.program).format_call(action.args)


class SortingTask(Task):
    """Input handling shared by the sorting tasks: a non-empty JSON list of integers, sorted
    output checked against Python's `sorted`."""

    def parse_input(self, data: Any) -> list[int]:
        values = int_list(data, f"{self.name} input")
        require(len(values) >= 1, f"{self.name} input must hold at least one element")
        return values

    def input_to_json(self, value: list[int]) -> list[int]:
        return list(value)

    def input_size(self, value: list[int]) -> int:
        return len(value)

    def small_inputs(self, size: int, limit: int) -> list[Any] | None:
        """Only comparisons are observed: one array per weak ordering suffices."""
        return weak_orderings(size, limit)

    def check(self, value: list[int], output: Any) -> bool:
        return output == sorted(value)

    def strategy(self, large: bool = False) -> SearchStrategy[Any]:
        """Non-empty lists of any integers (of `value_range` where the task has one), drawn
        by hypothesis, not by the task's sampler."""
        from hypothesis import strategies as st

        values = st.integers(*self.value_range) if self.value_range else st.integers()
        return st.lists(values, min_size=1, max_size=100 if large else 6)


FUBINI = (1, 1, 3, 13, 75, 541, 4683, 47293)  # weak orderings of 0..7 elements


def weak_orderings(length: int, limit: int) -> list[list[int]] | None:
    """Every array of `length` values up to order-preserving relabelling (ties included):
    the arrays over 0..k-1 that use each of 0..k-1; None if there are more than `limit`."""
    if length >= len(FUBINI) or FUBINI[length] > limit:
        return None
    return [
        list(values)
        for values in itertools.product(range(length), repeat=length)
        if set(values) == set(range(max(values) + 1))
    ]


def require(condition: bool, message: str) -> None:
    """Raise InvalidInput(message) unless `condition` holds."""
    if not condition:
        raise InvalidInput(message)


def strict_int(value: Any) -> bool:
    """True for JSON integers (Python bools are ints but are not accepted)."""
    return isinstance(value, int) and not isinstance(value, bool)


def int_list(data: Any, what: str) -> list[int]:
    """Validate a JSON list of integers."""
    require(isinstance(data, list), f"{what} must be a JSON list of integers, got {_kind(data)}")
    for position, item in enumerate(data):
        require(strict_int(item), f"{what}[{position}] must be an integer, got {item!r}")
    return list(data)


def _kind(data: Any) -> str:
    return {dict: "an object", str: "a string", list: "a list"}.get(type(data), repr(data))

