"""The symbolic agreement check for numeric observations (bubblesort-int)."""

from __future__ import annotations

import dataclasses
import random
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, vset_of
from verifier.bounds import NetworkBounds, Step
from verifier.check import _margins
from verifier.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from verifier.errors import InvalidInput
from verifier.npi import (
    NPI,
    NPIConfig,
    NPIPolicy,
    decode,
    feature_columns,
    pad_args,
    valid_arg_mask,
)
from verifier.symbolic import ElementProver, certify_symbolic, first_divergence, polygon
from verifier.tasks import TASKS
from verifier.tasks.base import Action
from verifier.verify import Verdict

INT = TASKS["bubblesort-int"]
MODEL = ROOT / "models" / "bubblesort-int.pt"


@pytest.fixture(scope="module")
def shipped() -> Checkpoint:
    return load_checkpoint(MODEL)


def test_polygon_cuts_the_box_by_the_sign_of_the_difference() -> None:
    below = set(polygon((0, 3, 0, 3), -1))  # v1 <= v2 - 1
    assert below == {
        (Fraction(0), Fraction(1)),
        (Fraction(0), Fraction(3)),
        (Fraction(2), Fraction(3)),
    }
    assert set(polygon((0, 3, 0, 3), 0)) == {(Fraction(0), Fraction(0)), (Fraction(3), Fraction(3))}
    assert polygon((5, 5, 0, 3), -1) == []  # 5 <= v2 - 1 has no v2 in 0..3
    assert polygon((5, 5, 0, 3), 1) != []


def test_inputs_outside_the_declared_range_are_refused() -> None:
    assert INT.parse_input([10**9, -(10**9)]) == [10**9, -(10**9)]
    with pytest.raises(InvalidInput, match=r"input\[1\] must lie in \[-10\^9, 10\^9\]"):
        INT.parse_input([0, 10**9 + 1])


def test_finite_alphabet_configs_have_no_numeric_fields() -> None:
    """Old checkpoints' configs, and so their weights digests, are unchanged."""
    assert "numeric_slots" not in NPIConfig.for_task(TASKS["bubblesort"]).to_json()
    numeric = NPIConfig.for_task(INT).to_json()
    assert (numeric["numeric_slots"], numeric["numeric_scale"]) == ((0, 1), 10**12)


def test_encoder_tells_neighbours_apart_at_the_largest_magnitude(shipped: Checkpoint) -> None:
    model = shipped.model
    _, pairs = feature_columns(model.config)
    column = pairs[(0, 1)]
    observations = torch.tensor([[[10**9, 10**9 - 1, 1, 1, 0]], [[10**9, 10**9, 1, 1, 0]]])
    features = model.encode_inputs(observations, torch.zeros(2, 3, dtype=torch.long))
    assert features[:, 0, column].tolist() == [1.0, 0.0]


def test_numeric_checkpoint_round_trips(tmp_path: Path, shipped: Checkpoint) -> None:
    path = tmp_path / "int.pt"
    save_checkpoint(path, INT, shipped.formulation, shipped.model, shipped.training)
    again = load_checkpoint(path)
    assert again.model.config == shipped.model.config
    assert again.weights_sha256 == shipped.weights_sha256


def test_shipped_model_is_proved_on_the_comparison_states(shipped: Checkpoint) -> None:
    vset = vset_of("bubblesort")
    model = shipped.model
    prover = ElementProver(
        NetworkBounds(model), valid_arg_mask(model.config, INT).numpy(), lambda key, values: None
    )
    keys = [k for k in vset.states if k[0] in ("COMPSWAP", "BSTEP") and len(k[2]) <= 2]
    assert keys
    for key in keys:
        proof = prover.prove(key, vset.states[key], [INT.value_classes(o) for o in key[2]])
        assert proof.status == "proved", (key, proof.note)
        assert proof.min_margin > 1e-3


def _with_detector(
    model: NPI,
    units: list[tuple[dict[int, float], float]],
    combine: list[float],
    push: float = 50.0,
) -> NPI:
    """`model` with len(units) extra encoder units (weights by input column, bias) whose
    combination `combine` becomes one extra encoder output, fed into the first LSTM layer with
    a large random weight. Where the combination is 0 the network equals `model` exactly."""
    c = model.config
    k = len(units)
    grown = NPI(dataclasses.replace(c, d_state=c.d_state + k))
    old, new = model.state_dict(), grown.state_dict()
    d = c.d_state
    with torch.no_grad():
        for name in new:
            if name not in (
                "encoder.0.weight",
                "encoder.0.bias",
                "encoder.2.weight",
                "encoder.2.bias",
                "lstm.weight_ih_l0",
            ):
                new[name].copy_(old[name])
        w1, b1 = new["encoder.0.weight"], new["encoder.0.bias"]
        w1.zero_(), b1.zero_()
        w1[:d], b1[:d] = old["encoder.0.weight"], old["encoder.0.bias"]
        for row, (weights, bias) in enumerate(units):
            for column, value in weights.items():
                w1[d + row, column] = value
            b1[d + row] = bias
        w2, b2 = new["encoder.2.weight"], new["encoder.2.bias"]
        w2.zero_(), b2.zero_()
        w2[:d, :d], b2[:d] = old["encoder.2.weight"], old["encoder.2.bias"]
        w2[d, d:] = torch.tensor(combine)
        w_ih = new["lstm.weight_ih_l0"]
        w_ih.zero_()
        w_ih[:, :d] = old["lstm.weight_ih_l0"][:, :d]
        w_ih[:, d + k :] = old["lstm.weight_ih_l0"][:, d:]
        generator = torch.Generator().manual_seed(0)
        w_ih[:, d] = push * torch.randn(w_ih.shape[0], generator=generator)
    grown.load_state_dict(new)
    return grown.eval()


def _refute(model: NPI, shipped: Checkpoint):
    checkpoint = dataclasses.replace(shipped, model=model)
    outcome = certify_symbolic(checkpoint, vset=vset_of("bubblesort"))
    assert outcome.verdict is Verdict.REFUTED, outcome.reason
    example = outcome.counterexample
    # the counterexample replays: the model's run on that input diverges at the same step
    again = first_divergence(INT, shipped.formulation, NPIPolicy(model, INT), example.input)
    assert again is not None and again.step == example.step
    assert all(INT.value_range[0] <= v <= INT.value_range[1] for v in example.input)
    return example


def test_model_wrong_only_on_differences_above_a_million_is_refuted(shipped: Checkpoint) -> None:
    values, _ = feature_columns(shipped.model.config)
    v1, v2 = values[0], values[1]
    gain = INT.numeric_scale / 10**6  # unit = relu((v1 - v2) / 10^6 - 1)
    model = _with_detector(
        shipped.model, [({v1: gain, v2: -gain}, -1.0), ({v1: -gain, v2: gain}, -1.0)], [1.0, 1.0]
    )
    small = [5, -3, 999_999, 0, 12]  # every difference at most 10^6: the model is unchanged
    assert first_divergence(INT, shipped.formulation, NPIPolicy(model, INT), small) is None
    example = _refute(model, shipped)
    first, second = example.observations[-1][:2]
    assert abs(first - second) > 10**6


def test_model_wrong_only_on_equal_values_is_refuted(shipped: Checkpoint) -> None:
    _, pairs = feature_columns(shipped.model.config)
    difference, out1, out2 = pairs[(0, 1)], 2, 4  # one-hot columns of i1_in=0, i2_in=0
    gate = {out1: -4.0, out2: -4.0}
    model = _with_detector(
        shipped.model,
        [
            ({**gate, difference: -2.0}, 1.0),
            ({**gate, difference: 2.0}, 1.0),
            (gate, 1.0),
        ],
        [-1.0, -1.0, 3.0],
    )  # 3c - a - b: 1 when both in range and equal, else 0
    # the pointers start on one cell, so every run observes equal values: compare the networks
    # on one step instead, which is unchanged wherever the observed values differ
    programs, args = torch.tensor([0, 0]), torch.zeros(2, 3, dtype=torch.long)
    unequal = torch.tensor([[[10**9, 10**9 - 1, 1, 1, 0]], [[5, 0, 1, 0, 0]]])
    with torch.no_grad():
        assert torch.equal(
            model(programs, args, unequal)[1], shipped.model(programs, args, unequal)[1]
        )
    example = _refute(model, shipped)
    first, second, i1_in, i2_in, _ = example.observations[-1]
    assert first == second and i1_in and i2_in


@pytest.mark.slow
def test_shipped_model_is_certified(shipped: Checkpoint) -> None:
    outcome = certify_symbolic(shipped, vset=vset_of("bubblesort"))
    assert outcome.verdict is Verdict.CERTIFIED, outcome.reason


def test_bounds_cover_the_float32_model_even_with_huge_weights(shipped: Checkpoint) -> None:
    """On single points the bound is nearly the exact value, so only the modelled float32
    rounding separates it from what the float32 network computes. Heads scaled by 10^6 make
    that rounding ~0.1, far above float64 slack: the bound must still be at most the float32
    model's own margin of the decision it takes (it was not, before rounding was modelled)."""
    model = NPI(shipped.model.config)
    model.load_state_dict(shipped.model.state_dict())
    with torch.no_grad():
        for head in (model.end_head, model.key_head, *model.arg_heads):
            head.weight.mul_(1e6)
            head.bias.mul_(1e6)
            head.bias.add_(3e6)  # large biases that cancel in differences, not in rounding
    model.eval()
    bounds = NetworkBounds(model)
    mask = valid_arg_mask(model.config, INT)
    rng = random.Random(3)
    program = "COMPSWAP"
    args: tuple[int, ...] = ()
    for _ in range(40):
        v1, v2 = (rng.randint(-(10**9), 10**9) for _ in range(2))
        observation = (v1, v2, 1, 1, 0)
        sign = (v1 > v2) - (v1 < v2)
        features = bounds.fixed_features(observation, sign, args)[None, :]
        vertices = torch.tensor([[[v1, v2]] * 6], dtype=torch.float64).numpy()
        state = bounds.lstm_step(program, bounds.encoder(Step(features, vertices)),
                                 bounds.initial_state(1))
        ids = torch.tensor([model.config.program_names.index(program)])
        with torch.no_grad():
            end, logits, arg_logits, _ = model(ids, torch.tensor([pad_args(args)]),
                                               torch.tensor([[observation]]))
        decision = decode(end[:, 0], logits[:, 0], arg_logits[:, 0], mask, model.config.arities)
        name = model.config.program_names[decision.programs[0]]
        taken = Action(name, tuple(decision.args[0]), decision.returns[0])
        actual = float(_margins(end[:, 0], logits[:, 0], arg_logits[:, 0], mask, decision,
                                model.config.arities)[0])
        bound = float(bounds.margins(state[-1][0], taken, mask.numpy())[0])
        assert bound <= actual + 1e-9, (v1, v2, bound, actual)
