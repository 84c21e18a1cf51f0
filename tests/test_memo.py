"""Memoized execution is exact (same traces as plain step-by-step execution) and bounded."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from verifier.checkpoint import Checkpoint, load_checkpoint
from verifier.evaluation import run_model
from verifier.memo import Node, PrefixCache
from verifier.inference import LSTMState, NumpyStep
from verifier.npi import ARG_SLOTS, NPIPolicy
from verifier.tasks import TASKS
from verifier.tasks.base import RECURSIVE, RETURN, call

MODELS = Path(__file__).parent.parent / "models"


def _model_file(task: str, formulation: str) -> str:
    """A shipped model's file name: TASK.pt (recursive) or TASK-FORMULATION.pt."""
    return f"{task}.pt" if formulation == RECURSIVE else f"{task}-{formulation}.pt"


SHIPPED = [  # every shipped model of every task
    (name, _model_file(name, formulation))
    for name, task in TASKS.items()
    for formulation in task.formulations
    if (MODELS / _model_file(name, formulation)).exists()
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@cache
def _shipped(name: str) -> tuple[Checkpoint, NPIPolicy]:
    """A shipped model with one memoized policy, shared by all examples of a test run."""
    checkpoint = load_checkpoint(MODELS / name)
    return checkpoint, NPIPolicy(checkpoint.model, checkpoint.task)


def _same_runs(checkpoint: Checkpoint, memoized: NPIPolicy, values: list[Any]) -> None:
    task, formulation = checkpoint.task, checkpoint.formulation
    plain = NPIPolicy(checkpoint.model, task, memoize=False)
    fast = run_model(memoized, task, formulation, values, batch_size=len(values), record=True)
    slow = run_model(plain, task, formulation, values, batch_size=len(values), record=True)
    for (mine, _), (theirs, _) in zip(fast, slow, strict=True):
        assert mine.steps == theirs.steps
        assert (mine.halted, mine.stop_reason) == (theirs.halted, theirs.stop_reason)
        assert task.output(mine.env) == task.output(theirs.env)


@pytest.mark.parametrize(("task_name", "model_name"), SHIPPED)
@settings(max_examples=15)
@given(data=st.data())
def test_memoized_traces_equal_plain_traces(task_name: str, model_name: str, data: Any) -> None:
    checkpoint, memoized = _shipped(model_name)
    values = data.draw(st.lists(TASKS[task_name].strategy(large=False), min_size=1, max_size=3))
    _same_runs(checkpoint, memoized, values)


@pytest.mark.parametrize("model_name", ["bubblesort.pt", "addition-non-recursive.pt"])
def test_a_tiny_cache_stays_within_its_bound_and_exact(model_name: str) -> None:
    checkpoint = load_checkpoint(MODELS / model_name)
    tiny = PrefixCache(max_nodes=20, max_depth=5)
    policy = NPIPolicy(checkpoint.model, checkpoint.task, cache=tiny)
    values = [[5, 3, 9, 1, 0, 7], [2, 1]] if checkpoint.task.name == "bubblesort" else [
        (98765, 4321), (7, 5)]
    sizes: list[int] = []
    original = tiny.insert

    def watched_insert(*args: Any) -> Node:
        node = original(*args)
        sizes.append(tiny.size)
        return node

    tiny.insert = watched_insert  # type: ignore[method-assign]
    _same_runs(checkpoint, policy, values)
    assert tiny.clears > 0 and max(sizes) <= tiny.max_nodes


def test_a_repeated_input_costs_no_model_step() -> None:
    checkpoint = load_checkpoint(MODELS / "bubblesort.pt")
    policy = NPIPolicy(checkpoint.model, checkpoint.task)
    steps = []
    one, batch = policy._first_visit, policy._first_visits

    def counted_one(query: Any, state: Any) -> Any:
        steps.append(1)
        return one(query, state)

    def counted_batch(queries: Any, states: Any) -> Any:
        steps.append(len(queries))
        return batch(queries, states)

    policy._first_visit = counted_one  # type: ignore[method-assign]
    policy._first_visits = counted_batch  # type: ignore[method-assign]
    value = [4, 8, 1, 9, 3, 3, 0]
    (first, _), = run_model(policy, checkpoint.task, "recursive", [value], 1, prefill=False)
    misses = len(steps)
    (second, _), = run_model(policy, checkpoint.task, "recursive", [value], 1, prefill=False)
    assert first.halted and 0 < misses < first.step_count
    assert len(steps) == misses  # the second run was all lookups
    assert policy.cache is not None and policy.cache.hits >= second.step_count


def test_nodes_deeper_than_max_depth_are_not_stored() -> None:
    memo = PrefixCache(max_nodes=100, max_depth=2)
    root = memo.root("P", ())
    one = memo.insert(root, (0,), call("Q"), "s1")
    two = memo.insert(one, (1,), call("Q"), "s2")
    three = memo.insert(two, (2,), call("Q"), "s3")
    assert memo.lookup(root, (0,)) is one and memo.lookup(one, (1,)) is two
    assert two.children is None and memo.lookup(two, (2,)) is None
    assert three.state == "s3" and memo.size == 3  # root, one, two


def test_a_full_cache_clears_and_stale_frames_drop_their_subtrees() -> None:
    memo = PrefixCache(max_nodes=3, max_depth=10)
    root = memo.root("P", ())
    live = memo.insert(root, (0,), call("Q"), "s1")
    memo.insert(live, (1,), call("Q"), "s2")
    assert memo.size == 3 and memo.clears == 0
    memo.insert(live, (2,), call("Q"), "s3")  # the fourth node clears the tree first
    assert memo.clears == 1 and memo.size == 1
    assert memo.lookup(live, (1,)) is None  # the stale child was dropped with its generation
    assert memo.root("P", ()) is not root


def test_returning_nodes_keep_no_state() -> None:
    memo = PrefixCache()
    node = memo.insert(memo.root("P", ()), (0,), RETURN, "state")
    assert node.state is None and node.action == RETURN


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        PrefixCache(max_nodes=0)


@pytest.mark.parametrize("model_name", ["addition.pt", "toposort.pt", "quicksort-non-recursive.pt"])
def test_the_numpy_step_computes_the_torch_step(model_name: str) -> None:
    checkpoint = load_checkpoint(MODELS / model_name)
    model, task = checkpoint.model, checkpoint.task
    config = model.config
    generator = torch.Generator().manual_seed(0)
    batch = 64
    programs = torch.randint(len(config.program_names), (batch,), generator=generator)
    args = torch.randint(config.arg_size, (batch, ARG_SLOTS), generator=generator)
    observations = torch.stack(
        [torch.randint(size, (batch,), generator=generator) for size in config.observation_sizes],
        dim=1,
    )
    h = torch.randn(config.layers, batch, config.d_hidden, generator=generator) * 0.5
    c = torch.randn(config.layers, batch, config.d_hidden, generator=generator) * 0.5
    with torch.no_grad():
        end, program_logits, arg_logits, (h1, c1) = model(
            programs, args, observations.unsqueeze(1), (h, c))
    step = NumpyStep(model, task)
    states = [LSTMState(tuple(h[:, j].numpy()), tuple(c[:, j].numpy())) for j in range(batch)]
    for size in (batch, 1):  # the batched path and the batch-1 path
        result = step(programs[:size].tolist(), args[:size].tolist(),
                      observations[:size].tolist(), states[:size])
        for j in range(size):
            hs, cs = result.states[j].h, result.states[j].c
            assert np.stack(hs) == pytest.approx(h1[:, j].numpy(), abs=1e-5)
            assert np.stack(cs) == pytest.approx(c1[:, j].numpy(), abs=1e-5)
        assert result.returns == (end[:size, 0] >= 0).tolist()
        assert result.programs == program_logits[:size, 0].argmax(dim=1).tolist()
    # the sequential path: from a fresh state, then from one whose products are kept
    for j in range(8):
        fresh = LSTMState(tuple(h[:, j].numpy()), tuple(c[:, j].numpy()))
        for start in (fresh, states[j]):
            ret, program, _, state = step.step_one(
                programs[j].item(), tuple(args[j].tolist()), tuple(observations[j].tolist()),
                start)
            assert start.recurrent is not None
            assert np.stack(state.h) == pytest.approx(h1[:, j].numpy(), abs=1e-5)
            assert np.stack(state.c) == pytest.approx(c1[:, j].numpy(), abs=1e-5)
            assert ret == (end[j, 0] >= 0).item()
            assert program == program_logits[j, 0].argmax().item()
