"""Counterexample-guided training: from a few reference traces to a certified model.

The loop (issue 14): train on N reference traces (by default the first input of the witness
cover of V; with a `start_size`, the N random inputs of that size that reach the most states
of V), certify; if the model is refuted, add the reference traces of at most `per_round`
inputs: the counterexample's input, then inputs that reach the most disagreeing states not
reached yet (from the smallest witness of each disagreeing state, the inputs searched for V
and V's witness cover); train on from the current weights on all traces so far, and certify
again. Stop when certified, when no input
can show the failure (the verdict is inconclusive or uncertifiable), when nothing new can be
learned, or when the budget of rounds runs out.

Every round trains deterministically (one thread, fixed seed) and certifies on one thread, so
the same arguments give the same rounds, the same dataset and the same weights. The model is
the product of the whole schedule (round 1 from scratch, each later round from the weights
before it): training from scratch on the final dataset gives another model in general.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from threadpoolctl import threadpool_limits

from verifier.certificate import build_certificate, write_certificate
from verifier.check import check_model
from verifier.checkpoint import load_checkpoint, save_checkpoint
from verifier.config import NPIConfig, TrainConfig
from verifier.errors import PluginError, VerifierError
from verifier.npi import NPI, NPIPolicy
from verifier.vset.result import VerificationSet
from verifier.runtime import Step, run_reference
from verifier.tasks import Task
from verifier.traces import (TrainingSet, call_local_states, greedy_cover_sets, read_dataset,
                             write_dataset)
from verifier.training import TrainReport, provenance, train
from verifier.vcache import load_or_build
from verifier.verify import Outcome, Subject, Verdict, certify_subject

METHOD = "counterexample-guided"
START_PROBES = 50  # random inputs of the start size the starting inputs are chosen from
DEFAULTS = {"start": 1, "max_rounds": 10, "per_round": 5, "start_size": 0}  # LoopConfig's


@dataclass(frozen=True)
class LoopConfig:
    """The loop's budget: `start` traces to start from, at most `max_rounds` rounds of
    training and certifying, at most `per_round` inputs added after a refuted round. The
    starting inputs are those of size `start_size` that reach the most states of V (of
    START_PROBES random ones, seed 0), or with `start_size` 0 the first of V's witness
    cover. A field left None takes the task's `loop_defaults`, else DEFAULTS (`for_task`)."""

    start: int | None = None
    max_rounds: int | None = None
    per_round: int | None = None
    start_size: int | None = None

    @classmethod
    def from_options(cls, **options: int | None) -> LoopConfig:
        """The config with the given values; None keeps a field's default."""
        config = cls(**{k: v for k, v in options.items() if v is not None})
        config.validate()
        return config

    def validate(self) -> None:
        for name in ("start", "max_rounds", "per_round", "start_size"):
            value, least = getattr(self, name), 0 if name == "start_size" else 1
            if value is not None and value < least:
                raise VerifierError(f"--{name.replace('_', '-')} must be at least {least}, "
                                    f"got {value}")

    def for_task(self, task: Task) -> LoopConfig:
        """This config as `task`'s loop runs it: every field set, from this config, else the
        task's `loop_defaults`, else DEFAULTS. Raises PluginError for a task whose
        `loop_defaults` names an unknown field or sets one out of range."""
        unknown = set(task.loop_defaults) - set(DEFAULTS)
        if unknown:
            raise PluginError(f"{task.name}: loop_defaults names no loop option: "
                              f"{', '.join(sorted(unknown))} (options: {', '.join(DEFAULTS)})")
        declared = LoopConfig(**task.loop_defaults)
        try:
            declared.validate()
        except VerifierError as error:
            raise PluginError(f"{task.name}: loop_defaults: {error}") from None
        return LoopConfig(**{
            name: next(v for v in (getattr(self, name), getattr(declared, name), default)
                       if v is not None)
            for name, default in DEFAULTS.items()
        })


@dataclass(frozen=True)
class Round:
    """One round: what it trained on, what the training did, what certifying found and what
    it added. Wall-clock seconds are reported, never stored (`to_json` leaves them out)."""

    number: int
    traces: int  # traces trained on in this round
    steps: int  # optimizer updates of this round
    accuracy: float  # training-step accuracy at the end of the round
    converged: bool
    verdict: Verdict
    states: int  # call-local states of V checked
    disagreements: int
    min_margin: float | None  # None where nothing was checked or it is not finite
    counterexample: Any  # the counterexample's input as JSON, or None
    added: tuple[Any, ...]  # inputs (JSON) added to the training set after this round
    train_seconds: float
    certify_seconds: float

    def describe(self) -> str:
        """One log line: traces so far, what training did, the verdict, disagreements, margin."""
        margin = "n/a" if self.min_margin is None else f"{self.min_margin:.4f}"
        trained = "all training steps right" if self.converged else (
            f"training accuracy {self.accuracy:.2%}")
        text = (f"round {self.number}: {self.traces} traces, {self.steps} updates "
                f"({trained}, {self.train_seconds:.1f} s); {self.verdict.label}: "
                f"{self.disagreements} of {self.states} states disagree, minimum margin {margin}")
        if self.counterexample is not None:
            text += f"; counterexample {json.dumps(self.counterexample)}"
        if self.added:
            text += f"; adding {len(self.added)} trace{'s' if len(self.added) > 1 else ''}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.number,
            "traces": self.traces,
            "steps": self.steps,
            "accuracy": self.accuracy,
            "converged": self.converged,
            "verdict": self.verdict.label,
            "states": self.states,
            "disagreements": self.disagreements,
            "min_margin": self.min_margin,
            "counterexample": self.counterexample,
            "added": len(self.added),
        }


@dataclass
class LoopResult:
    task: Task
    formulation: str
    model: NPI
    outcome: Outcome  # the last round's certification
    inputs: list[Any]  # every training input, in the order they were added
    rounds: list[Round]
    report: TrainReport  # the last round's training
    config: LoopConfig

    @property
    def certified(self) -> bool:
        return self.outcome.verdict is Verdict.CERTIFIED

    @property
    def total_steps(self) -> int:
        return sum(r.steps for r in self.rounds)

    @property
    def train_seconds(self) -> float:
        return sum(r.train_seconds for r in self.rounds)


def train_until_certified(
    task: Task,
    formulation: str,
    model_config: NPIConfig,
    train_config: TrainConfig,
    loop: LoopConfig,
    on_round: Callable[[Round], None] | None = None,
    progress: Callable[[str], None] | None = None,
    use_cache: bool = True,
    start_inputs: list[Any] | None = None,
    vset: VerificationSet | None = None,
) -> LoopResult:
    """Run the loop (see the module's docstring), starting from `start_inputs` where given,
    else from `starting_inputs` (the result's config records the start size used); `vset`
    is V where it was built already for this task and formulation (else it comes from the V
    cache). Raises VerifierError for a task checked symbolically (numeric observations) and
    UnboundedCall where V is infinite."""
    loop.validate()
    loop = loop.for_task(task)
    task.routines(formulation)
    if task.numeric_slots:
        raise VerifierError(
            f"{task.name} has numeric observations, certified symbolically without witness "
            "inputs for its states: counterexample-guided training needs a task whose V "
            "lists them")
    say = progress or (lambda text: None)
    if vset is None:
        vset, _ = load_or_build(task, formulation, say, use_cache)
    if start_inputs is None:
        start_inputs = starting_inputs(task, vset, loop)
    inputs = list(start_inputs)
    traces = [_trace(task, formulation, v) for v in inputs]
    model: NPI | None = None
    rounds: list[Round] = []
    for number in range(1, loop.max_rounds + 1):
        head = f"round {number}/{loop.max_rounds}: {len(traces)} traces"
        model, report = train(
            task, traces, model_config, train_config, start=model,
            progress=lambda step, loss, acc, head=head: say(
                f"{head}, step {step}/{train_config.max_steps}, loss {loss:.4f}, "
                f"training accuracy {acc:.2%}"),
        )
        say(f"{head}: certifying")
        outcome = _certify(task, formulation, model, vset)
        last = number == loop.max_rounds
        added = [] if last else inputs_to_add(task, vset, outcome, inputs, loop.per_round)
        done = _round(task, number, len(traces), report, outcome, added)
        rounds.append(done)
        if on_round:
            on_round(done)
        if outcome.verdict is not Verdict.REFUTED or last or (not added and report.converged):
            break  # certified, nothing an input can show, out of rounds, or nothing new to learn
        inputs += added
        traces += [_trace(task, formulation, v) for v in added]
    assert model is not None  # at least one round ran
    return LoopResult(task, formulation, model, outcome, inputs, rounds, report, loop)


def starting_inputs(task: Task, vset: VerificationSet, loop: LoopConfig) -> list[Any]:
    """The loop's first inputs (`loop.for_task`: `start` of them): with a start size, those
    chosen greedily to reach the most states of V out of START_PROBES random inputs of that
    size (seed 0); else the first of V's witness cover. Raises VerifierError where there are
    fewer than `start` to choose from."""
    loop = loop.for_task(task)
    size = loop.start_size
    if not size:
        cover = vset.witness_cover()
        if loop.start > len(cover):
            raise VerifierError(f"--start {loop.start} exceeds the witness cover of {task.name}'s "
                                f"V ({len(cover)} inputs, which reach every witnessed state)")
        return cover[: loop.start]
    if loop.start > START_PROBES:
        raise VerifierError(f"--start {loop.start} exceeds the {START_PROBES} random inputs of "
                            f"size {size} the starting inputs are chosen from")
    rng = random.Random(0)
    pool = [task.sample_input(rng, size) for _ in range(START_PROBES)]
    states = vset.concrete.actions.keys()
    reached = [call_local_states(_trace(task, vset.formulation, v)) & states for v in pool]
    return [pool[k] for k in greedy_cover_sets(reached, count=loop.start)]


def _round(task: Task, number: int, traces: int, report: TrainReport, outcome: Outcome,
           added: list[Any]) -> Round:
    check = outcome.check
    example = outcome.counterexample
    return Round(
        number, traces, report.steps, report.accuracy, report.converged, outcome.verdict,
        check.checked if check else 0, len(check.disagreements) if check else 0,
        _finite(check.min_margin) if check else None,
        task.input_to_json(example.input) if example else None,
        tuple(task.input_to_json(v) for v in added), report.seconds, outcome.seconds,
    )


def inputs_to_add(
    task: Task, vset: VerificationSet, outcome: Outcome, have: list[Any], limit: int
) -> list[Any]:
    """After a refuted round: the counterexample's input, then inputs chosen greedily to reach
    the most disagreeing states not reached yet (ties to the smaller input), from the smallest
    witness of each disagreeing state and the inputs of V's concrete search and witness
    cover; never an input already trained on; at most `limit`. Empty unless refuted."""
    if outcome.verdict is not Verdict.REFUTED or outcome.check is None:
        return []
    wrong = {d.state for d in outcome.check.disagreements} & vset.concrete.actions.keys()
    candidates: dict[str, tuple[Any, frozenset]] = {}
    for value, keys in vset.concrete.per_input:
        if not keys.isdisjoint(wrong):
            candidates.setdefault(repr(value), (value, keys & wrong))
    for value in [vset.concrete.witness[state] for state in wrong] + vset.witness_cover():
        if repr(value) not in candidates:
            keys = call_local_states(_trace(task, vset.formulation, value))
            candidates[repr(value)] = (value, frozenset(keys & wrong))
    trained = {repr(v) for v in have}
    chosen: list[Any] = []
    if outcome.counterexample is not None and repr(outcome.counterexample.input) not in trained:
        chosen.append(outcome.counterexample.input)
    reached = set().union(*(candidates[repr(v)][1] for v in chosen if repr(v) in candidates))
    pool = sorted((c for k, c in candidates.items() if k not in trained),
                  key=lambda c: (task.input_size(c[0]), repr(c[0])))
    while len(chosen) < limit and pool:
        value, keys = max(pool, key=lambda c: len(c[1] - reached))  # first of the largest
        if not keys - reached:
            break
        chosen.append(value)
        reached |= keys
        pool = [c for c in pool if c[0] is not value]
    return chosen


def _trace(task: Task, formulation: str, value: Any) -> list[Step]:
    return run_reference(task, formulation, value).steps


def _certify(task: Task, formulation: str, model: NPI, vset: VerificationSet) -> Outcome:
    """Certify the in-memory model against the V built once for the loop, on one thread
    (torch and BLAS), so that margins and the chosen counterexample do not depend on the
    machine's core count."""
    subject = Subject(task, formulation, NPIPolicy(model, task),
                      lambda states: check_model(model, task, states))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            return certify_subject(subject, vset=vset)
    finally:
        torch.set_num_threads(threads)


def _finite(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None


@dataclass(frozen=True)
class LoopFiles:
    """Where the loop's results are written, next to the model: MODEL.pt gives
    MODEL.traces.jsonl (the final training set) and MODEL.cert.json (the last certificate)."""

    model: Path
    dataset: Path
    certificate: Path

    @classmethod
    def beside(cls, model: Path) -> LoopFiles:
        stem = model.name[: -len(model.suffix)] if model.suffix else model.name
        return cls(model, model.with_name(stem + ".traces.jsonl"),
                   model.with_name(stem + ".cert.json"))

    def moved(self, dataset: Path | None = None, certificate: Path | None = None) -> LoopFiles:
        """These files with the dataset and/or the certificate written elsewhere (None keeps
        a path). Raises VerifierError where two of the three files would be the same."""
        files = LoopFiles(self.model, dataset or self.dataset, certificate or self.certificate)
        resolved = {Path(os.path.abspath(p)) for p in (files.model, files.dataset, files.certificate)}
        if len(resolved) < 3:
            raise VerifierError("the model, its training set (--dataset) and its certificate "
                                "(--certificate) must be three different files")
        return files


def write_results(result: LoopResult, files: LoopFiles, settings: TrainConfig) -> dict[str, Any]:
    """Write the training set, the checkpoint (its provenance holds the loop's history) and
    the last round's certificate; return the certificate."""
    task, formulation = result.task, result.formulation
    write_dataset(task, formulation, result.inputs, files.dataset, {
        "inputs": METHOD,
        "seed": settings.seed,
        "rounds": [r.traces for r in result.rounds],
    })
    data = read_dataset(files.dataset)
    training_set = TrainingSet(task, formulation, data.traces, str(files.dataset), data.sha256)
    overall = dataclasses.replace(result.report, steps=result.total_steps)
    training = provenance(training_set, settings, overall)
    training["method"] = METHOD
    training["loop"] = {
        **dataclasses.asdict(result.config),
        "verdict": result.outcome.verdict.label,
        "rounds": [r.to_json() for r in result.rounds],
    }
    save_checkpoint(files.model, task, formulation, result.model, training)
    checkpoint = load_checkpoint(files.model)
    reference = Path(os.path.relpath(files.model, files.certificate.parent))
    certificate = build_certificate(checkpoint, reference, result.outcome)
    write_certificate(files.certificate, certificate)
    return certificate
