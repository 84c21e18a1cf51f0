"""Bubble sort in Z3: size n, array A (1-based), pointers i1, i2, i3; both encoders."""

from __future__ import annotations

from typing import Any

import z3

from verifier.smt import ArrayView, Semantics, SymEnv, Vocabulary, array_of, bit
from verifier.tasks.base import Args, Task
from verifier.tasks.bubblesort.task import I1, I2, I3, OUT_OF_RANGE, RIGHT, Row

POINTER_NAMES = ("i1", "i2", "i3")


class BubbleSortSemantics(Semantics):
    """No declared predicates: the hidden ones are discovered from templates over the
    vocabulary (size n, pointers i1, i2, i3, array A in 1..n) and stored in predicates.json."""

    def __init__(self, task: Task, values: bool) -> None:
        self.task = task
        self.values = values

    def fresh(self, tag: str) -> SymEnv:
        env: SymEnv = {"n": z3.Int(f"{tag}_n"), "A": z3.Array(f"{tag}_A", z3.IntSort(), z3.IntSort())}
        for name in POINTER_NAMES:
            env[name] = z3.Int(f"{tag}_{name}")
        return env

    def domain(self, env: SymEnv) -> z3.BoolRef:
        facts = [env["n"] >= 1]
        if self.values:  # digits 0-9 in every cell a query can read
            i1, i2, n = env["i1"], env["i2"], env["n"]
            for index in (i1 - 1, i1, i1 + 1, i2 - 1, i2, i2 + 1, n - 1, n):
                facts += [env["A"][index] >= 0, env["A"][index] <= 9]
        return z3.And(facts)

    def initial(self, env: SymEnv) -> z3.BoolRef:
        return z3.And(env["i1"] == 1, env["i2"] == 1, env["i3"] == 0)

    def apply(self, env: SymEnv, program: str, args: Args) -> SymEnv:
        after = dict(env)
        if program == "PTR":
            name = POINTER_NAMES[args[0]]
            after[name] = env[name] + (1 if args[1] == RIGHT else -1)
        else:  # SWAP: a no-op unless both pointers are in range
            p, q = (env[POINTER_NAMES[k]] for k in args)
            a = env["A"]
            swapped = z3.Store(z3.Store(a, p, a[q]), q, a[p])
            after["A"] = z3.If(z3.And(self._in(env, p), self._in(env, q)), swapped, a)
        return after

    def _in(self, env: SymEnv, p: Any) -> z3.BoolRef:
        return z3.And(p >= 1, p <= env["n"])

    def observation(self, env: SymEnv) -> list[z3.ArithRef]:
        a, i1, i2 = env["A"], env["i1"], env["i2"]
        in1, in2 = self._in(env, i1), self._in(env, i2)
        done = bit(env["i3"] == env["n"])
        if self.values:
            return [z3.If(in1, a[i1], OUT_OF_RANGE), z3.If(in2, a[i2], OUT_OF_RANGE), done]
        return [bit(z3.And(in1, in2, a[i1] <= a[i2])), bit(in1), bit(in2), done]

    def vocabulary(self, env: SymEnv) -> Vocabulary:
        a = env["A"]
        return Vocabulary(
            size=env["n"],
            pointers={name: env[name] for name in POINTER_NAMES},
            arrays=(ArrayView("A", lambda i: a[i], z3.IntVal(1), env["n"]),),
        )

    def encode(self, env: Row) -> SymEnv:
        symbolic: SymEnv = {"n": z3.IntVal(len(env.values)), "A": array_of(env.values)}
        for k, name in zip((I1, I2, I3), POINTER_NAMES):
            symbolic[name] = z3.IntVal(env.pointers[k])
        return symbolic
