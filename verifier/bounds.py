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

Every interval is widened outward by `SLACK` (relative) for float64 rounding, and the first
layer also by the float32 rounding of the inputs v / scale, so a bound that clears 0 by more
than the caller's margin holds for the real-valued network on every point of the set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from verifier.npi import NPI, feature_columns, numeric_pairs, pad_args
from verifier.tasks.base import Action

SLACK = 1e-9  # relative outward widening of every interval (float64 rounding is ~1e-16)
FLOAT32_INPUT = 2.0**-23  # relative rounding of a numeric feature fed to a float32 model

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
                _np(getattr(model.lstm, f"bias_ih_l{k}"))
                + _np(getattr(model.lstm, f"bias_hh_l{k}")),
            )
            for k in range(c.layers)
        ]
        self.end_w, self.end_b = (
            _np(model.end_head.weight)[0],
            float(model.end_head.bias.detach()[0]),
        )
        keys = _np(model.program_keys)
        self.program_w = keys @ _np(model.key_head.weight)  # (n_programs, d_hidden)
        self.program_b = keys @ _np(model.key_head.bias)
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
        pad += SLACK * (np.abs(step.features) @ np.abs(self.w1).T + np.abs(self.b1) + 1e-30)
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
        for (w_ih, w_hh, bias), (h, cell) in zip(self.lstm, state):
            gates = _add(_affine(*x, w_ih, bias), _affine(*h, w_hh, np.zeros_like(bias)))
            size = self.config.d_hidden
            parts = [
                (gates[0][:, k * size : (k + 1) * size], gates[1][:, k * size : (k + 1) * size])
                for k in range(4)
            ]
            i, f, o = (_monotone(_sigmoid, part) for part in (parts[0], parts[1], parts[3]))
            g = _monotone(np.tanh, parts[2])
            cell = _widen(_add(_mul(f, cell), _mul(i, g)))
            h = _widen(_mul(o, _monotone(np.tanh, cell)))
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
        end = centre @ self.end_w + self.end_b
        end_radius = radius @ np.abs(self.end_w) + SLACK * (
            np.abs(centre) @ np.abs(self.end_w) + abs(self.end_b)
        )
        # runtime returns when the logit >= 0: to prove "no return" it must be < 0
        margin = (end - end_radius) if action.ret else -(end + end_radius)
        chosen = self.program_id[action.program]
        rows = [
            (self.program_w[chosen] - self.program_w[k], self.program_b[chosen] - self.program_b[k])
            for k in range(len(self.program_w))
            if k != chosen
        ]
        for slot, value in enumerate(action.args):
            legal = np.flatnonzero(arg_mask[chosen, slot])
            rows += [
                (
                    self.arg_w[slot][value] - self.arg_w[slot][k],
                    self.arg_b[slot][value] - self.arg_b[slot][k],
                )
                for k in legal
                if k != value
            ]
        for w, b in rows:
            lower = (
                centre @ w + b - radius @ np.abs(w) - SLACK * (np.abs(centre) @ np.abs(w) + abs(b))
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


def _affine(low: Array, high: Array, w: Array, b: Array) -> Interval:
    centre, radius = (low + high) / 2, (high - low) / 2
    out = centre @ w.T + b
    spread = (radius + SLACK * np.abs(centre)) @ _abs_t(w) + SLACK * np.abs(b)
    return out - spread, out + spread


def _add(a: Interval, b: Interval) -> Interval:
    return _widen((a[0] + b[0], a[1] + b[1]))


def _mul(a: Interval, b: Interval) -> Interval:
    corners = np.stack([a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]])
    return _widen((corners.min(axis=0), corners.max(axis=0)))


def _sigmoid(x: Array) -> Array:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _monotone(function, interval: Interval) -> Interval:
    return _widen((function(interval[0]), function(interval[1])))


def _widen(interval: Interval) -> Interval:
    low, high = interval
    return low - SLACK * (np.abs(low) + 1e-30), high + SLACK * (np.abs(high) + 1e-30)
