from __future__ import annotations

import random

import torch

from tests.conftest import train_small_bubblesort
from verifier.evaluation import correct, run_model
from verifier.npi import NPIPolicy
from verifier.tasks import TASKS
from verifier.training import unique_calls
from verifier.runtime import run_reference


def test_small_model_reaches_100_percent_and_generalizes() -> None:
    model, report = train_small_bubblesort()
    assert report.converged and report.accuracy == 1.0
    assert report.seconds < 60
    task = TASKS["bubblesort"]
    rng = random.Random(5)
    values = [task.sample_input(rng, 12) for _ in range(10)]
    runs = run_model(NPIPolicy(model, task), task, "recursive", values, batch_size=10)
    assert all(correct(task, run) for run, _ in runs)


def test_training_is_deterministic_for_a_seed() -> None:
    first, _ = train_small_bubblesort(seed=3)
    second, _ = train_small_bubblesort(seed=3)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name


def test_unique_calls_drop_repeats() -> None:
    task = TASKS["bubblesort"]
    trace = run_reference(task, "recursive", [2, 1, 3]).steps
    once = unique_calls([trace])
    assert unique_calls([trace, trace]) == once
    assert len(once) < len(trace)
