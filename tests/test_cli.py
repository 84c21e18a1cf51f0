from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Invoke
from verifier.tasks import TASKS


def test_tasks_lists_every_registered_task(invoke: Invoke) -> None:
    code, out, _ = invoke("tasks", "--json")
    assert code == 0
    assert [t["name"] for t in json.loads(out)] == list(TASKS)


TASK_FORMULATIONS = [(name, f) for name, task in TASKS.items() for f in task.formulations]


@pytest.mark.parametrize("task_name,formulation", TASK_FORMULATIONS)
def test_trace_json_schema_and_answer(invoke: Invoke, task_name: str, formulation: str) -> None:
    task = TASKS[task_name]
    given = json.loads(task.input_example)
    code, out, _ = invoke("trace", "--task", task_name, "--input", task.input_example,
                          "--formulation", formulation, "--json")
    assert code == 0
    record = json.loads(out)
    assert set(record) == {"task", "formulation", "input", "output", "steps"}
    assert record["task"] == task_name and record["formulation"] == formulation
    assert record["input"] == given
    assert task.check(task.parse_input(given), record["output"])
    for step in record["steps"]:
        assert set(step) == {"depth", "program", "args", "observation", "action"}
        assert set(step["action"]) == {"program", "args", "return"}
        assert all(isinstance(v, int) for v in step["observation"] + step["args"])
    assert record["steps"][0]["depth"] == 0 and record["steps"][-1]["action"]["return"]


def test_trace_text_is_indented_by_depth(invoke: Invoke) -> None:
    code, out, _ = invoke("trace", "--task", "bubblesort", "--input", "[3,1,2]")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("BUBBLESORT")
    assert lines[1].startswith("  BUBBLE()") and lines[2].startswith("    PTR(I2, RIGHT)")
    assert "output [1, 2, 3]" in lines[-1]


def test_input_from_file(invoke: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text("[10, 5]")
    code, out, _ = invoke("trace", "--task", "addition", "--input", f"@{path}", "--json")
    assert code == 0 and json.loads(out)["output"] == 15


BAD_INPUTS = [
    ("addition", "[1, 2", "not valid JSON"),
    ("addition", "[1, 2, 3]", "two non-negative integers"),
    ("addition", "[-1, 2]", "non-negative"),
    ("addition", "[1.5, 2]", "must be an integer"),
    ("addition", '["12", 2]', "must be an integer"),
    ("addition", "[true, 2]", "must be an integer"),
    ("bubblesort", '{"a": 1}', "JSON list of integers"),
    ("bubblesort", "[1, 2.5]", "input[1] must be an integer"),
    ("bubblesort", "[]", "at least one element"),
    ("bubblesort-values", "[3, 10, 1]", "must be a digit 0-9"),
    ("bubblesort-values", "[3, -1]", "must be a digit 0-9"),
    ("quicksort", "[1, null]", "must be an integer"),
    ("toposort", '{"vertices": 3, "edges": [[1, 2], [2, 3], [3, 1]]}', "not acyclic"),
    ("toposort", '{"vertices": 3, "edges": [[1, 4]]}', "vertex 4, not in 1..3"),
    ("toposort", '{"vertices": 3, "edges": [[0, 1]]}', "vertex 0, not in 1..3"),
    ("toposort", '{"vertices": 0, "edges": []}', "positive integer"),
    ("toposort", '{"vertices": 2, "edges": [[1, 1]]}', "self-loop"),
    ("toposort", '{"vertices": 2, "edges": [[1, 2], [1, 2]]}', "repeats the edge"),
    ("toposort", '{"vertices": 2, "edges": [[1]]}', "pair of integers"),
    ("toposort", "[1, 2]", "JSON object"),
]


@pytest.mark.parametrize("task_name,text,fragment", BAD_INPUTS)
def test_bad_input_exits_2_with_one_line(
    invoke: Invoke, task_name: str, text: str, fragment: str
) -> None:
    code, out, err = invoke("trace", "--task", task_name, "--input", text)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and fragment in err, err


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--task", "sorting", "--input", "[1]"], "unknown task 'sorting'"),
        (["--task", "quicksort", "--input", "[1]", "--formulation", "partial"], "no formulation"),
        (["--task", "addition", "--input", "[1, 2]", "--formulation", "loop"], "no formulation"),
        (["--task", "addition", "--input", "@/nonexistent/x.json"], "cannot read --input file"),
    ],
)
def test_bad_names_exit_2_with_one_line(invoke: Invoke, args: list[str], fragment: str) -> None:
    code, _, err = invoke("trace", *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and fragment in err, err


def test_dataset_command_is_deterministic(invoke: Invoke, tmp_path: Path) -> None:
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for path in paths:
        code, _, err = invoke("dataset", "--task", "addition", "--count", "5", "--max-size", "3",
                              "--seed", "9", "-o", str(path))
        assert code == 0, err
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert len(paths[0].read_text().splitlines()) == 6


def test_dataset_from_explicit_inputs(invoke: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    code, _, err = invoke("dataset", "--task", "toposort", "--input", EXAMPLES_JSON, "-o", str(path))
    assert code == 0, err
    header, trace = (json.loads(line) for line in path.read_text().splitlines())
    assert header["inputs"] == "explicit" and trace["input"] == json.loads(EXAMPLES_JSON)


EXAMPLES_JSON = TASKS["toposort"].input_example


@pytest.mark.parametrize(
    "args",
    [
        ["--task", "addition", "--count", "5", "-o", "x.jsonl"],
        ["--task", "addition", "--count", "5", "--max-size", "0", "-o", "x.jsonl"],
        ["--task", "addition", "--count", "0", "--max-size", "3", "-o", "x.jsonl"],
    ],
)
def test_dataset_usage_errors_exit_2(invoke: Invoke, args: list[str]) -> None:
    code, _, err = invoke("dataset", *args)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
