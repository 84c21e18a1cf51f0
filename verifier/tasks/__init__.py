"""The task registry. A new task is one module here plus one entry in `TASKS`."""

from __future__ import annotations

from verifier.errors import UnknownName
from verifier.tasks.addition import Addition
from verifier.tasks.base import Task
from verifier.tasks.bubblesort import BubbleSort, BubbleSortInt, BubbleSortValues
from verifier.tasks.quicksort import QuickSort
from verifier.tasks.toposort import TopoSort

TASKS: dict[str, Task] = {
    task.name: task for task in (
        Addition(), BubbleSort(), BubbleSortValues(), BubbleSortInt(), TopoSort(), QuickSort()
    )
}


def get_task(name: str) -> Task:
    """The registered task called `name`; UnknownName lists the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownName(f"unknown task {name!r} (known: {', '.join(TASKS)})") from None
