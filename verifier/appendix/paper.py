"""C17's published numbers (Cai, Shin & Song, ICLR 2017), kept as package data keyed by task:
the verification sets the paper used and its generalization tables."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def _data() -> dict[str, Any]:
    text = resources.files("verifier.appendix").joinpath("data/paper.json").read_text("utf-8")
    return json.loads(text)


def verification_set(task: str) -> str | None:
    """How C17 verified `task` (e.g. "73 graphs"), or None where the paper verified none."""
    return _data()["tasks"].get(task, {}).get("verification_set")


def experiment(task: str, name: str) -> dict[str, Any] | None:
    """One of C17's generalization experiments: title, training set, accuracy by formulation."""
    return _data()["tasks"].get(task, {}).get("experiments", {}).get(name)


def accuracy(task: str, name: str, formulation: str) -> dict[int, str]:
    """C17's accuracy (percent, as printed in the paper) by input size; {} where it has none."""
    found = experiment(task, name) or {}
    table = found.get("accuracy", {}).get(formulation, {})
    return {int(size): value for size, value in table.items()}
