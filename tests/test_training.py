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


def test_training_goes_on_from_given_weights_and_leaves_them_unchanged() -> None:
    from verifier.config import NPIConfig, TrainConfig
    from verifier.training import train

    task = TASKS["bubblesort"]
    config = NPIConfig.for_task(task, d_hidden=16, d_state=16, d_program=8)
    small = [run_reference(task, "recursive", [0]).steps]
    first, report = train(task, small, config, TrainConfig(seed=0))
    assert report.converged
    kept = {k: v.clone() for k, v in first.state_dict().items()}
    again, report = train(task, small, config, TrainConfig(seed=7), start=first)
    assert report.steps == 0 and report.converged  # the weights already decode every step
    assert all(torch.equal(kept[k], v) for k, v in again.state_dict().items())
    more = small + [run_reference(task, "recursive", [2, 1]).steps]
    moved, report = train(task, more, config, TrainConfig(seed=0), start=first)
    assert report.converged and report.steps > 0
    assert all(torch.equal(kept[k], v) for k, v in first.state_dict().items())  # a copy moved
    assert not all(torch.equal(kept[k], v) for k, v in moved.state_dict().items())
