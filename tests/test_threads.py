"""Torch's thread count for inference: --threads, else $NPI_VERIFY_THREADS, else 1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from verifier.cli import main
from verifier.errors import InvalidInput
from verifier.threads import ENV_VARIABLE, inference_threads

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


def test_run_sets_torch_threads() -> None:
    torch.set_num_threads(2)
    result = CliRunner().invoke(main, ["run", MODEL, "--input", "[2, 1]"])
    assert result.exit_code == 0 and torch.get_num_threads() == 1
    result = CliRunner().invoke(main, ["run", MODEL, "--input", "[2, 1]", "--threads", "3"])
    assert result.exit_code == 0 and torch.get_num_threads() == 3


@pytest.mark.parametrize("command", [["run", MODEL, "--input", "[2, 1]"],
                                     ["evaluate", MODEL, "--sizes", "2"],
                                     ["certify", MODEL, "--task", "bubblesort"],
                                     ["check", "proofs/"]])
def test_a_non_positive_thread_count_is_a_usage_error(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--threads", "0"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "npi-verify: error: --threads must be a positive integer, not 0"
