"""Bubble sort in Z3: size n, array A (1-based), pointers i1, i2, i3; both encoders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import z3

from verifier.smt import (
    ArrayView, Predicate, Relation, Semantics, SymEnv, Universal, Vocabulary, array_of, bit,
)  # fmt: skip
from verifier.smt.contracts import Contract, Permutation, Specification
from verifier.tasks.base import RECURSIVE, Args, Task
from verifier.tasks.bubblesort.task import I1, I2, I3, OUT_OF_RANGE, RIGHT, Row

POINTER_NAMES = ("i1", "i2", "i3")
PASS_END = "i2!=n+1 or A[1]<=A[i1]"
ENDS_I1 = "A[i1] if i2==1 or i2==n+1 else 10"
ENDS_I2 = "A[i2] if i2==1 else 10"
FIRST_KEPT_LOW = "i3>entry i3 or n, i3 as at entry and A[1]<=entry A[1], = if i3+1==n"
SETTLED_NEXT = "settled(i3+1)"
PASS_CARRY = "settled(i3+1) or settled(i3) and max carried"
SAME_PASS = "i3==entry i3"
FIRST_KEPT = "i3>entry i3 or entry i1!=1 or entry i2!=1 or A[1]==entry A[1]"


class BubbleSortSemantics(Semantics):
    """With the comparison encoder, no declared predicates: the hidden ones are discovered
    from templates over the vocabulary (size n, pointers i1, i2, i3, array A in 1..n) and
    stored in predicates.json. With the value encoder, the predicates of design §5.2 are
    declared: the pointer gap i2-i1 in {0, 1, 2}, i2 == 1, i2 == n+1 and A[i2-1] <= A[i2].
    With those alone V had 12,615 call-local states. The facts that make it exact (4,725
    states, each reached by a reference run), each a component whose value Z3 computes (never
    assumed, so the fixed point stays an over-approximation); dropping one brings back the
    states in brackets (tests/test_vset.py):

    - the digit between the pointers when they are two apart (`A[i1+1] if i2-i1==2 else 10`,
      11 values): LSHIFT's first move leaves it behind and its second brings i2 onto it, which
      the observations alone forgot (LSHIFT 6,690);
    - `i2!=n+1 or A[1]<=A[i1]`: where a pass ends, the first cell is at most the maximum the
      pass left last (a return into BUBBLESORT drops a pass's exit where it is false), so
      RESET does not bring back a digit above the maximum (RESET 45);
    - the observations at a pass's ends (`A[i1] if i2==1 or i2==n+1 else 10`, `A[i2] if
      i2==1 else 10`): functions of the other components, named with three pointer facts as
      the only components a return query asks about (`linked_components`), which keeps those
      queries few;
    - the sorted suffix, carried from pass to pass by two `Universal` predicates (`settled`
      below): `settled(i3+1)`, true in every state of RESET and LSHIFT (a pass has just
      ended; they only move pointers) and where a pass ends (i2 == n + 1), which PTR I3
      turns into `settled(i3)`; and `settled(i3+1) or settled(i3) and max carried`, true in
      every reachable state, where max carried is the pass's invariant (the maximum of
      A[1..i1] at i1 or i2, and that of A[1..n-i3] at n-i3 once i1 has reached it). The
      second is one universal over independent variables, so that RESET and LSHIFT, where
      the pass's invariant no longer holds, keep it through `settled(i3+1)` rather than
      splitting their states on it. `settled(i3+1)` also says A[n-1] <= A[n], once declared
      on its own (BUBBLESORT 1,128, RESET 36, LSHIFT 90 for either);
    - three relations, with every return composed with the caller's entry
      (`composes_every_return`): until i3 moves, n and i3 stay as at the call's entry and
      A[1] is at most what it was there, and equal to it on the last pass (a pass's one
      swap that touches A[1] lowers it; a pass over a sorted array swaps nothing, which Z3
      proves from `settled(i3)`); `i3==entry i3`; and, for calls entered at i1 = i2 = 1
      (BUBBLESORT and BUBBLE), whether A[1] is as at the entry (BUBBLESORT 1,155 and RESET
      45 for each of the first two, BUBBLESORT 165 for the third). So BUBBLESORT does not
      see a first cell after RESET above the one it started with, and after a pass that
      lowered A[1], PTR I3 does not reach i3 == n (that pass was not the last: the 165
      states V had beyond the witnessed ones before the sorted suffix was carried). Each is
      1 once i3 has moved (BUBBLESORT after PTR I3) or 0 (`i3==entry i3`), so the exits of
      BUBBLESORT's tail call do not split on them.

    The universals are instantiated only at the points `instance_terms` lists (weaker than
    the universal statement, so the posts stay over-approximations)."""

    def hints(self) -> tuple[Predicate, ...]:
        if not self.values:
            return ()

        def gap(d: int) -> Predicate:
            return Predicate(f"i2-i1=={d}", lambda env: bit(env["i2"] - env["i1"] == d))

        def between(env: SymEnv) -> z3.ArithRef:
            # The digit LSHIFT's first move leaves behind: its second move brings i2 onto it.
            a, i1, i2 = env["A"], env["i1"], env["i2"]
            return z3.If(i2 - i1 == 2, a[i1 + 1], z3.IntVal(OUT_OF_RANGE))

        def ends(env: SymEnv, observed: z3.ArithRef, last: bool = True) -> z3.ArithRef:
            at = z3.Or(env["i2"] == 1, env["i2"] == env["n"] + 1) if last else env["i2"] == 1
            return z3.If(at, observed, z3.IntVal(OUT_OF_RANGE))

        return (
            gap(0), gap(1), gap(2),
            Predicate("A[i1+1] if i2-i1==2 else 10", between, values=OUT_OF_RANGE + 1),
            Predicate("i2==1", lambda env: bit(env["i2"] == 1)),
            Predicate("i2==n+1", lambda env: bit(env["i2"] == env["n"] + 1)),
            Predicate("A[i2-1]<=A[i2]", lambda env: bit(env["A"][env["i2"] - 1] <= env["A"][env["i2"]])),
            Predicate(SETTLED_NEXT, lambda env: _Listed(("T.x", "T.y"), _settled_pair(env, 1), "T")),
            Predicate(PASS_CARRY, _carry_universal),
            Predicate(PASS_END, lambda env: bit(z3.Or(env["i2"] != env["n"] + 1,
                                                      env["A"][1] <= env["A"][env["i1"]]))),
            Predicate(ENDS_I1, lambda env: ends(env, self.observation(env)[0]), values=OUT_OF_RANGE + 1),
            Predicate(ENDS_I2, lambda env: ends(env, self.observation(env)[1], last=False),
                      values=OUT_OF_RANGE + 1),
        )

    def relations(self) -> tuple[Relation, ...]:
        """With the value encoder: the first cell is at most what it was at the call's entry;
        a call that has not moved i3 has n and i3 as at its entry, and on the last pass A[1]
        as at its entry; for calls entered at i1 = i2 = 1, whether A[1] is as at the entry."""
        if not self.values:
            return ()

        def kept_low(entry: SymEnv, env: SymEnv) -> z3.ArithRef:
            # Once i3 has moved (BUBBLESORT after PTR I3, where only its tail call is left)
            # it is 1, so that the exits of that call do not split on it.
            i3, n, first = env["i3"], env["n"], env["A"][1]
            kept = z3.And(i3 == entry["i3"], n == entry["n"], first <= entry["A"][1],
                          z3.Or(i3 + 1 != n, first == entry["A"][1]))
            return bit(z3.Or(i3 > entry["i3"], kept))

        def first_kept(entry: SymEnv, env: SymEnv) -> z3.ArithRef:
            return bit(z3.Or(env["i3"] > entry["i3"], entry["i1"] != 1, entry["i2"] != 1,
                             env["A"][1] == entry["A"][1]))

        return (
            Relation(FIRST_KEPT_LOW, kept_low),
            Relation(SAME_PASS, lambda entry, env: bit(env["i3"] == entry["i3"])),
            Relation(FIRST_KEPT, first_kept),
        )

    def instance_terms(
        self, envs: list[SymEnv], witnesses: dict[str, list[z3.ArithRef]]
    ) -> dict[str, list[Any]]:
        """The points each universal is instantiated at, as lists of tuples (`_Listed`), from
        the witnesses of the universals a query asserts false: for `settled(i3+1)`, its own
        witnesses and the pairs of the other's, the compared pair (i1, i2), (n-1, n), and
        (i1, y), (i2, y) for each witness's upper cell y; for the other, its own witnesses,
        each witness pair of `settled(i3+1)` with each witness's carried cell, and i1 with
        (i1, i2) and with the pairs from the pointers to its witnesses' upper cells.
        Pointers are those of the environment before the step."""
        def tuples(*kinds: str) -> list[tuple[z3.ArithRef, ...]]:
            return list(zip(*(witnesses.get(kind, []) for kind in kinds), strict=True))

        settled, carried = tuples("T.x", "T.y"), tuples("C.x", "C.y", "C.z")
        env = envs[0]
        i1, i2, n = env["i1"], env["i2"], env["n"]
        pairs = [(x, y) for x, y, _ in carried]

        def from_pointers(found: list[tuple[z3.ArithRef, ...]]) -> list[tuple[z3.ArithRef, ...]]:
            return [(i1, y) for _, y in found] + [(i2, y) for _, y in found]

        maxima = [z for *_, z in carried] + [x for x, _ in settled]
        return {
            "T": settled + pairs + [(i1, i2), (n - 1, n)] + from_pointers(settled),
            "C": carried + [(x, y, z) for x, y in settled for z in maxima]
                 + [(x, y, i1) for x, y in [(i1, i2)] + from_pointers(pairs)],
        }

    def linked_components(self) -> tuple[str, ...] | None:
        """The pointer facts and digits that tie A[1] and the pass's last cell to what a
        return query relates: at a pass's ends and where RESET leaves the pointers."""
        return (("i2-i1==0", "i2==1", "i2==n+1", PASS_END, ENDS_I1, ENDS_I2) if self.values
                else None)

    def composes_every_return(self) -> bool:
        """RESET and LSHIFT keep the relation (they only move pointers), but their callers'
        entries fix digits their exits observe."""
        return self.values

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

    def contract(self, formulation: str, program: str, args: Args) -> Contract | None:
        """The recursive program's contracts. A pass with i3 = k starts from an array whose
        last k cells are in place (`settled(A, n, k)`: every pair x < y with y among the last k
        cells is in order) and ends with the last k + 1 in place; BSTEP carries the maximum of
        A[1..i1] at i1, and once past the boundary b = n - i3 that cell holds the maximum of
        A[1..b]."""
        if formulation != RECURSIVE:
            return None
        return _CONTRACTS.get(program)

    def specification(self) -> Specification:
        return Specification(
            holds=lambda initial, final: settled(final["A"], final["n"], final["n"]),
            text="the array is sorted and a permutation of the input",
            permutation=Permutation("A", lambda env: z3.IntVal(1), lambda env: env["n"], _swapped),
        )


@dataclass(frozen=True)
class _Listed(Universal):
    """A universal instantiated at the tuples `instance_terms` lists under `key`, not at
    every combination of terms of its variables' kinds (fewer, chosen instances keep the
    queries small; any instances of a true universal are true, so this stays sound)."""

    key: str = ""

    def instances(self, pool: dict[str, Any]) -> list[z3.BoolRef]:
        return [self.body(*choice) for choice in pool[self.key]]


def _settled_pair(env: SymEnv, extra: int) -> Callable[[Any, Any], z3.BoolRef]:
    """The body of "the last i3 + extra cells are settled" at a pair x < y (with i3 >= 0)."""
    a, n, i3 = env["A"], env["n"], env["i3"]
    bound = n - i3 - extra

    def body(x: Any, y: Any) -> z3.BoolRef:
        return z3.And(i3 >= 0, z3.Implies(z3.And(1 <= x, x < y, y <= n, y > bound), a[x] <= a[y]))

    return body


def _carry_universal(env: SymEnv) -> Universal:
    """`settled(i3+1) or settled(i3) and max carried` (see BubbleSortSemantics): for all x,
    y, z, the last i3 + 1 cells settled at (x, y), or the last i3 at (x, y), A[z] at most
    A[i1] or A[i2] for z <= i1, and A[z] at most A[n-i3] for z < n-i3 once i1 >= n-i3. As
    one universal over independent variables it is settled(i3+1) or the pass's invariant
    (and, either way, settled(i3))."""
    a, n, i1, i2, i3 = env["A"], env["n"], env["i1"], env["i2"], env["i3"]
    boundary = n - i3
    next_settled, now_settled = _settled_pair(env, 1), _settled_pair(env, 0)

    def body(x: Any, y: Any, z: Any) -> z3.BoolRef:
        carried = z3.Implies(z3.And(1 <= z, z <= i1),
                             z3.Or(a[z] <= a[i1], z3.And(i2 <= n, a[z] <= a[i2])))
        at_boundary = z3.Implies(z3.And(i1 >= boundary, 1 <= z, z < boundary), a[z] <= a[boundary])
        return z3.Or(next_settled(x, y), z3.And(now_settled(x, y), carried, at_boundary))

    return _Listed(("C.x", "C.y", "C.z"), body, "C")


def settled(a: z3.ArrayRef, n: z3.ArithRef, k: z3.ArithRef) -> z3.BoolRef:
    """The last k cells of A[1..n] are sorted and hold the k largest values: every pair
    x < y with y > n - k is in order (k = n: A[1..n] is sorted)."""
    x, y = z3.Ints("x y")
    return z3.ForAll([x, y], z3.Implies(z3.And(1 <= x, x < y, y <= n, y > n - k), a[x] <= a[y]))


def _carry(env: SymEnv) -> z3.BoolRef:
    """BSTEP's invariant besides the pointers: A[i1] is the maximum of A[1..i1]; the last i3
    cells are settled; once i1 has reached the boundary b = n - i3, A[b] is the maximum of
    A[1..b]."""
    a, n, i1, i3 = env["A"], env["n"], env["i1"], env["i3"]
    x = z3.Int("x")
    b = n - i3
    return z3.And(
        z3.ForAll([x], z3.Implies(z3.And(1 <= x, x <= i1), a[x] <= a[i1])),
        settled(a, n, i3),
        z3.Implies(i1 >= b, z3.ForAll([x], z3.Implies(z3.And(1 <= x, x <= b), a[x] <= a[b]))),
    )


def _swapped(env: SymEnv, program: str, args: Args) -> tuple[z3.ArithRef, z3.ArithRef] | None:
    return (env[POINTER_NAMES[args[0]]], env[POINTER_NAMES[args[1]]]) if program == "SWAP" else None


def _pass_pre(env: SymEnv) -> z3.BoolRef:
    return z3.And(env["i3"] >= 0, env["i3"] < env["n"], settled(env["A"], env["n"], env["i3"]))


def _pass_post(entry: SymEnv, exit: SymEnv) -> z3.BoolRef:
    return z3.And(exit["i1"] == exit["n"], exit["i2"] == exit["n"] + 1,
                  settled(exit["A"], exit["n"], exit["i3"] + 1))


def _compswap_post(entry: SymEnv, exit: SymEnv) -> z3.BoolRef:
    a, n, i1, i2 = entry["A"], entry["n"], entry["i1"], entry["i2"]
    inside = z3.And(1 <= i1, i1 <= n, 1 <= i2, i2 <= n)
    swapped = z3.Store(z3.Store(a, i1, a[i2]), i2, a[i1])
    return exit["A"] == z3.If(z3.And(inside, a[i1] > a[i2]), swapped, a)


_CONTRACTS = {
    "BUBBLESORT": Contract(
        pre=lambda e: z3.And(e["i1"] == 1, e["i2"] == 1, e["i3"] >= 0, e["i3"] <= e["n"],
                             settled(e["A"], e["n"], e["i3"])),
        post=lambda entry, exit: settled(exit["A"], exit["n"], exit["n"]),
        rank=lambda e: e["n"] - e["i3"],
        text="pre: i1 = i2 = 1, 0 <= i3 <= n, the last i3 cells settled; post: A sorted; rank n - i3",
    ),
    "BUBBLE": Contract(
        pre=lambda e: z3.And(e["i1"] == 1, e["i2"] == 1, _pass_pre(e)),
        post=_pass_post,
        text="pre: i1 = i2 = 1, 0 <= i3 < n, the last i3 cells settled; "
             "post: i1 = n, i2 = n + 1, the last i3 + 1 cells settled",
    ),
    "BSTEP": Contract(
        pre=lambda e: z3.And(1 <= e["i1"], e["i1"] <= e["n"], e["i2"] == e["i1"] + 1,
                             _pass_pre(e), _carry(e)),
        post=_pass_post,
        rank=lambda e: e["n"] - e["i1"],
        text="pre: 1 <= i1 <= n, i2 = i1 + 1, 0 <= i3 < n, A[i1] = max A[1..i1], the last i3 "
             "cells settled, A[n - i3] = max A[1..n - i3] once i1 >= n - i3; post as BUBBLE; "
             "rank n - i1",
    ),
    "COMPSWAP": Contract(
        post=_compswap_post,
        text="post: A[i1], A[i2] exchanged if both in range and out of order, else unchanged",
    ),
    "RSHIFT": Contract(
        post=lambda entry, exit: z3.And(exit["i1"] == entry["i1"] + 1, exit["i2"] == entry["i2"] + 1),
        text="post: i1 and i2 one to the right",
    ),
    "RESET": Contract(
        pre=lambda e: z3.And(1 <= e["i1"], e["i1"] <= e["n"], e["i2"] == e["i1"] + 1),
        post=lambda entry, exit: z3.And(exit["i1"] == 1, exit["i2"] == 1),
        text="pre: 1 <= i1 <= n, i2 = i1 + 1; post: i1 = i2 = 1",
    ),
    "LSHIFT": Contract(
        pre=lambda e: z3.And(0 <= e["i1"], e["i1"] <= e["n"], e["i2"] == e["i1"] + 1),
        post=lambda entry, exit: z3.And(exit["i1"] == 0, exit["i2"] == 1),
        rank=lambda e: e["i1"],
        text="pre: 0 <= i1 <= n, i2 = i1 + 1; post: i1 = 0, i2 = 1; rank i1",
    ),
}
