"""Quicksort with the Lomuto partition (C17 §4.3, Algorithm 3).

The environment and reference programs are in `task`, the Z3 semantics in `semantics`.
"""

from verifier.tasks.quicksort.task import QuickSort  # importing it registers the task

__all__ = ['QuickSort']
