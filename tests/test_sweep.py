"""`npi-verify sweep` (verifier.sweep, verifier.executors): the grid, per-cell results,
resuming, error cells, executors that agree, and bad configs refused in one line."""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Invoke
from verifier import __version__
from verifier.errors import VerifierError
from verifier.executors import local_runner, ray_runner
from verifier.grid import parse_config, read_config
from verifier.sweep import CELL_FORMAT, SWEEP_FORMAT, TIMINGS, CellStore, run_sweep
from verifier.vcache import ENV_VAR

# A small network and few updates keep each cell to about a second: max_steps 0 leaves the
# model untrained (refuted), 300 updates certify bubble sort from one trace.
TINY = """
tasks = ["bubblesort"]
traces = [1]
seeds = [0]
[inputs]
max_size = 3
[train]
max_steps = [0, 300]
d_hidden = 32
d_state = 32
d_program = 16
"""


def write(folder: Path, text: str, name: str = "sweep.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def without_timings(table: dict[str, Any]) -> dict[str, Any]:
    cells = [{k: v for k, v in c.items() if k not in TIMINGS} for c in table["cells"]]
    return {**table, "cells": cells}


class Counting:
    """A runner that records the cells it was asked to run."""

    def __init__(self) -> None:
        self.ran: list[dict[str, Any]] = []

    def __call__(self, payloads: list[dict[str, Any]]) -> Any:
        self.ran += [p["cell"] for p in payloads]
        return local_runner(1)(payloads)


@pytest.fixture
def shared_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """One V cache for this module's tests (bubble sort's V is the same for all of them)."""
    monkeypatch.setenv(ENV_VAR, str(tmp_path_factory.getbasetemp() / "sweep-vset-cache"))


def test_sweep_trains_and_certifies_every_cell(tmp_path: Path, invoke: Invoke,
                                               shared_cache: None) -> None:
    config = write(tmp_path, TINY)
    code, out, err = invoke("sweep", config, "-o", tmp_path / "out")
    assert code == 0, err
    table = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert table["format"] == SWEEP_FORMAT and table["varied"] == ["max_steps"]
    untrained, trained = table["cells"]
    assert untrained["cell"]["hyper"]["max_steps"] == 0 and untrained["training"]["steps"] == 0
    assert untrained["verdict"] == "refuted" and untrained["disagreements"] > 0
    assert untrained["counterexample"] is not None
    assert trained["verdict"] == "certified" and trained["disagreements"] == 0
    assert trained["min_margin"] > 0 and trained["states"] == untrained["states"]
    assert len(trained["inputs"]) == 1 and all(c[t] >= 0 for c in table["cells"] for t in TIMINGS)
    assert [(r["hyper"], r["certified"], r["refuted"]) for r in table["summary"]] == [
        ({"max_steps": 0}, 0, 1), ({"max_steps": 300}, 1, 0)]
    assert "| bubblesort | 300 | 1 | 1/1 |" in out and "2 cells (2 run, 0 reused)" in out
    assert len(list((tmp_path / "out" / "cells").glob("*.json"))) == 2
    assert "[2/2] bubblesort traces=1 seed=0: certified" in err


def test_a_cell_is_the_train_and_certify_commands_it_stands_for(
        tmp_path: Path, invoke: Invoke, shared_cache: None) -> None:
    config = write(tmp_path, TINY.replace("max_steps = [0, 300]", "max_steps = 300")
                   .replace("d_state = 32\nd_program = 16\n", ""))
    assert invoke("sweep", config, "-o", tmp_path / "out").code == 0
    [cell] = json.loads((tmp_path / "out" / "sweep.json").read_text())["cells"]
    model = tmp_path / "m.pt"
    assert invoke("train", "--task", "bubblesort", "--count", 1, "--max-size", 3, "--seed", 0,
                  "--max-steps", 300, "--hidden", 32, "-o", model).code == 0
    code, out, _ = invoke("certify", model, "--json")
    certificate = json.loads(out)
    assert certificate["model"]["sha256"] == cell["model_sha256"]
    assert certificate["verdict"] == cell["verdict"]
    assert code == {"certified": 0, "refuted": 1}.get(cell["verdict"], 3)


def test_an_interrupted_sweep_resumes_without_redoing_finished_cells(
        tmp_path: Path, shared_cache: None) -> None:
    out = tmp_path / "out"
    first = parse_config({"tasks": ["bubblesort"], "traces": [1], "seeds": [0],
                          "inputs": {"max_size": 3}, "train": {"max_steps": 0}})
    runner = Counting()
    run_sweep(first, out, runner)  # as if the whole grid had been stopped after this cell
    [finished] = list((out / "cells").glob("*.json"))
    stamp = finished.stat().st_mtime_ns
    whole = parse_config({"tasks": ["bubblesort"], "traces": [1, 2], "seeds": [0, 1],
                          "inputs": {"max_size": 3}, "train": {"max_steps": 0}})
    runner.ran.clear()
    done = run_sweep(whole, out, runner)
    assert (done.reused, done.ran) == (1, 3) and len(runner.ran) == 3
    assert first.cells()[0].to_json() not in runner.ran
    assert finished.stat().st_mtime_ns == stamp
    assert len(done.table["cells"]) == 4
    runner.ran.clear()
    again = run_sweep(whole, out, runner)
    assert runner.ran == [] and again.reused == 4
    assert without_timings(again.table) == without_timings(done.table)


def test_a_sweep_killed_mid_way_keeps_its_finished_cells(tmp_path: Path,
                                                         shared_cache: None) -> None:
    out = tmp_path / "out"
    config = parse_config({"tasks": ["bubblesort"], "traces": [1], "seeds": [0, 1, 2],
                           "inputs": {"max_size": 3}, "train": {"max_steps": 0}})

    def killed_after_one(payloads: list[dict[str, Any]]) -> Any:
        yield from local_runner(1)(payloads[:1])
        raise KeyboardInterrupt  # Ctrl-C while the second cell runs

    with pytest.raises(KeyboardInterrupt):
        run_sweep(config, out, killed_after_one)
    assert not (out / "sweep.json").exists()
    [kept] = list((out / "cells").glob("*.json"))  # no temporary file is left either
    assert kept == CellStore(out).path(config.cells()[0])
    runner = Counting()
    done = run_sweep(config, out, runner)
    assert runner.ran == [c.to_json() for c in config.cells()[1:]] and done.reused == 1


def test_a_worker_of_another_version_gives_an_error_cell(tmp_path: Path,
                                                         shared_cache: None) -> None:
    config = parse_config({"tasks": ["bubblesort"], "traces": [1], "seeds": [0],
                           "inputs": {"max_size": 3}, "train": {"max_steps": 0}})

    def old_worker(payloads: list[dict[str, Any]]) -> Any:
        for result in local_runner(1)(payloads):
            yield {**result, "npi_verify": "0.0.1"}

    [cell] = run_sweep(config, tmp_path / "out", old_worker).table["cells"]
    assert cell["status"] == "error" and cell["verdict"] is None
    assert cell["error"] == "the worker runs npi-verify 0.0.1, not " + __version__


def test_a_corrupt_or_foreign_cell_file_is_run_again(tmp_path: Path, shared_cache: None) -> None:
    out = tmp_path / "out"
    config = parse_config({"tasks": ["bubblesort"], "traces": [1], "seeds": [0, 1],
                           "inputs": {"max_size": 3}, "train": {"max_steps": 0}})
    run_sweep(config, out, local_runner(1))
    store = CellStore(out)
    truncated, foreign = (store.path(c) for c in config.cells())
    truncated.write_text(truncated.read_text()[:40])  # a cell file cut short
    edited = json.loads(foreign.read_text())
    edited["cell"]["seed"] = 7  # a result of another cell under this cell's name
    foreign.write_text(json.dumps(edited))
    runner = Counting()
    done = run_sweep(config, out, runner)
    assert done.ran == 2 and runner.ran == [c.to_json() for c in config.cells()]
    older = json.loads(foreign.read_text())
    older["npi_verify"] = "0.0.1"  # a result of another version of npi-verify
    foreign.write_text(json.dumps(older))
    runner.ran.clear()
    assert run_sweep(config, out, runner).ran == 1 and runner.ran == [config.cells()[1].to_json()]
    for path in (truncated, foreign):
        data = json.loads(path.read_text())
        assert data["format"] == CELL_FORMAT and data["status"] == "done"
    assert [c["cell"]["seed"] for c in done.table["cells"]] == [0, 1]


def test_a_failing_cell_is_an_error_cell_and_is_retried_on_resume(
        tmp_path: Path, invoke: Invoke, shared_cache: None) -> None:
    config = write(tmp_path, TINY.replace("[inputs]\nmax_size = 3\n",
                                          "[inputs]\nsource = \"witness-cover\"\n")
                   .replace("traces = [1]", "traces = [1, 1000]")
                   .replace("max_steps = [0, 300]", "max_steps = 0"))
    code, out, err = invoke("sweep", config, "-o", tmp_path / "out")
    assert code == 1, err
    table = json.loads((tmp_path / "out" / "sweep.json").read_text())
    ok, failed = table["cells"]
    assert ok["status"] == "done" and ok["verdict"] == "refuted"
    assert failed["status"] == "error" and failed["verdict"] is None
    assert failed["error"].startswith("1000 traces exceed the witness cover of bubblesort's V")
    assert "\n" not in failed["error"] and "error: 1000 traces exceed" in err
    assert table["summary"][1]["errors"] == 1 and "1 errors" in out
    code, out, _ = invoke("sweep", config, "-o", tmp_path / "out")
    assert code == 1 and "2 cells (1 run, 1 reused)" in out  # the error cell ran again


@pytest.mark.slow  # two spawned workers each import torch: about 15 s on a busy 2-core machine
def test_local_processes_give_the_table_of_one_process(tmp_path: Path, shared_cache: None) -> None:
    config = parse_config({"tasks": ["bubblesort", "hanoi"], "traces": [1], "seeds": [0],
                           "inputs": {"max_size": 3},
                           "train": {"max_steps": 200, "d_hidden": 32, "d_state": 32}})
    one = run_sweep(config, tmp_path / "one", local_runner(1))
    two = run_sweep(config, tmp_path / "two", local_runner(2))
    assert two.ran == 2
    assert without_timings(one.table) == without_timings(two.table)


def test_ray_gives_the_table_of_local_processes(tmp_path: Path, shared_cache: None) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'npi-verify[ray]')")
    config = parse_config({"tasks": ["bubblesort", "hanoi"], "traces": [1], "seeds": [0],
                           "inputs": {"max_size": 3},
                           "train": {"max_steps": 200, "d_hidden": 32, "d_state": 32}})
    local = run_sweep(config, tmp_path / "local", local_runner(1))
    on_ray = run_sweep(config, tmp_path / "ray", ray_runner("local"))  # ray.init(num_cpus=2)
    assert on_ray.ran == 2
    assert without_timings(local.table) == without_timings(on_ray.table)
    assert {c["verdict"] for c in on_ray.table["cells"]} == {"certified"}


def test_ray_missing_is_one_line_exit_2(tmp_path: Path, invoke: Invoke,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_ray(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    code, out, err = invoke("sweep", write(tmp_path, TINY), "-o", tmp_path / "out", "--ray", "auto")
    assert code == 2 and out == ""
    assert err == "npi-verify: error: --ray needs Ray: pip install 'npi-verify[ray]'\n"
    assert not (tmp_path / "out" / "cells").exists()


BAD = [
    ("tasks = [\"bubblesort\"\n", "is not a TOML file"),
    ("traces = [1]\nseeds = [0]\n", "missing key 'tasks'"),
    ("colour = 1\n" + TINY, "unknown key 'colour'"),
    (TINY.replace("\"bubblesort\"", "\"bogosort\""), "bogosort"),
    (TINY.replace("traces = [1]", "traces = [0]"), "traces must be at least 1, got 0"),
    (TINY.replace("traces = [1]", "traces = []"), "traces must be a non-empty list"),
    (TINY.replace("seeds = [0]", "seeds = 3"), "seeds must be a non-empty list"),
    (TINY.replace("seeds = [0]", "seeds = [1, 1]"), "seeds lists a value twice"),
    (TINY.replace("seeds = [0]", "seeds = [true]"), "seeds must hold integers"),
    (TINY.replace("max_size = 3", "max_size = 0"), "inputs.max_size must be at least 1"),
    (TINY.replace("max_size = 3", ""), "inputs.max_size is required"),
    (TINY.replace("max_size = 3", "max_size = {hanoi = 3}"), "task in inputs.max_size"),
    (TINY.replace("max_size = 3", "source = \"best\""), "inputs.source must be one of"),
    (TINY.replace("max_size = 3", "source = \"witness-cover\"\nmax_size = 3"),
     "are for source = \"sampled\""),
    (TINY + "epochs = 3\n", "unknown hyper-parameter in [train] 'epochs'"),
    (TINY + "learning_rate = -0.1\n", "train.learning_rate must be positive"),
    (TINY + "d_key = 0\n", "train.d_key must be at least 1"),
    ("formulation = \"partial\"\n" + TINY.replace("bubblesort", "hanoi"), "partial"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m for _, m in BAD])
def test_a_bad_config_is_one_line_exit_2(tmp_path: Path, invoke: Invoke, text: str,
                                         message: str) -> None:
    code, out, err = invoke("sweep", write(tmp_path, text), "-o", tmp_path / "out")
    assert code == 2 and out == ""
    assert err.startswith("npi-verify: error: ") and err.count("\n") == 1, err
    assert message in err and str(tmp_path / "sweep.toml") in err
    assert not (tmp_path / "out").exists()  # nothing runs before the config is read


def test_bad_options_are_one_line_exit_2(tmp_path: Path, invoke: Invoke) -> None:
    config = write(tmp_path, TINY)
    for args, message in [
        (["--jobs", "0"], "--jobs must be at least 1"),
        (["--jobs", "2", "--ray", "local"], "--jobs is for local processes"),
        (["-o", tmp_path / "missing" / "out"], "does not exist"),
        (["--ray", "local", "-o", tmp_path / "sweep.toml"], "is a file"),
    ]:
        code, _, err = invoke("sweep", config, "-o", tmp_path / "out", *args)
        assert code == 2 and err.count("\n") == 1 and message in err, (args, err)
    code, _, err = invoke("sweep", tmp_path / "absent.toml", "-o", tmp_path / "out")
    assert code == 2 and "cannot read sweep config" in err and err.count("\n") == 1


def test_read_config_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(VerifierError, match="sweep.toml: missing key 'traces'"):
        read_config(write(tmp_path, "tasks = [\"bubblesort\"]\nseeds = [0]\n"))
    config = read_config(write(tmp_path, TINY.replace("seeds = [0]", "seeds = [0, 1]")))
    names = [cell.name for cell in config.cells()]
    assert len(set(names)) == 4 and names[0].startswith("bubblesort-recursive-n1-s0-")


def test_v_is_built_once_before_cells_run_side_by_side(tmp_path: Path) -> None:
    from verifier.executors import build_vsets
    from verifier.vcache import cache_dir

    cells = parse_config({"tasks": ["bubblesort", "bubblesort-int"], "traces": [1],
                          "seeds": [0, 1], "inputs": {"max_size": 3}}).cells()
    payloads = [{"cell": c.to_json()} for c in cells]
    payloads.append({"cell": {**cells[0].to_json(), "task": "bogosort"}})  # left to its cell
    folder = cache_dir()
    assert not folder.exists() or not any(folder.rglob("*.json.gz"))
    build_vsets(payloads)
    assert len(list(folder.rglob("*.json.gz"))) == 1  # bubblesort's; bubblesort-int has none


def test_a_worker_loads_the_task_module_of_a_plug_in_task(
        tmp_path: Path, registry_restored: None, shared_cache: None) -> None:
    from verifier.sweep import run_cell, task_modules
    from verifier.tasks import TASKS, load_task_module

    example = Path(__file__).parent.parent / "docs" / "examples" / "reverse_task.py"
    load_task_module(str(example))
    assert task_modules(("reverse", "bubblesort")) == [str(example.resolve())]
    [cell] = parse_config({"tasks": ["reverse"], "traces": [1], "seeds": [0],
                           "inputs": {"max_size": 3}, "train": {"max_steps": 0}}).cells()
    del TASKS["reverse"]  # as in a fresh worker process, which has only the built-in tasks
    TASKS.module_paths.remove(str(example.resolve()))
    result = run_cell({"cell": cell.to_json(), "task_modules": task_modules(("bubblesort",))})
    assert result["status"] == "error" and "unknown task 'reverse'" in result["error"]
    result = run_cell({"cell": cell.to_json(), "task_modules": [str(example.resolve())]})
    assert result["status"] == "done", result["error"]
    assert result["verdict"] in ("refuted", "inconclusive")
