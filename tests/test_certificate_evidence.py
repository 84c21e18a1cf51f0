"""The certificate's additive evidence: margin histogram, unwitnessed states, call graph."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import ROOT, vset_of, weaken_bubblesort
from tests.test_verify import StatePolicy
from verifier.certificate import call_graph
from verifier.check import check_model, margin_histogram
from verifier.checkpoint import load_checkpoint
from verifier.tasks.base import Action
from verifier.verify import certify_subject
from verifier.vset.build import build_vset


def test_margin_histogram_counts_decades_and_ties() -> None:
    margins = torch.tensor([0.0, -1.0, 0.05, 0.02, 0.0999, 3.0, 12.5, 1e-7])
    assert margin_histogram(margins) == ((None, 2), (-7, 1), (-2, 3), (0, 1), (1, 1))
    assert margin_histogram(torch.zeros(0)) == ()


def test_shipped_model_histogram_sums_to_v_and_starts_at_the_minimum() -> None:
    checkpoint = load_checkpoint(ROOT / "models" / "bubblesort.pt")
    vset = vset_of("bubblesort")
    result = check_model(checkpoint.model, checkpoint.task, vset.states)
    assert sum(n for _, n in result.margin_histogram) == len(vset.states)
    lowest = result.margin_histogram[0][0]
    assert lowest is not None and 10**lowest <= result.min_margin < 10 ** (lowest + 1)


@pytest.mark.slow
def test_coverage_evidence_lists_unwitnessed_states_with_their_actions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vset = build_vset(weaken_bubblesort(monkeypatch))  # V is exact on every shipped task
    assert len(vset.unwitnessed) == 34
    outcome = certify_subject(StatePolicy("bubblesort").subject(), vset=vset)
    coverage = next(o for o in outcome.obligations if o.name == "coverage").evidence
    listed = coverage["unwitnessed_states"]
    assert len(listed) == min(50, len(vset.unwitnessed))
    assert coverage["unwitnessed"] == len(vset.unwitnessed)
    for entry in listed:
        key = (entry["program"], tuple(entry["args"]), tuple(map(tuple, entry["observations"])))
        assert key in vset.states and key not in vset.concrete.actions
        assert Action.from_json(entry["action"]) == vset.states[key]


def test_call_graph_names_only_non_primitive_callees() -> None:
    """Expected edges read off verifier/tasks/bubblesort.py's recursive routines."""
    vset = vset_of("bubblesort")
    graph = call_graph(vset.task, vset.states)
    assert graph == {"BSTEP": ["BSTEP", "COMPSWAP", "RSHIFT"], "BUBBLE": ["BSTEP"],
                     "BUBBLESORT": ["BUBBLE", "BUBBLESORT", "RESET"], "COMPSWAP": [],
                     "LSHIFT": ["LSHIFT"], "RESET": ["LSHIFT"], "RSHIFT": []}
