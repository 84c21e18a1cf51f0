"""Facts about Z3 terms remembered across the many queries and scripts that share them."""

from __future__ import annotations

import z3


class Binderless:
    """Which terms contain no binder (quantifier or lambda), remembered across calls: `smt2`
    leaves such a term as it is when beta-reducing, and a proof's scripts share most of their
    terms. It keeps every term it has answered for alive, so that no term id it holds is
    reused for another term (which can change how Z3 prints: see `verifier.smt.script.smt2`)."""

    def __init__(self) -> None:
        self._known: dict[int, tuple[z3.ExprRef, bool]] = {}

    def __call__(self, term: z3.ExprRef) -> bool:
        key = term.get_id()
        known = self._known.get(key)
        if known is not None:
            return known[1]
        if z3.is_quantifier(term):
            free = False
        else:
            free = all(self(kid) for kid in term.children()) if z3.is_app(term) else True
        self._known[key] = (term, free)
        return free
