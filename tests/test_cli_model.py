"""CLI: train, run and evaluate, with their exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from tests.conftest import Invoke
from verifier.checkpoint import load_checkpoint, save_checkpoint
from verifier.tasks import TASKS


def test_run_json_trace_equals_reference_trace(invoke: Invoke, bubblesort_model: Path) -> None:
    given = "[4, -2, 9, 0, 3, 3]"
    code, out, _ = invoke("run", bubblesort_model, "--input", given, "--trace", "--json")
    assert code == 0
    result = json.loads(out)
    assert set(result) == {"output", "halted", "correct", "reason", "steps"}
    assert result["correct"] and result["reason"] is None
    assert result["halted"] and result["output"] == sorted(json.loads(given))
    _, reference, _ = invoke("trace", "--task", "bubblesort", "--input", given, "--json")
    assert result["steps"] == json.loads(reference)["steps"]


def test_run_without_trace_omits_steps(invoke: Invoke, bubblesort_model: Path) -> None:
    code, out, _ = invoke("run", bubblesort_model, "--input", "[2, 1]", "--json")
    assert code == 0
    assert json.loads(out) == {"output": [1, 2], "halted": True, "correct": True, "reason": None}
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


def test_non_halting_model_reports_and_exits_1(invoke: Invoke, never_returns: Path) -> None:
    code, out, _ = invoke("run", never_returns, "--input", "[3, 1, 2]", "--json")
    result = json.loads(out)
    assert code == 1 and result["output"] is None and not result["halted"]
    assert not result["correct"] and "limit" in result["reason"]
    code, out, _ = invoke("run", never_returns, "--input", "[3, 1, 2]")
    assert code == 1 and ("did not halt within" in out or "call-depth limit" in out)


def test_wrong_answer_is_reported_and_fails_only_with_expect_correct(
    invoke: Invoke, bubblesort_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task's independent check is made to reject every answer: `run` must say so."""
    monkeypatch.setattr(TASKS["bubblesort"], "check", lambda value, output: False)
    code, out, _ = invoke("run", bubblesort_model, "--input", "[3, 1, 2]", "--json")
    result = json.loads(out)
    assert code == 0 and result["halted"] and not result["correct"] and result["reason"] is None
    code, out, _ = invoke("run", bubblesort_model, "--input", "[3, 1, 2]", "--expect-correct")
    assert code == 1 and "(WRONG)" in out
    monkeypatch.undo()
    code, _, _ = invoke("run", bubblesort_model, "--input", "[3, 1, 2]", "--expect-correct")
    assert code == 0


def test_evaluate_json(invoke: Invoke, bubblesort_model: Path, never_returns: Path) -> None:
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


def test_batched_and_one_at_a_time_evaluate_agree(invoke: Invoke, bubblesort_model: Path) -> None:
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
    invoke: Invoke, args: list[str], fragment: str, bubblesort_model: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    traces = Path(__file__).parent.parent / "traces" / "bubblesort-recursive.jsonl"
    replace = {"MODEL": str(bubblesort_model), "BAD": str(bad), "TRACES": str(traces)}
    code, out, err = invoke(*(replace.get(a, a) for a in args))
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and fragment in err, err


def test_train_command_writes_a_checkpoint_with_provenance(invoke: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "q.pt"
    code, out, err = invoke("train", "--task", "quicksort", "--count", "4", "--max-size", "5",
                            "--cover", "--seed", "2", "--hidden", "32", "-o", path)
    assert code == 0, err
    assert "every training step right" in out
    training = load_checkpoint(path).training
    assert training["converged"] and training["accuracy"] == 1.0 and training["seed"] == 2
    assert len(training["dataset_sha256"]) == 64


def test_train_budget_exhausted_exits_1(invoke: Invoke, tmp_path: Path) -> None:
    traces = Path(__file__).parent.parent / "traces" / "addition-recursive.jsonl"
    code, out, _ = invoke("train", "--task", "addition", "--data", traces, "--seed", "0",
                          "--max-steps", "2", "-o", tmp_path / "a.pt")
    assert code == 1 and "budget of 2 steps ran out" in out
    assert (tmp_path / "a.pt").exists()


TRACES = Path(__file__).parent.parent / "traces"


def test_same_train_command_gives_a_byte_identical_file(invoke: Invoke, tmp_path: Path) -> None:
    files = []
    for name in ("a.pt", "b.pt"):
        code, out, err = invoke("train", "--task", "bubblesort", "--data",
                                TRACES / "bubblesort-recursive.jsonl", "--seed", "3",
                                "--hidden", "16", "--max-steps", "40", "-o", tmp_path / name)
        assert code in (0, 1), err
        assert " s -> " in out  # the wall-clock time is reported, not stored
        files.append((tmp_path / name).read_bytes())
    assert files[0] == files[1]
    assert "seconds" not in load_checkpoint(tmp_path / "a.pt").training


@pytest.mark.parametrize(
    "output,fragment",
    [
        (".", "is a directory"),
        ("missing/m.pt", "output directory .*missing does not exist"),
        ("file/m.pt", "file is not a directory"),
    ],
)
def test_train_checks_its_output_before_training(
    invoke: Invoke, tmp_path: Path, output: str, fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import verifier.training

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained before checking the output")

    monkeypatch.setattr(verifier.training, "train", never)
    (tmp_path / "file").write_text("")
    code, _, err = invoke("train", "--task", "bubblesort", "--data",
                          TRACES / "bubblesort-recursive.jsonl", "--seed", "0",
                          "-o", tmp_path / output)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert re.search(fragment, err), err
    assert not (tmp_path / "missing").exists()


def test_train_refuses_a_dataset_that_disagrees_with_the_reference(
    invoke: Invoke, tmp_path: Path
) -> None:
    lines = (TRACES / "bubblesort-recursive.jsonl").read_text().splitlines()
    record = json.loads(lines[2])
    step = next(s for s in record["steps"] if s["action"]["program"] == "PTR")
    step["action"]["args"] = [1, 0]  # one pointer moved the wrong way
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join([*lines[:2], json.dumps(record), *lines[3:]]) + "\n")
    code, out, err = invoke("train", "--task", "bubblesort", "--data", data, "--seed", "0",
                            "-o", tmp_path / "m.pt")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert f"{data}:3: trace disagrees with the recursive reference program: step " in err
    assert "recorded PTR(I2, LEFT), reference PTR(I2, RIGHT)" in err
    assert not (tmp_path / "m.pt").exists()


def test_train_refuses_a_header_only_dataset(invoke: Invoke, tmp_path: Path) -> None:
    data = tmp_path / "h.jsonl"
    data.write_text((TRACES / "bubblesort-recursive.jsonl").read_text().splitlines()[0] + "\n")
    code, _, err = invoke("train", "--task", "bubblesort", "--data", data, "--seed", "0",
                          "-o", tmp_path / "m.pt")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "holds no traces (only a header)" in err


@pytest.mark.parametrize(
    "content,fragment",
    [
        (b"", "is empty, not an npi-verify model file"),
        (b"a text file\nnot a model\n", "is not an npi-verify model file"),
        (bytes(range(7, 256)) * 9, "is not an npi-verify model file"),
        (None, "is a directory, not a model file"),
    ],
)
@pytest.mark.parametrize("command", [["run", "M", "--input", "[1]"], ["info", "M"]])
def test_non_models_get_one_clear_line(
    invoke: Invoke, tmp_path: Path, content: bytes | None, fragment: str, command: list[str]
) -> None:
    model = tmp_path / "m.pt"
    if content is None:
        model.mkdir()
    else:
        model.write_bytes(content)
    code, out, err = invoke(*(str(model) if a == "M" else a for a in command))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert fragment in err and "Traceback" not in err


def test_info_shows_task_config_provenance_and_digests(invoke: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "q.pt"
    code, _, err = invoke("train", "--task", "quicksort", "--count", "3", "--max-size", "3",
                          "--seed", "2", "--hidden", "8", "--max-steps", "5", "-o", path)
    assert code in (0, 1), err
    checkpoint = load_checkpoint(path)
    code, out, _ = invoke("info", path, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["task"] == "quicksort" and data["formulation"] == "recursive"
    assert data["format"] == "npi-verify-model/2" and data["config"]["d_hidden"] == 8
    assert data["training"] == checkpoint.training and data["training"]["seed"] == 2
    assert data["sha256"] == checkpoint.sha256
    assert data["weights_sha256"] == checkpoint.weights_sha256
    assert data["parameters"] == sum(p.numel() for p in checkpoint.model.parameters())
    code, out, _ = invoke("info", path)
    assert code == 0 and "quicksort (recursive), npi-verify-model/2" in out
    assert checkpoint.weights_sha256 in out and checkpoint.sha256 in out
    assert re.search(r"dataset_sha256\s+\"[0-9a-f]{64}\"", out)


def test_info_reads_a_legacy_checkpoint(
    invoke: Invoke, bubblesort_model: Path, tmp_path: Path
) -> None:
    checkpoint = load_checkpoint(bubblesort_model)
    legacy = tmp_path / "legacy.pt"
    torch.save({"format": "npi-verify-model/1", "task": "bubblesort", "formulation": "recursive",
                "config": checkpoint.model.config.to_json(),
                "state_dict": checkpoint.model.state_dict(), "training": {"seconds": 0.3}},
               legacy)
    code, out, _ = invoke("info", legacy, "--json")
    data = json.loads(out)
    assert code == 0 and data["format"] == "npi-verify-model/1"
    assert data["weights_sha256"] == checkpoint.weights_sha256
    assert data["training"] == {"seconds": 0.3}
