"""Model vs reference on every element of the verification set (design §5.3). No I/O.

V is a prefix tree per (program, args): the element (p, a, [o1..ok]) extends (p, a, [o1..ok-1]).
The check runs one batched LSTM step per tree level, so each node costs one step whatever the
number of elements below it. Every decision's margin is recorded: the distance of the return
logit from 0 (probability 0.5), and the gap between the best and second-best program logit
and argument logit (over the legal values). Decisions closer than `FRAGILE_MARGIN` are
re-checked by replaying their sequence in float64.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from verifier.npi import NPI, Decider, Decision, pad_args
from verifier.runtime import StateKey
from verifier.tasks import Task
from verifier.tasks.base import Action, Args

FRAGILE_MARGIN = 1e-3
NOISE_MARGIN = 1e-5  # float32 rounding can flip a decision this close to a tie: not trusted


@dataclass(frozen=True)
class Disagreement:
    state: StateKey
    model: Action
    reference: Action


@dataclass(frozen=True)
class CheckResult:
    checked: int
    disagreements: list[Disagreement]
    min_margin: float
    fragile: int  # decisions with margin below FRAGILE_MARGIN, re-checked in float64
    fragile_flipped: int  # of those, decisions whose float64 value differs
    # (k, count): decisions with margin in [10^k, 10^(k+1)); k = None for margins <= 0
    margin_histogram: tuple[tuple[int | None, int], ...] = ()

    @property
    def agrees(self) -> bool:
        return not self.disagreements and self.fragile_flipped == 0 and not self.near_tie

    @property
    def near_tie(self) -> bool:
        """Some decision is within float32 noise of a tie (or its logits are not finite)."""
        return self.min_margin < NOISE_MARGIN


def check_model(
    model: NPI, task: Task, states: Mapping[StateKey, Action], batch_size: int = 4096
) -> CheckResult:
    """Compare the model's decision with the reference action on every state of V.
    V must be prefix-closed (every element's prefixes are elements too), as V always is."""
    model = model.eval()
    decide = Decider(model.config, task)
    ids = {name: k for k, name in enumerate(model.config.program_names)}
    levels: dict[int, list[StateKey]] = {}
    for key in states:
        levels.setdefault(len(key[2]), []).append(key)
    c = model.config
    zero = torch.zeros(c.layers, 1, c.d_hidden)
    # The previous level's (h, c), one column per state, then a zero column (row -1) for
    # the first step of a call: a step gathers its parents' columns in one indexing.
    row_of: dict[StateKey, int] = {}
    previous = (zero, zero)
    padded: dict[Args, list[int]] = {}
    disagreements: list[Disagreement] = []
    margins: list[Tensor] = []
    fragile_keys: list[StateKey] = []
    for depth in sorted(levels):
        keys = levels[depth]
        new_rows: dict[StateKey, int] = {}
        hs: list[Tensor] = []
        cs: list[Tensor] = []
        for start in range(0, len(keys), batch_size):
            chunk = keys[start : start + batch_size]
            rows = [row_of[(p, a, obs[:-1])] if len(obs) > 1 else -1 for p, a, obs in chunk]
            decided, margin, (h, cell) = _step(model, ids, decide, chunk, previous, rows, padded)
            for k, (key, action, m) in enumerate(zip(chunk, decided, margin.tolist())):
                new_rows[key] = start + k
                if action != states[key]:
                    disagreements.append(Disagreement(key, action, states[key]))
                if m < FRAGILE_MARGIN:
                    fragile_keys.append(key)
            margins.append(margin)
            hs.append(h)
            cs.append(cell)
        row_of = new_rows  # the parents of the next level only
        previous = (torch.cat(hs + [zero], dim=1), torch.cat(cs + [zero], dim=1))
    double = _float64_copy(model) if fragile_keys else model
    flipped = sum(_float64_differs(double, decide, key, states[key]) for key in fragile_keys)
    every = torch.cat(margins) if margins else torch.zeros(0)
    minimum = float(every.min()) if margins else float("inf")
    return CheckResult(len(states), disagreements, minimum, len(fragile_keys), flipped,
                       margin_histogram(every))


def margin_histogram(margins: Tensor) -> tuple[tuple[int | None, int], ...]:
    """Decisions per decade of margin: (k, count) for margins in [10^k, 10^(k+1)), sorted by
    k, with (None, count) first for margins <= 0 (a tie, or non-finite logits)."""
    margins = margins.double()
    positive = margins > 0
    counts: dict[int | None, int] = {}
    if int((~positive).sum()):
        counts[None] = int((~positive).sum())
    decades = torch.floor(torch.log10(margins[positive].clamp(max=1e38))).long()
    for k, n in zip(*torch.unique(decades, return_counts=True)):
        counts[int(k)] = int(n)
    return tuple(sorted(counts.items(), key=lambda item: -1000 if item[0] is None else item[0]))


def check_function(
    decide: Callable[[StateKey], Action], states: Mapping[StateKey, Action]
) -> CheckResult:
    """The same check for a policy given as a plain function of the call-local state (it has
    no logits, so no margins)."""
    disagreements = [
        Disagreement(key, decide(key), action)
        for key, action in states.items()
        if decide(key) != action
    ]
    return CheckResult(len(states), disagreements, float("inf"), 0, 0)


@torch.no_grad()
def _step(
    model: NPI,
    ids: dict[str, int],
    decide: Decider,
    keys: list[StateKey],
    previous: tuple[Tensor, Tensor],
    rows: list[int],
    padded: dict[Args, list[int]],
) -> tuple[list[Action], Tensor, tuple[Tensor, Tensor]]:
    """One LSTM step of each key from its parent's (h, c): column `rows[k]` of `previous`
    (layers, columns, d_hidden). Returns the decisions, their margins and the new (h, c)."""
    index = torch.tensor(rows)
    h0, c0 = previous[0][:, index], previous[1][:, index]  # (layers, batch, d_hidden)
    programs = torch.tensor([ids[p] for p, _, _ in keys])
    args = torch.tensor([padded.get(a) or padded.setdefault(a, pad_args(a)) for _, a, _ in keys])
    observations = torch.tensor([obs[-1] for _, _, obs in keys]).unsqueeze(1)
    end, program_logits, arg_logits, (h, cell) = model(programs, args, observations, (h0, c0))
    end, program_logits, arg_logits = end[:, 0], program_logits[:, 0], arg_logits[:, 0]
    actions, decision = decide(end, program_logits, arg_logits)
    margin = _margins(end, program_logits, arg_logits, decide.arg_mask, decision, model.config.arities)
    margin = torch.nan_to_num(margin, nan=-1.0)  # non-finite logits decide nothing
    return actions, margin, (h, cell)


def _margins(
    end: Tensor,
    program_logits: Tensor,
    arg_logits: Tensor,
    arg_mask: Tensor,
    decision: Decision,
    arities: Sequence[int],
) -> Tensor:
    """The smallest decision margin of each step (batch,)."""
    top2 = program_logits.topk(2, dim=1).values
    margin = torch.minimum(end.abs(), top2[:, 0] - top2[:, 1])
    chosen = torch.tensor(decision.programs)
    masked = arg_logits.masked_fill(~arg_mask[chosen], float("-inf"))  # (batch, slots, size)
    for slot in range(masked.shape[1]):
        used = torch.tensor([slot < arities[p] for p in decision.programs])
        legal = arg_mask[chosen, slot].sum(dim=1)
        values = masked[:, slot]
        best = values.max(dim=1).values
        if values.shape[1] < 2:  # no argument takes two values: no argument decision at all
            continue
        second = values.topk(2, dim=1).values[:, 1]
        gap = torch.where(legal >= 2, best - second, torch.full_like(best, float("inf")))
        margin = torch.where(used, torch.minimum(margin, gap), margin)
    return margin


def _float64_copy(model: NPI) -> NPI:
    double = NPI(model.config).double()
    double.load_state_dict(
        {k: v.double() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    )
    return double.eval()


@torch.no_grad()
def _float64_differs(double: NPI, decide: Decider, key: StateKey, reference: Action) -> bool:
    """Replay one state's whole sequence with the float64 copy of the model; True when that
    decision is not the reference action (a float32 decision this close to a tie is not
    trusted)."""
    program, args, observations = key
    end, program_logits, arg_logits, _ = double(
        torch.tensor([double.config.program_names.index(program)]),
        torch.tensor([pad_args(args)]),
        torch.tensor([list(observations)]),
    )
    (chosen,), _ = decide(end[:, -1], program_logits[:, -1], arg_logits[:, -1])
    return chosen != reference
