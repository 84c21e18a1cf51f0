"""C17's published numbers (Cai, Shin & Song, ICLR 2017) for a task, as the task keeps them
(`Task.paper()`, the `paper.json` next to its module): the verification set the paper used and
its generalization tables (30 random problems per size; accuracy = whole answer right; sizes
the paper reports no number for are absent)."""

from __future__ import annotations

from typing import Any

from verifier.tasks import TASKS


def _numbers(task: str) -> dict[str, Any]:
    found = TASKS[task].paper() if task in TASKS else None
    return found or {}


def verification_set(task: str) -> str | None:
    """How C17 verified `task` (e.g. "73 graphs"), or None where the paper verified none."""
    return _numbers(task).get("verification_set")


def experiment(task: str, name: str) -> dict[str, Any] | None:
    """One of C17's generalization experiments: title, training set, accuracy by formulation."""
    return _numbers(task).get("experiments", {}).get(name)


def accuracy(task: str, name: str, formulation: str) -> dict[int, str]:
    """C17's accuracy (percent, as printed in the paper) by input size; {} where it has none."""
    found = experiment(task, name) or {}
    table = found.get("accuracy", {}).get(formulation, {})
    return {int(size): value for size, value in table.items()}
