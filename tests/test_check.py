"""The exhaustive check: the model's decisions on V, batched per prefix-tree level, and the
float64 re-check of decisions close to a tie, all decided by the one `Decider`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import vset_of
from verifier import check
from verifier.checkpoint import load_checkpoint
from verifier.config import ARG_SLOTS
from verifier.npi import Decider, NPIPolicy
from verifier.runtime import Query
from verifier.tasks.base import Action

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shipped() -> tuple:
    """The shipped bubble-sort model and its V (49 states)."""
    checkpoint = load_checkpoint(ROOT / "models" / "bubblesort.pt")
    return checkpoint, vset_of("bubblesort").states


def test_float64_recheck_decides_as_the_batched_check(shipped: tuple) -> None:
    checkpoint, states = shipped
    decide = Decider(checkpoint.model.config, checkpoint.task)
    double = check._float64_copy(checkpoint.model)
    for key, action in list(states.items())[::3]:  # every third: each is a whole replay
        assert not check._float64_differs(double, decide, key, action)
        wrong = Action(action.program, action.args, not action.ret)
        assert check._float64_differs(double, decide, key, wrong)


def test_every_fragile_decision_is_rechecked_in_float64(
    shipped: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint, states = shipped
    monkeypatch.setattr(check, "FRAGILE_MARGIN", float("inf"))
    result = check.check_model(checkpoint.model, checkpoint.task, states)
    assert (result.checked, result.fragile, result.fragile_flipped) == (49, 49, 0)
    assert result.agrees


def test_policy_and_check_make_the_same_decision(shipped: tuple) -> None:
    """A model run (a plain torch step of the policy) takes the action the check saw."""
    checkpoint, states = shipped
    policy = NPIPolicy(checkpoint.model, checkpoint.task, memoize=False)
    first = [key for key in states if len(key[2]) == 1]
    answers = policy.step([Query(p, a, obs[0], None) for p, a, obs in first])
    assert [action for action, _ in answers] == [states[key] for key in first]
    result = check.check_model(checkpoint.model, checkpoint.task, {k: states[k] for k in first})
    assert result.agrees and not result.disagreements


def test_decider_shares_one_action_per_decision(shipped: tuple) -> None:
    checkpoint, _ = shipped
    decide = Decider(checkpoint.model.config, checkpoint.task)
    n = len(checkpoint.model.config.program_names)
    logits = torch.zeros(2, n)
    logits[:, 1] = 1.0
    args = torch.zeros(2, ARG_SLOTS, checkpoint.model.config.arg_size)
    actions, decision = decide(torch.tensor([1.0, 1.0]), logits, args)
    assert actions[0] is actions[1] and actions[0].ret and decision.programs == [1, 1]
    assert actions[0].program == checkpoint.model.config.program_names[1]
