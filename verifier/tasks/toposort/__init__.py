"""Topological sort by depth-first search with an explicit stack (C17 §4.4, Algorithm 2).

The environment and reference programs are in `task`, the Z3 semantics in `semantics`.
"""

from verifier.tasks.toposort.task import TopoSort  # importing it registers the task

__all__ = ['TopoSort']
