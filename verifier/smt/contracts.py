"""What a task declares so that its reference program can be proved correct for every size.

A task's `Semantics.contract(program, args)` gives a routine's `Contract`: a precondition on
the environment at call entry, a postcondition relating the environments at entry and at
return, and, for a routine that can call itself (directly or through others), a ranking
function at call entry. `Semantics.specification()` gives the task's `Specification`: what the
output must satisfy, in terms of the initial and the final environment, and which array the
program may only permute. `verifier.induction` turns them into solver queries.

Every part is a Z3 term built from symbolic environments (`SymEnv`), so a contract is as
precise as the task's symbolic semantics. A part left out is `True` (no precondition, a
postcondition that says only what the frame rule gives), and a recursive routine without a
ranking function cannot be proved to terminate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import z3

from verifier.tasks.base import Args

SymEnv = dict[str, Any]  # name -> z3 term, as in verifier.smt (which imports this module)


@dataclass(frozen=True)
class Contract:
    """A routine's contract. `pre(entry)`, `post(entry, exit)` and `rank(entry)` are Z3 terms;
    `rank` must be an integer term, and the routine's recursive calls must enter with a
    smaller value while its own is non-negative."""

    pre: Callable[[SymEnv], z3.BoolRef] | None = None
    post: Callable[[SymEnv, SymEnv], z3.BoolRef] | None = None
    rank: Callable[[SymEnv], z3.ArithRef] | None = None
    text: str = ""  # the contract in words, for the certificate


@dataclass(frozen=True)
class Permutation:
    """The program only permutes `array[low..high]`: every primitive leaves the array as it was
    or exchanges two cells in that range. `swapped(env, program, args)` names the two cells a
    primitive may exchange (None where it must leave the array alone)."""

    array: str
    low: Callable[[SymEnv], z3.ArithRef]
    high: Callable[[SymEnv], z3.ArithRef]
    swapped: Callable[[SymEnv, str, Args], tuple[z3.ArithRef, z3.ArithRef] | None]


@dataclass(frozen=True)
class Specification:
    """The task's correctness condition: `holds(initial, final)` for the environment a valid
    input starts from and the one the entry routine returns with, plus, for a sorting task,
    the array it may only permute (proved primitive by primitive: a permutation composed with
    exchanges is a permutation)."""

    holds: Callable[[SymEnv, SymEnv], z3.BoolRef]
    text: str
    permutation: Permutation | None = None
