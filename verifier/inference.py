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


class LSTMState:
    """The LSTM's (h, c) per layer after a prefix, and, once a step from it has been taken,
    its recurrent gate products: `h[k] @ W_hh[k]` (+ the bias above the first layer).

    Many prefixes extend the same one (calls that see different observations after the same
    steps): the shared state's recurrent products are computed once, not once per extension,
    and a step from a state that was stepped from before costs only the products of its new
    input. (On a 5,000-digit addition, 4,794 of its 10,631 first visits are such steps.)
    Once the products are kept, `h` is dropped: nothing reads it any more."""

    __slots__ = ("c", "h", "recurrent")

    def __init__(self, h: tuple[np.ndarray, ...], c: tuple[np.ndarray, ...]) -> None:
        self.h: tuple[np.ndarray, ...] | None = h  # one (d_hidden,) per layer
        self.c = c  # one (d_hidden,) per layer
        self.recurrent: tuple[np.ndarray, ...] | None = None  # one (4 d_hidden,) per layer


@dataclass(frozen=True)
class BatchStates:
    """The LSTM states after one batched step: (batch, d_hidden) h and c per layer."""

    h: list[np.ndarray]
    c: list[np.ndarray]


@dataclass(frozen=True)
class StepResult:
    """Decisions of a batch of steps, as plain lists, and the new state of each."""

    returns: list[bool]
    programs: list[int]
    args: list[tuple[int, ...]]  # truncated to each chosen program's arity
    states: list[LSTMState]


class NumpyStep:
    """`NPI.forward` for a single time step of a batch of calls, in numpy float32.

    Rewrites keep the number of numpy calls per step small (each costs about a microsecond,
    more than the arithmetic at this size):
    - the first layer's input gates depend only on (program, args, observation): they are
      kept in a table (cleared past `max_inputs` entries), computed with the encoder's second
      layer folded into the gate weights;
    - the recurrent gate products of a state are kept with it (`LSTMState.recurrent`);
    - the gate activations are one `tanh` over prescaled gates, since
      sigmoid(x) = (tanh(x / 2) + 1) / 2 (halving the weights is exact in floating point);
    - the heads are one product, the program keys folded into the key head;
    - decoding (argmax over a few logits) is done on Python lists;
    - `step_one`, the batch-1 step of a sequential run, makes no batch structures at all.
    """

    def __init__(self, model: NPI, task: Task, max_inputs: int = 20_000) -> None:
        c = model.config
        w = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
        self.layers, self.d = c.layers, c.d_hidden
        self.arities = c.arities
        self.n_programs = len(c.program_names)
        self.observation_offsets = np.cumsum((0,) + tuple(c.observation_sizes[:-1]))
        self.arg_offsets = sum(c.observation_sizes) + c.arg_size * np.arange(ARG_SLOTS)
        self.observation_offset_list = self.observation_offsets.tolist()
        self.arg_offset_list = self.arg_offsets.tolist()
        self.enc1_t = w["encoder.0.weight"].T.copy()  # (d_input, d_state)
        self.enc1_b = w["encoder.0.bias"]
        d = c.d_hidden
        # (4d,) gate order i, f, g, o: sigmoid gates are computed from halved inputs
        half = np.full(4 * d, 0.5, dtype=np.float32)
        half[2 * d : 3 * d] = 1.0
        self.half = half
        self.shift = np.where(half == 0.5, 0.5, 0.0).astype(np.float32)
        w_ih = [w[f"lstm.weight_ih_l{k}"].T * half for k in range(c.layers)]
        bias = [(w[f"lstm.bias_ih_l{k}"] + w[f"lstm.bias_hh_l{k}"]) * half for k in range(c.layers)]
        self.w_hh = [np.ascontiguousarray(w[f"lstm.weight_hh_l{k}"].T * half)  # (d, 4d) each
                     for k in range(c.layers)]
        self.w_ih_upper = [np.ascontiguousarray(w_ih[k]) for k in range(1, c.layers)]  # (d, 4d)
        # the first layer's bias is in its input gates; the others go with the recurrent part
        self.recurrent_bias = [np.zeros(4 * d, dtype=np.float32)] + bias[1:]
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
        self.zero_state = LSTMState((self.zero,) * c.layers, (self.zero,) * c.layers)
        self.zero_state.recurrent = tuple(self.recurrent_bias)
        self.max_inputs = max_inputs
        self._input_gates: dict[tuple[int, tuple[int, ...], tuple[int, ...]], np.ndarray] = {}

    def step_one(
        self, program: int, args: tuple[int, ...], observation: tuple[int, ...],
        state: LSTMState | None,
    ) -> tuple[bool, int, tuple[int, ...], LSTMState]:
        """One step of one call from `state` (None: the call's zero state); `args` as the call
        has them (not padded). Returns (return flag, program, its arguments, new state); the same
        arithmetic as `__call__` at batch 1."""
        key = (program, args, observation)
        gates = self._input_gates.get(key)
        if gates is None:
            gates = self._input_gates_one(key)
        if state is None:
            state = self.zero_state
        recurrent = state.recurrent
        if recurrent is None:
            recurrent = state.recurrent = self._recurrent(state.h)
            state.h = None  # no longer needed: every later step from it uses the products
        h, c = self._cell(gates + recurrent[0], state.c[0])
        hs, cs = [h], [c]
        for k in range(1, self.layers):
            h, c = self._cell(h @ self.w_ih_upper[k - 1] + recurrent[k], state.c[k])
            hs.append(h)
            cs.append(c)
        ret, chosen, values = self._decide((h @ self.heads + self.heads_b).tolist())
        return ret, chosen, values, LSTMState(tuple(hs), tuple(cs))

    def __call__(
        self,
        programs: Sequence[int],
        args: Sequence[Sequence[int]],
        observations: Sequence[Sequence[int]],
        states: Sequence[LSTMState | None],
    ) -> StepResult:
        """One step of each call from its state (None: a call's zero state). `args` are
        padded to ARG_SLOTS values with zeros where shorter."""
        # each distinct state once (prefixes that extend the same one share it), then its row
        parents: list[LSTMState] = []
        where: dict[int, int] = {}
        rows = []
        for state in states:
            state = state or self.zero_state
            row = where.get(id(state))
            if row is None:
                row = where[id(state)] = len(parents)
                parents.append(state)
            rows.append(row)
        missing = [s for s in parents if s.recurrent is None]
        if missing:
            products = self._recurrent(tuple(
                np.stack([s.h[k] for s in missing]) for k in range(self.layers)))  # type: ignore[index]
            for j, s in enumerate(missing):
                s.recurrent = tuple(p[j] for p in products)
                s.h = None
        index = None if len(parents) == len(rows) else np.asarray(rows)

        def gathered(arrays: list[np.ndarray]) -> np.ndarray:
            stacked = np.stack(arrays)
            return stacked if index is None else stacked[index]

        recurrent = [gathered([s.recurrent[k] for s in parents])  # type: ignore[index]
                     for k in range(self.layers)]  # (batch, 4d) each
        h, c = self._cell(self._first_layer_inputs(programs, args, observations) + recurrent[0],
                          gathered([s.c[0] for s in parents]))
        hs, cs = [h], [c]
        for k in range(1, self.layers):
            h, c = self._cell(h @ self.w_ih_upper[k - 1] + recurrent[k],
                              gathered([s.c[k] for s in parents]))
            hs.append(h)
            cs.append(c)
        returns, chosen, values = self._decide_all(h @ self.heads + self.heads_b)
        new_states = [  # each state's rows are views of the batch's arrays
            LSTMState(h_rows, c_rows)
            for h_rows, c_rows in zip(zip(*(list(h) for h in hs)), zip(*(list(c) for c in cs)))
        ]
        return StepResult(returns, chosen, values, new_states)

    def step_rows(
        self,
        programs: Sequence[int],
        args: Sequence[tuple[int, ...]],
        observations: Sequence[tuple[int, ...]],
        previous: BatchStates | None,
        rows: Sequence[int],
    ) -> tuple[list[bool], list[int], list[tuple[int, ...]], BatchStates]:
        """`__call__` for calls whose states are rows of one earlier batch: call j steps from
        row `rows[j]` of `previous` (None: every call from its zero state). The states are
        gathered by index instead of one object at a time, each distinct row's recurrent
        products computed once. Returns the decisions and the new states as one batch
        (`states` makes them per-call objects); `args` as the calls have them."""
        n, d = len(programs), self.d
        first = self._input_gates_of(list(zip(programs, args, observations)))  # (n, 4d)
        if previous is None:
            recurrent = [np.broadcast_to(b, (n, 4 * d)) for b in self.recurrent_bias]
            c_before = [np.zeros((n, d), dtype=np.float32)] * self.layers
        else:
            index = np.asarray(rows)
            distinct, inverse = np.unique(index, return_inverse=True)
            products = self._recurrent(tuple(h[distinct] for h in previous.h))
            recurrent = [p[inverse] for p in products]
            c_before = [c[index] for c in previous.c]
        h, c = self._cell(first + recurrent[0], c_before[0])
        hs, cs = [h], [c]
        for k in range(1, self.layers):
            h, c = self._cell(h @ self.w_ih_upper[k - 1] + recurrent[k], c_before[k])
            hs.append(h)
            cs.append(c)
        returns, chosen, values = self._decide_all(h @ self.heads + self.heads_b)
        return returns, chosen, values, BatchStates(hs, cs)

    @staticmethod
    def states(batch: BatchStates) -> list[LSTMState]:
        """Each call's state of a batch (its rows are views of the batch's arrays)."""
        return [
            LSTMState(h_rows, c_rows)
            for h_rows, c_rows in zip(zip(*(list(h) for h in batch.h)),
                                      zip(*(list(c) for c in batch.c)))
        ]

    def _decide_all(
        self, out: np.ndarray
    ) -> tuple[list[bool], list[int], list[tuple[int, ...]]]:
        """`_decide` for every row of a batch's head outputs, with array operations (numpy's
        argmax also takes the first maximum)."""
        chosen_array = out[:, 1 : 1 + self.n_programs].argmax(axis=1)
        chosen = chosen_array.tolist()
        values: list[tuple[int, ...]] = [()] * len(chosen)
        for program in set(chosen):
            columns = self.arg_columns[program]
            if not columns:
                continue
            rows = np.flatnonzero(chosen_array == program)
            slots = [out[rows, c.start : c.stop].argmax(axis=1).tolist() for c in columns]
            for j, value in zip(rows.tolist(), zip(*slots)):
                values[j] = value
        return (out[:, 0] >= 0).tolist(), chosen, values

    def _decide(self, row: list[float]) -> tuple[bool, int, tuple[int, ...]]:
        """One step's decision from its head outputs (return logit, program logits, argument
        logits): `npi.decode`'s rule (return when the logit >= 0; the first maximum; arguments
        among the values legal for the chosen program) on a Python list."""
        logits = row[1 : 1 + self.n_programs]
        chosen = logits.index(max(logits))
        values = []
        for columns in self.arg_columns[chosen]:
            logits = row[columns.start : columns.stop]
            values.append(logits.index(max(logits)))
        return row[0] >= 0, chosen, tuple(values)

    def _cell(self, gates: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One LSTM cell from its prescaled gates (overwritten) and its previous c: the new
        (h, c). Shapes (..., 4d) and (..., d)."""
        d = self.d
        act = np.tanh(gates, out=gates)
        act *= self.half
        act += self.shift  # i, f, o: sigmoid; g: tanh
        new_c = act[..., d : 2 * d] * c
        new_c += act[..., :d] * act[..., 2 * d : 3 * d]
        return act[..., 3 * d :] * np.tanh(new_c), new_c

    def _recurrent(self, hs: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        """Each layer's recurrent gate products (prescaled, bias included above layer 0)."""
        products = [h @ w for h, w in zip(hs, self.w_hh)]
        for k in range(1, self.layers):  # the first layer's bias is in its input gates
            products[k] += self.recurrent_bias[k]
        return tuple(products)

    def _first_layer_inputs(
        self,
        programs: Sequence[int],
        args: Sequence[Sequence[int]],
        observations: Sequence[Sequence[int]],
    ) -> np.ndarray:
        """The first LSTM layer's gates from each step's input, prescaled: (batch, 4d)."""
        table = self._input_gates
        keys = [(p, tuple(a), tuple(o)) for p, a, o in zip(programs, args, observations)]
        missing = [key for key in dict.fromkeys(keys) if key not in table]
        if missing:
            if len(table) + len(missing) > self.max_inputs:
                table.clear()
            for key, row in zip(missing, self._input_gates_of(missing)):
                table[key] = row
        return np.stack([table[key] for key in keys])

    def _input_gates_one(self, key: tuple[int, tuple[int, ...], tuple[int, ...]]) -> np.ndarray:
        """`_first_layer_inputs` for one step (args not padded: a program's arity is fixed),
        stored in the same table under that key."""
        table = self._input_gates
        if len(table) >= self.max_inputs:
            table.clear()
        program, args, observation = key
        hot = [o + k for o, k in zip(observation, self.observation_offset_list)]
        padded = args + (0,) * (ARG_SLOTS - len(args))
        hot += [a + k for a, k in zip(padded, self.arg_offset_list)]
        hidden = self.enc1_t[hot].sum(axis=0)  # (d_state,)
        hidden += self.enc1_b
        np.maximum(hidden, 0.0, out=hidden)
        gates = table[key] = hidden @ self.enc2_gates + self.program_gates[program]
        return gates

    def _input_gates_of(
        self, keys: list[tuple[int, tuple[int, ...], tuple[int, ...]]]
    ) -> np.ndarray:
        # the encoder's first layer on a one-hot input is a sum of rows of its weight
        hot = np.concatenate([  # (batch, n_obs + slots): the indices of the ones
            np.asarray([o for _, _, o in keys]) + self.observation_offsets,
            np.asarray([a + (0,) * (ARG_SLOTS - len(a)) for _, a, _ in keys]) + self.arg_offsets,
        ], axis=1)
        hidden = np.maximum(self.enc1_t[hot].sum(axis=1) + self.enc1_b, 0.0)  # (batch, d_state)
        return hidden @ self.enc2_gates + self.program_gates[[p for p, _, _ in keys]]
