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

`PrefixSet` collects the call-local prefixes a run visits (the reference run that sets a
model's limits) as a bare tree of observations, so that `NPIPolicy.prefill` can compute the
model's nodes for them depth by depth, one batched step per depth, before the model runs:
the model's run then looks up what it would otherwise compute one sequential step at a time.
Prefilled nodes are what the model computes for those prefixes; only the order (and the batch)
in which they are computed changes. When the set holds every step's prefix and the prefilled
nodes decide, after each one, the action the reference run took there (`PrefixCache.repeats`),
the model's run on those inputs is the reference run, step for step, and is not run again.
"""

from __future__ import annotations

from typing import Any

from verifier.tasks.base import Action, Args, Observation

# About 2 KB a node for the shipped models, 6 KB for one that a step was taken from (it keeps
# its recurrent gate products, `verifier.inference.LSTMState`): ~150 MB at most.
DEFAULT_MAX_NODES = 25_000
DEFAULT_MAX_DEPTH = 64


# A PrefixSet stops collecting when a window of this many steps found fewer than
# WINDOW // SPARSE new prefixes: the model meets so few new prefixes that computing them one
# at a time is cheaper than recording every step (the sorting models meet a few dozen).
PREFIX_WINDOW = 2048
PREFIX_SPARSE = 64

# A node of a PrefixSet: the observations seen after its prefix, each with its own node.
Prefixes = dict[Observation, "Prefixes"]


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


class _Bounded:
    """A prefix tree of at most `max_nodes` nodes, at most `max_depth` observations deep."""

    def __init__(
        self, max_nodes: int = DEFAULT_MAX_NODES, max_depth: int = DEFAULT_MAX_DEPTH
    ) -> None:
        if max_nodes < 1 or max_depth < 1:
            raise ValueError("max_nodes and max_depth must be positive")
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        self.size = 0


class PrefixCache(_Bounded):
    """A prefix tree of call-local states shared by every call of every input it serves."""

    def __init__(
        self, max_nodes: int = DEFAULT_MAX_NODES, max_depth: int = DEFAULT_MAX_DEPTH
    ) -> None:
        super().__init__(max_nodes, max_depth)
        self.generation = 0
        self.size = 0  # nodes stored since the last clear
        self.clears = 0
        self.hits = 0
        self.misses = 0
        self.prefilled = 0  # nodes computed ahead of a run (`NPIPolicy.prefill`), not misses
        self.replayed = 0  # inputs whose model run was known from their reference run
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

    def repeats(self, prefixes: PrefixSet) -> bool:
        """Whether the model decides, after every prefix of `prefixes`, the action the run that
        collected them took there (`PrefixSet.actions`), judged from the nodes stored here
        (a prefill's). Then a model run on the same inputs *is* that run, step for step: by
        induction over its steps, equal environments give equal observations, so equal
        call-local prefixes, on which the model takes the run's action. False where the set
        is incomplete, a prefix has no stored node, or a decision differs."""
        actions = prefixes.actions
        if not prefixes.complete or actions is None:
            return False
        work = [(self._roots.get(key), tree) for key, tree in prefixes.roots.items()]
        while work:
            node, tree = work.pop()
            children = None if node is None else node.children
            if children is None:
                return False
            for observation, subtree in tree.items():
                child = children.get(observation)
                if child is None or child.action != actions.get(id(subtree)):
                    return False
                if subtree:
                    work.append((child, subtree))
        return True

    def clear(self) -> None:
        """Forget every stored prefix; nodes held by running frames stay valid."""
        self._roots = {}
        self.size = 0
        self.generation += 1
        self.clears += 1

    def _make_room(self) -> None:
        if self.size >= self.max_nodes:
            self.clear()


class PrefixSet(_Bounded):
    """The call-local prefixes a run visited: one tree of observations per (program, args),
    at most `max_nodes` nodes (roots included) and `max_depth` observations deep, the same
    bounds as the `PrefixCache` it is meant to fill. `complete` turns False when the run had
    more prefixes than that (or collecting stopped early, see `PREFIX_WINDOW`): the set then
    holds only some of them, which is all a prefill needs."""

    def __init__(
        self, max_nodes: int = DEFAULT_MAX_NODES, max_depth: int = DEFAULT_MAX_DEPTH
    ) -> None:
        super().__init__(max_nodes, max_depth)
        self.complete = True
        self.roots: dict[tuple[str, Args], Prefixes] = {}
        # The action the run took after each prefix, by the id of the prefix's node (they
        # stay alive in the tree); None once a step's prefix went uncollected or one prefix
        # was followed by two different actions. `PrefixCache.repeats` reads it.
        self.actions: dict[int, Action] | None = {}

    @classmethod
    def for_cache(cls, cache: PrefixCache) -> PrefixSet:
        """A set bounded by what `cache` has room for."""
        return cls(max(1, cache.max_nodes - cache.size - 1), cache.max_depth)

    def root(self, program: str, args: Args) -> Prefixes | None:
        """The tree of a call of `program(args)` (None: the set is full)."""
        key = (program, args)
        node = self.roots.get(key)
        if node is None:
            if self.size >= self.max_nodes:
                self.complete = False
                return None
            node = self.roots[key] = {}
            self.size += 1
        return node

    def add(self, parent: Prefixes, observation: Observation, depth: int) -> Prefixes | None:
        """The node of `parent`'s prefix (`depth` observations long) plus `observation`, made
        if new; None when it would be deeper than `max_depth` or the set is full."""
        node = parent.get(observation)
        if node is None:
            if depth >= self.max_depth:
                return None
            if self.size >= self.max_nodes:
                self.complete = False
                return None
            node = parent[observation] = {}
            self.size += 1
        return node

    def stop(self) -> None:
        """Collecting stopped before the run ended: the set holds only some prefixes."""
        self.complete = False
