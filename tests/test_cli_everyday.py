"""Everyday use: budgets, streamed traces, progress on a terminal, closed pipes, output paths,
stdin input, help conventions, and commands that need no model never importing torch."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import Invoke
from verifier.runtime import run_reference
from verifier.tasks import TASKS
from verifier.traces import ACTION_WIDTH, trace_record

ROOT = Path(__file__).parent.parent
PYTHON = [sys.executable, "-m", "verifier"]


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("npi-verify: error: "), err
    return lines[0]


# -- budgets ------------------------------------------------------------------------------


def test_an_input_too_large_for_the_time_budget_is_refused_before_it_starts(invoke: Invoke) -> None:
    big = json.dumps(list(range(5000)))
    code, out, err = invoke("trace", "--task", "bubblesort", "--input", big, "--timeout", "5")
    assert code == 4 and out == ""
    assert "refused before starting" in one_line(err)


def test_a_time_budget_interrupts_a_long_trace_with_exit_4(invoke: Invoke) -> None:
    operand = int("9" * 30_000)
    code, _, err = invoke("trace", "--task", "addition", "--input", f"[{operand}, 1]",
                          "--timeout", "0.5")
    assert code == 4 and "time budget of 0.5 s ran out" in one_line(err)


def test_a_time_budget_interrupts_building_v(invoke: Invoke) -> None:
    code, _, err = invoke("vset", "--task", "addition", "--timeout", "0.3")
    assert code == 4 and "building the verification set" in one_line(err)


def test_a_time_budget_interrupts_certify(invoke: Invoke, bubblesort_model: Path) -> None:
    code, out, err = invoke("certify", bubblesort_model, "--timeout", "0.05")
    assert code == 4 and "certified" not in out and "certifying" in one_line(err)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_a_timeout_must_be_a_positive_number(invoke: Invoke, value: str) -> None:
    code, _, err = invoke("trace", "--task", "bubblesort", "--input", "[1]", "--timeout", value)
    assert code == 2 and "--timeout" in one_line(err)


@pytest.mark.parametrize("task_name", list(TASKS))
@given(data=st.data())
def test_min_reference_steps_is_a_lower_bound(task_name: str, data: st.DataObject) -> None:
    task = TASKS[task_name]
    value = data.draw(TASKS[task_name].strategy(large=False))
    for formulation in task.formulations:
        run = run_reference(task, formulation, value, record=False)
        assert task.min_reference_steps(value) <= run.step_count


# -- streamed traces ----------------------------------------------------------------------


def test_text_trace_lines_have_bounded_width_however_deep_the_calls(invoke: Invoke) -> None:
    operand = int("7" * 400)  # recursive addition: call depth grows with the digits
    code, out, _ = invoke("trace", "--task", "addition", "--input", f"[{operand}, {operand}]")
    assert code == 0
    widths = [len(line.split("  | ")[0]) for line in out.splitlines()[1:-1]]
    assert max(widths) <= ACTION_WIDTH + 40 and "[depth 300]" in out


@pytest.mark.parametrize("task_name", list(TASKS))
def test_streamed_json_trace_equals_the_recorded_one(invoke: Invoke, task_name: str) -> None:
    task = TASKS[task_name]
    value = task.parse_input(json.loads(task.input_example))
    code, out, _ = invoke("trace", "--task", task_name, "--input", task.input_example, "--json")
    assert code == 0
    assert json.loads(out) == trace_record(task, "recursive", run_reference(task, "recursive", value))


def test_trace_of_a_large_input_runs_in_constant_memory(tmp_path: Path) -> None:
    """10,000 digits wrote 2 GB and used 6.3 GB before; now the output is linear and memory flat."""
    operand = "9" * 10_000
    target = tmp_path / "trace.txt"
    measure = (  # a fresh parent whose only child is the trace: its peak RSS, in KB
        "import resource, subprocess, sys; "
        "code = subprocess.run(sys.argv[2:], stdout=open(sys.argv[1], 'w')).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
        "sys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", measure, str(target), *PYTHON, "trace", "--task", "addition",
         "--input", f"[{operand}, 1]"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    assert peak_kb < 300_000  # the process's whole footprint, torch not even imported
    assert target.stat().st_size < 300 * 120_000  # about 110,000 steps of at most 300 bytes


# -- terminals and pipes ------------------------------------------------------------------


def _screen(raw: str) -> list[str]:
    """What a terminal shows after `raw`: carriage returns, erase-to-end and cursor-up."""
    lines, row, col = [""], 0, 0
    for token in re.findall(r"\x1b\[\d*[A-Za-z]|\r|\n|[^\x1b\r\n]+", raw):
        if token == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        elif token == "\r":
            col = 0
        elif token.startswith("\x1b["):
            if token.endswith("K"):
                lines[row] = lines[row][:col]
            elif token.endswith("A"):
                row = max(row - int(token[2:-1] or 1), 0)
        else:
            lines[row] = lines[row][:col] + token + lines[row][col + len(token):]
            col += len(token)
    return [line.rstrip() for line in lines if line.strip()]


def _run_on_terminal(args: list[str]) -> tuple[int, bytes, str]:
    """Run with stderr on a 120-column pseudo-terminal; return (exit code, stdout, stderr)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    raw = b""
    while True:
        try:
            chunk = os.read(leader, 65536)  # drained as it comes, so the child never blocks
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        raw += chunk
    out = process.stdout.read() if process.stdout else b""
    code = process.wait(timeout=300)
    os.close(leader)
    return code, out, raw.decode()


def test_progress_shows_on_a_terminal_and_is_cleared(bubblesort_model: Path) -> None:
    code, out, err = _run_on_terminal(
        [*PYTHON, "evaluate", str(bubblesort_model), "--sizes", "40", "--samples", "4"]
    )
    assert code == 0 and b"size    40: 4/4 right" in out
    assert "size 40" in err and "problem" in err  # progress was shown while it ran ...
    assert _screen(err) == []  # ... and nothing of it is left on the screen


def test_progress_stays_off_pipes(bubblesort_model: Path) -> None:
    done = subprocess.run(
        [*PYTHON, "evaluate", str(bubblesort_model), "--sizes", "5", "--samples", "2"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0 and done.stderr == ""


def test_a_closed_pipe_ends_quietly() -> None:
    done = subprocess.run(
        f"{' '.join(PYTHON)} trace --task bubblesort --input '{list(range(40))}' | head -1",
        shell=True, capture_output=True, text=True, timeout=120, check=False,
        executable="/bin/bash",
    )
    assert done.stdout.startswith("BUBBLESORT") and done.stderr == ""
    piped = subprocess.run(
        f"set -o pipefail; {' '.join(PYTHON)} trace --task bubblesort "
        f"--input '{list(range(40))}' | head -1 >/dev/null",
        shell=True, capture_output=True, text=True, timeout=120, check=False,
        executable="/bin/bash",
    )
    assert piped.returncode == 141 and piped.stderr == ""


# -- output paths, stdin, names -----------------------------------------------------------


def test_a_missing_output_folder_is_refused_not_created(
    invoke: Invoke, tmp_path: Path, bubblesort_model: Path
) -> None:
    missing = tmp_path / "nonexistent"
    code, _, err = invoke("dataset", "--task", "bubblesort", "--count", "2", "--max-size", "2",
                          "-o", missing / "x.jsonl")
    assert code == 2 and "does not exist" in one_line(err)
    code, _, err = invoke("certify", bubblesort_model, "-o", missing / "c.json")
    assert code == 2 and "does not exist" in one_line(err)
    code, _, err = invoke("dataset", "--task", "bubblesort", "--count", "2", "--max-size", "2",
                          "-o", tmp_path)
    assert code == 2 and "is a directory" in one_line(err)
    code, _, err = invoke("appendix", ROOT / "proofs", "-o", missing / "appendix")
    assert code == 2 and "does not exist" in one_line(err)
    code, _, err = invoke("appendix", ROOT / "proofs", "-o", ROOT / "README.md")
    assert code == 2 and "is a file" in one_line(err)
    assert not missing.exists()


def test_input_from_standard_input(invoke: Invoke) -> None:
    code, out, _ = invoke("trace", "--task", "quicksort", "--input", "@-", "--json",
                          stdin="[3, 1, 2]")
    assert code == 0 and json.loads(out)["output"] == [1, 2, 3]
    code, _, err = invoke("trace", "--task", "quicksort", "--input", "@-", stdin="[3, 1,")
    assert code == 2 and "not valid JSON" in one_line(err)


def test_certify_takes_the_task_from_the_checkpoint(invoke: Invoke, bubblesort_model: Path) -> None:
    code, out, _ = invoke("certify", bubblesort_model)
    assert code == 0 and "certified" in out
    code, _, err = invoke("certify", bubblesort_model, "--task", "quicksort")
    assert code == 2 and "is a bubblesort model, not quicksort" in one_line(err)
    code, _, err = invoke("certify", bubblesort_model, "--task", "sorting")
    assert code == 2 and "unknown task 'sorting'" in one_line(err)


def test_help_version_and_choices(invoke: Invoke) -> None:
    for flag in ("-h", "--help"):
        code, out, _ = invoke(flag)
        assert code == 0 and "Exit codes" in out
        code, out, _ = invoke("trace", flag)
        assert code == 0 and "[addition|bubblesort|" in out and "[recursive|non-recursive|" in out
    for flag in ("-V", "--version"):
        code, out, _ = invoke(flag)
        assert code == 0 and re.fullmatch(r"npi-verify, version \S+\n", out)
    code, out, _ = invoke("certify", "-h")
    assert "-o, --output" in out and "Write the certificate" in out
    done = subprocess.run([*PYTHON, "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.startswith("npi-verify, version")


def test_tasks_json_gives_each_input_example_as_a_json_value(invoke: Invoke) -> None:
    code, out, _ = invoke("tasks", "--json")
    assert code == 0
    for entry in json.loads(out):
        task = TASKS[entry["name"]]
        assert not isinstance(entry["input_example"], str)
        task.parse_input(entry["input_example"])


# -- instant start ------------------------------------------------------------------------

NO_TORCH = (
    "import sys; sys.modules['torch'] = None; "  # any `import torch` now raises ImportError
    "from verifier.cli import main; main(sys.argv[1:], prog_name='npi-verify')"
)


@pytest.mark.parametrize(
    "args",
    [
        ["tasks"],
        ["--help"],
        ["--version"],
        ["trace", "--task", "toposort", "--input", '{"vertices": 3, "edges": [[1, 2]]}'],
        ["dataset", "--task", "bubblesort", "--count", "2", "--max-size", "3", "-o", "{tmp}"],
        ["vset", "--task", "bubblesort"],
    ],
)
def test_commands_without_a_model_work_with_torch_unimportable(
    args: list[str], tmp_path: Path
) -> None:
    args = [a.replace("{tmp}", str(tmp_path / "d.jsonl")) for a in args]
    done = subprocess.run([sys.executable, "-c", NO_TORCH, *args], capture_output=True,
                          text=True, timeout=300, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr


# -- budgets that run out in awkward places -------------------------------------------------


def test_a_budget_running_out_inside_z3_is_raised_once_outside_it(
    capfd: pytest.CaptureFixture[str],
) -> None:
    import time

    import z3

    from verifier.budget import BudgetExceeded, time_budget

    started = time.monotonic()
    with pytest.raises(BudgetExceeded), time_budget(0.2, "solving"):
        while time.monotonic() - started < 60:  # Z3 work between plain Python work, as in V
            x = z3.Ints(" ".join(f"x{k}" for k in range(30)))
            solver = z3.Solver()
            solver.add(z3.Distinct(*x), *(v >= 0 for v in x), *(v < 30 for v in x))
            solver.check()
            sum(k * k for k in range(20_000))
    assert time.monotonic() - started < 60  # it was raised, not swallowed by Z3
    assert "Exception ignored" not in capfd.readouterr().err


@pytest.mark.parametrize("value", ["1e10", "1e8000"])
def test_a_timeout_beyond_what_the_timer_takes_is_refused(invoke: Invoke, value: str) -> None:
    code, _, err = invoke("trace", "--task", "bubblesort", "--input", "[1]", "--timeout", value)
    assert code == 2 and "--timeout" in one_line(err)


def test_the_console_script_ends_at_once_when_the_budget_runs_out() -> None:
    started = __import__("time").monotonic()
    done = subprocess.run([*PYTHON, "certify", "models/quicksort.pt", "--timeout", "1"],
                          capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    assert done.returncode == 4 and done.stdout == ""
    assert "time budget of 1 s ran out" in one_line(done.stderr)
    assert __import__("time").monotonic() - started < 30  # not the minutes a certify takes


def test_check_reports_what_it_finished_when_the_budget_runs_out(
    invoke: Invoke, tmp_path: Path
) -> None:
    summary = tmp_path / "summary.md"
    code, out, err = invoke("check", ROOT / "proofs" / "bubblesort.json",
                            ROOT / "proofs" / "addition.json", "--timeout", "0.5", "--json",
                            "--summary", summary)
    assert code == 4
    report = json.loads(out)
    assert report["exit_code"] == 4
    assert {r["failure"] for r in report["results"]} == {"budget-exceeded"}
    assert len(report["results"]) == 2 and "budget-exceeded" in summary.read_text()
    assert re.search(r"0 passed, 2 failed in \d", err)
