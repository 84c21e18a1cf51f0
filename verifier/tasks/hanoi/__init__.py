"""Towers of Hanoi: n disks from peg A to peg C, by non-tail recursion."""

from verifier.tasks.hanoi import task  # noqa: F401  (registers the task)
