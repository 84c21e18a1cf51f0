"""Thread counts for inference (torch and numpy's BLAS): --threads, else $NPI_VERIFY_THREADS, else 1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy  # noqa: F401  (its BLAS pool is what threadpoolctl reports)
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from tests.conftest import Invoke
from verifier.errors import InvalidInput
from verifier.threads import ENV_VARIABLE, inference_threads, use_inference_threads

MODEL = str(Path(__file__).parent.parent / "models" / "bubblesort.pt")


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(ENV_VARIABLE, raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_default_is_one_thread_and_the_option_beats_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert inference_threads(None) == 1
    monkeypatch.setenv(ENV_VARIABLE, "3")
    assert inference_threads(None) == 3
    assert inference_threads(2) == 2


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_environment_value_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(ENV_VARIABLE, value)
    with pytest.raises(InvalidInput, match=ENV_VARIABLE):
        inference_threads(None)


def _blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_the_count_also_limits_numpys_blas() -> None:
    assert _blas_threads(), "numpy has no BLAS pool that threadpoolctl can see"
    with threadpool_limits(None):  # whatever the test run set, restored afterwards
        assert use_inference_threads(2) == 2 and _blas_threads() == {2}
        assert use_inference_threads(None) == 1 and _blas_threads() == {1}
        assert torch.get_num_threads() == 1


def test_run_sets_torch_threads(invoke: Invoke) -> None:
    torch.set_num_threads(2)
    assert invoke("run", MODEL, "--input", "[2, 1]").code == 0 and torch.get_num_threads() == 1
    assert invoke("run", MODEL, "--input", "[2, 1]", "--threads", "3").code == 0
    assert torch.get_num_threads() == 3


@pytest.mark.parametrize("command", [["run", MODEL, "--input", "[2, 1]"],
                                     ["evaluate", MODEL, "--sizes", "2"],
                                     ["certify", MODEL, "--task", "bubblesort"],
                                     ["check", "proofs/"]])
def test_a_non_positive_thread_count_is_a_usage_error(invoke: Invoke, command: list[str]) -> None:
    result = invoke(*command, "--threads", "0")
    assert result.code == 2
    assert result.err.strip() == "npi-verify: error: --threads must be a positive integer, not 0"
