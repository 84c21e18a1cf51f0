"""The symbolic agreement check: a model whose observations hold unbounded integers.

V is computed over abstract observations (the task's `abstract_task`, e.g. `bubblesort`'s
comparison pattern plus flags), with the coverage proof of that task. Each element of V is a
call-local sequence of abstract observations; its concrete sequences are every choice, step
by step, of integer values in the declared range that fall in that step's class. The
obligation is that the model takes the reference action on every one of them.

Method (sound branch and bound over value regions):

- a step's class is a polygon of (v1, v2): a box cut by the sign of v1 - v2, which fixes the
  encoder's exact clipped-difference feature; the encoder's first layer is then affine in
  (v1, v2), so its exact range over the polygon is attained at the vertices;
- the rest of the network (ReLU, second encoder layer, the 2-layer LSTM across all steps of
  the sequence, the heads) is bounded by interval bound propagation in float64 with outward
  rounding (`verifier.bounds`): the hidden state after step k is bounded for every choice of
  the values of steps 1..k, each independent in its own class, which over-approximates the
  sequences real inputs produce;
- the decision is proved when the lower bound of every margin (return logit on its side of
  0, chosen program and arguments over every other) exceeds `PROOF_MARGIN`; otherwise the
  widest box of the branch is bisected (branch and bound, as GenBaB does for general
  nonlinearities), up to `MAX_BRANCHES` per element;
- in a branch that does not close, concrete integer points (centroid, vertices) are
  evaluated; where the model is wrong at one, an order-preserving relabelling of the
  state's witness array (found by Z3) puts those values under the pointers, and the model is
  run on that array: only a run that really diverges from the reference is a counterexample.

Neural-network verifiers (α,β-CROWN, Marabou) bound one network on one input box; here the
boxes are the value classes of every call-local state of V, and V's coverage proof turns the
per-state results into a statement about inputs of every size. A budget exhausted or a
bound that cannot be closed leaves the verdict inconclusive, never certified.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import z3

from verifier.bounds import NetworkBounds, Step
from verifier.check import CheckResult, Disagreement
from verifier.checkpoint import Checkpoint
from verifier.errors import UnboundedCall
from verifier.evaluation import correct, limits_after
from verifier.npi import NPIPolicy, valid_arg_mask
from verifier.runtime import StateKey, call_local_steps, execute, run_reference
from verifier.tasks import Task, get_task
from verifier.tasks.base import Action, Observation
from verifier.vset.build import build_vset

METHOD = "interval-bound-propagation+branch-and-bound/1"
PROOF_MARGIN = 1e-3  # a decision is proved only if every margin's lower bound clears this
MAX_BRANCHES = 20_000  # branches examined per element of V before giving up (inconclusive)
BATCH = 256  # branches bounded together
MAX_REALIZE = 16  # wrong concrete points turned into arrays and run, per element

Box = tuple[int, int, int, int]  # low1, high1, low2, high2
Region = tuple[Observation, int, Box]  # template observation, sign of v1 - v2, value box
Vertex = tuple[Fraction, Fraction]


def polygon(box: Box, sign: int) -> list[Vertex]:
    """The vertices of {(v1, v2) in box : sign(v1 - v2) = sign} over the reals, integers
    being points of it (v1 - v2 <= -1, = 0 or >= 1); empty when no point satisfies it."""
    l1, h1, l2, h2 = box
    points: list[Vertex] = [
        (Fraction(x), Fraction(y)) for x, y in ((l1, l2), (h1, l2), (h1, h2), (l1, h2))
    ]
    cuts = {-1: [(1, -1, -1)], 1: [(-1, 1, -1)], 0: [(1, -1, 0), (-1, 1, 0)]}[sign]
    for a, b, bound in cuts:  # keep a*v1 + b*v2 <= bound (Sutherland-Hodgman)
        kept: list[Vertex] = []
        for k, p in enumerate(points):
            q = points[(k + 1) % len(points)]
            dp, dq = a * p[0] + b * p[1] - bound, a * q[0] + b * q[1] - bound
            if dp <= 0:
                kept.append(p)
            if (dp < 0 < dq) or (dq < 0 < dp):
                t = dp / (dp - dq)
                kept.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
        points = list(dict.fromkeys(kept))
        if not points:
            return []
    return points


def _tighten(region: Region) -> Region | None:
    """The region with its box shrunk to the integer hull of its polygon; None if empty."""
    template, sign, box = region
    vertices = polygon(box, sign)
    if not vertices:
        return None
    xs, ys = [v[0] for v in vertices], [v[1] for v in vertices]
    tight = (math.ceil(min(xs)), math.floor(max(xs)), math.ceil(min(ys)), math.floor(max(ys)))
    if tight[0] > tight[1] or tight[2] > tight[3] or not polygon(tight, sign):
        return None
    return template, sign, tight


def _bisect(region: Region) -> list[Region]:
    template, sign, (l1, h1, l2, h2) = region
    if h1 - l1 >= h2 - l2:
        m = (l1 + h1) // 2
        halves = [(l1, m, l2, h2), (m + 1, h1, l2, h2)]
    else:
        m = (l2 + h2) // 2
        halves = [(l1, h1, l2, m), (l1, h1, m + 1, h2)]
    return [r for r in (_tighten((template, sign, b)) for b in halves) if r is not None]


def _width(region: Region) -> int:
    l1, h1, l2, h2 = region[2]
    return max(h1 - l1, h2 - l2)


def _points(region: Region) -> list[tuple[int, int]]:
    """Integer points of a region to try: the rounded centroid (when inside) and vertices."""
    _template, sign, box = region
    vertices = polygon(box, sign)
    cx = sum(v[0] for v in vertices) / len(vertices)
    cy = sum(v[1] for v in vertices) / len(vertices)
    found = []
    for x, y in [
        (round(cx), round(cy)),
        (round(cx), round(cx)),
        *((int(v[0]), int(v[1])) for v in vertices),
    ]:
        inside = box[0] <= x <= box[1] and box[2] <= y <= box[3]
        if inside and (x > y) - (x < y) == sign and all(v[0] == int(v[0]) for v in vertices):
            found.append((x, y))
    return list(dict.fromkeys(found))


@dataclass
class ElementProof:
    """The outcome of one element of V."""

    key: StateKey
    action: Action
    status: str  # "proved", "refuted", "open"
    branches: int = 0
    min_margin: float = float("inf")  # least proved lower bound over its branches
    note: str = ""
    counterexample: Any = None


Realize = Callable[[StateKey, list[tuple[int, int]]], Any]


class ElementProver:
    """Branch and bound over the value regions of the elements of V, for one model."""

    def __init__(self, bounds: NetworkBounds, arg_mask: np.ndarray, realize: Realize) -> None:
        self.bounds = bounds
        self.arg_mask = arg_mask
        self.realize = realize
        self._features: dict[tuple[Observation, int, tuple[int, ...]], np.ndarray] = {}
        self._vertices: dict[tuple[Box, int], np.ndarray] = {}

    def margins(
        self, key: StateKey, action: Action, branches: list[tuple[Region, ...]]
    ) -> np.ndarray:
        """Lower bounds of the decision margin of the last step, one per branch."""
        program, args, _ = key
        state = self.bounds.initial_state(len(branches))
        for t in range(len(branches[0])):
            regions = [branch[t] for branch in branches]
            features = np.stack([self._feature(r[0], r[1], args) for r in regions])
            vertices = np.stack([self._polygon(r[2], r[1]) for r in regions])
            encoded = self.bounds.encoder(Step(features, vertices))
            state = self.bounds.lstm_step(program, encoded, state)
        return self.bounds.margins(state[-1][0], action, self.arg_mask)

    def _feature(self, template: Observation, sign: int, args: tuple[int, ...]) -> np.ndarray:
        cache_key = (template, sign, args)
        if cache_key not in self._features:
            self._features[cache_key] = self.bounds.fixed_features(template, sign, args)
        return self._features[cache_key]

    def _polygon(self, box: Box, sign: int) -> np.ndarray:
        if (box, sign) not in self._vertices:
            vertices = [[float(x), float(y)] for x, y in polygon(box, sign)]
            vertices += [vertices[-1]] * (6 - len(vertices))
            self._vertices[(box, sign)] = np.array(vertices)
        return self._vertices[(box, sign)]

    def prove(self, key: StateKey, action: Action, classes: list[list[Region]]) -> ElementProof:
        """Prove the reference action on every concrete sequence of `key`, or find a
        counterexample, or give up after MAX_BRANCHES (open)."""
        result = ElementProof(key, action, "proved")
        stack = [()]
        for step_classes in classes:
            stack = [b + (r,) for b in stack for r in (_tighten(c) for c in step_classes) if r]
        realized = 0
        while stack:
            if result.branches >= MAX_BRANCHES:
                result.status, result.note = "open", f"budget of {MAX_BRANCHES} branches exhausted"
                return result
            batch, stack = stack[-BATCH:], stack[:-BATCH]
            result.branches += len(batch)
            margins = self.margins(key, action, batch)
            failing = [b for b, m in zip(batch, margins) if not m > PROOF_MARGIN]
            proved = margins[margins > PROOF_MARGIN]
            if len(proved):
                result.min_margin = min(result.min_margin, float(proved.min()))
            if not failing:
                continue
            for branch, values in self._wrong_points(key, action, failing):
                if realized < MAX_REALIZE:
                    realized += 1
                    example = self.realize(key, values)
                    if example is not None:
                        result.status, result.counterexample = "refuted", example
                        return result
            for branch in failing:
                t = max(range(len(branch)), key=lambda k: _width(branch[k]))
                if _width(branch[t]) == 0:
                    result.status = "open"
                    result.note = (
                        f"at the single point {[r[2][::2] for r in branch]} the margin "
                        f"is below {PROOF_MARGIN} and no input reproduces a wrong step"
                    )
                    return result
                stack.extend(branch[:t] + (half,) + branch[t + 1 :] for half in _bisect(branch[t]))
        return result

    def _wrong_points(
        self, key: StateKey, action: Action, failing: list[tuple[Region, ...]]
    ) -> list[tuple[tuple[Region, ...], list[tuple[int, int]]]]:
        """Concrete sequences inside failing branches on which the model's decision (float64)
        is not the reference action."""
        candidates = []
        for branch in failing[:8]:
            options = [_points(r) or [r[2][::2]] for r in branch]
            for k in range(max(len(o) for o in options)):
                values = [o[min(k, len(o) - 1)] for o in options]
                point = tuple((r[0], r[1], (x, x, y, y)) for r, (x, y) in zip(branch, values))
                candidates.append((branch, values, point))
        if not candidates:
            return []
        margins = self.margins(key, action, [c[2] for c in candidates])
        return [(c[0], c[1]) for c, m in zip(candidates, margins) if m < 0]


REACHING_INPUTS = 32  # inputs kept per state of V to turn wrong points into arrays


def certify_symbolic(
    checkpoint: Checkpoint, progress: Callable[[str], None] | None = None, vset: Any = None
) -> Any:
    """Certify a model of a task with numeric observation slots (see the module docstring);
    `vset` may be given when V of the abstract task was built already."""
    from verifier import verify  # the finite-alphabet certifier: verdicts and obligations

    started = time.perf_counter()
    say = progress or (lambda text: None)
    task, formulation = checkpoint.task, checkpoint.formulation
    abstract_task = get_task(task.abstract_task or task.name)
    try:
        vset = vset or build_vset(abstract_task, formulation, progress=say)
    except UnboundedCall as error:
        outcome = verify.Outcome(verify.Verdict.UNCERTIFIABLE, str(error), None, None)
        outcome.obligations = [
            verify.Obligation("coverage", verify.FAILED, {"unbounded_call": error.program})
        ]
        outcome.seconds = time.perf_counter() - started
        return outcome
    model = checkpoint.model.eval()
    policy = NPIPolicy(model, task)
    reaching: dict[StateKey, list[Any]] = {k: [w] for k, w in vset.concrete.witness.items()}
    for value, keys in vset.concrete.per_input:
        for key in keys:
            if len(reaching[key]) < REACHING_INPUTS and value not in reaching[key]:
                reaching[key].append(value)
    prover = ElementProver(
        NetworkBounds(model),
        valid_arg_mask(model.config, task).numpy(),
        lambda key, values: realize(task, formulation, policy, reaching.get(key, []), key, values),
    )
    proofs: list[ElementProof] = []
    for number, (key, action) in enumerate(
        sorted(vset.states.items(), key=lambda kv: (len(kv[0][2]), kv[0])), 1
    ):
        say(f"symbolic check: state {number} of {len(vset.states)}")
        classes = [task.value_classes(o) for o in key[2]]
        proof = prover.prove(key, action, classes)
        proofs.append(proof)
        if proof.status == "refuted":
            break
    vset.witness_cover()
    outcome = _decide(verify, task, vset, proofs)
    result = outcome.check
    obligations = verify._obligations(vset, result, outcome)
    obligations = [o for o in obligations if o.name != "agreement"]
    obligations.insert(2, _agreement(verify, task, proofs, len(vset.states)))
    outcome.obligations = obligations
    outcome.seconds = time.perf_counter() - started
    return outcome


def _decide(verify: Any, task: Task, vset: Any, proofs: list[ElementProof]) -> Any:
    proved = [p for p in proofs if p.status == "proved"]
    refuted = next((p for p in proofs if p.status == "refuted"), None)
    margin = min((p.min_margin for p in proved), default=float("inf"))
    disagreements = (
        []
        if refuted is None
        else [Disagreement(refuted.key, refuted.counterexample.model_action, refuted.action)]
    )
    result = CheckResult(len(vset.states), disagreements, margin, 0, 0)
    if refuted is not None:
        return verify.Outcome(
            verify.Verdict.REFUTED,
            "a concrete input makes the model leave the reference program",
            vset,
            result,
            counterexample=refuted.counterexample,
        )
    open_ = [p for p in proofs if p.status == "open"]
    if open_:
        return verify.Outcome(
            verify.Verdict.INCONCLUSIVE,
            f"{len(open_)} of {len(vset.states)} states "
            f"not proved for every value: {open_[0].note}",
            vset,
            result,
        )
    if not vset.coverage_proved:
        return verify.Outcome(
            verify.Verdict.INCONCLUSIVE,
            "the model is proved right on every state "
            "found, but coverage of all reachable states is not proved",
            vset,
            result,
        )
    low, high = task.value_range
    return verify.Outcome(
        verify.Verdict.CERTIFIED,
        f"model proved to take the reference action on "
        f"all {len(vset.states)} call-local states of V for every value in "
        f"[{low}, {high}], and V covers every input of every size",
        vset,
        result,
    )


def _agreement(verify: Any, task: Task, proofs: list[ElementProof], states: int) -> Any:
    status = (
        verify.PROVED
        if len(proofs) == states and all(p.status == "proved" for p in proofs)
        else verify.FAILED
    )
    low, high = task.value_range
    return verify.Obligation(
        "agreement",
        status,
        {
            "method": METHOD,
            "value_range": [low, high],
            "proof_margin": PROOF_MARGIN,
            "branch_budget_per_state": MAX_BRANCHES,
            "states": states,
            "states_proved": sum(p.status == "proved" for p in proofs),
            "branches": sum(p.branches for p in proofs),
            "per_state": [
                {
                    "program": p.key[0],
                    "args": list(p.key[1]),
                    "observations": [list(o) for o in p.key[2]],
                    "action": p.action.to_json(),
                    "status": p.status,
                    "branches": p.branches,
                    "min_margin": None if p.min_margin == float("inf") else round(p.min_margin, 6),
                    **({"note": p.note} if p.note else {}),
                }
                for p in proofs
            ],
        },
    )


def realize(
    task: Task,
    formulation: str,
    policy: NPIPolicy,
    inputs: list[Any],
    key: StateKey,
    values: list[tuple[int, int]],
) -> Any:
    """An input whose run puts `values` under the pointers at the steps of call-local state
    `key`, run with the model; its Counterexample when the model's run leaves the reference
    program, else None. The input is an order-preserving relabelling (found by Z3) of one of
    `inputs` (inputs known to reach `key`) whose run there has the same order between the two
    values at every step as `values`, so the relabelled run reaches the same state."""
    signs = [(x > y) - (x < y) for x, y in values]
    for candidate in inputs:
        observed = _concrete_call(task, formulation, candidate, key)
        if observed is None or any(
            o[2] and o[3] and (o[0] > o[1]) - (o[0] < o[1]) != sign
            for o, sign in zip(observed, signs)
        ):
            continue
        array = _relabel(task, candidate, observed, values)
        return None if array is None else first_divergence(task, formulation, policy, array)
    return None


def _relabel(
    task: Task, witness: list[int], observed: list[Observation], values: list[tuple[int, int]]
) -> list[int] | None:
    """`witness` with its values replaced order-preservingly, as close as Z3 finds to putting
    `values` where `observed` had the witness's own values (the last step first)."""
    labels = sorted(set(witness))
    relabel = {label: z3.Int(f"f{k}") for k, label in enumerate(labels)}
    low, high = task.value_range
    solver = z3.Optimize()
    for a, b in itertools.pairwise(labels):
        solver.add(relabel[a] < relabel[b])
    for variable in relabel.values():
        solver.add(low <= variable, variable <= high)
    last = len(observed) - 1
    for t, (observation, (x, y)) in enumerate(zip(observed, values)):
        weight = 100 if t == last else 1
        for slot, target in ((0, x), (1, y)):
            if observation[2 + slot]:
                solver.add_soft(relabel[observation[slot]] == target, weight=weight)
    if solver.check() != z3.sat:
        return None
    found = solver.model()
    return [found.eval(relabel[v]).as_long() for v in witness]


def _concrete_call(
    task: Task, formulation: str, witness: Any, key: StateKey
) -> list[Observation] | None:
    """The concrete observations of the first call of `witness`'s run in state `key`."""
    program, args, abstract = key
    for (p, a, observed), _ in call_local_steps(run_reference(task, formulation, witness).steps):
        if (
            p == program
            and a == args
            and tuple(task.abstract_observation(o) for o in observed) == abstract
        ):
            return list(observed)
    return None


def first_divergence(task: Task, formulation: str, policy: NPIPolicy, value: Any) -> Any:
    """Run the model and the reference on `value`; the first step where they differ as a
    Counterexample, or None when the model follows the reference throughout."""
    from verifier.verify import counterexample_at

    reference = run_reference(task, formulation, value)
    (run,) = execute(task, policy, [value], [limits_after(reference)])
    for index, (mine, theirs) in enumerate(zip(run.steps, reference.steps)):
        if mine.action != theirs.action:
            break
    else:
        if run.halted and correct(task, run) and len(run.steps) == len(reference.steps):
            return None
        index = min(len(run.steps), len(reference.steps)) - 1
        mine, theirs = run.steps[index], reference.steps[index]
        if mine.action == theirs.action:
            return None
    return counterexample_at(task, value, run, index, theirs.action)
