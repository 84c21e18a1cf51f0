from __future__ import annotations

from pathlib import Path

import pytest

from verifier.errors import BadFile
from verifier.tasks import TASKS
from verifier.runtime import run_reference
from verifier.traces import Sampling, call_local_states, read_dataset, write_dataset


@pytest.mark.parametrize("task_name", list(TASKS))
def test_same_seed_gives_byte_identical_dataset(task_name: str, tmp_path: Path) -> None:
    task = TASKS[task_name]
    files = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        sampling = Sampling(count=8, min_size=1, max_size=4, seed=seed)
        path = tmp_path / f"{name}.jsonl"
        write_dataset(task, "recursive", sampling.inputs(task), path, {"seed": seed})
        files.append(path.read_bytes())
    assert files[0] == files[1]
    assert files[0] != files[2]


def test_dataset_round_trip(tmp_path: Path) -> None:
    task = TASKS["quicksort"]
    path = tmp_path / "q.jsonl"
    values = Sampling(count=4, min_size=5, max_size=5, seed=0).inputs(task)
    write_dataset(task, "non-recursive", values, path, {"seed": 0})
    data = read_dataset(path)
    assert data.task is task and data.formulation == "non-recursive"
    assert [t["input"] for t in data.traces] == values
    assert all(t["output"] == sorted(t["input"]) for t in data.traces)


@pytest.mark.parametrize(
    "content",
    ["", "not json\n", '{"format": "other"}\n', '\x00\x01\x02', '[1, 2]\n'],
)
def test_malformed_dataset_is_refused(content: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(BadFile):
        read_dataset(path)


def test_dataset_with_a_corrupted_record_is_refused(tmp_path: Path) -> None:
    task = TASKS["bubblesort"]
    path = tmp_path / "b.jsonl"
    write_dataset(task, "recursive", [[2, 1]], path, {})
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n" + lines[1].replace('"program":"BSTEP"', '"program":"NOPE"', 1))
    with pytest.raises(BadFile):
        read_dataset(path)


@pytest.mark.parametrize("task_name", ["addition", "bubblesort-values"])
def test_cover_sees_more_call_local_states_than_random(task_name: str) -> None:
    task = TASKS[task_name]

    def covered(values: list) -> int:
        states: set = set()
        for value in values:
            states |= call_local_states(run_reference(task, "recursive", value).steps)
        return len(states)

    random_inputs = Sampling(count=30, min_size=1, max_size=3, seed=1).inputs(task)
    cover_inputs = Sampling(count=30, min_size=1, max_size=3, seed=1, cover=True).inputs(task)
    assert len(cover_inputs) == 30
    assert max(task.input_size(v) for v in cover_inputs) <= 3
    assert covered(cover_inputs) > covered(random_inputs)
    assert Sampling(count=30, min_size=1, max_size=3, seed=1, cover=True).inputs(task) == cover_inputs
