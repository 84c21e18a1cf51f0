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

from verifier.npi import ARG_SLOTS, NPI
from verifier.tasks import Task

State = tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]  # (h, c): one (d_hidden,) per layer


@dataclass(frozen=True)
class StepResult:
    """Decisions of a batch of steps, as plain lists, and the new state of each."""

    returns: list[bool]
    programs: list[int]
    args: list[tuple[int, ...]]  # truncated to each chosen program's arity
    states: list[State]


class NumpyStep:
    """`NPI.forward` for a single time step of a batch of calls, in numpy float32.

    Rewrites keep the number of numpy calls per step small (each costs about a microsecond,
    more than the arithmetic at this size):
    - the first layer's input gates depend only on (program, args, observation): they are
      kept in a table (cleared past `max_inputs` entries), computed with the encoder's second
      layer folded into the gate weights;
    - the gate activations are one `tanh` over prescaled gates, since
      sigmoid(x) = (tanh(x / 2) + 1) / 2 (halving the weights is exact in floating point);
    - a layer above the first multiplies [input; h] by its two weight matrices stacked;
    - the heads are one product, the program keys folded into the key head;
    - decoding (argmax over a few logits) is done on Python lists.
    """

    def __init__(self, model: NPI, task: Task, max_inputs: int = 20_000) -> None:
        c = model.config
        w = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
        self.layers, self.d = c.layers, c.d_hidden
        self.arities = c.arities
        self.n_programs = len(c.program_names)
        self.observation_offsets = np.cumsum((0,) + tuple(c.observation_sizes[:-1]))
        self.arg_offsets = sum(c.observation_sizes) + c.arg_size * np.arange(ARG_SLOTS)
        self.enc1_t = w["encoder.0.weight"].T.copy()  # (d_input, d_state)
        self.enc1_b = w["encoder.0.bias"]
        d = c.d_hidden
        # (4d,) gate order i, f, g, o: sigmoid gates are computed from halved inputs
        half = np.full(4 * d, 0.5, dtype=np.float32)
        half[2 * d : 3 * d] = 1.0
        self.half = half
        self.shift = np.where(half == 0.5, 0.5, 0.0).astype(np.float32)
        w_ih = [w[f"lstm.weight_ih_l{k}"].T * half for k in range(c.layers)]
        w_hh = [w[f"lstm.weight_hh_l{k}"].T * half for k in range(c.layers)]
        bias = [(w[f"lstm.bias_ih_l{k}"] + w[f"lstm.bias_hh_l{k}"]) * half for k in range(c.layers)]
        self.w_hh0 = w_hh[0]  # (d, 4d)
        self.w_upper = [np.concatenate([w_ih[k], w_hh[k]]) for k in range(1, c.layers)]  # (2d, 4d)
        self.b_upper = bias[1:]
        # The first layer's input gates are linear in the encoder's output and the program
        # embedding: fold the encoder's second layer in, tabulate the embedding's part per program.
        w_state, w_program = w_ih[0][: c.d_state], w_ih[0][c.d_state :]
        self.enc2_gates = w["encoder.2.weight"].T @ w_state  # (d_state, 4d)
        self.program_gates = (  # (n_programs, 4d)
            w["program_embedding.weight"] @ w_program + w["encoder.2.bias"] @ w_state + bias[0]
        )
        keys_t = w["program_keys"].T  # (d_key, n_programs)
        self.heads = np.concatenate(  # (d, 1 + n_programs + slots * size)
            [w["end_head.weight"].T, w["key_head.weight"].T @ keys_t]
            + [w[f"arg_heads.{k}.weight"].T for k in range(ARG_SLOTS)],
            axis=1,
        )
        self.heads_b = np.concatenate(
            [w["end_head.bias"], w["key_head.bias"] @ keys_t]
            + [w[f"arg_heads.{k}.bias"] for k in range(ARG_SLOTS)]
        )
        first_arg = 1 + self.n_programs
        self.arg_columns = [  # per program: the logit columns of each legal argument value
            [range(first_arg + slot * c.arg_size, first_arg + slot * c.arg_size + size)
             for slot, size in enumerate(program.arg_ranges)]
            for program in (task.program(name) for name in c.program_names)
        ]
        self.zero = np.zeros(d, dtype=np.float32)
        self.zero_state: State = ((self.zero,) * c.layers, (self.zero,) * c.layers)
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
        gates0 = self._first_layer_inputs(programs, args, observations)  # (batch, 4d) or (4d,)
        if batch == 1:
            hs, cs = states[0] or self.zero_state
        else:
            full = [s or self.zero_state for s in states]
            hs = tuple(np.stack([s[0][k] for s in full]) for k in range(self.layers))
            cs = tuple(np.stack([s[1][k] for s in full]) for k in range(self.layers))
        d = self.d
        new_h, new_c = [], []
        x = None
        for k in range(self.layers):
            if k == 0:
                gates = gates0 + hs[0] @ self.w_hh0
            else:
                both = np.concatenate([x, hs[k]], axis=-1)
                gates = both @ self.w_upper[k - 1] + self.b_upper[k - 1]
            act = np.tanh(gates) * self.half + self.shift  # i, f, o: sigmoid; g: tanh
            c = act[..., d : 2 * d] * cs[k] + act[..., :d] * act[..., 2 * d : 3 * d]
            x = act[..., 3 * d :] * np.tanh(c)
            new_h.append(x)
            new_c.append(c)
        out = x @ self.heads + self.heads_b
        rows = [out.tolist()] if batch == 1 else out.tolist()
        returns, chosen, values = [], [], []
        for row in rows:
            program = max(range(self.n_programs), key=row[1:].__getitem__)
            returns.append(row[0] >= 0)
            chosen.append(program)
            values.append(tuple(
                max(columns, key=row.__getitem__) - columns.start
                for columns in self.arg_columns[program]
            ))
        if batch == 1:
            new_states = [(tuple(new_h), tuple(new_c))]
        else:
            new_states = [
                (tuple(h[j] for h in new_h), tuple(c[j] for c in new_c)) for j in range(batch)
            ]
        return StepResult(returns, chosen, values, new_states)

    def _first_layer_inputs(
        self,
        programs: Sequence[int],
        args: Sequence[Sequence[int]],
        observations: Sequence[Sequence[int]],
    ) -> np.ndarray:
        """The first LSTM layer's gates from the step's input, prescaled: (4d,) for one step,
        else (batch, 4d)."""
        table = self._input_gates
        keys = [(p, tuple(a), tuple(o)) for p, a, o in zip(programs, args, observations)]
        missing = [key for key in dict.fromkeys(keys) if key not in table]
        if missing:
            if len(table) + len(missing) > self.max_inputs:
                table.clear()
            for key, row in zip(missing, self._input_gates_of(missing)):
                table[key] = row
        if len(keys) == 1:
            return table[keys[0]]
        return np.stack([table[key] for key in keys])

    def _input_gates_of(
        self, keys: list[tuple[int, tuple[int, ...], tuple[int, ...]]]
    ) -> np.ndarray:
        # the encoder's first layer on a one-hot input is a sum of rows of its weight
        hot = np.concatenate([  # (batch, n_obs + slots): the indices of the ones
            np.asarray([o for _, _, o in keys]) + self.observation_offsets,
            np.asarray([a for _, a, _ in keys]) + self.arg_offsets,
        ], axis=1)
        hidden = np.maximum(self.enc1_t[hot].sum(axis=1) + self.enc1_b, 0.0)  # (batch, d_state)
        return hidden @ self.enc2_gates + self.program_gates[[p for p, _, _ in keys]]
