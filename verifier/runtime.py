"""The one interpreter (C17 Algorithm 1 with the semantics pinned in design §3).

It runs a batch of inputs in lockstep: each input has its own environment and call stack, and
every interpreter step asks the policy once for the next action of every input still running.
Reference programs and models are both policies, so their traces compare step by step.

Pinned semantics, `npi-runtime/1`: each step inside a call emits one action. The action runs
first: a primitive changes the environment and control stays in this call; a non-primitive is
called with fresh policy memory (the NPI's hidden-state reset) and this call resumes with its
own memory when the callee returns. Then, if the return flag is set, this call ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from verifier.errors import PolicyError, ReferenceBug, VerifierError
from verifier.memo import PREFIX_SPARSE, PREFIX_WINDOW, PrefixSet
from verifier.tasks.base import NOP, Action, Args, Observation, Program, Routines, Task
from verifier.tasks.registry import describe_error, task_label

SEMANTICS = "npi-runtime/1"
# A call-local state: the program called, its arguments, and the observations of this call so
# far. Reference programs and models are functions of it; V is a set of them.
StateKey = tuple[str, Args, tuple[Observation, ...]]
STEP_LIMIT = "step limit"
DEPTH_LIMIT = "depth limit"


class Query(NamedTuple):
    """One question to a policy: the current call and what it observes now.

    `memory` is what the policy returned at the previous step of this same call, or None at
    the call's first step. (A named tuple: one is made per input per step.)
    """

    program: str
    args: Args
    observation: Observation
    memory: Any


class Policy(Protocol):
    """Anything that answers a batch of queries with (action, new memory) pairs."""

    def step(self, queries: Sequence[Query]) -> list[tuple[Action, Any]]: ...


@dataclass(frozen=True, slots=True)
class Step:
    """One step of an execution: inside a call of `program(args)` at call depth `depth`."""

    depth: int
    program: str
    args: Args
    observation: Observation
    action: Action

    def to_json(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "program": self.program,
            "args": list(self.args),
            "observation": list(self.observation),
            "action": self.action.to_json(),
        }


@dataclass(frozen=True)
class Limits:
    """Step and call-depth limits of one run; None means unlimited."""

    max_steps: int | None = None
    max_depth: int | None = None


@dataclass
class Execution:
    """The result of running one input."""

    input: Any
    env: Any
    halted: bool = False
    stop_reason: str | None = None
    step_count: int = 0
    max_depth: int = 0
    steps: list[Step] = field(default_factory=list)

    def describe_stop(self, limits: Limits) -> str:
        if self.halted:
            return "halted"
        if self.stop_reason == STEP_LIMIT:
            return f"did not halt within {limits.max_steps} steps"
        return f"exceeded the call-depth limit of {limits.max_depth}"


@dataclass(slots=True)
class _Frame:
    program: str
    args: Args
    memory: Any = None
    return_after_call: bool = False


def execute(
    task: Task,
    policy: Policy,
    inputs: Sequence[Any],
    limits: Limits | Sequence[Limits] = Limits(),
    record: bool = True,
    on_step: Callable[[int, Step], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Execution]:
    """Run `policy` on every input in lockstep; one `policy.step` call per interpreter step.

    With `record`, each execution keeps its steps; `on_step(k, step)` instead receives every
    step of input k as it happens (a caller streaming a long trace keeps nothing). `progress`
    is told, about every PROGRESS_SECONDS, how many inputs have stopped and how many steps
    the longest run has taken."""
    per_input = [limits] * len(inputs) if isinstance(limits, Limits) else list(limits)
    runs = [Execution(value, task.initial_env(value)) for value in inputs]
    stacks = [[_Frame(task.entry, ())] for _ in inputs]
    sinks = [_sink(run, k, record, on_step) for k, run in enumerate(runs)]
    for run in runs:
        run.max_depth = 1
    active = list(range(len(inputs)))
    iterations = 0
    next_report = time.monotonic() + PROGRESS_SECONDS
    legal: dict[tuple[str, Args], Program] = {}
    observe = task.observe
    while active:
        queries = []
        for i in active:
            frame = stacks[i][-1]
            queries.append(Query(frame.program, frame.args, observe(runs[i].env), frame.memory))
        answers = policy.step(queries)
        still_running = []
        for i, query, (action, memory) in zip(active, queries, answers, strict=True):
            program = legal.get((action.program, action.args)) or _legal(task, action, legal)
            if _advance(
                task, runs[i], stacks[i], query, action, program, memory, per_input[i], sinks[i]
            ):
                still_running.append(i)
        active = still_running
        iterations += 1
        if progress is not None and iterations % PROGRESS_CHECK == 0:
            now = time.monotonic()
            if now >= next_report:
                progress(len(inputs) - len(active), iterations)
                next_report = now + PROGRESS_SECONDS
    if progress is not None:
        progress(len(inputs), iterations)
    return runs


PROGRESS_SECONDS = 0.25  # between progress reports ...
PROGRESS_CHECK = 64  # ... looked at every this many interpreter steps


def _sink(
    run: Execution, k: int, record: bool, on_step: Callable[[int, Step], None] | None
) -> Callable[[Step], None] | None:
    """Where input k's steps go: its own list, the caller's callback, or nowhere."""
    if on_step is not None:
        return lambda step: on_step(k, step)
    return run.steps.append if record else None


def _legal(task: Task, action: Action, legal: dict[tuple[str, Args], Program]) -> Program:
    """The program `action` calls, once its arguments are checked against their ranges."""
    program = task.program(action.program)
    if len(action.args) != program.arity or any(
        not 0 <= a < r for a, r in zip(action.args, program.arg_ranges)
    ):
        raise PolicyError(f"{task.name}: illegal arguments {action.args} for {program.name}")
    legal[(action.program, action.args)] = program
    return program


def _advance(
    task: Task,
    run: Execution,
    stack: list[_Frame],
    query: Query,
    action: Action,
    program: Program,
    memory: Any,
    limits: Limits,
    sink: Callable[[Step], None] | None,
) -> bool:
    """Apply one legal action to one input; return whether that input is still running."""
    frame = stack[-1]
    frame.memory = memory
    if sink is not None:
        sink(Step(len(stack) - 1, query.program, query.args, query.observation, action))
    run.step_count += 1
    if program.primitive:
        if program.name != NOP:
            task.apply(run.env, program.name, action.args)
        if action.ret:
            stack.pop()
            while stack and stack[-1].return_after_call:
                stack.pop()
    else:
        frame.return_after_call = action.ret
        if limits.max_depth is not None and len(stack) >= limits.max_depth:
            run.stop_reason = DEPTH_LIMIT
            return False
        stack.append(_Frame(program.name, action.args))
        run.max_depth = max(run.max_depth, len(stack))
    if not stack:
        run.halted = True
        return False
    if limits.max_steps is not None and run.step_count >= limits.max_steps:
        run.stop_reason = STEP_LIMIT
        return False
    return True


class ReferencePolicy:
    """A task's reference program as a policy; the memory of a call is its live routine."""

    def __init__(self, task: Task, formulation: str) -> None:
        self.task = task
        self.formulation = formulation
        self.routines = task.routines(formulation)
        self.label = task_label(task, formulation)  # names the task in a routine's errors

    def step(self, queries: Sequence[Query]) -> list[tuple[Action, Any]]:
        answers = []
        for query in queries:
            routine = query.memory
            try:
                if routine is None:
                    routine = self.routines[query.program](query.args, query.observation)
                    action = next(routine)
                else:
                    action = routine.send(query.observation)
            except VerifierError:  # ours (a --timeout budget running out): pass it on
                raise
            except Exception as error:
                failure = routine_failure(query.program, error)
                raise ReferenceBug(f"{self.label}: {failure}") from error
            if not isinstance(action, Action):
                raise ReferenceBug(f"{self.label}: {not_an_action(query.program, action)}")
            answers.append((action, routine))
        return answers


def routine_failure(program: str, error: Exception, after: str = "") -> ReferenceBug:
    """What an exception out of a routine means (`after` says where in the call it came)."""
    if isinstance(error, StopIteration):
        return ReferenceBug(f"routine {program} ended without returning{after}")
    return ReferenceBug(f"routine {program} raised {describe_error(error)}{after}")


def not_an_action(program: str, action: Any) -> ReferenceBug:
    return ReferenceBug(f"routine {program} yielded {action!r}, not an Action (use call() or "
                        "RETURN)")


def reference_action(
    routines: Routines, program: str, args: Args, observations: Sequence[Observation]
) -> Action:
    """The reference action after the call-local observations `observations` (pure function)."""
    routine = routines[program](args, observations[0])
    try:
        action = next(routine)
        for k, observation in enumerate(observations[1:], start=1):
            if action.ret:  # it went on from here the first time: a function of more than this
                raise ReferenceBug(
                    f"the reference program reads more than its call's arguments and "
                    f"observations: replayed on the same observations, {program} returned "
                    f"after {k} steps where it had gone on before"
                )
            action = routine.send(observation)
    except VerifierError:  # ours (a --timeout budget running out), or the ReferenceBug above
        raise
    except Exception as error:
        where = f" after the observations {list(observations)}"
        raise routine_failure(program, error, where) from error
    if not isinstance(action, Action):
        raise not_an_action(program, action)
    return action


def run_reference(
    task: Task,
    formulation: str,
    value: Any,
    record: bool = True,
    limits: Limits = Limits(),
    on_step: Callable[[Step], None] | None = None,
) -> Execution:
    """Run the reference program on one input (it always halts; `limits` only budget it),
    keeping its steps (`record`) or handing each to `on_step` as it happens."""
    (run,) = execute(
        task,
        ReferencePolicy(task, formulation),
        [value],
        limits,
        record=record,
        on_step=None if on_step is None else (lambda _, step: on_step(step)),
    )
    return run


def split_calls(steps: Sequence[Step]) -> list[list[Step]]:
    """Group a recorded trace by call: one list of steps per call, in the order calls end."""
    calls: list[list[Step]] = []
    open_calls: list[list[Step]] = []  # the steps so far of each call on the stack
    for step in steps:
        while len(open_calls) > step.depth + 1:
            calls.append(open_calls.pop())
        if len(open_calls) == step.depth:
            open_calls.append([])
        open_calls[-1].append(step)
    calls.extend(reversed(open_calls))
    return calls


def call_local_steps(
    steps: Sequence[Step],
) -> Iterator[tuple[StateKey, Step]]:
    """Each step of a trace with its call-local state (program, args, observations so far)."""
    for call in split_calls(steps):
        observations: tuple[Observation, ...] = ()
        for step in call:
            observations += (step.observation,)
            yield (step.program, step.args, observations), step


def reference_call_local_steps(
    task: Task, formulation: str, value: Any, max_steps: int | None = None
) -> tuple[Execution, list[tuple[StateKey, Action]]]:
    """The reference program on one input, unlimited, and each of its steps' call-local state
    and action in the order of `call_local_steps(run_reference(...).steps)` (calls in the order
    they end), without building a trace first: the same interpreter loop for one input and the
    reference policy, with no queries, steps or batch structures. The execution keeps no steps.

    A routine that misbehaves (raises, ends without returning, yields a non-action or an
    illegal call) is run again through `run_reference`, which raises what it always raised.
    With `max_steps`, a run that has not halted after that many steps stops unhalted."""
    return _lean_reference(task, formulation, value, True, max_steps)


def reference_execution(
    task: Task, formulation: str, value: Any, prefixes: PrefixSet | None = None
) -> Execution:
    """`run_reference(task, formulation, value, record=False)` (the run that sets a model's
    limits: its step count, call depth and final environment) through the same lean loop.
    With `prefixes`, the call-local prefixes the run visits are added to that set (as many as
    its bounds allow; it stops collecting where new prefixes become rare, `PREFIX_WINDOW`)."""
    return _lean_reference(task, formulation, value, False, prefixes=prefixes)[0]


def _lean_reference(
    task: Task, formulation: str, value: Any, keep: bool, max_steps: int | None = None,
    prefixes: PrefixSet | None = None,
) -> tuple[Execution, list[tuple[StateKey, Action]]]:
    """The reference program on one input without the generic interpreter's structures; with
    `keep`, each step's call-local state and action, in the order calls end; with `prefixes`,
    the call-local prefixes it visits are collected there."""
    routines = task.routines(formulation)
    env = task.initial_env(value)
    observe, apply = task.observe, task.apply
    legal: dict[tuple[str, Args], Program] = {}
    found: list[tuple[StateKey, Action]] = []
    collecting = prefixes is not None
    replay = prefixes.actions if prefixes is not None else None  # the action after each prefix
    entry = prefixes.root(task.entry, ()) if prefixes is not None else None
    # a frame: [program, args, routine, observations so far, its (state, action)s, return after
    # call, its node in `prefixes` (None: not collected), how many observations that node is]
    stack: list[list[Any]] = [[task.entry, (), None, (), [], False, entry, 0]]
    steps, depth = 0, 1
    limit = -1 if max_steps is None else max_steps
    window_end, window_size = PREFIX_WINDOW, 0
    try:
        while stack:
            if steps == limit:
                return Execution(value, env, False, STEP_LIMIT, steps, depth), found
            frame = stack[-1]
            observation = observe(env)
            if collecting:
                node = frame[6]
                if node is not None:
                    child = node.get(observation)
                    frame[6] = child if child is not None else prefixes.add(  # type: ignore[union-attr]
                        node, observation, frame[7])
                    frame[7] += 1
                if steps == window_end:  # few new prefixes lately: stop paying for this,
                    # unless every step so far is recorded for a replay (`PrefixCache.repeats`)
                    if replay is None and prefixes.size - window_size < PREFIX_WINDOW // PREFIX_SPARSE:  # type: ignore[union-attr]
                        collecting = False
                        prefixes.stop()  # type: ignore[union-attr]
                    window_end, window_size = steps + PREFIX_WINDOW, prefixes.size  # type: ignore[union-attr]
            routine = frame[2]
            if routine is None:
                routine = frame[2] = routines[frame[0]](frame[1], observation)
                action = next(routine)
            else:
                action = routine.send(observation)
            if not isinstance(action, Action):
                raise ReferenceBug("not an action")
            if replay is not None:
                here = frame[6] if collecting else None
                seen = None if here is None else replay.setdefault(id(here), action)
                if seen is None or (seen is not action and seen != action):
                    replay = prefixes.actions = None  # type: ignore[union-attr]
            if keep:
                observed = frame[3] = frame[3] + (observation,)
                frame[4].append(((frame[0], frame[1], observed), action))
            steps += 1
            program = legal.get((action.program, action.args)) or _legal(task, action, legal)
            if program.primitive:
                if program.name != NOP:
                    apply(env, program.name, action.args)
                if action.ret:
                    found += stack.pop()[4]
                    while stack and stack[-1][5]:
                        found += stack.pop()[4]
            else:
                frame[5] = action.ret
                stack.append([program.name, action.args, None, (), [], False,
                              prefixes.root(program.name, action.args) if collecting else None,
                              0])  # type: ignore[union-attr]
                depth = max(depth, len(stack))
    except VerifierError as error:
        if not isinstance(error, (ReferenceBug, PolicyError)):
            raise  # ours (a --timeout budget running out): pass it on
        return _reference_again(task, formulation, value, keep)
    except Exception:
        return _reference_again(task, formulation, value, keep)
    return Execution(value, env, True, None, steps, depth), found


def _reference_again(
    task: Task, formulation: str, value: Any, keep: bool
) -> tuple[Execution, list[tuple[StateKey, Action]]]:
    """`_lean_reference` through the generic interpreter (it raises the error)."""
    run = run_reference(task, formulation, value, record=keep)
    if not keep:
        return run, []
    steps = [(key, step.action) for key, step in call_local_steps(run.steps)]
    run.steps = []
    return run, steps
