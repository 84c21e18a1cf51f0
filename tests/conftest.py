from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, settings

from verifier import smt
from verifier.checkpoint import save_checkpoint
from verifier.npi import NPI, NPIConfig
from verifier.smt import semantics_for
from verifier.smt.discover import load
from verifier.tasks import TASKS, Task
from verifier.traces import read_dataset
from verifier.training import TrainConfig, TrainReport, steps_from_records, train
from verifier.vcache import ENV_VAR
from verifier.vset.build import build_vset
from verifier.vset.result import VerificationSet

# Reference runs on large inputs take milliseconds each; no per-example deadline, and a
# modest example count keeps the default run fast on CI's 2 cores.
settings.register_profile(
    "npi", deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("npi")

ROOT = Path(__file__).parent.parent


@pytest.fixture(autouse=True)
def _fresh_vset_cache(
    _private_vset_cache: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test starts with an empty V cache, so a test about building V builds it (and a
    V built under one test's monkeypatches never reaches another test)."""
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "vset-cache"))


@pytest.fixture(autouse=True, scope="session")
def _private_vset_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests never read or write the user's V cache: a private cache folder for the session
    (session fixtures use it), replaced by a fresh one in each test."""
    saved = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = str(tmp_path_factory.mktemp("vset-cache"))
    yield
    if saved is None:
        del os.environ[ENV_VAR]
    else:
        os.environ[ENV_VAR] = saved
_VSETS: dict[str, VerificationSet] = {}


def vset_of(task_name: str) -> VerificationSet:
    """The recursive V of a task, built once per test session (building it is the slow part)."""
    if task_name not in _VSETS:
        _VSETS[task_name] = build_vset(TASKS[task_name])
    return _VSETS[task_name]


def train_small_bubblesort(seed: int = 0) -> tuple[NPI, TrainReport]:
    """A small recursive bubble-sort NPI trained on the shipped paper-sized dataset."""
    data = read_dataset(ROOT / "traces" / "bubblesort-recursive.jsonl")
    config = NPIConfig.for_task(data.task, d_hidden=32, d_state=32, d_program=16)
    return train(data.task, steps_from_records(data.traces), config, TrainConfig(seed=seed))


@pytest.fixture(scope="session")
def bubblesort_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained bubble-sort checkpoint file, made once per test session."""
    model, report = train_small_bubblesort()
    assert report.converged
    path = tmp_path_factory.mktemp("models") / "bubblesort.pt"
    save_checkpoint(path, TASKS["bubblesort"], "recursive", model, {"seed": 0})
    return path


class CliRun(NamedTuple):
    """What one `npi-verify` command did: exit code, standard output, standard error."""

    code: int
    out: str
    err: str


Invoke = Callable[..., CliRun]


def run_cli(*args: object, stdin: str | None = None) -> CliRun:
    """`npi-verify ARGS` in this process (click's CliRunner), arguments given as str()."""
    from click.testing import CliRunner

    from verifier.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], input=stdin)
    return CliRun(result.exit_code, result.stdout, result.stderr)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Small torch steps on a busy 2-core machine are many times slower with 2 threads (a
    module that runs many of them uses this fixture)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def registry_restored() -> Iterator[None]:
    """Task modules loaded by a test leave the task registry (and sys.modules) as they found
    it, with every built-in task loaded."""
    TASKS._ensure_loaded()
    tasks, origin, paths = dict(TASKS._tasks), dict(TASKS._origin), list(TASKS.module_paths)
    rank = dict(TASKS._rank)
    modules = set(sys.modules)
    yield
    TASKS._tasks.clear()
    TASKS._tasks.update(tasks)
    TASKS._origin.clear()
    TASKS._origin.update(origin)
    TASKS._rank.clear()
    TASKS._rank.update(rank)
    TASKS.module_paths[:] = paths
    for name in set(sys.modules) - modules:
        if name.startswith("npi_verify_task_module_"):
            del sys.modules[name]


@pytest.fixture(scope="session")
def invoke() -> Invoke:
    """The CLI tests' one way to run a command: `code, out, err = invoke("trace", ...)`."""
    return run_cli


def certify_copy(model: Path, folder: Path, name: str = "cert.json") -> Path:
    """Copy `model` to folder/model.pt and certify it into folder/proofs/`name` (a certificate
    that names its model relative to itself, as shipped ones do); returns the certificate."""
    shutil.copy(model, folder / "model.pt")
    (folder / "proofs").mkdir()
    certificate = folder / "proofs" / name
    run = run_cli("certify", folder / "model.pt", "--task", "bubblesort", "-o", certificate)
    assert run.code == 0, (run.out, run.err)
    return certificate


def weaken_bubblesort(monkeypatch: pytest.MonkeyPatch) -> Task:
    """Bubble sort given semantics without its hidden predicate `i2==1`, for the test's
    duration: its V then over-approximates by 34 states that no input reaches (V is exact on
    every shipped task, so tests of unwitnessed states need one that is not)."""
    task = TASKS["bubblesort"]
    weaker = type(semantics_for(task))(task, values=False)
    load(weaker)
    weaker.discovered = tuple(p for p in weaker.discovered if p.name != "i2==1")
    monkeypatch.setitem(smt._SEMANTICS, id(task), (task, weaker))
    return task
