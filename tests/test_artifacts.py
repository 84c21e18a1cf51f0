"""Every shipped trace, model and proof is listed by its task package's artifacts.toml."""

from __future__ import annotations

from tests.conftest import ROOT
from verifier.artifacts import KINDS, every_artifact

SUFFIXES = {"traces": ".jsonl", "models": ".pt", "proofs": ".json"}


def test_every_shipped_file_is_listed_once_with_a_command() -> None:
    for kind in KINDS:
        listed = [a.file for a in every_artifact(kind)]
        shipped = sorted(f"{kind}/{p.name}" for p in (ROOT / kind).iterdir()
                         if p.suffix == SUFFIXES[kind])
        assert sorted(listed) == shipped, kind
        assert all(a.command for a in every_artifact(kind))
