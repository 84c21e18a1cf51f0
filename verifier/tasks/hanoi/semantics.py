"""The Z3 semantics of Towers of Hanoi: the only z3 code of this task.

The observation reads only the disk counter k, and only DEC and INC change k; so the
symbolic environment is k alone, for every number of disks. SWAP and MOVE change the roles
and the pegs, which no observation reads: their post leaves k as it is. (The pegs are judged
by `check`, on every run, not by the coverage proof.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import z3

from verifier.smt import Semantics, SymEnv, bit
from verifier.smt.contracts import Contract
from verifier.tasks.base import RECURSIVE, Args

if TYPE_CHECKING:
    from verifier.tasks.hanoi.task import Hanoi, Towers


class HanoiSemantics(Semantics):
    """Each method mirrors the task's method of the same job."""

    hidden_names = ()  # the observation alone makes V exact

    def __init__(self, task: Hanoi) -> None:
        self.task = task

    def fresh(self, tag: str) -> SymEnv:
        return {"k": z3.Int(f"{tag}_k")}

    def domain(self, env: SymEnv) -> z3.BoolRef:  # DEC stops at 0
        return env["k"] >= 0

    def initial(self, env: SymEnv) -> z3.BoolRef:  # initial_env: k = n >= 1
        return env["k"] >= 1

    def apply(self, env: SymEnv, program: str, args: Args) -> SymEnv:  # apply
        after = dict(env)
        k = env["k"]
        if program == "DEC":
            after["k"] = z3.If(k > 0, k - 1, k)
        elif program == "INC":
            after["k"] = k + 1
        return after  # SWAP, MOVE: k unchanged

    def observation(self, env: SymEnv) -> list[z3.ArithRef]:  # observe
        return [bit(env["k"] == 0)]

    def hidden(self, env: SymEnv) -> list[z3.ArithRef]:
        return []

    def encode(self, env: Towers) -> SymEnv:  # a concrete environment, for the cross-check
        return {"k": z3.IntVal(env.k)}

    def contract(self, formulation: str, program: str, args: Args) -> Contract | None:
        """HANOI (recursive) restores the disk counter and recurses on k - 1 disks: rank k.

        The symbolic environment is k alone, so this is also the strongest specification it
        can state: a call returns with the k it was entered with. That says nothing about the
        pegs (where the disks end up, whether every move was legal), which is what `check`
        judges; so no `specification()` is declared and reference correctness stays tested
        by `check` rather than being called proved from a fact about k. Termination is
        proved: both recursive calls enter with k - 1 >= 0 < k."""
        if formulation != RECURSIVE or program != "HANOI":
            return None
        return _HANOI


_HANOI = Contract(
    post=lambda entry, exit: exit["k"] == entry["k"],
    rank=lambda env: env["k"],
    text="post: k as at entry; rank k (the disks left to move)",
)
