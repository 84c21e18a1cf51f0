"""Benchmark the model targets of the NPI issue in one run and print the measured ratios.

    python bench/model_targets.py

1. Training time of every task's recursive model from its shipped dataset (seed 0, as
   models/regenerate.sh does), against the 5-minute budget.
2. Batched vs one-at-a-time evaluation of 30 bubble-sort arrays of length 20 with
   models/bubblesort.pt, side by side: wall time, ratio, interpreter steps per second.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from verifier.checkpoint import load_checkpoint  # noqa: E402
from verifier.evaluation import correct, evaluation_inputs, run_model  # noqa: E402
from verifier.npi import NPIConfig, NPIPolicy  # noqa: E402
from verifier.traces import read_dataset  # noqa: E402
from verifier.tasks import TASKS  # noqa: E402
from verifier.tasks.base import RECURSIVE  # noqa: E402
from verifier.training import TrainConfig, steps_from_records, train  # noqa: E402

BUDGET_SECONDS = 300.0


def training_times() -> None:
    print("== training time of each recursive model (budget 300 s)")
    for name, task in TASKS.items():
        if RECURSIVE not in task.formulations:
            continue
        data = read_dataset(ROOT / "traces" / f"{name}-{RECURSIVE}.jsonl")
        started = time.perf_counter()
        _, report = train(
            data.task, steps_from_records(data.traces), NPIConfig.for_task(data.task),
            TrainConfig(seed=0),
        )
        seconds = time.perf_counter() - started
        print(f"{name:>18}: {seconds:6.1f} s  ratio to budget {seconds / BUDGET_SECONDS:.3f}  "
              f"converged={report.converged} updates={report.steps}")


def batched_speedup() -> None:
    print("== batched vs one-at-a-time: 30 bubble-sort arrays of length 20")
    checkpoint = load_checkpoint(ROOT / "models" / "bubblesort.pt")
    task = checkpoint.task
    # plain torch steps: memoization would answer most steps of both runs without the model
    policy = NPIPolicy(checkpoint.model, task, memoize=False)
    values = evaluation_inputs(task, 20, 30, seed=0)
    timings = {}
    for batch_size in (30, 1):
        started = time.perf_counter()
        runs = run_model(policy, task, checkpoint.formulation, values, batch_size)
        seconds = time.perf_counter() - started
        steps = sum(run.step_count for run, _ in runs)
        right = sum(correct(task, run) for run, _ in runs)
        timings[batch_size] = seconds
        print(f"batch size {batch_size:>2}: {seconds:6.2f} s, {steps} steps, "
              f"{steps / seconds:,.0f} steps/s, {right}/30 right")
    print(f"speed-up of batched over one-at-a-time: {timings[1] / timings[30]:.1f}x (target >= 10x)")


if __name__ == "__main__":
    torch.set_num_threads(2)
    batched_speedup()
    training_times()
