"""SMT-LIB2 text of Z3 assertions that other solvers read and that is the same in every run.

Z3's `to_smt2` names let-bound terms by their term ids, which differ between runs: they are
renumbered in order of appearance. Arrays that Z3 writes as lambdas are beta-reduced away
(SMT-LIB arrays are not functions). Used by the proof bundle for its templates and lemmas.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import z3

from verifier.smt.terms import Binderless

_LET_NAME = re.compile(r"([$?]x)(\d+)")


def smt2(assertions: Sequence[z3.BoolRef], binderless: Binderless | None = None) -> str:
    """SMT-LIB2 declarations and assertions, without the check: Z3's text with its let-names
    (numbered by term ids, which differ between runs) renumbered in order of appearance.
    `binderless` may be shared between the scripts of one proof, whose terms overlap (it
    saves walking them again).

    Beware: Z3's printer decides which shared terms get a `let` from their reference counts,
    so the text depends on which terms are alive when it prints; a memo that keeps terms
    alive can change it (sharing `binderless` was checked to leave every shipped proof's
    bundle byte-identical; a memo of `ground`'s was not: it changed quicksort's)."""
    solver = z3.Solver()
    solver.add(*assertions)
    text = solver.to_smt2()
    if "lambda" in text:  # SMT-LIB arrays are not functions: reduce Z3's array lambdas away
        solver = z3.Solver()
        solver.add(*_beta_reduced(assertions, binderless or Binderless()))
        text = solver.to_smt2()
    lines = [line for line in text.splitlines()
             if line.strip() not in ("(check-sat)", "(set-info :status unknown)")
             and not line.startswith(";")]
    renamed: dict[str, str] = {}

    def rename(match: re.Match[str]) -> str:
        return renamed.setdefault(match.group(0), f"{match.group(1)}{len(renamed)}")

    return _LET_NAME.sub(rename, "\n".join(lines)) + "\n"


def _beta_reduced(assertions: Sequence[z3.BoolRef], binderless: Binderless) -> list[z3.BoolRef]:
    """The assertions without Z3's array lambdas (the same formulas; other solvers read none):
    a read `select(lambda x. body, i)` becomes `body[i/x]`, and an equation `A == lambda x.
    body` becomes `forall x. A[x] == body`, also under quantifiers. A term without binders
    has nothing to reduce: it is kept as it is."""
    done: dict[int, tuple[z3.ExprRef, z3.ExprRef]] = {}  # id -> (term, result): the term is
    # kept alive, so that no term made during the walk is given a freed term's id
    binders = itertools.count()  # bound variables get names no other binder uses

    def is_lambda(term: z3.ExprRef) -> bool:
        return z3.is_quantifier(term) and term.is_lambda() and term.num_vars() == 1

    def walk(term: z3.ExprRef) -> z3.ExprRef:
        key = term.get_id()
        if key in done:
            return done[key][1]
        if binderless(term):
            return term
        result = term
        if z3.is_quantifier(term):
            # the bound variables become constants first, so every term walked is closed
            tag = next(binders)
            bound = [z3.Const(f"{term.var_name(k)}_{tag}", term.var_sort(k))
                     for k in range(term.num_vars())]
            body = walk(z3.substitute_vars(term.body(), *reversed(bound)))
            make = z3.Lambda if term.is_lambda() else z3.ForAll if term.is_forall() else z3.Exists
            result = make(bound, body)
        elif z3.is_app(term) and term.num_args():
            kids = [walk(kid) for kid in term.children()]
            if z3.is_select(term) and is_lambda(kids[0]):
                result = walk(z3.substitute_vars(kids[0].body(), kids[1]))
            elif z3.is_eq(term) and (is_lambda(kids[0]) or is_lambda(kids[1])):
                function, other = kids if is_lambda(kids[0]) else kids[::-1]
                x = z3.Const(f"lambda_{next(binders)}", function.var_sort(0))
                right = z3.substitute_vars(other.body(), x) if is_lambda(other) else other[x]
                result = z3.ForAll([x], walk(z3.substitute_vars(function.body(), x)) == walk(right))
            else:
                result = term.decl()(*kids)
        done[key] = (term, result)
        return result

    return [walk(a) for a in assertions]
