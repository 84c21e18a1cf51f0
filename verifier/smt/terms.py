"""Facts about Z3 terms remembered across the many queries and scripts that share them."""

from __future__ import annotations

from collections.abc import Iterator

import z3


class Binderless:
    """Which terms contain no binder (quantifier or lambda), remembered across calls: `smt2`
    leaves such a term as it is when beta-reducing, and a proof's scripts share most of their
    terms. It keeps every term it has answered for alive, so that no term id it holds is
    reused for another term (which can change how Z3 prints: see `verifier.smt.script.smt2`)."""

    def __init__(self) -> None:
        self._known: dict[int, tuple[z3.ExprRef, bool]] = {}

    def __call__(self, term: z3.ExprRef) -> bool:
        known = self._known
        # depth first without recursion (terms can be deeper than Python's stack): a term is
        # answered once all its children are
        work: list[tuple[z3.ExprRef, list[z3.ExprRef] | None]] = [(term, None)]
        while work:
            top, kids = work.pop()
            key = top.get_id()
            if key in known:
                continue
            if kids is None:
                if z3.is_quantifier(top) or not z3.is_app(top):
                    known[key] = (top, not z3.is_quantifier(top))
                    continue
                kids = top.children()
                work.append((top, kids))
                work.extend((kid, None) for kid in kids if kid.get_id() not in known)
            else:
                known[key] = (top, all(known[kid.get_id()][1] for kid in kids))
        return known[term.get_id()][1]


class ArrayIndices:
    """The integer terms each formula reads an array at, remembered per formula across the
    queries of one proof (most of their hypotheses are the same formulas). Like `Binderless`,
    it keeps every formula it has answered for alive."""

    def __init__(self) -> None:
        self._known: dict[int, tuple[z3.ExprRef, dict[int, z3.ArithRef]]] = {}

    def __call__(self, formula: z3.ExprRef) -> dict[int, z3.ArithRef]:
        """The index terms by term id (do not modify the dict returned)."""
        key = formula.get_id()
        known = self._known.get(key)
        if known is None:
            known = self._known[key] = (formula, _array_indices(formula))
        return known[1]


def _array_indices(formula: z3.ExprRef) -> dict[int, z3.ArithRef]:
    found: dict[int, z3.ArithRef] = {}
    for term in subterms(formula):
        if z3.is_select(term) and z3.is_int(index := term.arg(1)):
            found.setdefault(index.get_id(), index)
    return found


def subterms(term: z3.ExprRef) -> Iterator[z3.ExprRef]:
    """Every distinct subterm of `term`, itself included, each once (depth first)."""
    seen: set[int] = set()
    work = [term]
    while work:
        top = work.pop()
        if top.get_id() in seen:
            continue
        seen.add(top.get_id())
        yield top
        work.extend(top.children())
