"""Counterexample-guided training (verifier.cegis) and `train --until-certified`."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import vset_of
from verifier.cegis import (START_PROBES, LoopConfig, LoopFiles, inputs_to_add,
                            starting_inputs, train_until_certified)
from verifier.checkpoint import load_checkpoint
from verifier.cli import main
from verifier.config import NPIConfig, TrainConfig
from verifier.errors import PluginError, VerifierError
from verifier.tasks import TASKS
from verifier.runtime import run_reference
from verifier.traces import call_local_states, read_dataset
from verifier.vcache import ENV_VAR
from verifier.verify import Verdict

BUBBLESORT = TASKS["bubblesort"]
SMALL = {"d_hidden": 32, "d_state": 32, "d_program": 16}


@pytest.fixture
def shared_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """One V cache for this module's CLI tests (V is the same for all of them)."""
    folder = tmp_path_factory.getbasetemp() / "cegis-vset-cache"
    monkeypatch.setenv(ENV_VAR, str(folder))


def invoke(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_one_trace_is_refuted_then_the_counterexample_trace_gives_a_certificate() -> None:
    config = NPIConfig.for_task(BUBBLESORT, **SMALL)
    result = train_until_certified(
        BUBBLESORT, "recursive", config, TrainConfig(seed=0), LoopConfig(max_rounds=4),
        start_inputs=[[0]], vset=vset_of("bubblesort"),
    )
    first, *later = result.rounds
    assert first.verdict is Verdict.REFUTED and first.disagreements > 0 and first.traces == 1
    assert first.counterexample is not None
    assert first.added[0] == first.counterexample  # the counterexample's trace comes first
    assert result.inputs[: 1 + len(first.added)] == [[0], *first.added]
    assert later and later[0].traces == 1 + len(first.added)
    assert result.certified and later[-1].verdict is Verdict.CERTIFIED
    assert [r.number for r in result.rounds] == list(range(1, len(result.rounds) + 1))


def test_nothing_is_added_after_a_certified_round() -> None:
    config = NPIConfig.for_task(BUBBLESORT, **SMALL)
    vset = vset_of("bubblesort")
    result = train_until_certified(BUBBLESORT, "recursive", config, TrainConfig(seed=0),
                                   LoopConfig(max_rounds=3), vset=vset)
    assert result.certified and len(result.rounds) == 1 and result.rounds[0].added == ()
    assert inputs_to_add(BUBBLESORT, vset, result.outcome, result.inputs, 5) == []
    assert result.inputs == vset.witness_cover()[:1]  # the default start


def test_a_start_size_starts_from_the_inputs_of_that_size_reaching_the_most_states(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vset = vset_of("bubblesort")
    def states(value: object) -> int:
        keys = call_local_states(run_reference(BUBBLESORT, "recursive", value).steps)
        return len(keys & vset.concrete.actions.keys())
    rng = random.Random(0)
    probes = [BUBBLESORT.sample_input(rng, 6) for _ in range(START_PROBES)]
    first, second = starting_inputs(BUBBLESORT, vset, LoopConfig(start=2, start_size=6))
    assert len(first) == len(second) == 6 and first in probes and second in probes
    assert states(first) == max(states(v) for v in probes)
    assert starting_inputs(BUBBLESORT, vset, LoopConfig()) == vset.witness_cover()[:1]
    monkeypatch.setattr(type(BUBBLESORT), "loop_defaults", {"start_size": 6})  # declared
    assert starting_inputs(BUBBLESORT, vset, LoopConfig()) == [first]
    assert starting_inputs(BUBBLESORT, vset, LoopConfig(start_size=0)) == vset.witness_cover()[:1]
    with pytest.raises(VerifierError, match="exceeds the 50 random inputs"):
        starting_inputs(BUBBLESORT, vset, LoopConfig(start=START_PROBES + 1))


def test_a_task_declares_loop_defaults_and_the_options_override_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert LoopConfig().for_task(BUBBLESORT) == LoopConfig(1, 10, 5, 0)
    monkeypatch.setattr(type(BUBBLESORT), "loop_defaults", {"start": 2, "max_rounds": 15})
    assert LoopConfig().for_task(BUBBLESORT) == LoopConfig(2, 15, 5, 0)  # what the loop runs
    assert LoopConfig(start=3, start_size=4).for_task(BUBBLESORT) == LoopConfig(3, 15, 5, 4)
    config = NPIConfig.for_task(BUBBLESORT, **SMALL)
    result = train_until_certified(BUBBLESORT, "recursive", config, TrainConfig(seed=0, max_steps=0),
                                   LoopConfig(max_rounds=1), vset=vset_of("bubblesort"))
    assert len(result.inputs) == 2 and result.config == LoopConfig(2, 1, 5, 0)
    for wrong, fragment in (({"rounds": 3}, "names no loop option"),
                            ({"start": 0}, "--start must be at least 1")):
        monkeypatch.setattr(type(BUBBLESORT), "loop_defaults", wrong)
        with pytest.raises(PluginError, match=fragment):
            LoopConfig().for_task(BUBBLESORT)


def test_until_certified_logs_rounds_records_history_and_writes_three_files(
    tmp_path: Path, shared_cache: None
) -> None:
    path = tmp_path / "m.pt"
    code, out, err = invoke("train", "--task", "bubblesort", "--until-certified", "--seed", "0",
                            "--hidden", "32", "--max-steps", "40", "--max-rounds", "4", "-o", path)
    assert code == 0, err
    logged = [line for line in err.splitlines() if line.startswith("round ")]
    files = LoopFiles.beside(path)
    assert (files.dataset, files.certificate) == (tmp_path / "m.traces.jsonl",
                                                  tmp_path / "m.cert.json")
    training = load_checkpoint(path).training
    history = training["loop"]["rounds"]
    assert len(history) == len(logged) >= 2  # a refuted round came first
    for line, entry in zip(logged, history):
        assert line.startswith(f"round {entry['round']}: {entry['traces']} traces, "
                               f"{entry['steps']} updates")
        assert f"{entry['verdict']}: {entry['disagreements']} of {entry['states']} states" in line
    assert history[0]["verdict"] == "refuted" and history[-1]["verdict"] == "certified"
    assert [e["traces"] + e["added"] for e in history[:-1]] == [e["traces"] for e in history[1:]]
    assert training["steps"] == sum(e["steps"] for e in history)
    assert training["method"] == "counterexample-guided" and training["loop"]["verdict"] == "certified"
    data = read_dataset(files.dataset)
    assert len(data.traces) == history[-1]["traces"] and data.header["rounds"] == [
        e["traces"] for e in history]
    assert training["dataset"] == str(files.dataset) and training["dataset_sha256"] == data.sha256
    certificate = json.loads(files.certificate.read_text())
    assert certificate["verdict"] == "certified"
    assert certificate["model"]["sha256"] == load_checkpoint(path).sha256
    assert "certified after" in out and str(files.certificate) in out
    code, _, err = invoke("check", files.certificate)  # the gate accepts it as written
    assert code == 0, err


def test_same_command_and_seed_give_byte_identical_files(tmp_path: Path, shared_cache: None) -> None:
    path = tmp_path / "m.pt"
    written = []
    for _ in range(2):
        code, _, err = invoke("train", "--task", "bubblesort", "--until-certified", "--seed", "1",
                              "--hidden", "16", "--max-steps", "40", "--max-rounds", "3",
                              "-o", path)
        assert code in (0, 1), err
        written.append((path.read_bytes(), (tmp_path / "m.traces.jsonl").read_bytes()))
    assert written[0] == written[1]
    assert "seconds" not in json.dumps(load_checkpoint(path).training)


def test_a_budget_that_runs_out_exits_1_with_the_last_certificate(
    tmp_path: Path, shared_cache: None
) -> None:
    path = tmp_path / "m.pt"
    code, out, err = invoke("train", "--task", "bubblesort", "--until-certified", "--seed", "0",
                            "--hidden", "16", "--max-steps", "0", "--max-rounds", "2", "-o", path)
    assert code == 1, err
    certificate = json.loads((tmp_path / "m.cert.json").read_text())
    assert certificate["verdict"] == "refuted" and "counterexample" in certificate
    history = load_checkpoint(path).training["loop"]["rounds"]
    assert [e["verdict"] for e in history] == ["refuted", "refuted"]
    assert certificate["counterexample"]["input"] == history[-1]["counterexample"]
    assert "refuted after 2 rounds" in out and "counterexample:" in out
    assert (tmp_path / "m.traces.jsonl").exists()


@pytest.mark.parametrize("args,fragment", [
    (["--until-certified", "--count", "3", "--max-size", "2"], "picks its own traces"),
    (["--start", "2"], "need --until-certified"),
    (["--until-certified", "--start", "0"], "--start must be at least 1"),
    (["--until-certified", "--max-rounds", "0"], "--max-rounds must be at least 1"),
    (["--until-certified", "--start-size", "-1"], "--start-size must be at least 0"),
    (["--start-size", "3"], "need --until-certified"),
    (["--until-certified", "--start", "3"], "exceeds the witness cover"),
])
def test_bad_loop_options_are_one_line_and_exit_2(
    tmp_path: Path, shared_cache: None, args: list[str], fragment: str
) -> None:
    code, _, err = invoke("train", "--task", "bubblesort", "--seed", "0", *args,
                          "-o", tmp_path / "m.pt")
    assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err
    assert not (tmp_path / "m.pt").exists()


def test_numeric_observation_tasks_are_refused() -> None:
    task = TASKS["bubblesort-int"]
    with pytest.raises(VerifierError, match="numeric observations"):
        train_until_certified(task, "recursive", NPIConfig.for_task(task), TrainConfig(),
                              LoopConfig())


def test_dataset_and_certificate_go_where_they_are_told(tmp_path: Path, shared_cache: None) -> None:
    (tmp_path / "traces").mkdir()
    path, dataset, certificate = (tmp_path / "m.pt", tmp_path / "traces" / "d.jsonl",
                                  tmp_path / "c.json")
    code, _, err = invoke("train", "--task", "bubblesort", "--until-certified", "--seed", "0",
                          "--hidden", "16", "--max-steps", "40", "--max-rounds", "1",
                          "--dataset", dataset, "--certificate", certificate, "-o", path)
    assert code in (0, 1), err
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["c.json", "d.jsonl",
                                                                          "m.pt"]
    assert load_checkpoint(path).training["dataset"] == str(dataset)
    assert json.loads(certificate.read_text())["model"]["sha256"] == load_checkpoint(path).sha256


@pytest.mark.parametrize("args,fragment", [
    (["--dataset", "d.jsonl"], "need --until-certified"),
    (["--until-certified", "--certificate", "m.pt"], "three different files"),
    (["--until-certified", "--dataset", "missing/d.jsonl"], "missing"),
])
def test_bad_loop_file_options_are_one_line_and_exit_2(
    tmp_path: Path, shared_cache: None, args: list[str], fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke("train", "--task", "bubblesort", "--seed", "0", *args, "-o", "m.pt")
    assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err
    assert not (tmp_path / "m.pt").exists()
