"""Tasks defined outside npi-verify: the tutorial's example as a task module, plug-ins found
through entry points, and broken definitions, each refused in one line with exit 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.conftest import run_cli
from verifier.tasks import TASKS

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "reverse_task.py"
TUTORIAL = ROOT / "docs" / "new-task.md"


@pytest.fixture(autouse=True)
def _registry_restored(registry_restored: None) -> None:
    """Task modules loaded by a test leave the registry (and sys.modules) as they found it."""


invoke = run_cli  # the suite's CLI runner (tests/conftest.py), called directly here


def _variant(tmp_path: Path, name: str, *edits: tuple[str, str]) -> Path:
    """The example task with `edits` (old, new) applied, as a file of its own."""
    text = EXAMPLE.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    return path


def test_tutorial_snippets_are_the_example_code() -> None:
    """Every Python snippet of docs/new-task.md is the example's code, so the tutorial cannot
    drift from a task that works."""
    example = EXAMPLE.read_text()
    blocks = re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), re.S)
    assert len(blocks) >= 3
    for block in blocks:
        lines = [line for line in textwrap.dedent(block).splitlines() if line.strip()]
        for line in lines:
            assert line.strip() in example, line


def test_example_task_traced_verified_trained_certified_and_checked(tmp_path: Path) -> None:
    module = str(EXAMPLE)
    code, out, _ = invoke("--task-module", module, "trace", "--task", "reverse",
                          "--input", "[1, 2, 3, 4, 5]")
    assert code == 0 and "output [5, 4, 3, 2, 1]" in out
    code, out, _ = invoke("vset", "--task-module", module, "--task", "reverse", "--json")
    report = json.loads(out)
    assert code == 0 and report["coverage_proved"] and report["exact"]
    code, _, err = invoke("vset", "--task-module", module, "--task", "reverse",
                          "--formulation", "non-recursive")
    assert code == 3 and "infinite" in err
    data, model, proof = tmp_path / "rev.jsonl", tmp_path / "rev.pt", tmp_path / "rev.json"
    assert invoke("--task-module", module, "dataset", "--task", "reverse", "--count", "10",
                  "--max-size", "4", "--seed", "0", "-o", str(data))[0] == 0
    assert invoke("--task-module", module, "train", "--task", "reverse", "--data", str(data),
                  "--seed", "0", "-o", str(model))[0] == 0
    code, out, _ = invoke("--task-module", module, "certify", str(model), "-o", str(proof))
    assert code == 0 and "certified" in out
    certificate = json.loads(proof.read_text())
    statuses = {o["name"]: o["status"] for o in certificate["obligations"]}
    assert statuses["termination"] == statuses["reference-correctness"] == "proved"
    definition = certificate["task_definition"]
    assert definition["module"] == "reverse_task.py"
    assert definition["origin"] == f"task module {module}"
    code, out, _ = invoke("--task-module", module, "check", str(proof))
    assert code == 0 and "certified" in out
    code, out, _ = invoke("--task-module", module, "run", str(model), "--input", "[4, 5, 6]")
    assert code == 0 and "[6, 5, 4] (correct)" in out
    code, out, _ = invoke("--task-module", module, "evaluate", str(model), "--sizes", "9,40",
                          "--samples", "3")
    assert code == 0 and out.count("3/3 right") == 2
    code, out, _ = invoke("--task-module", module, "info", str(model))
    assert code == 0 and "reverse" in out
    appendix = tmp_path / "appendix"
    appendix.mkdir()
    code, _, err = invoke("--task-module", module, "appendix", str(proof), "-o", str(appendix))
    assert code == 0, err
    text = (appendix / "appendix.md").read_text()
    assert "reverse" in text  # and its commands reproduce it: they load the task module
    assert f"npi-verify --task-module {module} certify" in text
    assert f"npi-verify --task-module {module} appendix" in text


def test_check_refuses_an_unknown_or_changed_task_definition(tmp_path: Path) -> None:
    module = _variant(tmp_path, "mine")
    data, model, proof = tmp_path / "d.jsonl", tmp_path / "m.pt", tmp_path / "p.json"
    assert invoke("--task-module", str(module), "dataset", "--task", "reverse", "--count", "10",
                  "--max-size", "4", "--seed", "0", "-o", str(data))[0] == 0
    assert invoke("--task-module", str(module), "train", "--task", "reverse", "--data",
                  str(data), "--seed", "0", "-o", str(model))[0] == 0
    assert invoke("--task-module", str(module), "certify", str(model), "-o", str(proof))[0] == 0
    del TASKS["reverse"]  # as in a fresh process without --task-module
    code, out, _ = invoke("check", str(proof), "--json")
    (result,) = json.loads(out)["results"]
    assert code == 2 and result["failure"] == "task-unknown"
    assert "--task-module" in result["message"]
    edited = _variant(tmp_path, "edited", ("step = 1 if direction", "step = +1 if direction"))
    code, out, _ = invoke("--task-module", str(edited), "check", str(proof), "--json")
    (result,) = json.loads(out)["results"]
    assert code == 1 and result["failure"] == "task-changed"


BROKEN = {
    "import-error": ([("import z3\n", "import z3\nimport no_such_module_here\n")],
                     ["trace", "--task", "reverse", "--input", "[1]"],
                     "cannot import it: ModuleNotFoundError"),
    "missing-method": ([("    def observe(self, env: Array)", "    def observed(self, env: Array)")],
                       ["trace", "--task", "reverse", "--input", "[1]"],
                       "does not define observe"),
    "not-registered": ([("@register\n", "")], ["tasks"], "it registers no task"),
    "no-routine": ([('return {"REVERSE": reverse if', 'return {"REVERSE2": reverse if')],
                   ["tasks"], "has no routine for REVERSE"),
    "no-semantics": ([("    def semantics(self)", "    def semantics_(self)")],
                     ["tasks"], "defines no semantics() method"),
    "routine-raises": ([("    if not obs[0]:", "    if not obs[3]:")],
                       ["trace", "--task", "reverse", "--input", "[1, 2]"],
                       "routine REVERSE raised IndexError"),
    "reads-environment": (
        [("    def observe(self, env: Array) -> Observation:\n",
          "    def observe(self, env: Array) -> Observation:\n        LENGTHS.append(len(env.values))\n"),
         ("I, J = 0, 1", "LENGTHS: list[int] = [0]\nI, J = 0, 1"),
         ("        yield call(\"SWAP\")\n", "        yield call(\"SWAP\" if LENGTHS[-1] != 3 else \"MOVE\", *(() if LENGTHS[-1] != 3 else (I, RIGHT)))\n")],
        ["vset", "--task", "reverse"], "reads more than its call's arguments and observations"),
    "semantics-disagree": ([('after[name] = env[name] + (1 if', 'after[name] = env[name] + (2 if')],
                           ["vset", "--task", "reverse"],
                           "its Z3 semantics disagree with its Python environment"),
    "observation-out-of-range": ([("return (int(env.i < env.j),)", "return (2 * int(env.i < env.j),)"),
                                  ('return [bit(env["i"] < env["j"])]', 'return [2 * bit(env["i"] < env["j"])]')],
                                 ["vset", "--task", "reverse"], "outside its declared values 0..1"),
    "semantics-shape": ([('return [bit(env["i"] < env["j"])]',
                          'return [bit(env["i"] < env["j"]), bit(env["i"] < 2)]')],
                        ["vset", "--task", "reverse"], "its semantics observe 2 components"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_task_module_is_one_line_naming_it_and_exit_2(tmp_path: Path, case: str) -> None:
    edits, command, fragment = BROKEN[case]
    module = _variant(tmp_path, case, *edits)
    code, out, err = invoke("--task-module", str(module), *command)
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"task module {module}" in err and fragment in err, err


def test_a_missing_task_module_is_one_line() -> None:
    code, _, err = invoke("trace", "--task-module", "/no/such/task.py", "--task", "x", "--input", "1")
    assert code == 2 and err == "npi-verify: error: task module /no/such/task.py: no such file\n"


def _install_plugin(site: Path, target: str) -> None:
    """A distribution in `site` (on PYTHONPATH) whose npi_verify.tasks entry point is `target`."""
    package = site / "reverse_plugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "task.py").write_text(EXAMPLE.read_text())
    info = site / "reverse_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: reverse-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[npi_verify.tasks]\nreverse = {target}\n")


def _run(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    paths = os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "verifier", *args], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=paths), timeout=120)


def test_an_installed_plugin_is_found_through_its_entry_point(tmp_path: Path) -> None:
    _install_plugin(tmp_path, "reverse_plugin.task")
    done = _run(tmp_path, "tasks", "--json")
    assert done.returncode == 0, done.stderr
    (task,) = [t for t in json.loads(done.stdout) if t["name"] == "reverse"]
    assert task["origin"] == "plug-in reverse"
    done = _run(tmp_path, "vset", "--task", "reverse")
    assert done.returncode == 0 and "exact: True" in done.stdout, done.stderr


def test_a_broken_entry_point_is_one_line_naming_the_plugin(tmp_path: Path) -> None:
    _install_plugin(tmp_path, "reverse_plugin.missing")
    done = _run(tmp_path, "tasks")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("npi-verify: error: plug-in reverse: cannot import "
                                  "reverse_plugin.missing: ModuleNotFoundError")


def test_a_task_whose_primitives_take_no_arguments_is_certified(tmp_path: Path) -> None:
    """Every primitive argument-free: the model has no argument decision to check (certify's
    margin computation took the top two of a single value before, and crashed)."""
    text = EXAMPLE.read_text()
    for old, new in [
        ('call("MOVE", I, RIGHT)', 'call("MOVEI")'), ('call("MOVE", J, LEFT)', 'call("MOVEJ")'),
        ('Program("MOVE", True, (("I", "J"), ("RIGHT", "LEFT"))),',
         'Program("MOVEI", True),\n        Program("MOVEJ", True),'),
        ('if program == "MOVE":', 'if program in ("MOVEI", "MOVEJ"):'),
        ("pointer, direction = args", "pointer, direction = (I, RIGHT) if program == 'MOVEI' else (J, LEFT)"),
        ('name = "i" if args[0] == I else "j"', 'name = "i" if program == "MOVEI" else "j"'),
        ("(1 if args[1] == RIGHT else -1)", '(1 if program == "MOVEI" else -1)'),
    ]:
        assert old in text, old
        text = text.replace(old, new)
    module = tmp_path / "no_arguments.py"
    module.write_text(text)
    data, model, proof = tmp_path / "d.jsonl", tmp_path / "m.pt", tmp_path / "p.json"
    assert invoke("--task-module", str(module), "dataset", "--task", "reverse", "--count", "10",
                  "--max-size", "4", "--seed", "0", "-o", str(data))[0] == 0
    assert invoke("--task-module", str(module), "train", "--task", "reverse", "--data",
                  str(data), "--seed", "0", "-o", str(model))[0] == 0
    code, out, err = invoke("--task-module", str(module), "certify", str(model), "-o", str(proof))
    assert code == 0 and "certified" in out, err
    code, out, err = invoke("check", "--independent", str(proof))
    assert code == 0 and "re-checked independently" in out, err
