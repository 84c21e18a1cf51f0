"""Quicksort in Z3: array A, a stack of (lo, hi) frames, pointers p_lo, p_hi, pivot, j."""

from __future__ import annotations

from typing import Any

import z3

from verifier.smt import (
    Predicate, Relation, Semantics, StackView, SymEnv, Universal, Vocabulary, array_of, bit,
    distinct,
)  # fmt: skip
from verifier.tasks.base import Args, Task
from verifier.tasks.quicksort.task import (
    HI, J, J_NULL, LO, MOVABLE, PIVOT, PIVOT_LO, POP, PUSH_CALL1, PUSH_CALL2, RIGHT,
    Partitioned,
)  # fmt: skip

_POINTER = {LO: "plo", HI: "phi", PIVOT: "piv", J: "j"}
_NULL = {PIVOT: "piv_null", J: "j_null"}


class QuickSortSemantics(Semantics):
    """Declared predicates (hints): p_lo, p_hi equal the top frame; pivot == j; the Lomuto
    invariant at the pivot (pivot == j or A[pivot] > A[hi]); p_lo <= pivot <= j <= p_hi, and
    its form between COMPSWAP's pivot move and the loop's j move (p_lo <= pivot <= j+1,
    j < p_hi); pivot == p_lo; 1 <= p_lo and p_hi <= n; universally over the stack, every
    frame's bounds lie in 1..n (so the frame a POP uncovers is in range too); and the second
    frame's lo < hi. The stack depth and the null flags are discovered from the vocabulary
    (predicates.json).

    Relations (`relations`) make V exact: a call consumes its top frame and keeps the ones
    below, so when the first recursive call returns, the frame it uncovers is the one pushed
    before it (its lo < hi bit is the caller's second-frame bit, and the stack is not empty).
    With summaries that relate only entry states to exit states, V had 7 unwitnessed
    QUICKSORT states after that return."""

    def __init__(self, task: Task) -> None:
        self.task = task

    def fresh(self, tag: str) -> SymEnv:
        ints = {name: z3.Int(f"{tag}_{name}") for name in ("n", "sp", "plo", "phi", "piv", "j")}
        arrays = {
            name: z3.Array(f"{tag}_{name}", z3.IntSort(), z3.IntSort()) for name in ("A", "LO", "HI")
        }
        flags = {name: z3.Bool(f"{tag}_{name}") for name in ("piv_null", "j_null")}
        return {**ints, **arrays, **flags}

    def domain(self, env: SymEnv) -> z3.BoolRef:
        return z3.And(env["n"] >= 1, env["sp"] >= 0)

    def initial(self, env: SymEnv) -> z3.BoolRef:
        return z3.And(
            env["sp"] == 1, env["LO"][1] == 1, env["HI"][1] == env["n"], env["plo"] == 1,
            env["phi"] == env["n"], env["piv_null"], env["j_null"],
        )  # fmt: skip

    def _valid(self, env: SymEnv, pointer: int) -> z3.BoolRef:
        p = env[_POINTER[pointer]]
        in_range = z3.And(p >= 1, p <= env["n"])
        return z3.And(z3.Not(env[_NULL[pointer]]), in_range) if pointer in _NULL else in_range

    def apply(self, env: SymEnv, program: str, args: Args) -> SymEnv:
        after = dict(env)
        if program == "MOVE":
            pointer = MOVABLE[args[0]]
            name = _POINTER[pointer]
            step = 1 if args[1] == RIGHT else -1
            after[name] = z3.If(env[_NULL[pointer]], env[name], env[name] + step)
        elif program == "SWAP":
            p, q = (env[_POINTER[k]] for k in args)
            a = env["A"]
            swapped = z3.Store(z3.Store(a, p, a[q]), q, a[p])
            both = z3.And(self._valid(env, args[0]), self._valid(env, args[1]))
            after["A"] = z3.If(both, swapped, a)
        elif program == "WRITE":
            target = args[0]
            if target == J_NULL:
                after["j_null"] = z3.BoolVal(True)
            else:
                name = "piv" if target == PIVOT_LO else "j"
                after[name] = env["plo"]
                after[f"{name}_null"] = z3.BoolVal(False)
        else:
            self._stack(env, after, args[0])
        return after

    def _stack(self, env: SymEnv, after: SymEnv, operation: int) -> None:
        sp, lo, hi = env["sp"], env["LO"], env["HI"]
        nonempty = sp > 0
        if operation == POP:
            new_sp = sp - 1
            after["sp"] = z3.If(nonempty, new_sp, sp)
            sync = z3.And(nonempty, new_sp > 0)
            after["plo"] = z3.If(sync, lo[new_sp], env["plo"])
            after["phi"] = z3.If(sync, hi[new_sp], env["phi"])
            return
        active = z3.And(nonempty, z3.Not(env["piv_null"]))
        if operation == PUSH_CALL2:
            after["LO"] = z3.If(active, z3.Store(lo, sp, env["piv"] + 1), lo)
        else:  # PUSH_CALL1
            assert operation == PUSH_CALL1
            new_sp = sp + 1
            after["sp"] = z3.If(active, new_sp, sp)
            after["LO"] = z3.If(active, z3.Store(lo, new_sp, env["plo"]), lo)
            after["HI"] = z3.If(active, z3.Store(hi, new_sp, env["piv"] - 1), hi)
            after["phi"] = z3.If(active, env["piv"] - 1, env["phi"])

    def observation(self, env: SymEnv) -> list[z3.ArithRef]:
        a, j, phi, sp = env["A"], env["j"], env["phi"], env["sp"]
        both = z3.And(self._valid(env, J), self._valid(env, HI))
        return [
            bit(z3.And(both, a[j] <= a[phi])),
            bit(z3.And(z3.Not(env["j_null"]), j == phi)),
            bit(z3.And(sp > 0, env["LO"][sp] < env["HI"][sp])),
            bit(sp == 0),
        ]

    def hints(self) -> tuple[Predicate, ...]:
        def in_range(env: SymEnv) -> Universal:
            def body(k: Any) -> z3.BoolRef:
                frame = z3.And(env["LO"][k] >= 1, env["HI"][k] <= env["n"])
                return z3.Implies(z3.And(k >= 1, k <= env["sp"]), frame)

            return Universal(("index",), body)

        def chain(env: SymEnv) -> z3.ArithRef:
            plo, piv, j, phi = env["plo"], env["piv"], env["j"], env["phi"]
            return bit(z3.And(plo <= piv, piv <= j, j <= phi))

        def chain_moving(env: SymEnv) -> z3.ArithRef:
            plo, piv, j, phi = env["plo"], env["piv"], env["j"], env["phi"]
            return bit(z3.And(plo <= piv, piv <= j + 1, j < phi))

        return (
            Predicate("bounds==top", lambda env: bit(z3.Or(env["sp"] == 0, z3.And(
                env["plo"] == env["LO"][env["sp"]], env["phi"] == env["HI"][env["sp"]])))),
            Predicate("pivot==j", lambda env: bit(env["piv"] == env["j"])),
            Predicate("pivot==j or A[pivot]>A[hi]", lambda env: bit(z3.Or(
                env["piv"] == env["j"], env["A"][env["piv"]] > env["A"][env["phi"]]))),
            Predicate("lo<=pivot<=j<=hi", chain),
            Predicate("lo<=pivot<=j+1 and j<hi", chain_moving),
            Predicate("pivot==lo", lambda env: bit(env["piv"] == env["plo"])),
            Predicate("1<=lo and hi<=n", lambda env: bit(z3.And(1 <= env["plo"], env["phi"] <= env["n"]))),
            Predicate("every frame's lo >= 1 and hi <= n", in_range),
            Predicate("second frame lo<hi", lambda env: bit(z3.And(
                env["sp"] >= 2, env["LO"][env["sp"] - 1] < env["HI"][env["sp"] - 1]))),
        )

    def relations(self) -> tuple[Relation, ...]:
        """A call consumes its top frame and leaves the frames below it as they were (the
        frame rule): depth one below, at, or one above the entry's, and every frame below
        the entry's top unchanged."""

        def below_kept(entry: SymEnv, env: SymEnv) -> Universal:
            def body(k: Any) -> z3.BoolRef:
                kept = z3.And(env["LO"][k] == entry["LO"][k], env["HI"][k] == entry["HI"][k])
                return z3.Implies(z3.And(k >= 1, k < entry["sp"]), kept)

            return Universal(("index",), body)

        return tuple(
            Relation(f"depth==entry{d:+d}", lambda entry, env, d=d: bit(env["sp"] == entry["sp"] + d))
            for d in (-1, 0, 1)
        ) + (Relation("frames below the entry's top kept", below_kept),)

    def vocabulary(self, env: SymEnv) -> Vocabulary:
        """The stack of (lo, hi) frames and the null flags of pivot and j. The pointers and
        the array are left out: with them the search tries 33 template families per round,
        about 15 minutes a round on a busy 2-core machine."""
        return Vocabulary(
            size=env["n"],
            stacks=(StackView("stack", env["sp"], {"lo": lambda k: env["LO"][k],
                                                   "hi": lambda k: env["HI"][k]}),),
            flags={"pivot null": env["piv_null"], "j null": env["j_null"]},
        )

    def instance_terms(
        self, envs: list[SymEnv], witnesses: dict[str, list[z3.ArithRef]]
    ) -> dict[str, list[z3.ArithRef]]:
        """Stack positions: the witnesses and the top two of each environment."""
        terms = witnesses.get("index", []) + [e["sp"] - d for e in envs for d in (0, 1)]
        return {"index": distinct(terms)}

    def encode(self, env: Partitioned) -> SymEnv:
        pointers = env.pointers
        symbolic: SymEnv = {
            "n": z3.IntVal(len(env.values)),
            "A": array_of(env.values),
            "sp": z3.IntVal(len(env.frames)),
            "LO": array_of([lo for lo, _ in env.frames]),
            "HI": array_of([hi for _, hi in env.frames]),
        }
        for pointer, name in _POINTER.items():
            symbolic[name] = z3.IntVal(pointers[pointer] if pointers[pointer] is not None else 0)
        for pointer, name in _NULL.items():
            symbolic[name] = z3.BoolVal(pointers[pointer] is None)
        return symbolic

