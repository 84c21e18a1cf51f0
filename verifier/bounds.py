"""Sound float64 bounds of an NPI's decisions over sets of numeric observations.

A numeric step is described by the values of its two numeric slots ranging over a convex
polygon (a box in the integers, cut by the sign of v1 - v2) and everything else fixed. The
network is bounded layer by layer (interval bound propagation, as the first stage of
α,β-CROWN and of GenBaB's branch and bound):

- encoder layer 1 is affine in (v1, v2) once the clipped difference is fixed, so its exact
  range over the polygon is attained at the polygon's vertices;
- ReLU, sigmoid and tanh are monotone, so they map interval ends to interval ends;
- affine maps use the centre-radius form (W c + b, |W| r), and the LSTM's products f*c,
  i*g, o*tanh(c) take the extreme of the four corner products.

The model runs in float32, so every interval also covers the float32 computation: each affine
map is widened by gamma(n+1) (|W| |x| + |b|) for its n inputs (Higham's bound on a float32 dot
product, whatever the summation order), the LSTM's fused gate sum by that bound over both its
products and biases, each sigmoid and tanh by NONLINEAR relative, each product and sum by the
unit roundoff, the program logits by the bound of their two products (key head, then keys),
and the first layer by the float32 rounding of the inputs v / scale. By induction over the
layers, the float32 value of every unit lies in its interval, so a decision whose margin's
lower bound clears 0 is the decision the float32 model takes on every point of the set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from verifier.npi import NPI, feature_columns, numeric_pairs, pad_args
from verifier.tasks.base import Action

SLACK = 1e-9  # relative outward widening of every interval (float64 rounding is ~1e-16)
FLOAT32_INPUT = 2.0**-23  # relative rounding of a numeric feature fed to a float32 model
UNIT = 2.0**-24  # float32 unit roundoff: the model runs in float32, the bounds in float64
NONLINEAR = 16 * UNIT  # relative error allowed to a float32 sigmoid or tanh (a few ulps)


def gamma(n: int) -> float:
    """The classic bound on the relative error of an n-term float32 dot product,
    n u / (1 - n u) (Higham, Accuracy and Stability of Numerical Algorithms, §3.1), plus the
    float64 slack of the bound itself: |fl(w.x + b) - (w.x + b)| <= gamma(n+1) (|w||x| + |b|)."""
    return n * UNIT / (1 - n * UNIT) + SLACK

Array = np.ndarray
Interval = tuple[Array, Array]  # (low, high), each (batch, width)


def _np(tensor: torch.Tensor) -> Array:
    return tensor.detach().to(torch.float64).numpy().copy()


@dataclass
class Step:
    """One step of a batch of branches: each branch's fixed features and polygon of numeric
    values. `features` is (batch, d_input) with zeros for the values; `vertices` is
    (batch, k, 2) integers (a polygon's vertices, the last repeated to pad)."""

    features: Array
    vertices: Array


class NetworkBounds:
    """The weights of one NPI in float64, and interval propagation through them."""

    def __init__(self, model: NPI) -> None:
        c = model.config
        if len(c.numeric_slots) != 2:
            raise ValueError("symbolic bounds need exactly two numeric observation slots")
        self.config = c
        values, pairs = feature_columns(c)
        self.value_columns = (values[c.numeric_slots[0]], values[c.numeric_slots[1]])
        self.difference_column = pairs[numeric_pairs(c)[0]]
        self.w1, self.b1 = _np(model.encoder[0].weight), _np(model.encoder[0].bias)
        self.w2, self.b2 = _np(model.encoder[2].weight), _np(model.encoder[2].bias)
        self.embedding = _np(model.program_embedding.weight)
        self.lstm = [
            (
                _np(getattr(model.lstm, f"weight_ih_l{k}")),
                _np(getattr(model.lstm, f"weight_hh_l{k}")),
                _np(getattr(model.lstm, f"bias_ih_l{k}")),  # kept apart: each is rounded
                _np(getattr(model.lstm, f"bias_hh_l{k}")),  # with its own product
            )
            for k in range(c.layers)
        ]
        self.end_w, self.end_b = (
            _np(model.end_head.weight)[0],
            float(model.end_head.bias.detach()[0]),
        )
        keys = _np(model.program_keys)
        self.keys, self.key_w, self.key_b = keys, _np(model.key_head.weight), _np(model.key_head.bias)
        self.program_w = keys @ self.key_w  # (n_programs, d_hidden)
        self.program_b = keys @ self.key_b
        self.arg_w = [_np(head.weight) for head in model.arg_heads]
        self.arg_b = [_np(head.bias) for head in model.arg_heads]
        self.program_id = {name: k for k, name in enumerate(c.program_names)}

    # -- features -----------------------------------------------------------------------
    def fixed_features(
        self, observation: tuple[int, ...], sign: int, args: tuple[int, ...]
    ) -> Array:
        """The encoder input of `observation` with both numeric values zeroed and the clipped
        difference set to `sign`."""
        c = self.config
        parts = []
        for slot, size in enumerate(c.observation_sizes):
            if slot in c.numeric_slots:
                parts.append(np.zeros(1))
            else:
                parts.append(np.eye(size)[observation[slot]])
        features = np.concatenate([*parts, np.zeros(len(numeric_pairs(c)))])
        features[self.difference_column] = sign
        arg_hot = np.concatenate([np.eye(c.arg_size)[a] for a in pad_args(args)])
        return np.concatenate([features, arg_hot])

    # -- propagation --------------------------------------------------------------------
    def encoder(self, step: Step) -> Interval:
        """Bounds of the encoder output over each branch's polygon: (batch, d_state)."""
        scale = float(self.config.numeric_scale)
        base = (step.features @ self.w1.T + self.b1)[:, None, :]  # (batch, 1, d_state)
        c1, c2 = self.value_columns
        v = step.vertices.astype(np.float64) / scale  # (batch, k, 2)
        z = base + v[..., :1] * self.w1[:, c1] + v[..., 1:] * self.w1[:, c2]  # (batch, k, d)
        reach = np.abs(v).max(axis=1)  # (batch, 2): largest |v/scale| per slot
        pad = FLOAT32_INPUT * (
            reach[:, :1] * np.abs(self.w1[:, c1]) + reach[:, 1:] * np.abs(self.w1[:, c2])
        )
        magnitude = (
            np.abs(step.features) @ np.abs(self.w1).T + np.abs(self.b1)
            + reach[:, :1] * np.abs(self.w1[:, c1]) + reach[:, 1:] * np.abs(self.w1[:, c2])
        )
        pad += gamma(self.w1.shape[1] + 1) * (magnitude + 1e-30)
        low, high = z.min(axis=1) - pad, z.max(axis=1) + pad
        return _affine(np.maximum(low, 0.0), np.maximum(high, 0.0), self.w2, self.b2)

    def initial_state(self, batch: int) -> list[tuple[Interval, Interval]]:
        zeros = np.zeros((batch, self.config.d_hidden))
        return [((zeros, zeros), (zeros, zeros)) for _ in range(self.config.layers)]

    def lstm_step(
        self, program: str, encoded: Interval, state: list[tuple[Interval, Interval]]
    ) -> list[tuple[Interval, Interval]]:
        """One LSTM step over intervals: the new (h, c) of every layer."""
        embedding = self.embedding[self.program_id[program]]
        batch = encoded[0].shape[0]
        x = (
            np.concatenate([encoded[0], np.broadcast_to(embedding, (batch, len(embedding)))], 1),
            np.concatenate([encoded[1], np.broadcast_to(embedding, (batch, len(embedding)))], 1),
        )
        new_state = []
        for (w_ih, w_hh, b_ih, b_hh), (h, cell) in zip(self.lstm, state):
            terms = w_ih.shape[1] + w_hh.shape[1] + 2  # both products and both biases, fused
            gates = _add(_affine(*x, w_ih, b_ih, terms), _affine(*h, w_hh, b_hh, terms))
            size = self.config.d_hidden
            parts = [
                (gates[0][:, k * size : (k + 1) * size], gates[1][:, k * size : (k + 1) * size])
                for k in range(4)
            ]
            i, f, o = (_nonlinear(_sigmoid, part) for part in (parts[0], parts[1], parts[3]))
            g = _nonlinear(np.tanh, parts[2])
            cell = _add(_mul(f, cell), _mul(i, g))
            h = _mul(o, _nonlinear(np.tanh, cell))
            new_state.append((h, cell))
            x = h
        return new_state

    # -- decisions ----------------------------------------------------------------------
    def margins(self, hidden: Interval, action: Action, arg_mask: Array) -> Array:
        """Lower bounds (batch,) of the smallest margin by which the network takes `action`:
        the return logit on the right side of 0, the chosen program's logit above every other,
        each chosen argument above every other legal value. Positive = that decision proved."""
        low, high = hidden
        centre, radius = (low + high) / 2, (high - low) / 2
        size = np.abs(centre) + radius  # (batch, d_hidden): the largest |h| of each unit
        heads = gamma(len(self.end_w) + 1)
        end = centre @ self.end_w + self.end_b
        end_radius = radius @ np.abs(self.end_w) + heads * (size @ np.abs(self.end_w) + abs(self.end_b))
        # runtime returns when the logit >= 0: to prove "no return" it must be < 0
        margin = (end - end_radius) if action.ret else -(end + end_radius)
        chosen = self.program_id[action.program]
        # float32 program logits are keys . (key_w h + key_b): bound each stage's rounding
        key_size = size @ np.abs(self.key_w).T + np.abs(self.key_b)  # (batch, d_key)
        key_error = heads * key_size
        logit_error = (key_size + key_error) @ np.abs(self.keys).T * gamma(self.keys.shape[1]) + (
            key_error @ np.abs(self.keys).T)  # (batch, n_programs)
        rows = [
            (self.program_w[chosen] - self.program_w[k], self.program_b[chosen] - self.program_b[k],
             logit_error[:, chosen] + logit_error[:, k])
            for k in range(len(self.program_w))
            if k != chosen
        ]
        for slot, value in enumerate(action.args):
            legal = np.flatnonzero(arg_mask[chosen, slot])
            w, b = self.arg_w[slot], self.arg_b[slot]
            error = heads * (size @ np.abs(w).T + np.abs(b))  # (batch, arg_size)
            rows += [
                (w[value] - w[k], b[value] - b[k], error[:, value] + error[:, k])
                for k in legal
                if k != value
            ]
        for w, b, error in rows:
            lower = (
                centre @ w + b - radius @ np.abs(w) - error
                - SLACK * (np.abs(centre) @ np.abs(w) + abs(b))
            )
            margin = np.minimum(margin, lower)
        return margin


_ABS: dict[int, tuple[Array, Array]] = {}


def _abs_t(w: Array) -> Array:
    """|w|.T, computed once per weight matrix (weights are never modified in place here)."""
    key = id(w)
    if key not in _ABS or _ABS[key][0] is not w:
        _ABS[key] = (w, np.abs(w).T.copy())
    return _ABS[key][1]


def _affine(low: Array, high: Array, w: Array, b: Array, terms: int | None = None) -> Interval:
    """W x + b over x in [low, high], widened by the float32 rounding of a `terms`-term dot
    product (default: W's inputs plus the bias)."""
    centre, radius = (low + high) / 2, (high - low) / 2
    out = centre @ w.T + b
    error = gamma(terms or w.shape[1] + 1)
    spread = radius @ _abs_t(w) + error * ((np.abs(centre) + radius) @ _abs_t(w) + np.abs(b))
    return out - spread, out + spread


def _add(a: Interval, b: Interval) -> Interval:
    return _widen((a[0] + b[0], a[1] + b[1]))


def _mul(a: Interval, b: Interval) -> Interval:
    corners = np.stack([a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]])
    return _widen((corners.min(axis=0), corners.max(axis=0)))


def _sigmoid(x: Array) -> Array:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _nonlinear(function, interval: Interval) -> Interval:
    """A monotone float32 function (sigmoid, tanh) of an interval: its ends, widened by the
    function's float32 error."""
    return _widen((function(interval[0]), function(interval[1])), NONLINEAR)


def _widen(interval: Interval, relative: float = UNIT + SLACK) -> Interval:
    """Outward by `relative` (default: one float32 rounding) plus a tiny absolute amount."""
    low, high = interval
    return low - relative * (np.abs(low) + 1e-30), high + relative * (np.abs(high) + 1e-30)
