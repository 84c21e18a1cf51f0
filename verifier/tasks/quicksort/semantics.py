"""Quicksort in Z3: array A, a stack of (lo, hi) frames, pointers p_lo, p_hi, pivot, j."""

from __future__ import annotations

from typing import Any

import z3

from verifier.smt import (
    Predicate, Relation, Semantics, StackView, SymEnv, Universal, Vocabulary, array_of, bit,
    distinct,
)  # fmt: skip
from verifier.smt.contracts import Contract, Permutation, Specification
from verifier.tasks.base import RECURSIVE, Args, Task
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

    def contract(self, formulation: str, program: str, args: Args) -> Contract | None:
        """The recursive program's contracts (module functions below). QUICKSORT sorts its
        frame's cells A[lo..hi] (lo, hi = the top frame, mirrored in p_lo, p_hi), leaves every
        other cell alone, pops exactly its own frame and leaves the frames below it as they
        were; it needs and keeps `blocked(A, lo, hi)`: A[lo-1] <= every cell of the frame <=
        A[hi+1] (where those neighbours exist). That relative fact is what carries the values
        across a recursive call: a sorted left part stays <= the pivot because the call that
        sorted it kept it bounded by its neighbour, the pivot's cell. PARTITION is Lomuto's:
        pivot index in [lo, hi], A[lo..pivot-1] <= A[pivot] < A[pivot+1..hi], cells outside
        [lo, hi] unchanged, blocked kept. COMPSWAP_LOOP keeps Lomuto's loop invariant
        A[lo..pivot-1] <= A[hi] < A[pivot..j-1]. Ranking functions: hi - lo (QUICKSORT), hi - j
        (COMPSWAP_LOOP)."""
        if formulation != RECURSIVE:
            return None
        return _CONTRACTS.get(program)

    def specification(self) -> Specification:
        return Specification(
            holds=lambda initial, final: sorted_between(final["A"], z3.IntVal(1), final["n"]),
            text="A[1..n] is sorted and a permutation of the input",
            permutation=Permutation("A", lambda env: z3.IntVal(1), lambda env: env["n"], _swapped),
        )


def sorted_between(a: z3.ArrayRef, lo: z3.ArithRef, hi: z3.ArithRef) -> z3.BoolRef:
    """A[lo..hi] is sorted: every cell is <= the next (the same, by transitivity of <=, as
    every pair in order; one quantified variable keeps the queries easy for Z3 and cvc5)."""
    x = z3.Int("x")
    return z3.ForAll([x], z3.Implies(z3.And(lo <= x, x < hi), a[x] <= a[x + 1]),
                     patterns=[z3.MultiPattern(a[x], a[x + 1])])


def blocked(a: z3.ArrayRef, n: z3.ArithRef, lo: z3.ArithRef, hi: z3.ArithRef) -> z3.BoolRef:
    """The cells next to A[lo..hi] bound it: A[lo-1] <= every cell of A[lo..hi] (where lo > 1)
    and every cell of it <= A[hi+1] (where hi < n). In quicksort those neighbours are pivots
    or cells of frames already sorted, so sorting A[lo..hi] in place sorts it into its final
    place. (One quantified variable each: Z3 proves the composition of the recursive calls
    from them quickly, where the same fact over every cell outside the frame timed out.)"""
    y = z3.Int("y")
    inside = z3.And(lo <= y, y <= hi)
    return z3.And(
        z3.ForAll([y], z3.Implies(z3.And(lo > 1, inside), a[lo - 1] <= a[y]), patterns=[a[y]]),
        z3.ForAll([y], z3.Implies(z3.And(hi < n, inside), a[y] <= a[hi + 1]), patterns=[a[y]]),
    )


def unchanged_outside(before: z3.ArrayRef, after: z3.ArrayRef, lo: z3.ArithRef, hi: z3.ArithRef) -> z3.BoolRef:
    """Every cell outside A[lo..hi] is as it was."""
    x = z3.Int("x")
    return z3.ForAll([x], z3.Implies(z3.Or(x < lo, x > hi), after[x] == before[x]),
                     patterns=[after[x]])


def _lomuto(env: SymEnv, pivot: z3.ArithRef, end: z3.ArithRef) -> z3.BoolRef:
    """Lomuto's loop invariant: A[lo..pivot-1] <= A[hi] < A[pivot..end-1]."""
    a, plo, phi = env["A"], env["plo"], env["phi"]
    x = z3.Int("x")
    return z3.And(
        z3.ForAll([x], z3.Implies(z3.And(plo <= x, x < pivot), a[x] <= a[phi]), patterns=[a[x]]),
        z3.ForAll([x], z3.Implies(z3.And(pivot <= x, x < end), a[x] > a[phi]), patterns=[a[x]]),
    )


def _bounds(env: SymEnv) -> z3.BoolRef:
    return z3.And(1 <= env["plo"], env["phi"] <= env["n"])


def _scanning(env: SymEnv) -> z3.BoolRef:
    """Pointers of a Lomuto scan: lo <= pivot <= j <= hi, inside 1..n, neither null."""
    plo, piv, j, phi = env["plo"], env["piv"], env["j"], env["phi"]
    return z3.And(_bounds(env), plo <= piv, piv <= j, j <= phi,
                  z3.Not(env["piv_null"]), z3.Not(env["j_null"]))


def _frame(env: SymEnv) -> z3.BoolRef:
    """A QUICKSORT call's entry: a frame on the stack, mirrored in p_lo, p_hi, inside 1..n, blocked."""
    sp = env["sp"]
    return z3.And(sp >= 1, env["plo"] == env["LO"][sp], env["phi"] == env["HI"][sp], _bounds(env),
                  blocked(env["A"], env["n"], env["plo"], env["phi"]))


def _quicksort_post(entry: SymEnv, exit: SymEnv) -> z3.BoolRef:
    sp, lo, hi = entry["sp"], entry["plo"], entry["phi"]
    below = z3.And([_kept(entry[name], exit[name], sp) for name in ("LO", "HI")])
    top = z3.Implies(exit["sp"] > 0, z3.And(exit["plo"] == exit["LO"][exit["sp"]],
                                            exit["phi"] == exit["HI"][exit["sp"]]))
    return z3.And(exit["sp"] == sp - 1, below, top, _sorted_in_place(entry["A"], exit["A"], exit["n"], lo, hi))


def _sorted_in_place(before: z3.ArrayRef, after: z3.ArrayRef, n: z3.ArithRef, lo: z3.ArithRef,
                     hi: z3.ArithRef) -> z3.BoolRef:
    """`sorted_between` of `after`, then `unchanged_outside` and `blocked` in one quantifier
    over the cell (a goal with fewer quantifiers gives the solver fewer witness cells to
    refute). Every trigger is a cell read whose index is the bound variable itself, or for
    adjacency both cells: a trigger A[x] with A[x + 1] in the body makes each instance create
    the next one's trigger, a matching loop that timed out the recursive case."""
    x = z3.Int("x")
    inside = z3.And(lo <= x, x <= hi)
    return z3.And(sorted_between(after, lo, hi), z3.ForAll([x], z3.And(
        z3.Implies(z3.Not(inside), after[x] == before[x]),
        z3.Implies(z3.And(lo > 1, inside), after[lo - 1] <= after[x]),
        z3.Implies(z3.And(hi < n, inside), after[x] <= after[hi + 1]),
    ), patterns=[after[x]]))  # fmt: skip


def _kept(before: z3.ArrayRef, after: z3.ArrayRef, sp: z3.ArithRef) -> z3.BoolRef:
    """The stack cells below sp are as they were. Triggered by `after`'s cells alone: a call's
    entry stack is a term of stores and conditionals, which as a trigger sends Z3's
    instantiation astray."""
    k = z3.Int("k")
    return z3.ForAll([k], z3.Implies(z3.And(1 <= k, k < sp), after[k] == before[k]),
                     patterns=[after[k]])


def _partition_post(entry: SymEnv, exit: SymEnv) -> z3.BoolRef:
    a, lo, hi, p = exit["A"], entry["plo"], entry["phi"], exit["piv"]
    x = z3.Int("x")
    return z3.And(
        lo <= p, p <= hi, z3.Not(exit["piv_null"]),
        z3.ForAll([x], z3.Implies(z3.And(lo <= x, x < p), a[x] <= a[p]), patterns=[a[x]]),
        z3.ForAll([x], z3.Implies(z3.And(p < x, x <= hi), a[x] > a[p]), patterns=[a[x]]),
        unchanged_outside(entry["A"], a, lo, hi), blocked(a, exit["n"], lo, hi),
    )  # fmt: skip


def _loop_post(entry: SymEnv, exit: SymEnv) -> z3.BoolRef:
    lo, hi = entry["plo"], entry["phi"]
    return z3.And(
        exit["j"] == hi, lo <= exit["piv"], exit["piv"] <= hi, _lomuto(exit, exit["piv"], hi),
        unchanged_outside(entry["A"], exit["A"], lo, hi), blocked(exit["A"], exit["n"], lo, hi),
    )  # fmt: skip


def _compswap_post(entry: SymEnv, exit: SymEnv) -> z3.BoolRef:
    a, piv, j = entry["A"], entry["piv"], entry["j"]
    smaller = a[j] <= a[entry["phi"]]
    swapped = z3.Store(z3.Store(a, piv, a[j]), j, a[piv])
    return z3.And(exit["A"] == z3.If(smaller, swapped, a),
                  exit["piv"] == z3.If(smaller, piv + 1, piv))


def _swapped(env: SymEnv, program: str, args: Args) -> tuple[z3.ArithRef, z3.ArithRef] | None:
    return (env[_POINTER[args[0]]], env[_POINTER[args[1]]]) if program == "SWAP" else None


def _written(pointer: str, source: str | None) -> Contract:
    """A setter: `pointer` takes p_lo (not null), or becomes null (`source` None)."""
    def post(entry: SymEnv, exit: SymEnv) -> z3.BoolRef:
        if source is None:
            return exit[f"{pointer}_null"]
        return z3.And(exit[pointer] == entry[source], z3.Not(exit[f"{pointer}_null"]))

    text = f"post: {pointer} null" if source is None else f"post: {pointer} = p_lo, not null"
    return Contract(post=post, text=text)


_CONTRACTS = {
    "QUICKSORT": Contract(
        pre=_frame,
        post=_quicksort_post,
        rank=lambda e: e["phi"] - e["plo"],
        text="pre: sp >= 1, (p_lo, p_hi) = the top frame (lo, hi), 1 <= lo, hi <= n, A[lo-1] <= "
             "A[lo..hi] <= A[hi+1]; post: the frame popped, the frames below and p_lo, p_hi "
             "= the new top as they were, A[lo..hi] sorted, cells outside unchanged, still "
             "A[lo-1] <= A[lo..hi] <= A[hi+1]; rank hi - lo",
    ),
    "PARTITION": Contract(
        pre=lambda e: z3.And(_bounds(e), e["plo"] < e["phi"], blocked(e["A"], e["n"], e["plo"], e["phi"])),
        post=_partition_post,
        text="pre: 1 <= lo < hi <= n, A[lo-1] <= A[lo..hi] <= A[hi+1]; post: lo <= pivot <= hi "
             "(not null), A[lo..pivot-1] <= A[pivot] < A[pivot+1..hi], cells outside [lo, hi] "
             "unchanged, still A[lo-1] <= A[lo..hi] <= A[hi+1]",
    ),
    "COMPSWAP_LOOP": Contract(
        pre=lambda e: z3.And(_scanning(e), _lomuto(e, e["piv"], e["j"]),
                             blocked(e["A"], e["n"], e["plo"], e["phi"])),
        post=_loop_post,
        rank=lambda e: e["phi"] - e["j"],
        text="pre: 1 <= lo <= pivot <= j <= hi <= n (neither null), A[lo..pivot-1] <= A[hi] < "
             "A[pivot..j-1], A[lo-1] <= A[lo..hi] <= A[hi+1]; post: j = hi, lo <= pivot <= "
             "hi, A[lo..pivot-1] <= A[hi] < A[pivot..hi-1], cells outside [lo, hi] unchanged, "
             "A[lo-1] <= A[lo..hi] <= A[hi+1]; rank hi - j",
    ),
    "COMPSWAP": Contract(
        pre=lambda e: z3.And(_scanning(e), e["j"] < e["phi"]),
        post=_compswap_post,
        text="pre: 1 <= lo <= pivot <= j < hi <= n (neither null); post: if A[j] <= A[hi], "
             "A[pivot] and A[j] exchanged and pivot one right, else nothing changed",
    ),
    "SET_PIVOT_LO": _written("piv", "plo"),
    "SET_J_LO": _written("j", "plo"),
    "SET_J_NULL": _written("j", None),
}
