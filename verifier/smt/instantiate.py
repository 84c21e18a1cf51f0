"""Quantifier-free forms of validity queries whose hypotheses and goal hold quantifiers.

A lemma `hypotheses -> goal` is proved by `hypotheses and not goal` being unsat. Where the
goal is a conjunction of universal statements, `not goal` is satisfiable exactly when some
conjunct fails at some point: fresh constants (Skolem constants) stand for that point. A
universal hypothesis is replaced by its instances at every index term the query reads an
array at (the ground terms an E-matching solver would use), plus the Skolem constants.
Instances are consequences of the universal statement, so the ground query has more models
than the original: `unsat` for it proves the lemma. It may be `sat` where the original is
`unsat` (an instance it needed was not made); the caller then tries the original.

Ground queries keep both solvers on decidable ground: Z3 proves them without model-based
quantifier instantiation, and cvc5, which re-solves every lemma in the independent
re-checker, answers them too (on the quantified form it can time out).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import z3

from verifier.smt.terms import ArrayIndices, Binderless

MAX_INSTANCES = 1_000  # per query; beyond this the caller keeps the quantified form (a larger
# ground query is often harder for the solver than the quantified one)


def ground(
    facts: list[z3.BoolRef], goal: z3.BoolRef, binderless: Binderless | None = None,
    indices: ArrayIndices | None = None,
) -> tuple[list[z3.BoolRef], z3.BoolRef] | None:
    """The query `facts and not goal` without quantifiers, as (facts, goal); None where the
    formulas have quantifiers this does not handle (nested, existential in a hypothesis) or
    would need more than MAX_INSTANCES instances. `binderless` and `indices` may be shared
    between the queries of one proof, whose formulas overlap (it saves walking them again)."""
    binderless = binderless or Binderless()
    indices = indices or ArrayIndices()

    def has_quantifier(formula: z3.ExprRef) -> bool:
        return not binderless(formula)

    counter = itertools.count()
    goals = []
    for part in conjuncts([goal]):
        opened = _open(part, counter, has_quantifier)
        if opened is None:
            return None
        goals.append(opened)
    plain: list[z3.BoolRef] = []
    universal: list[tuple[z3.BoolRef | None, z3.QuantifierRef]] = []
    for fact in conjuncts(facts):
        split = _universal(fact, has_quantifier)
        if split is None:
            if has_quantifier(fact):
                return None
            plain.append(fact)
        else:
            universal.append(split)
    if not universal:
        return plain, z3.And(goals)
    pool = _index_terms(plain + goals, indices)
    count = sum(len(pool) ** q.num_vars() for _, q in universal)
    if not pool or count > MAX_INSTANCES:
        return None
    instances = []
    for guard, quantifier in universal:
        body = quantifier.body()
        if has_quantifier(body):
            return None
        every = [z3.substitute_vars(body, *reversed(choice))
                 for choice in itertools.product(pool, repeat=quantifier.num_vars())]
        instances.append(z3.And(every) if guard is None else z3.Implies(guard, z3.And(every)))
    return plain + instances, z3.And(goals)


def conjuncts(formulas: Iterable[z3.BoolRef]) -> list[z3.BoolRef]:
    """The formulas' conjuncts, nested conjunctions flattened."""
    found = []
    for formula in formulas:
        if z3.is_and(formula):
            found += conjuncts(formula.children())
        else:
            found.append(formula)
    return found


def _universal(
    fact: z3.BoolRef, has_quantifier: Callable[[z3.ExprRef], bool]
) -> tuple[z3.BoolRef | None, z3.QuantifierRef] | None:
    """`forall x. body` as (None, quantifier); `guard -> forall x. body` as (guard, quantifier)."""
    if z3.is_quantifier(fact) and fact.is_forall():
        return None, fact
    if z3.is_implies(fact):
        guard, then = fact.children()
        if z3.is_quantifier(then) and then.is_forall() and not has_quantifier(guard):
            return guard, then
    return None


def _open(
    part: z3.BoolRef, counter: itertools.count, has_quantifier: Callable[[z3.ExprRef], bool]
) -> z3.BoolRef | None:
    """A goal conjunct with its outermost universal quantifier (if any, possibly behind an
    implication) replaced by Skolem constants; None if a quantifier remains."""
    guard = None
    if z3.is_implies(part) and _universal(part, has_quantifier) is not None:
        guard, part = part.children()
    if z3.is_quantifier(part):
        if not part.is_forall():
            return None
        n = part.num_vars()
        skolems = [z3.Const(f"sk{next(counter)}_{part.var_name(k)}", part.var_sort(k)) for k in range(n)]
        part = z3.substitute_vars(part.body(), *reversed(skolems))
    if has_quantifier(part):
        return None
    return part if guard is None else z3.Implies(guard, part)


def _index_terms(formulas: Iterable[z3.ExprRef], indices: ArrayIndices) -> list[z3.ArithRef]:
    """Every integer term the formulas read an array at, ordered by their text (term ids
    differ between runs; the order must not, so that a query's text is reproducible)."""
    found: dict[int, z3.ArithRef] = {}
    for formula in formulas:
        for key, term in indices(formula).items():
            found.setdefault(key, term)
    return sorted(found.values(), key=lambda term: term.sexpr())
