"""The Z3 semantics of Towers of Hanoi: the only z3 code of this task.

The observation reads only the disk counter k, so V is decided by k alone; but the symbolic
environment holds the whole state, so that the reference program can be proved correct for
every number of disks (`verifier.induction`): k; the role table R (role -> physical peg); the
heights H and contents P of the three physical pegs (P[p][j] is the disk at position j of
peg p, bottom 0; cells at or above H[p] mean nothing); and the number of illegal moves. MOVE
is legal exactly as `Hanoi.apply` decides it; an illegal move leaves the pegs and counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import z3

from verifier.smt import Semantics, SymEnv, array_at, bit
from verifier.smt.contracts import Contract, Specification
from verifier.tasks.base import RECURSIVE, Args

if TYPE_CHECKING:
    from verifier.tasks.hanoi.task import Hanoi, Towers

SRC, AUX, DST = 0, 1, 2  # roles, as in verifier.tasks.hanoi.task
_PEG = z3.ArraySort(z3.IntSort(), z3.IntSort())


class HanoiSemantics(Semantics):
    """Each method mirrors the task's method of the same job."""

    version = 2  # the pegs, roles and illegal moves joined k in the symbolic environment
    hidden_names = ()  # the observation alone makes V exact

    def __init__(self, task: Hanoi) -> None:
        self.task = task

    def fresh(self, tag: str) -> SymEnv:
        return {
            "k": z3.Int(f"{tag}_k"),
            "R": z3.Array(f"{tag}_R", z3.IntSort(), z3.IntSort()),
            "H": z3.Array(f"{tag}_H", z3.IntSort(), z3.IntSort()),
            "P": z3.Array(f"{tag}_P", z3.IntSort(), _PEG),
            "illegal": z3.Int(f"{tag}_illegal"),
        }

    def domain(self, env: SymEnv) -> z3.BoolRef:  # DEC stops at 0
        return env["k"] >= 0

    def initial(self, env: SymEnv) -> z3.BoolRef:
        """initial_env: k = n >= 1 disks on peg A (0), B and C empty, roles in order."""
        k, R, H = env["k"], env["R"], env["H"]
        return z3.And(k >= 1, R[SRC] == 0, R[AUX] == 1, R[DST] == 2,
                      H[0] == k, H[1] == 0, H[2] == 0, env["illegal"] == 0)

    def initial_contents(self, env: SymEnv) -> z3.BoolRef:
        """The n disks on peg A are n..1, bottom first."""
        k, P = env["k"], env["P"]
        j = z3.Int("j")
        return _over(0, k, P[0][j] == k - j, j)

    def apply(self, env: SymEnv, program: str, args: Args) -> SymEnv:  # apply
        after = dict(env)
        k, R, H, P = env["k"], env["R"], env["H"], env["P"]
        if program == "DEC":
            after["k"] = z3.If(k > 0, k - 1, k)
        elif program == "INC":
            after["k"] = k + 1
        elif program == "SWAP":
            r1, r2 = args
            after["R"] = z3.Store(z3.Store(R, r1, R[r2]), r2, R[r1])
        elif program == "MOVE":
            s, d = R[args[0]], R[args[1]]
            top = P[s][H[s] - 1]
            legal = z3.And(s != d, H[s] > 0, z3.Or(H[d] == 0, z3.Not(P[d][H[d] - 1] < top)))
            after["P"] = z3.If(legal, z3.Store(P, d, z3.Store(P[d], H[d], top)), P)
            after["H"] = z3.If(legal, z3.Store(z3.Store(H, s, H[s] - 1), d, H[d] + 1), H)
            after["illegal"] = z3.If(legal, env["illegal"], env["illegal"] + 1)
        return after

    def observation(self, env: SymEnv) -> list[z3.ArithRef]:  # observe
        return [bit(env["k"] == 0)]

    def hidden(self, env: SymEnv) -> list[z3.ArithRef]:
        return []

    def encode(self, env: Towers) -> SymEnv:  # a concrete environment, for the cross-check
        pegs = z3.K(z3.IntSort(), array_at({}))
        for p, disks in enumerate(env.pegs):
            pegs = z3.Store(pegs, p, array_at(dict(enumerate(disks))))
        return {
            "k": z3.IntVal(env.k),
            "R": array_at(dict(enumerate(env.roles))),
            "H": array_at({p: len(disks) for p, disks in enumerate(env.pegs)}),
            "P": pegs,
            "illegal": z3.IntVal(env.illegal_moves),
        }

    def contract(self, formulation: str, program: str, args: Args) -> Contract | None:
        """HANOI (recursive) moves the top k disks, which are 1..k, from the source peg onto
        the target peg without an illegal move, leaving the rest of every peg, k and the role
        table as they were; it recurses on k - 1 disks: rank k. The precondition is what makes
        every move legal: the disks right below the top k of the source and the top disks of
        the spare and the target are larger than k."""
        if formulation != RECURSIVE or program != "HANOI":
            return None
        return _HANOI

    def specification(self) -> Specification:
        return _SPECIFICATION


def _roles(env: SymEnv) -> tuple[z3.ArithRef, z3.ArithRef, z3.ArithRef]:
    return env["R"][SRC], env["R"][AUX], env["R"][DST]


def _over(low: z3.ArithRef, high: z3.ArithRef, body: z3.BoolRef, j: z3.ArithRef) -> z3.BoolRef:
    """For every position j with low <= j < high, body."""
    return z3.ForAll([j], z3.Implies(z3.And(low <= j, j < high), body))


def _pre(e: SymEnv) -> z3.BoolRef:
    k, H, P = e["k"], e["H"], e["P"]
    s, a, d = _roles(e)
    j = z3.Int("j")
    return z3.And(
        k >= 1,
        z3.Distinct(s, a, d), *[z3.And(r >= 0, r <= 2) for r in (s, a, d)],
        H[s] >= k, H[a] >= 0, H[d] >= 0,
        _over(H[s] - k, H[s], P[s][j] == H[s] - j, j),  # the top k disks of SRC: k..1
        z3.Or(H[s] == k, P[s][H[s] - k - 1] > k),
        z3.Or(H[a] == 0, P[a][H[a] - 1] > k),
        z3.Or(H[d] == 0, P[d][H[d] - 1] > k),
    )


def _post(e: SymEnv, x: SymEnv) -> z3.BoolRef:
    k, H, P = e["k"], e["H"], e["P"]
    s, a, d = _roles(e)
    j = z3.Int("j")
    return z3.And(
        x["k"] == k, x["illegal"] == e["illegal"],
        *[x["R"][r] == e["R"][r] for r in (SRC, AUX, DST)],
        x["H"][s] == H[s] - k, x["H"][d] == H[d] + k, x["H"][a] == H[a],
        _over(H[d], H[d] + k, x["P"][d][j] == H[d] + k - j, j),  # k..1 on top of DST
        _over(0, H[d], x["P"][d][j] == P[d][j], j),
        _over(0, H[s] - k, x["P"][s][j] == P[s][j], j),
        _over(0, H[a], x["P"][a][j] == P[a][j], j),
    )


_HANOI = Contract(
    pre=_pre,
    post=_post,
    rank=lambda env: env["k"],
    text="pre: k >= 1, the roles name three distinct pegs, the top k disks of SRC are k..1 and "
         "every disk right below them or on top of AUX or DST is larger than k; post: those k "
         "disks are on top of DST in the same order, no move was illegal, the rest of every "
         "peg, k and the roles are as at entry; rank k",
)


def _holds(initial: SymEnv, final: SymEnv) -> z3.BoolRef:
    n, H, P = initial["k"], final["H"], final["P"]
    j = z3.Int("j")
    return z3.And(final["illegal"] == 0, H[0] == 0, H[1] == 0, H[2] == n,
                  _over(0, n, P[2][j] == n - j, j))


_SPECIFICATION = Specification(
    holds=_holds,
    text="pegs A and B end empty and C holds n..1, bottom first, with no illegal move "
         "(what Hanoi.check accepts)",
)
