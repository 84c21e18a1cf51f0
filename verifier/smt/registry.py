"""Which tasks have symbolic semantics (the coverage proof needs them)."""

from __future__ import annotations

from verifier.smt import Semantics
from verifier.smt.addition import AdditionSemantics
from verifier.smt.bubblesort import BubbleSortSemantics
from verifier.smt.quicksort import QuickSortSemantics
from verifier.smt.toposort import TopoSortSemantics
from verifier.tasks import Task


def semantics_for(task: Task) -> Semantics | None:
    """The task's Z3 semantics, or None where none is written yet."""
    if task.name == "bubblesort":
        return BubbleSortSemantics(task, values=False)
    if task.name == "bubblesort-values":
        return BubbleSortSemantics(task, values=True)
    if task.name == "addition":
        return AdditionSemantics(task)
    if task.name == "quicksort":
        return QuickSortSemantics(task)
    if task.name == "toposort":
        return TopoSortSemantics(task)
    return None
