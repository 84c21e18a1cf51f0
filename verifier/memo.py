"""Exact memoized execution: a bounded prefix tree of call-local states.

The interpreter resets a policy's memory at every call (`npi-runtime/1`), so an NPI's decision
and its LSTM state after the call-local prefix (program, args, o1..ok) depend on that prefix
alone. `PrefixCache` keeps them in a tree: one root per (program, args), one child per
observation. A frame's memory *is* its node, so the next step of that call is a dictionary
lookup `node.children[observation]`; only a prefix seen for the first time costs a model step.
Nothing is approximated: a hit returns exactly what the model computed for that prefix.

The tree is bounded two ways, so that non-recursive models (whose long top-level calls rarely
repeat a prefix) neither grow it without limit nor pay for it:

- `max_depth`: a node deeper than `max_depth` observations into its call is made (the frame
  needs its LSTM state) but never stored in the tree, so a long call keeps only its first
  `max_depth` steps; deeper steps cost what they cost without the cache.
- `max_nodes`: when the tree holds `max_nodes` nodes, it is cleared (a new *generation*) and
  grows again from the prefixes still in use. A frame still holding a node of an older
  generation drops that node's stale subtree at its next lookup, so at most `max_nodes`
  stored nodes plus the nodes held by live frames (and, until the frame's next step, their
  subtrees from before the clear) are alive.

Nodes of calls that return (`action.ret`) keep no LSTM state: no step of that call follows.
"""

from __future__ import annotations

from typing import Any

from verifier.tasks.base import Action, Args, Observation

DEFAULT_MAX_NODES = 50_000  # about 2.2 KB each for the shipped models: ~110 MB at most
DEFAULT_MAX_DEPTH = 64


class Node:
    """One call-local prefix: the action decided after it and the model state it leaves.

    A root (depth 0) stands for the empty prefix of a call: no action, zero state."""

    __slots__ = ("action", "state", "depth", "children", "generation")

    def __init__(
        self,
        action: Action | None,
        state: Any,
        depth: int,
        children: dict[Observation, Node] | None,
        generation: int,
    ) -> None:
        self.action = action
        self.state = state
        self.depth = depth
        self.children = children  # None: too deep, nothing below this node is stored
        self.generation = generation


class PrefixCache:
    """A prefix tree of call-local states shared by every call of every input it serves."""

    def __init__(
        self, max_nodes: int = DEFAULT_MAX_NODES, max_depth: int = DEFAULT_MAX_DEPTH
    ) -> None:
        if max_nodes < 1 or max_depth < 1:
            raise ValueError("max_nodes and max_depth must be positive")
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        self.generation = 0
        self.size = 0  # nodes stored since the last clear
        self.clears = 0
        self.hits = 0
        self.misses = 0
        self._roots: dict[tuple[str, Args], Node] = {}

    def root(self, program: str, args: Args) -> Node:
        """The node of a call's empty prefix (made on first use)."""
        key = (program, args)
        node = self._roots.get(key)
        if node is None:
            self._make_room()
            node = Node(None, None, 0, {}, self.generation)
            self._roots[key] = node
            self.size += 1
        return node

    def lookup(self, parent: Node, observation: Observation) -> Node | None:
        """The child of `parent` for `observation`, or None when it is not stored."""
        children = parent.children
        if children is None:
            self.misses += 1
            return None
        if parent.generation != self.generation:
            parent.children = {}
            parent.generation = self.generation
            self.misses += 1
            return None
        node = children.get(observation)
        if node is None:
            self.misses += 1
        else:
            self.hits += 1
        return node

    def insert(self, parent: Node, observation: Observation, action: Action, state: Any) -> Node:
        """Record the model's `action` and `state` after `parent`'s prefix plus `observation`."""
        depth = parent.depth + 1
        node = Node(
            action,
            None if action.ret else state,
            depth,
            {} if depth < self.max_depth else None,
            self.generation,
        )
        if parent.children is not None:
            self._make_room()
            if parent.generation != self.generation:
                parent.children = {}
                parent.generation = self.generation
            node.generation = self.generation
            parent.children[observation] = node
            self.size += 1
        return node

    def clear(self) -> None:
        """Forget every stored prefix; nodes held by running frames stay valid."""
        self._roots = {}
        self.size = 0
        self.generation += 1
        self.clears += 1

    def _make_room(self) -> None:
        if self.size >= self.max_nodes:
            self.clear()
