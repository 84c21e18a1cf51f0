"""One step of an NPI in numpy, for executing a model on the few states it has not seen yet.

Memoized execution (`verifier/memo.py`) sends the LSTM only the call-local prefixes that an
interpreter step meets for the first time, usually one or a handful at a time. At that size a
torch step costs ~0.4 ms of framework overhead (module calls, tensor building, torch.lstm at
batch 1) for ~0.25 M multiply-adds; this module computes the same step, `NPI.forward` for one
time step, with the same float32 weights in about a dozen numpy operations.

It is the same function, not an approximation of it, but not bit-for-bit the same arithmetic
(summation order differs between libraries), so a decision within float32 rounding of a tie
could go either way, exactly as it can between two batch sizes in torch. `certify` does not
use it: the certificate's check runs the torch model, and refuses near-ties.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from verifier.npi import ARG_SLOTS, NPI, valid_arg_mask
from verifier.tasks import Task

State = tuple[np.ndarray, np.ndarray]  # (h, c), each (layers, d_hidden)


@dataclass(frozen=True)
class StepResult:
    """Decisions of a batch of steps, as plain lists, and the new state of each."""

    returns: list[bool]
    programs: list[int]
    args: list[tuple[int, ...]]  # truncated to each chosen program's arity
    states: list[State]


class NumpyStep:
    """`NPI.forward` for a single time step of a batch of calls, in numpy float32.

    Two rewrites keep the number of numpy calls small: the first layer's input gates depend
    only on (program, args, observation), so they are kept in a table (cleared past
    `max_inputs` entries); and the gate activations are one `tanh` over prescaled gates,
    since sigmoid(x) = (tanh(x / 2) + 1) / 2 (halving the weights is exact in floating point).
    """

    def __init__(self, model: NPI, task: Task, max_inputs: int = 100_000) -> None:
        c = model.config
        w = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
        self.layers, self.d_hidden, self.d_key = c.layers, c.d_hidden, c.d_key
        self.arg_size, self.arities = c.arg_size, c.arities
        self.d_input = sum(c.observation_sizes) + ARG_SLOTS * c.arg_size
        self.observation_offsets = np.cumsum((0,) + tuple(c.observation_sizes[:-1]))
        self.arg_offsets = sum(c.observation_sizes) + c.arg_size * np.arange(ARG_SLOTS)
        self.enc1_t = w["encoder.0.weight"].T.copy()  # (d_input, d_state)
        self.enc1_b = w["encoder.0.bias"]
        self.enc2_t = w["encoder.2.weight"].T.copy()  # (d_state, d_state)
        self.enc2_b = w["encoder.2.bias"]
        self.embedding = w["program_embedding.weight"]  # (n_programs, d_program)
        d = c.d_hidden
        # (4d,) gate order i, f, g, o: sigmoid gates are computed from halved inputs
        half = np.full(4 * d, 0.5, dtype=np.float32)
        half[2 * d : 3 * d] = 1.0
        self.shift = np.where(half == 0.5, 0.5, 0.0).astype(np.float32)
        self.half = half
        self.w_ih_t = [w[f"lstm.weight_ih_l{k}"].T * half for k in range(c.layers)]
        self.w_hh_t = [w[f"lstm.weight_hh_l{k}"].T * half for k in range(c.layers)]
        self.bias = [(w[f"lstm.bias_ih_l{k}"] + w[f"lstm.bias_hh_l{k}"]) * half
                     for k in range(c.layers)]
        heads = [w["end_head.weight"], w["key_head.weight"]]
        heads += [w[f"arg_heads.{k}.weight"] for k in range(ARG_SLOTS)]
        self.heads_t = np.concatenate(heads).T.copy()  # (d_hidden, 1 + d_key + slots*size)
        self.heads_b = np.concatenate(
            [w["end_head.bias"], w["key_head.bias"]]
            + [w[f"arg_heads.{k}.bias"] for k in range(ARG_SLOTS)]
        )
        self.keys_t = w["program_keys"].T.copy()  # (d_key, n_programs)
        self.arg_mask = valid_arg_mask(c, task).numpy()  # (n_programs, slots, size)
        self.zero = np.zeros((c.layers, c.d_hidden), dtype=np.float32)
        self.max_inputs = max_inputs
        self._input_gates: dict[tuple[int, tuple[int, ...], tuple[int, ...]], np.ndarray] = {}

    def __call__(
        self,
        programs: Sequence[int],
        args: Sequence[Sequence[int]],
        observations: Sequence[Sequence[int]],
        states: Sequence[State | None],
    ) -> StepResult:
        """One step of each call from its state (None: a call's zero state). `args` are
        padded to ARG_SLOTS values."""
        batch = len(programs)
        gates0 = self._first_layer_inputs(programs, args, observations)  # (batch, 4d)
        if batch == 1:
            h0, c0 = (states[0] or (self.zero, self.zero))
            h0, c0 = h0[:, None], c0[:, None]
        else:
            h0 = np.stack([s[0] if s is not None else self.zero for s in states], axis=1)
            c0 = np.stack([s[1] if s is not None else self.zero for s in states], axis=1)
        h1, c1 = np.empty_like(h0), np.empty_like(c0)  # (layers, batch, d_hidden)
        d = self.d_hidden
        x = None
        for k in range(self.layers):
            if k == 0:
                gates = gates0 + h0[0] @ self.w_hh_t[0]
            else:
                gates = x @ self.w_ih_t[k] + h0[k] @ self.w_hh_t[k] + self.bias[k]
            act = np.tanh(gates) * self.half + self.shift  # i, f, o: sigmoid; g: tanh
            c1[k] = act[:, d : 2 * d] * c0[k] + act[:, :d] * act[:, 2 * d : 3 * d]
            h1[k] = act[:, 3 * d :] * np.tanh(c1[k])
            x = h1[k]
        out = x @ self.heads_t + self.heads_b
        program_logits = out[:, 1 : 1 + self.d_key] @ self.keys_t  # (batch, n_programs)
        chosen = program_logits.argmax(axis=1)
        arg_logits = out[:, 1 + self.d_key :].reshape(batch, ARG_SLOTS, self.arg_size)
        masked = np.where(self.arg_mask[chosen], arg_logits, -np.inf)
        values = masked.argmax(axis=2).tolist()
        chosen_list = chosen.tolist()
        if batch == 1:
            new_states = [(h1[:, 0], c1[:, 0])]
        else:
            new_states = [(h1[:, j].copy(), c1[:, j].copy()) for j in range(batch)]
        return StepResult(
            (out[:, 0] >= 0).tolist(),
            chosen_list,
            [tuple(v[: self.arities[p]]) for p, v in zip(chosen_list, values)],
            new_states,
        )

    def _first_layer_inputs(
        self,
        programs: Sequence[int],
        args: Sequence[Sequence[int]],
        observations: Sequence[Sequence[int]],
    ) -> np.ndarray:
        """(batch, 4 d_hidden): the first LSTM layer's gates from the step's input, prescaled."""
        table = self._input_gates
        keys = [(p, tuple(a), tuple(o)) for p, a, o in zip(programs, args, observations)]
        missing = [key for key in dict.fromkeys(keys) if key not in table]
        if missing:
            if len(table) + len(missing) > self.max_inputs:
                table.clear()
            for key, row in zip(missing, self._input_gates_of(missing)):
                table[key] = row
        if len(keys) == 1:
            return table[keys[0]][None]
        return np.stack([table[key] for key in keys])

    def _input_gates_of(
        self, keys: list[tuple[int, tuple[int, ...], tuple[int, ...]]]
    ) -> np.ndarray:
        rows = np.arange(len(keys))[:, None]
        one_hot = np.zeros((len(keys), self.d_input), dtype=np.float32)  # (batch, d_input)
        one_hot[rows, np.asarray([o for _, _, o in keys]) + self.observation_offsets] = 1.0
        one_hot[rows, np.asarray([a for _, a, _ in keys]) + self.arg_offsets] = 1.0
        hidden = np.maximum(one_hot @ self.enc1_t + self.enc1_b, 0.0)
        encoded = hidden @ self.enc2_t + self.enc2_b  # (batch, d_state)
        x = np.concatenate([encoded, self.embedding[[p for p, _, _ in keys]]], axis=1)
        return x @ self.w_ih_t[0] + self.bias[0]  # (batch, 4 d_hidden)
