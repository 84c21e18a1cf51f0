"""SMT-LIB2 text of Z3 assertions that other solvers read and that is the same in every run.

Z3's `to_smt2` names let-bound terms by their term ids, which differ between runs: they are
renumbered in order of appearance. Arrays that Z3 writes as lambdas are beta-reduced away
(SMT-LIB arrays are not functions). Used by the proof bundle for its templates and lemmas.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import z3


_LET_NAME = re.compile(r"([$?]x)(\d+)")


def smt2(assertions: Sequence[z3.BoolRef]) -> str:
    """SMT-LIB2 declarations and assertions, without the check: Z3's text with its let-names
    (numbered by term ids, which differ between runs) renumbered in order of appearance."""
    solver = z3.Solver()
    solver.add(*assertions)
    text = solver.to_smt2()
    if "lambda" in text:  # SMT-LIB arrays are not functions: reduce Z3's array lambdas away
        solver = z3.Solver()
        solver.add(*_beta_reduced(assertions))
        text = solver.to_smt2()
    lines = [line for line in text.splitlines()
             if line.strip() not in ("(check-sat)", "(set-info :status unknown)")
             and not line.startswith(";")]
    renamed: dict[str, str] = {}

    def rename(match: re.Match[str]) -> str:
        return renamed.setdefault(match.group(0), f"{match.group(1)}{len(renamed)}")

    return _LET_NAME.sub(rename, "\n".join(lines)) + "\n"


def _beta_reduced(assertions: Sequence[z3.BoolRef]) -> list[z3.BoolRef]:
    """The assertions with every read `select(lambda x. body, i)` of an array written as a Z3
    lambda replaced by `body[i/x]` (the same formula; other solvers read no array lambdas)."""
    done: dict[int, z3.ExprRef] = {}

    def walk(term: z3.ExprRef) -> z3.ExprRef:
        key = term.get_id()
        if key in done:
            return done[key]
        result = term
        if z3.is_app(term) and term.num_args():
            kids = [walk(kid) for kid in term.children()]
            array = kids[0]
            if (z3.is_select(term) and z3.is_quantifier(array) and array.is_lambda()
                    and array.num_vars() == 1):
                result = walk(z3.substitute_vars(array.body(), kids[1]))
            else:
                result = term.decl()(*kids)
        done[key] = result
        return result

    return [walk(a) for a in assertions]
