"""Bubble sort (NPI; C17 §4.2 and appendix), with the comparison and the value encoder.

The environment and reference programs are in `task`, the Z3 semantics in `semantics`.
"""

from verifier.tasks.bubblesort.task import BubbleSort, BubbleSortInt, BubbleSortValues  # importing it registers the task

__all__ = ['BubbleSort', 'BubbleSortInt', 'BubbleSortValues']
