from __future__ import annotations

import json
from pathlib import Path

import pytest

from verifier.errors import BadFile
from verifier.runtime import run_reference
from verifier.tasks import TASKS
from verifier.traces import (
    Sampling,
    call_local_states,
    read_dataset,
    training_set_from_file,
    write_dataset,
)


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


def _one_trace_dataset(tmp_path: Path, value: list[int]) -> tuple[Path, list[str]]:
    path = tmp_path / "b.jsonl"
    write_dataset(TASKS["bubblesort"], "recursive", [[1], value], path, {})
    return path, path.read_text().splitlines()


def test_shipped_style_dataset_agrees_with_the_reference(tmp_path: Path) -> None:
    path, _ = _one_trace_dataset(tmp_path, [3, 1, 2])
    data = training_set_from_file(path, TASKS["bubblesort"], None)
    assert len(data.records) == 2 and len(data.sha256) == 64 and data.source == str(path)


@pytest.mark.parametrize(
    "edit,fragment",
    [
        # one action changed: the first SWAP becomes a no-op return from COMPSWAP
        (lambda r: r["steps"][_first(r, "SWAP")]["action"].update(program="NOP"),
         (r"b.jsonl:3: trace disagrees with the recursive reference program: step \d+ in "
          r"COMPSWAP\(\) at depth \d, seeing .*: recorded return, reference SWAP\(I1, I2\)")),
        (lambda r: r.update(output=[1, 2, 3, 4]), "b.jsonl:3: .*recorded output \\[1,2,3,4\\]"),
        (lambda r: r["steps"].pop(), r"b.jsonl:3: .*recorded \d+ steps, the reference program"),
        (lambda r: r.update(input=[3, "x"]), "b.jsonl:3: .*must be an integer"),
    ],
)
def test_a_trace_that_disagrees_with_the_reference_is_named(
    tmp_path: Path, edit, fragment: str
) -> None:
    path, lines = _one_trace_dataset(tmp_path, [3, 1, 2])
    record = json.loads(lines[2])
    edit(record)
    path.write_text("\n".join([*lines[:2], json.dumps(record)]) + "\n")
    read_dataset(path)  # well formed: only the reference run shows the disagreement
    with pytest.raises(BadFile, match=fragment) as error:
        training_set_from_file(path, TASKS["bubblesort"], None)
    assert "\n" not in str(error.value)


def _first(record: dict, program: str) -> int:
    return next(k for k, s in enumerate(record["steps"]) if s["action"]["program"] == program)


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    path, lines = _one_trace_dataset(tmp_path, [2, 1])
    record = json.loads(lines[2])
    record["output"] = [2, 1]
    path.write_text("\n".join([lines[0], "", lines[1], "", json.dumps(record)]) + "\n")
    with pytest.raises(BadFile, match="b.jsonl:5: "):
        training_set_from_file(path, TASKS["bubblesort"], None)


def test_header_only_dataset_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    write_dataset(TASKS["bubblesort"], "recursive", [], path, {})
    assert read_dataset(path).traces == []
    with pytest.raises(BadFile, match="holds no traces"):
        training_set_from_file(path, TASKS["bubblesort"], None)
