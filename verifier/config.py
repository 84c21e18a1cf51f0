"""The configurations of the network and its training: plain frozen dataclasses, no torch, so
the command line can show their defaults without importing torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from verifier.tasks import Task

ARG_SLOTS = 3


@dataclass(frozen=True)
class NPIConfig:
    """Sizes of the network; the task fixes the first four, the rest are hyper-parameters."""

    observation_sizes: tuple[int, ...]
    program_names: tuple[str, ...]
    arg_size: int  # values per argument slot (the largest argument range of the task)
    arities: tuple[int, ...]  # arity of each program, aligned with program_names
    d_state: int = 64
    d_hidden: int = 128
    d_program: int = 32
    d_key: int = 16
    layers: int = 2
    # Observation slots fed as numbers (value / numeric_scale) instead of one-hot; each pair
    # of them also gives the clipped difference clamp(v_i - v_j, -1, 1) computed exactly in
    # integers. Empty for every finite-alphabet task, and then left out of `to_json`, so the
    # configs (and weights digests) of older checkpoints are unchanged.
    numeric_slots: tuple[int, ...] = ()
    numeric_scale: int = 1

    @classmethod
    def for_task(cls, task: Task, **sizes: int) -> NPIConfig:
        ranges = [r for p in task.programs for r in p.arg_ranges]
        return cls(
            observation_sizes=tuple(len(v) for v in task.observation_values),
            program_names=tuple(p.name for p in task.programs),
            arg_size=max(ranges, default=1),
            arities=tuple(p.arity for p in task.programs),
            numeric_slots=tuple(task.numeric_slots),
            numeric_scale=task.numeric_scale if task.numeric_slots else 1,
            **sizes,
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.numeric_slots:
            del data["numeric_slots"], data["numeric_scale"]
        return data


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    max_steps: int = 4000  # optimizer updates
    learning_rate: float = 3e-3
    batch_size: int = 256
    check_every: int = 20  # updates between full training-set accuracy checks
