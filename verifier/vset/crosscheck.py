"""The guard on the Z3 semantics: replay reference runs on random inputs and compare, at every
primitive step, the observation the Python environment gives with the one Z3 computes. The
abstract fixed point is only as sound as the semantics it posts with."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verifier import smt
from verifier.runtime import run_reference
from verifier.smt import semantics_for
from verifier.tasks.base import NOP, RECURSIVE, Task
from verifier.tasks.registry import MODULES_ENV, TASKS

CROSS_CHECK_STEPS = 1_000  # random primitive steps replayed through Z3 per build


@dataclass
class CrossCheck:
    """Z3 semantics vs the Python environment on concrete primitive steps."""

    steps: int = 0
    mismatches: list[str] = field(default_factory=list)


def cross_check(task: Task, semantics: Any, steps: int, seed: int = 0) -> CrossCheck:
    """Replay reference runs on random inputs; at every primitive step compare the Python
    observation with the one the Z3 semantics computes, before and after the step."""
    result = CrossCheck()
    rng = random.Random(seed)
    while result.steps < steps:
        value = task.sample_input(rng, rng.randint(1, 8))
        env = task.initial_env(value)
        if not smt.is_initial(semantics, env):
            result.mismatches.append(f"initial environment of {value} fails the Z3 initial condition")
        for step in run_reference(task, RECURSIVE, value).steps:
            program = task.program(step.action.program)
            if not program.primitive or program.name == NOP:
                continue
            before = task.observe(env)
            symbolic, predicted = smt.concrete_observations(
                semantics, env, program.name, step.action.args
            )
            if symbolic != before:
                result.mismatches.append(f"{value}: observation differs before {program.name}")
            task.apply(env, program.name, step.action.args)
            if predicted != task.observe(env):
                result.mismatches.append(
                    f"{value}: {task.format_action(step.action)} gives {task.observe(env)} in "
                    f"Python, {predicted} in Z3"
                )
            result.steps += 1
            if result.steps >= steps or len(result.mismatches) > 10:
                return result
    return result


_WORKER = (
    "import json, sys\n"
    "from verifier.smt import semantics_for\n"
    "from verifier.vset.crosscheck import cross_check\n"
    "from verifier.tasks import get_task\n"
    "task = get_task(sys.argv[1])\n"
    "result = cross_check(task, semantics_for(task), int(sys.argv[2]))\n"
    "print(json.dumps([result.steps, result.mismatches]))\n"
)


class CrossCheckElsewhere:
    """`cross_check(task, its semantics, steps)` in a fresh Python process (the same
    interpreter and package) when the machine has a second core. The worker uses the same
    seed, so its result is the one computed here; wherever it cannot run apart (one core,
    NPI_VERIFY_WORKERS=0, no process, a worker that fails) `result` computes it in this
    process instead."""

    def __init__(self, task: Task, steps: int) -> None:
        self.task, self.steps = task, steps
        self.worker: subprocess.Popen[bytes] | None = None
        if (os.cpu_count() or 1) < 2 or os.environ.get("NPI_VERIFY_WORKERS") == "0":
            return
        package_root = str(Path(__file__).resolve().parents[2])
        paths = [package_root, *filter(None, [os.environ.get("PYTHONPATH")])]
        try:
            self.worker = subprocess.Popen(
                [sys.executable, "-c", _WORKER, task.name, str(steps)],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env=dict(os.environ, PYTHONPATH=os.pathsep.join(paths),
                         **{MODULES_ENV: os.pathsep.join(TASKS.module_paths)}),
            )
        except OSError:
            self.worker = None

    def result(self) -> CrossCheck:
        if self.worker is not None:
            output, _ = self.worker.communicate()
            try:
                count, mismatches = json.loads(output)
                if self.worker.returncode == 0 and isinstance(count, int) and isinstance(mismatches, list):
                    return CrossCheck(count, [str(m) for m in mismatches])
            except ValueError:
                pass
        return cross_check(self.task, semantics_for(self.task), self.steps)

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.kill()
            self.worker.wait()
