"""Grade-school addition on a 4-row scratch pad (NPI; C17 §4.1).

The environment and reference programs are in `task`, the Z3 semantics in `semantics`.
"""

from verifier.tasks.addition.task import Addition  # importing it registers the task

__all__ = ['Addition']
