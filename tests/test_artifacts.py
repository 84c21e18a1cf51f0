"""Every shipped trace, model and proof is listed by its task package's artifacts.toml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from verifier.artifacts import KINDS, _artifact, every_artifact
from verifier.errors import BadFile
from verifier.tasks import TASKS

SUFFIXES = {"traces": ".jsonl", "models": ".pt", "proofs": ".json"}


def test_every_shipped_file_is_listed_once_with_a_command() -> None:
    for kind in KINDS:
        listed = [a.file for a in every_artifact(kind)]
        listed += [f for a in every_artifact("models") for f in a.writes if f.startswith(kind)]
        shipped = sorted(f"{kind}/{p.name}" for p in (ROOT / kind).iterdir()
                         if p.suffix == SUFFIXES[kind])
        assert sorted(listed) == shipped, kind
        assert all(a.command for a in every_artifact(kind))


def test_a_loop_trained_model_writes_its_dataset_to_traces_and_its_certificate_aside(
    tmp_path: Path,
) -> None:
    toml = tmp_path / "artifacts.toml"
    entry = {"file": "h.pt", "args": ["--until-certified", "--seed", "0"], "dataset": "h.jsonl"}
    artifact = _artifact(toml, TASKS["hanoi"], "models", entry)
    assert artifact.writes == ("traces/h.jsonl",)
    assert artifact.command == ("train", "--task", "hanoi", "--until-certified", "--seed", "0",
                                "--dataset", "traces/h.jsonl", "-o", "models/h.pt")
    assert artifact.invocation(tmp_path)[-4:] == ("--certificate", str(tmp_path / "h.cert.json"),
                                                  "-o", "models/h.pt")
    plain = _artifact(toml, TASKS["hanoi"], "models", {"file": "p.pt", "args": ["--seed", "0"]})
    assert plain.writes == () and plain.invocation(tmp_path) == plain.command


@pytest.mark.parametrize("entry", [
    {"file": "h.pt", "args": ["--until-certified", "--seed", "0"]},  # no dataset
    {"file": "h.pt", "args": ["--data", "traces/x.jsonl", "--seed", "0"], "dataset": "h.jsonl"},
    {"file": "h.pt", "args": ["--until-certified"], "dataset": "sub/h.jsonl"},
    {"file": "h.pt", "args": ["--until-certified", "--dataset", "x.jsonl"], "dataset": "h.jsonl"},
])
def test_a_loop_recipe_without_exactly_one_dataset_is_a_bad_file(
    tmp_path: Path, entry: dict[str, Any]
) -> None:
    with pytest.raises(BadFile, match="h.pt"):
        _artifact(tmp_path / "artifacts.toml", TASKS["hanoi"], "models", entry)
