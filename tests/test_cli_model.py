"""CLI: train, run and evaluate, with their exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from verifier.checkpoint import load_checkpoint, save_checkpoint
from verifier.cli import main


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_run_json_trace_equals_reference_trace(bubblesort_model: Path) -> None:
    given = "[4, -2, 9, 0, 3, 3]"
    code, out, _ = invoke("run", bubblesort_model, "--input", given, "--trace", "--json")
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"output", "halted", "steps"}
    assert result["halted"] and result["output"] == sorted(json.loads(given))
    _, reference, _ = invoke("trace", "--task", "bubblesort", "--input", given, "--json")
    assert result["steps"] == json.loads(reference)["steps"]


def test_run_without_trace_omits_steps(bubblesort_model: Path) -> None:
    code, out, _ = invoke("run", bubblesort_model, "--input", "[2, 1]", "--json")
    assert code == 0 and json.loads(out) == {"output": [1, 2], "halted": True}
    code, out, _ = invoke("run", bubblesort_model, "--input", "[2, 1]")
    assert code == 0 and "output [1, 2] (correct)" in out


@pytest.fixture(scope="module")
def never_returns(bubblesort_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    checkpoint = load_checkpoint(bubblesort_model)
    with torch.no_grad():
        checkpoint.model.end_head.bias.fill_(-1000.0)
    path = tmp_path_factory.mktemp("broken") / "never-returns.pt"
    save_checkpoint(path, checkpoint.task, checkpoint.formulation, checkpoint.model, {})
    return path


def test_non_halting_model_reports_and_exits_1(never_returns: Path) -> None:
    code, out, _ = invoke("run", never_returns, "--input", "[3, 1, 2]", "--json")
    assert code == 1 and json.loads(out) == {"output": None, "halted": False}
    code, out, _ = invoke("run", never_returns, "--input", "[3, 1, 2]")
    assert code == 1 and ("did not halt within" in out or "call-depth limit" in out)


def test_evaluate_json(bubblesort_model: Path, never_returns: Path) -> None:
    code, out, _ = invoke("evaluate", bubblesort_model, "--sizes", "2,9", "--samples", "5",
                          "--seed", "1", "--json")
    assert code == 0
    assert json.loads(out) == {
        "task": "bubblesort",
        "results": [
            {"size": 2, "samples": 5, "accuracy": 1.0},
            {"size": 9, "samples": 5, "accuracy": 1.0},
        ],
    }
    code, out, _ = invoke("evaluate", never_returns, "--sizes", "3", "--samples", "4", "--json")
    assert code == 0 and json.loads(out)["results"][0]["accuracy"] == 0.0


def test_batched_and_one_at_a_time_evaluate_agree(bubblesort_model: Path) -> None:
    runs = [
        invoke("evaluate", bubblesort_model, "--sizes", "6", "--samples", "6", "--json",
               "--batch-size", size)[1]
        for size in ("1", "6")
    ]
    assert runs[0] == runs[1]


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["run", "MODEL", "--input", "[1, 2.5]"], "must be an integer"),
        (["run", "MODEL", "--input", "{"], "not valid JSON"),
        (["run", "/nonexistent.pt", "--input", "[1]"], "does not exist"),
        (["run", "BAD", "--input", "[1]"], "is not an npi-verify model file"),
        (["evaluate", "MODEL", "--sizes", "0"], "must be positive"),
        (["evaluate", "MODEL", "--sizes", "a,b"], "comma-separated integers"),
        (["train", "--task", "quicksort", "--data", "TRACES", "--seed", "0", "-o", "x.pt"],
         "holds bubblesort traces"),
        (["train", "--task", "bubblesort", "--seed", "0", "-o", "x.pt"], "needs --data"),
    ],
)
def test_bad_input_exits_2(
    args: list[str], fragment: str, bubblesort_model: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    traces = Path(__file__).parent.parent / "traces" / "bubblesort-recursive.jsonl"
    replace = {"MODEL": str(bubblesort_model), "BAD": str(bad), "TRACES": str(traces)}
    code, out, err = invoke(*(replace.get(a, a) for a in args))
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and fragment in err, err


def test_train_command_writes_a_checkpoint_with_provenance(tmp_path: Path) -> None:
    path = tmp_path / "q.pt"
    code, out, err = invoke("train", "--task", "quicksort", "--count", "4", "--max-size", "5",
                            "--cover", "--seed", "2", "--hidden", "32", "-o", path)
    assert code == 0, err
    assert "every training step right" in out
    training = load_checkpoint(path).training
    assert training["converged"] and training["accuracy"] == 1.0 and training["seed"] == 2
    assert len(training["dataset_sha256"]) == 64


def test_train_budget_exhausted_exits_1(tmp_path: Path) -> None:
    traces = Path(__file__).parent.parent / "traces" / "addition-recursive.jsonl"
    code, out, _ = invoke("train", "--task", "addition", "--data", traces, "--seed", "0",
                          "--max-steps", "2", "-o", tmp_path / "a.pt")
    assert code == 1 and "budget of 2 steps ran out" in out
    assert (tmp_path / "a.pt").exists()
