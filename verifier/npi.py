"""The Neural Programmer-Interpreter: `NPIConfig` and `NPI`, and the NPI as a policy.

    s_t = f_enc(o_t, a)            MLP over the one-hot observation and call arguments
    h_t = f_lstm([s_t; e_p], h)    2-layer LSTM; e_p is the learned embedding of the program
    r_t = f_end(h_t)               return logit (return when sigmoid >= 0.5)
    k_t = f_prog(h_t)              program key; next program = argmax_j <k_t, key_j>
    a'  = f_arg_i(h_t)             one categorical head per argument slot

The hidden state is reset at every call by the interpreter: `NPIPolicy` keeps each call's
(h, c) as that frame's memory, and a new call starts from None (zeros).
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from verifier.config import ARG_SLOTS, NPIConfig
from verifier.memo import Node, PrefixCache, Prefixes, PrefixSet
from verifier.runtime import Query
from verifier.tasks import Task
from verifier.tasks.base import Action, Args, Observation


class NPI(nn.Module):
    def __init__(self, config: NPIConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        d_input = sum(c.observation_sizes) + len(numeric_pairs(c)) + ARG_SLOTS * c.arg_size
        self.encoder = nn.Sequential(
            nn.Linear(d_input, c.d_state), nn.ReLU(), nn.Linear(c.d_state, c.d_state)
        )
        self.program_embedding = nn.Embedding(len(c.program_names), c.d_program)
        self.lstm = nn.LSTM(c.d_state + c.d_program, c.d_hidden, c.layers, batch_first=True)
        self.end_head = nn.Linear(c.d_hidden, 1)
        self.key_head = nn.Linear(c.d_hidden, c.d_key)
        self.program_keys = nn.Parameter(torch.randn(len(c.program_names), c.d_key) * 0.1)
        self.arg_heads = nn.ModuleList(
            nn.Linear(c.d_hidden, c.arg_size) for _ in range(ARG_SLOTS)
        )
        if c.numeric_slots:  # magnitudes start unused: the data must ask for them (see below)
            with torch.no_grad():
                for column in feature_columns(c)[0].values():
                    self.encoder[0].weight[:, column] = 0.0
        self.register_buffer("_observation_offsets", _offsets(c.observation_sizes), persistent=False)

    def encode_inputs(self, observations: Tensor, args: Tensor) -> Tensor:
        """One-hot features. observations: (batch, steps, n_obs); args: (batch, ARG_SLOTS)."""
        c = self.config
        dtype = self.program_keys.dtype
        if c.numeric_slots:
            return self._encode_numeric(observations, args)
        obs_hot = torch.zeros(*observations.shape[:2], sum(c.observation_sizes), dtype=dtype)
        obs_hot.scatter_(2, observations + self._observation_offsets, 1.0)
        arg_hot = nn.functional.one_hot(args, c.arg_size).flatten(1).to(dtype)  # (batch, slots*size)
        arg_hot = arg_hot.unsqueeze(1).expand(-1, observations.shape[1], -1)
        return torch.cat([obs_hot, arg_hot], dim=2)  # (batch, steps, d_input)

    def _encode_numeric(self, observations: Tensor, args: Tensor) -> Tensor:
        """Features of a task with numeric slots, in slot order: a numeric slot as
        value / numeric_scale (computed in float64, then rounded once), any other slot one-hot;
        then one clipped difference clamp(v_i - v_j, -1, 1) per pair of numeric slots, computed
        in integers (float32 cannot tell 10^9 from 10^9 - 1); then the arguments one-hot.

        The weights reading the scaled values start at zero, so a trained network depends on
        magnitudes only as much as its data makes it: a program that branches on comparisons
        is then nearly flat in the values, which is what makes its bounds close quickly."""
        c = self.config
        parts = []
        for slot, size in enumerate(c.observation_sizes):
            column = observations[..., slot]
            if slot in c.numeric_slots:
                parts.append((column.double() / c.numeric_scale).unsqueeze(-1))
            else:
                parts.append(nn.functional.one_hot(column, size).double())
        for i, j in numeric_pairs(c):
            difference = (observations[..., i] - observations[..., j]).clamp(-1, 1)
            parts.append(difference.double().unsqueeze(-1))
        arg_hot = nn.functional.one_hot(args, c.arg_size).flatten(1).double()
        parts.append(arg_hot.unsqueeze(1).expand(-1, observations.shape[1], -1))
        return torch.cat(parts, dim=2).to(self.program_keys.dtype)  # (batch, steps, d_input)

    def forward(
        self,
        programs: Tensor,
        args: Tensor,
        observations: Tensor,
        state: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor]]:
        """Run `steps` steps of a batch of calls.

        programs: (batch,) program ids; args: (batch, ARG_SLOTS); observations:
        (batch, steps, n_obs). Returns return logits (batch, steps), program logits
        (batch, steps, n_programs), argument logits (batch, steps, ARG_SLOTS, arg_size) and
        the final LSTM state, each (layers, batch, d_hidden).
        """
        s = self.encoder(self.encode_inputs(observations, args))  # (batch, steps, d_state)
        e = self.program_embedding(programs).unsqueeze(1).expand(-1, s.shape[1], -1)
        h, state = self.lstm(torch.cat([s, e], dim=2), state)  # (batch, steps, d_hidden)
        end = self.end_head(h).squeeze(2)
        program_logits = self.key_head(h) @ self.program_keys.T  # (batch, steps, n_programs)
        arg_logits = torch.stack([head(h) for head in self.arg_heads], dim=2)
        return end, program_logits, arg_logits, state


def numeric_pairs(config: NPIConfig) -> list[tuple[int, int]]:
    """The pairs of numeric slots whose clipped difference is an encoder feature."""
    slots = config.numeric_slots
    return [(slots[a], slots[b]) for a in range(len(slots)) for b in range(a + 1, len(slots))]


def feature_columns(config: NPIConfig) -> tuple[dict[int, int], dict[tuple[int, int], int]]:
    """Where the encoder input holds each numeric slot's value and each pair's difference."""
    values, column = {}, 0
    for slot, size in enumerate(config.observation_sizes):
        if slot in config.numeric_slots:
            values[slot] = column
        column += size
    return values, {pair: column + k for k, pair in enumerate(numeric_pairs(config))}


def _offsets(sizes: Sequence[int]) -> Tensor:
    offsets, total = [], 0
    for size in sizes:
        offsets.append(total)
        total += size
    return torch.tensor(offsets, dtype=torch.long)


def pad_args(args: Sequence[int]) -> list[int]:
    return list(args) + [0] * (ARG_SLOTS - len(args))


@dataclass(frozen=True)
class Decision:
    """Decoded actions of a batch of steps, as plain lists."""

    returns: list[bool]
    programs: list[int]
    args: list[list[int]]  # truncated to each chosen program's arity


def valid_arg_mask(config: NPIConfig, task: Task) -> Tensor:
    """(n_programs, ARG_SLOTS, arg_size): True where a value is legal for that program's slot."""
    mask = torch.zeros(len(config.program_names), ARG_SLOTS, config.arg_size, dtype=torch.bool)
    for k, program in enumerate(task.programs):
        for slot, size in enumerate(program.arg_ranges):
            mask[k, slot, :size] = True
    return mask


def decode(
    end: Tensor, program_logits: Tensor, arg_logits: Tensor, arg_mask: Tensor, arities: Sequence[int]
) -> Decision:
    """Return when the logit >= 0 (probability >= 0.5); the program and each argument are the
    argmax, arguments restricted to the values legal for the chosen program.
    Shapes: end (batch,), program_logits (batch, n_programs), arg_logits (batch, slots, size)."""
    programs = program_logits.argmax(dim=1)
    masked = arg_logits.masked_fill(~arg_mask[programs], float("-inf"))
    values = masked.argmax(dim=2).tolist()
    chosen = programs.tolist()
    return Decision(
        (end >= 0).tolist(), chosen, [v[: arities[p]] for p, v in zip(chosen, values)]
    )


class Decider:
    """A model's decision as actions: `decode` of its logits, each distinct decision one shared
    `Action`. The policy, the exhaustive check and the check's float64 re-check all decide
    with it, so what a model does in a run is what the check checked."""

    def __init__(self, config: NPIConfig, task: Task) -> None:
        self.names = config.program_names
        self.arities = config.arities
        self.arg_mask = valid_arg_mask(config, task)
        self._actions: dict[tuple[int, tuple[int, ...], bool], Action] = {}

    def __call__(
        self, end: Tensor, program_logits: Tensor, arg_logits: Tensor
    ) -> tuple[list[Action], Decision]:
        """The actions of a batch of steps, and the decoded decision they come from.
        Shapes as for `decode`."""
        decision = decode(end, program_logits, arg_logits, self.arg_mask, self.arities)
        actions = [
            self.action(p, a, r)
            for p, a, r in zip(decision.programs, decision.args, decision.returns)
        ]
        return actions, decision

    def action(self, program: int, args: Sequence[int], ret: bool) -> Action:
        """The action of one decoded decision (program id, its arguments, return flag)."""
        key = (program, tuple(args), ret)
        action = self._actions.get(key)
        if action is None:
            action = self._actions[key] = Action(self.names[key[0]], key[1], ret)
        return action


class NPIPolicy:
    """An NPI as an interpreter policy.

    With a `PrefixCache` (the default) a frame's memory is its node in the cache's prefix tree:
    a call-local prefix seen before costs a dictionary lookup and no torch call, and only the
    prefixes an interpreter step meets for the first time go to the LSTM, as one batch.
    First visits are computed by `verifier.inference.NumpyStep`, the same step in numpy
    (a torch call at batch 1 is mostly framework overhead). With `memoize=False` every query
    is one torch step of the module and a frame's memory is its (h, c).
    The policy assumes the model's weights do not change while it is in use."""

    def __init__(
        self, model: NPI, task: Task, memoize: bool = True, cache: PrefixCache | None = None
    ) -> None:
        self.model = model.eval()
        self.program_id = {name: k for k, name in enumerate(model.config.program_names)}
        self.decide = Decider(model.config, task)
        # Numeric observations (integers) are fed as numbers, which the numpy step's one-hot
        # input table does not cover: such models run as plain torch steps.
        memoize = memoize and not model.config.numeric_slots
        self.cache = (cache or PrefixCache()) if memoize else None
        from verifier.inference import NumpyStep  # it builds on this module

        self._numpy_step = NumpyStep(model, task) if memoize else None

    def step(self, queries: Sequence[Query]) -> list[tuple[Action, Any]]:
        if self.cache is None:
            actions, states = self._lstm_step(queries, [q.memory for q in queries])
            return list(zip(actions, states))
        return self._memoized_step(self.cache, queries)

    def _memoized_step(
        self, cache: PrefixCache, queries: Sequence[Query]
    ) -> list[tuple[Action, Any]]:
        if len(queries) == 1:  # a sequential run: no batch structures
            (query,) = queries
            parent = query.memory or cache.root(query.program, query.args)
            node = cache.lookup(parent, query.observation)
            if node is None:
                action, state = self._first_visit(query, parent.state)
                node = cache.insert(parent, query.observation, action, state)
            return [(node.action, node)]
        answers: list[Any] = [None] * len(queries)
        waiting: dict[tuple[int, Observation], list[int]] = {}  # one model step per new prefix
        new: list[tuple[Node, Query]] = []
        for i, query in enumerate(queries):
            parent = query.memory or cache.root(query.program, query.args)
            node = cache.lookup(parent, query.observation)
            if node is not None:
                answers[i] = (node.action, node)
                continue
            key = (id(parent), query.observation)
            if key in waiting:
                waiting[key].append(i)
            else:
                waiting[key] = [i]
                new.append((parent, query))
        if new:
            actions, states = self._first_visits([q for _, q in new], [p.state for p, _ in new])
            for (parent, query), indices, action, state in zip(
                new, waiting.values(), actions, states, strict=True
            ):
                node = cache.insert(parent, query.observation, action, state)
                for i in indices:
                    answers[i] = (action, node)
        return answers

    def prefill(self, prefixes: PrefixSet) -> int:
        """Compute the model's nodes for the call-local prefixes in `prefixes` that the cache
        lacks, depth by depth: one batched step per depth, each prefix from its parent's node
        (so the nodes are those a run would make, only computed together). Stops where the
        cache's bound would be reached (it never clears the cache) and below nodes whose call
        returns. Returns how many nodes it computed (also counted in `cache.prefilled`)."""
        cache = self.cache
        if cache is None or not prefixes.roots:
            return 0
        if cache.size + len(prefixes.roots) >= cache.max_nodes:
            return 0
        # It allocates thousands of nodes and arrays that all stay alive: the cyclic garbage
        # collector's passes over them would find nothing and cost more than the steps.
        collecting = gc.isenabled()
        gc.disable()
        try:
            computed = self._prefill(cache, prefixes)
        finally:
            if collecting:
                gc.enable()
        cache.prefilled += computed
        return computed

    def _prefill(self, cache: PrefixCache, prefixes: PrefixSet) -> int:
        """`prefill` (with room for every root). A prefix whose parent was computed at the
        previous depth (or is a call's empty prefix) steps from that batch's rows; one whose
        parent was in the cache before (a warm cache) steps from its node's state."""
        assert self._numpy_step is not None
        numpy_step = self._numpy_step
        # (program, args, parent node, parent's row in `batch` or -1, what follows the parent)
        level: list[tuple[str, Args, Node, int, Prefixes]] = [
            (program, args, cache.root(program, args), -1, tree)
            for (program, args), tree in prefixes.roots.items()
        ]
        batch = None  # the states computed at the previous depth
        computed = 0
        while level:
            fresh: list[tuple[str, Args, Node, int, Observation, Prefixes]] = []
            older: list[tuple[Node, Query, Prefixes]] = []
            below: list[tuple[str, Args, Node, int, Prefixes]] = []
            for program, args, parent, row, tree in level:
                children = parent.children
                if not tree or children is None or (parent.depth and parent.action.ret):
                    continue  # nothing below it, too deep to store, or its call returns there
                for observation, subtree in tree.items():
                    node = children.get(observation)
                    if node is not None:
                        if subtree:
                            below.append((program, args, node, -1, subtree))
                    elif row >= 0 or parent.depth == 0:
                        fresh.append((program, args, parent, row, observation, subtree))
                    else:
                        older.append((parent, Query(program, args, observation, parent), subtree))
            room = cache.max_nodes - 1 - cache.size
            full = len(fresh) + len(older) > room
            if full:  # the cache is full after this depth: stop there
                fresh = fresh[: max(room, 0)]
                older = older[: max(room - len(fresh), 0)]
            if fresh:
                # rows of the previous batch, or zero states: one depth-1 batch has only those
                from_rows = batch is not None and fresh[0][3] >= 0
                returns, chosen, values, batch = numpy_step.step_rows(
                    [self.program_id[f[0]] for f in fresh], [f[1] for f in fresh],
                    [f[4] for f in fresh], batch if from_rows else None,
                    [f[3] for f in fresh])
                action = self.decide.action
                for j, ((program, args, parent, _, observation, subtree), state) in enumerate(
                    zip(fresh, numpy_step.states(batch), strict=True)
                ):
                    node = cache.insert(
                        parent, observation, action(chosen[j], values[j], returns[j]), state)
                    if subtree:
                        below.append((program, args, node, j, subtree))
            else:
                batch = None
            if older:
                actions, states = self._first_visits(
                    [q for _, q, _ in older], [p.state for p, _, _ in older])
                for (parent, query, subtree), action_, state in zip(
                    older, actions, states, strict=True
                ):
                    node = cache.insert(parent, query.observation, action_, state)
                    if subtree:
                        below.append((query.program, query.args, node, -1, subtree))
            computed += len(fresh) + len(older)
            level = [] if full else below
        return computed

    def _first_visits(
        self, queries: Sequence[Query], states: Sequence[Any]
    ) -> tuple[list[Action], list[Any]]:
        """One batched model step (in numpy) for the prefixes not in the cache."""
        assert self._numpy_step is not None
        result = self._numpy_step(
            [self.program_id[q.program] for q in queries],
            [q.args for q in queries],
            [q.observation for q in queries],
            states,
        )
        actions = [
            self.decide.action(p, a, r)
            for p, a, r in zip(result.programs, result.args, result.returns)
        ]
        return actions, result.states

    def _first_visit(self, query: Query, state: Any) -> tuple[Action, Any]:
        """One model step (in numpy) for one prefix not in the cache."""
        assert self._numpy_step is not None
        ret, program, args, new_state = self._numpy_step.step_one(
            self.program_id[query.program], query.args, query.observation, state
        )
        return self.decide.action(program, args, ret), new_state

    @torch.no_grad()
    def _lstm_step(
        self, queries: Sequence[Query], states: Sequence[tuple[Tensor, Tensor] | None]
    ) -> tuple[list[Action], list[tuple[Tensor, Tensor]]]:
        """One batched LSTM step: each query from its state (None: a call's zero state)."""
        c = self.model.config
        zeros = torch.zeros(c.layers, c.d_hidden)
        h0 = torch.stack([s[0] if s else zeros for s in states], dim=1)  # (layers, batch, d_hidden)
        c0 = torch.stack([s[1] if s else zeros for s in states], dim=1)
        programs = torch.tensor([self.program_id[q.program] for q in queries])
        args = torch.tensor([pad_args(q.args) for q in queries])
        observations = torch.tensor([q.observation for q in queries]).unsqueeze(1)
        end, program_logits, arg_logits, (h, c_) = self.model(
            programs, args, observations, (h0, c0)
        )
        actions, _ = self.decide(end[:, 0], program_logits[:, 0], arg_logits[:, 0])
        return actions, list(zip(h.unbind(1), c_.unbind(1)))
