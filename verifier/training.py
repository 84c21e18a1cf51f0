"""Task-agnostic training of an NPI on call-local sequences.

Because the hidden state is reset at every call, each call of a trace is an independent
training sequence: (program, args, observations) in, (return, next program, next args) out.
Identical calls are kept once. Training stops as soon as every step of every call is decoded
right, or when the step budget runs out (reported, never hidden).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from verifier import __version__
from verifier.config import ARG_SLOTS, NPIConfig, TrainConfig
from verifier.errors import VerifierError
from verifier.npi import NPI, decode, pad_args, valid_arg_mask
from verifier.runtime import Step, split_calls
from verifier.tasks import Task
from verifier.tasks.base import Action
from verifier.traces import TrainingSet


@dataclass(frozen=True)
class CallBatch:
    """Unique calls padded to one tensor batch. n = calls, t = longest call."""

    programs: Tensor  # (n,)
    args: Tensor  # (n, ARG_SLOTS)
    observations: Tensor  # (n, t, n_obs)
    returns: Tensor  # (n, t) float targets
    next_programs: Tensor  # (n, t)
    next_args: Tensor  # (n, t, ARG_SLOTS)
    step_mask: Tensor  # (n, t) True on real steps
    arg_mask: Tensor  # (n, t, ARG_SLOTS) True on slots the target program uses

    @property
    def steps(self) -> int:
        return int(self.step_mask.sum())

    def subset(self, index: Tensor) -> CallBatch:
        return CallBatch(*(getattr(self, f)[index] for f in self.__dataclass_fields__))


@dataclass(frozen=True)
class TrainReport:
    steps: int
    accuracy: float  # fraction of training steps decoded right
    converged: bool
    seconds: float
    calls: int
    call_steps: int


def steps_from_records(records: Iterable[Mapping[str, Any]]) -> list[list[Step]]:
    """Trace records (`trace --json` objects) as lists of interpreter steps, one per trace."""
    return [
        [
            Step(
                s["depth"],
                s["program"],
                tuple(s["args"]),
                tuple(s["observation"]),
                Action.from_json(s["action"]),
            )
            for s in record["steps"]
        ]
        for record in records
    ]


def unique_calls(traces: Iterable[list[Step]]) -> list[list[Step]]:
    """Every distinct call of the traces, in first-seen order."""
    seen: dict[tuple, list[Step]] = {}
    for steps in traces:
        for call in split_calls(steps):
            key = (call[0].program, call[0].args) + tuple((s.observation, s.action) for s in call)
            seen.setdefault(key, call)
    return list(seen.values())


def call_batch(config: NPIConfig, calls: list[list[Step]]) -> CallBatch:
    ids = {name: k for k, name in enumerate(config.program_names)}
    n, t, n_obs = len(calls), max(len(c) for c in calls), len(config.observation_sizes)
    observations = torch.zeros(n, t, n_obs, dtype=torch.long)
    returns = torch.zeros(n, t)
    next_programs = torch.zeros(n, t, dtype=torch.long)
    next_args = torch.zeros(n, t, ARG_SLOTS, dtype=torch.long)
    step_mask = torch.zeros(n, t, dtype=torch.bool)
    arg_mask = torch.zeros(n, t, ARG_SLOTS, dtype=torch.bool)
    for i, call in enumerate(calls):
        for j, step in enumerate(call):
            observations[i, j] = torch.tensor(step.observation)
            returns[i, j] = float(step.action.ret)
            next_programs[i, j] = ids[step.action.program]
            next_args[i, j] = torch.tensor(pad_args(step.action.args))
            step_mask[i, j] = True
            arg_mask[i, j, : len(step.action.args)] = True
    return CallBatch(
        torch.tensor([ids[c[0].program] for c in calls]),
        torch.tensor([pad_args(c[0].args) for c in calls]),
        observations,
        returns,
        next_programs,
        next_args,
        step_mask,
        arg_mask,
    )


def loss(model: NPI, batch: CallBatch) -> Tensor:
    end, program_logits, arg_logits, _ = model(batch.programs, batch.args, batch.observations)
    m = batch.step_mask
    end_loss = nn.functional.binary_cross_entropy_with_logits(end[m], batch.returns[m])
    program_loss = nn.functional.cross_entropy(program_logits[m], batch.next_programs[m])
    a = batch.arg_mask
    arg_loss = (
        nn.functional.cross_entropy(arg_logits[a], batch.next_args[a]) if a.any() else end.sum() * 0
    )
    return end_loss + program_loss + arg_loss


@torch.no_grad()
def step_accuracy(model: NPI, task: Task, batch: CallBatch) -> float:
    """Fraction of real steps whose decoded action equals the target exactly."""
    model.eval()
    end, program_logits, arg_logits, _ = model(batch.programs, batch.args, batch.observations)
    m = batch.step_mask
    decision = decode(
        end[m], program_logits[m], arg_logits[m], valid_arg_mask(model.config, task),
        model.config.arities,
    )
    targets_ret = batch.returns[m].bool().tolist()
    targets_prog = batch.next_programs[m].tolist()
    targets_args = batch.next_args[m].tolist()
    right = sum(
        r == tr and p == tp and a == ta[: len(a)] and len(a) == model.config.arities[tp]
        for r, p, a, tr, tp, ta in zip(
            decision.returns, decision.programs, decision.args, targets_ret, targets_prog,
            targets_args,
        )
    )
    model.train()
    return right / max(1, len(targets_ret))


def train(
    task: Task,
    traces: Iterable[list[Step]],
    model_config: NPIConfig,
    train_config: TrainConfig,
    progress: Callable[[int, float, float], None] | None = None,
    start: NPI | None = None,
) -> tuple[NPI, TrainReport]:
    """Train an NPI on the calls of `traces`: a fresh one, or a copy of `start` (its weights
    go on training with a fresh optimizer; `start` itself is left unchanged). Deterministic
    for a fixed seed on CPU.

    Runs on one thread: with more, the order of floating-point sums (and so the weights)
    can depend on the machine's core count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(task, traces, model_config, train_config, progress, start)
    finally:
        torch.set_num_threads(threads)


def _train(
    task: Task,
    traces: Iterable[list[Step]],
    model_config: NPIConfig,
    train_config: TrainConfig,
    progress: Callable[[int, float, float], None] | None,
    start: NPI | None,
) -> tuple[NPI, TrainReport]:
    torch.manual_seed(train_config.seed)
    generator = torch.Generator().manual_seed(train_config.seed)
    calls = unique_calls(traces)
    if not calls:
        raise VerifierError("nothing to train on: the training set has no steps")
    data = call_batch(model_config, calls)
    if start is None:
        model = NPI(model_config)
    elif start.config != model_config:
        raise ValueError("the model to continue training has another config")  # a caller's bug
    else:
        model = copy.deepcopy(start)
    optimizer = torch.optim.Adam(model.parameters(), lr=train_config.learning_rate)
    started = time.perf_counter()
    accuracy, step = step_accuracy(model, task, data), 0
    model.train()
    while accuracy < 1.0 and step < train_config.max_steps:
        index = torch.randperm(len(calls), generator=generator)[: train_config.batch_size]
        optimizer.zero_grad()
        value = loss(model, data.subset(index))
        value.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % train_config.check_every == 0 or step == train_config.max_steps:
            accuracy = step_accuracy(model, task, data)
            if progress:
                progress(step, value.item(), accuracy)
    model.eval()
    report = TrainReport(
        step, accuracy, accuracy == 1.0, time.perf_counter() - started, len(calls), data.steps
    )
    return model, report


def provenance(data: TrainingSet, settings: TrainConfig, report: TrainReport) -> dict[str, Any]:
    """What a checkpoint records about its training. Nothing time- or host-dependent (the
    wall-clock seconds are reported, not stored), so the same command gives the same file."""
    return {
        "dataset": data.source,
        "dataset_sha256": data.sha256,
        "seed": settings.seed,
        "steps": report.steps,
        "accuracy": report.accuracy,
        "converged": report.converged,
        "calls": report.calls,
        "call_steps": report.call_steps,
        "train_config": asdict(settings),
        "npi_verify": __version__,
        "torch": str(torch.__version__),
    }
