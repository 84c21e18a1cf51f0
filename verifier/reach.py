"""The verification set V: every call-local state reachable on some valid input of some size.

Two computations bound V from both sides (design §5.2):

- `concrete_states` runs the reference program on every small input, size by size, until
  the set stops growing: an under-approximation, with the smallest witness input of each state;
- `abstract_states` explores call-local states breadth-first over abstract environment states
  (observation + hidden predicates), with abstract posts of primitives computed by Z3 for all
  sizes and function summaries iterated to a least fixed point: an over-approximation.

If the two are equal, V is exact for inputs of every size.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verifier.errors import PluginError, ReferenceBug, VerifierError
from verifier.runtime import call_local_steps, reference_action, run_reference, split_calls
from verifier import smt
from verifier.smt import Abstract, AbstractDomain, SolverStats
from verifier.smt.product import ProductDomain, ProductSemantics
from verifier.smt import semantics_for
from verifier.tasks.base import NOP, RECURSIVE, Action, Args, Observation, Task
from verifier.tasks.registry import MODULES_ENV, TASKS, origin_of
from verifier.traces import greedy_cover_sets

StateKey = tuple[str, Args, tuple[Observation, ...]]
MAX_CALL_STEPS = 64  # an abstract call longer than this loops (a non-recursive formulation)
EXHAUSTIVE_LIMIT = 20_000  # inputs per size enumerated exhaustively, else sampled
SAMPLES_PER_SIZE = 1_000  # random inputs per size where enumeration is too large
SATURATION_PATIENCE = 2  # sizes in a row that add no state before concrete search stops
CROSS_CHECK_STEPS = 1_000  # random primitive steps replayed through Z3 per build
COVER_PROBES = 50  # random inputs offered to the witness cover besides the inputs searched ...
COVER_PROBE_SIZE = 24  # ... each of at most this size
GROWTH_SIZES = (8, 16, 32)  # input sizes at which call lengths are compared ...
GROWTH_SAMPLES = 10  # ... on this many random inputs each (a bounded call reaches its bound)
LARGE_TEST_INPUTS = 10  # random inputs of the task's large_test_size for the reference obligations


class UnboundedCall(VerifierError):
    """A call whose call-local sequences grow without bound: V is infinite."""

    exit_code = 3

    def __init__(
        self, program: str, steps: tuple[str, ...], lengths: list[int] | None = None
    ) -> None:
        if lengths:
            sizes = ", ".join(f"{n} at size {s}" for n, s in zip(lengths, GROWTH_SIZES))
            super().__init__(
                f"the longest call of {program} grows with the input ({sizes} steps): it loops, "
                "so its call-local sequences are unbounded and the verification set is infinite"
            )
        else:
            loop = " ".join(steps[-8:])
            super().__init__(
                f"{program} runs more than {MAX_CALL_STEPS} steps in one call (it loops: ... "
                f"{loop}); its call-local sequences are unbounded, so the verification set is "
                "infinite"
            )
        self.program = program


@dataclass
class ConcreteStates:
    """Call-local states seen on reference runs, each with its action and smallest witness."""

    actions: dict[StateKey, Action] = field(default_factory=dict)
    witness: dict[StateKey, Any] = field(default_factory=dict)
    per_input: list[tuple[Any, frozenset[StateKey]]] = field(default_factory=list)
    counts_by_size: list[tuple[int, int]] = field(default_factory=list)  # (size, |V| so far)
    inputs_run: int = 0
    saturated: bool = False  # the search stopped because sizes stopped adding states
    non_halting: int = 0  # reference runs that did not halt (never, for a sound reference)
    wrong: int = 0  # reference outputs that fail the task's independent check

    def add_run(self, task: Task, formulation: str, value: Any) -> frozenset[StateKey]:
        keys = set()
        run = run_reference(task, formulation, value)
        self.non_halting += not run.halted
        self.wrong += run.halted and not task.check(value, task.output(run.env))
        for key, step in call_local_steps(run.steps):
            keys.add(key)
            if key not in self.actions:
                self.actions[key] = step.action
                self.witness[key] = value
            elif self.actions[key] != step.action:  # not a function of the call-local state
                raise ReferenceBug(
                    f"{origin_of(task)}: task {task.name!r}, {formulation}: the reference "
                    f"program reads more than its call's arguments and observations: after "
                    f"{key[0]}{list(key[1])} observed {list(key[2])} it does "
                    f"{task.format_action(self.actions[key])} on input "
                    f"{task.input_to_json(self.witness[key])} but "
                    f"{task.format_action(step.action)} on input {task.input_to_json(value)}"
                )
        self.inputs_run += 1
        return frozenset(keys)


def concrete_states(
    task: Task,
    formulation: str = RECURSIVE,
    max_size: int = 12,
    samples: int = SAMPLES_PER_SIZE,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    target: Iterable[StateKey] = (),
) -> ConcreteStates:
    """Reference runs on all small inputs, size by size; then the task's covering inputs;
    then random inputs of growing size. Stops when every state of `target` has a witness,
    when SATURATION_PATIENCE sizes in a row add nothing, or after `max_size`."""
    wanted = set(target)
    found = ConcreteStates()
    rng = random.Random(seed)
    quiet = 0

    def run_size(size: int, inputs: list[Any]) -> bool:
        """Run one size's inputs; True when the search is done."""
        nonlocal quiet
        before = len(found.actions)
        for value in inputs:
            keys = found.add_run(task, formulation, value)
            found.per_input.append((value, keys))
        found.counts_by_size.append((size, len(found.actions)))
        if progress:
            progress(size, len(found.actions))
        quiet = quiet + 1 if len(found.actions) == before else 0
        # With an over-approximation as target, the search only collects witnesses, so one
        # size without news is enough; alone it must see SATURATION_PATIENCE such sizes.
        found.saturated = quiet >= (1 if wanted else SATURATION_PATIENCE) or bool(
            wanted and wanted <= found.actions.keys()
        )
        return found.saturated

    size = 1
    while size <= max_size and (inputs := task.small_inputs(size, EXHAUSTIVE_LIMIT)) is not None:
        if run_size(size, inputs):
            return found
        size += 1
    covering = [v for v in task.covering_inputs() if task.input_size(v) >= size]
    for covering_size in sorted({task.input_size(v) for v in covering}):
        if run_size(covering_size, [v for v in covering if task.input_size(v) == covering_size]) and (
            wanted <= found.actions.keys()
        ):
            return found
    quiet = 0
    for size in range(size, max_size + 1):
        if run_size(size, [task.sample_input(rng, size) for _ in range(samples)]):
            break
    return found


@dataclass
class AbstractStates:
    """The over-approximation: call-local states with their reference actions."""

    actions: dict[StateKey, Action]
    contexts: int  # (program, args, entry abstract state) explored
    stats: SolverStats
    seconds: float


Domain = AbstractDomain | ProductDomain


def domain_for(semantics: smt.Semantics) -> Domain:
    """The abstract domain of a task: part by part where its environment is a product."""
    if isinstance(semantics, ProductSemantics):
        return ProductDomain(semantics)
    return AbstractDomain(semantics)


Context = tuple[str, Args, Abstract]  # (program, args, abstract state at entry)
Point = tuple[tuple[Observation, ...], Abstract]  # a call's observations so far, its state now


@dataclass
class _Call:
    """One explored context: the points reached in it, its exit states, and the points of
    its callers waiting for those exits."""

    seen: set[Point] = field(default_factory=set)
    exits: set[Abstract] = field(default_factory=set)
    return_sites: list[tuple[Context, tuple[Observation, ...], bool]] = field(default_factory=list)


def abstract_states(task: Task, domain: Domain, formulation: str = RECURSIVE) -> AbstractStates:
    """Least fixed point of call exploration with function summaries (design §5.2).

    A worklist of (context, observations, abstract state) items: the reference action depends
    only on the observations, and what follows only on the state now, so two histories that
    agree on both are explored once. A call to a subprogram records a return site with the
    callee; when the callee's exit set grows, only the new exits go to its return sites."""
    started = time.perf_counter()
    routines = task.routines(formulation)
    size = domain.semantics.observation_size
    primitive = {p.name for p in task.programs if p.primitive}
    actions: dict[StateKey, Action] = {}
    calls: dict[Context, _Call] = {}
    # Last in, first out: a call that loops reaches MAX_CALL_STEPS without first exploring
    # every shorter history (the fixed point does not depend on the order).
    work: list[tuple[Context, tuple[Observation, ...], Abstract]] = []
    exits: deque[tuple[Context, frozenset[Abstract]]] = deque()

    def open_call(context: Context) -> _Call:
        if context not in calls:
            calls[context] = _Call()
            entry = context[2]
            work.append((context, (entry[:size],), entry))
        return calls[context]

    def continue_with(
        context: Context, observed: tuple[Observation, ...], ret: bool, after: Iterable[Abstract]
    ) -> None:
        if ret:
            exits.append((context, frozenset(after)))
        else:
            work.extend((context, observed + (a[:size],), a) for a in sorted(after))

    for entry in sorted(domain.initial_states()):
        open_call((task.entry, (), entry))
    while work or exits:
        if exits:
            context, reached = exits.popleft()
            call = calls[context]
            new = reached - call.exits
            if new:
                call.exits |= new
                for site, observed, ret in call.return_sites:
                    continue_with(site, observed, ret, new)
            continue
        context, observed, current = work.pop()
        seen = calls[context].seen
        point = (observed, current)
        if point in seen:
            continue
        seen.add(point)
        program, args, _ = context
        if len(observed) > MAX_CALL_STEPS:
            raise UnboundedCall(program, _describe(task, routines, program, args, observed))
        key = (program, args, observed)
        action = actions.get(key)
        if action is None:
            try:
                action = actions[key] = reference_action(routines, program, args, observed)
            except ReferenceBug as error:
                raise ReferenceBug(f"{origin_of(task)}: task {task.name!r}, {formulation}: "
                                   f"{error}") from None
        if action.program in primitive:
            after = (current,) if action.program == NOP else domain.post(current, action.program, action.args)
            continue_with(context, observed, action.ret, after)
        else:
            callee = open_call((action.program, action.args, current))
            callee.return_sites.append((context, observed, action.ret))
            continue_with(context, observed, action.ret, callee.exits)
    return AbstractStates(actions, len(calls), domain.stats, time.perf_counter() - started)


def _describe(task: Task, routines: Any, program: str, args: Args, observations: tuple) -> tuple[str, ...]:
    return tuple(
        task.format_action(reference_action(routines, program, args, observations[: k + 1]))
        for k in range(len(observations))
    )


@dataclass
class CrossCheck:
    """Z3 semantics vs the Python environment on concrete primitive steps."""

    steps: int = 0
    mismatches: list[str] = field(default_factory=list)


def cross_check(task: Task, semantics: Any, steps: int, seed: int = 0) -> CrossCheck:
    """Replay reference runs on random inputs; at every primitive step compare the Python
    observation with the one the Z3 semantics computes, before and after the step."""
    result = CrossCheck()
    rng = random.Random(seed)
    while result.steps < steps:
        value = task.sample_input(rng, rng.randint(1, 8))
        env = task.initial_env(value)
        if not smt.is_initial(semantics, env):
            result.mismatches.append(f"initial environment of {value} fails the Z3 initial condition")
        for step in run_reference(task, RECURSIVE, value).steps:
            program = task.program(step.action.program)
            if not program.primitive or program.name == NOP:
                continue
            before = task.observe(env)
            symbolic, predicted = smt.concrete_observations(
                semantics, env, program.name, step.action.args
            )
            if symbolic != before:
                result.mismatches.append(f"{value}: observation differs before {program.name}")
            task.apply(env, program.name, step.action.args)
            if predicted != task.observe(env):
                result.mismatches.append(
                    f"{value}: {task.format_action(step.action)} gives {task.observe(env)} in "
                    f"Python, {predicted} in Z3"
                )
            result.steps += 1
            if result.steps >= steps or len(result.mismatches) > 10:
                return result
    return result


@dataclass
class LargeReferenceRuns:
    """Reference runs on random inputs far beyond the sizes searched."""

    inputs: int
    size: int
    non_halting: int = 0
    wrong: int = 0


@dataclass
class VerificationSet:
    """V with everything the certificate reports about how it was obtained."""

    task: Task
    formulation: str
    states: dict[StateKey, Action]  # the abstract over-approximation where it exists
    concrete: ConcreteStates
    abstract: AbstractStates | None
    predicates: tuple[str, ...]
    cross: CrossCheck | None
    seconds: float
    _cover: list[Any] | None = field(default=None, init=False, repr=False)
    _large: LargeReferenceRuns | None = field(default=None, init=False, repr=False)

    @property
    def coverage_proved(self) -> bool:
        """V contains every reachable call-local state, for inputs of every size."""
        return (
            self.abstract is not None
            and self.abstract.stats.unknown == 0
            and self.cross is not None
            and not self.cross.mismatches
        )

    @property
    def unwitnessed(self) -> list[StateKey]:
        return [k for k in self.states if k not in self.concrete.actions]

    @property
    def exact(self) -> bool:
        return self.coverage_proved and not self.unwitnessed

    def witness_cover(self, extra: int = COVER_PROBES, seed: int = 0) -> list[Any]:
        """A small set of inputs whose reference runs reach every witnessed state of V,
        picked greedily from the inputs searched plus `extra` random inputs up to twice the
        largest size searched (longer inputs reach more states at once), at most
        COVER_PROBE_SIZE. Computed once per set with the default arguments."""
        default = (extra, seed) == (COVER_PROBES, 0)
        if default and self._cover is not None:
            return self._cover
        pool = list(self.concrete.per_input)
        rng = random.Random(seed)
        top = min(2 * max(size for size, _ in self.concrete.counts_by_size), COVER_PROBE_SIZE)
        probe = ConcreteStates()
        for _ in range(extra):
            value = self.task.sample_input(rng, rng.randint(1, top))
            pool.append((value, probe.add_run(self.task, self.formulation, value)))
        searched = len(self.concrete.per_input)  # their states are all in the concrete set
        sets = [
            keys if k < searched else keys & self.concrete.actions.keys()
            for k, (_, keys) in enumerate(pool)
        ]
        cover = [pool[k][0] for k in greedy_cover_sets(sets)]
        if default:
            self._cover = cover
        return cover

    def large_reference_runs(self) -> LargeReferenceRuns:
        """The reference program on LARGE_TEST_INPUTS random inputs of the task's
        `large_test_size` (seed 0), far beyond the sizes searched: evidence for termination and
        correctness (tested, not proved). Computed once per set."""
        if self._large is None:
            rng = random.Random(0)
            size = self.task.large_test_size
            large = [self.task.sample_input(rng, size) for _ in range(LARGE_TEST_INPUTS)]
            found = LargeReferenceRuns(len(large), size)
            for value in large:
                run = run_reference(self.task, self.formulation, value, record=False)
                found.non_halting += not run.halted
                found.wrong += run.halted and not self.task.check(value, self.task.output(run.env))
            self._large = found
        return self._large

    def per_program(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for program, _, _ in self.states:
            counts[program] += 1
        return dict(sorted(counts.items()))

    def tree_nodes(self) -> int:
        """Nodes of the prefix trees: V is prefix-closed, so one per element."""
        return len(self.states)


def build_vset(
    task: Task,
    formulation: str = RECURSIVE,
    progress: Callable[[str], None] | None = None,
) -> VerificationSet:
    """Concrete states, and where the task has Z3 semantics the abstract fixed point and the
    cross-check; UnboundedCall when some call's sequences grow without bound."""
    started = time.perf_counter()
    say = progress or (lambda text: None)
    semantics = semantics_for(task)
    abstract = None
    cross = None
    if semantics is not None:
        # The cross-check needs nothing from the fixed point: on a second core it runs
        # meanwhile, in a process of its own, with the same seed, so the same result.
        pending = _CrossCheckElsewhere(task, CROSS_CHECK_STEPS)
        say("abstract fixed point (Z3)")
        try:
            abstract = abstract_states(task, domain_for(semantics), formulation)
        except BaseException:
            pending.cancel()
            raise
        say("cross-checking Z3 semantics against the Python environment")
        cross = pending.result()
        if cross.mismatches:  # the task's two halves describe different environments
            raise PluginError(
                f"{origin_of(task)}: task {task.name!r}: its Z3 semantics disagree with its "
                f"Python environment ({len(cross.mismatches)} mismatches in {cross.steps} "
                f"replayed steps), e.g. {cross.mismatches[0]}"
            )
    if abstract is None:
        _raise_if_growing(task, formulation)
    say("concrete reference runs on small inputs")
    concrete = concrete_states(
        task,
        formulation,
        progress=lambda size, n: say(f"size {size}: {n} states"),
        target=abstract.actions if abstract else (),
    )
    if abstract is not None:
        missing = set(concrete.actions) - set(abstract.actions)
        if missing:  # the over-approximation must contain every concrete state
            raise PluginError(
                f"{origin_of(task)}: task {task.name!r}: its Z3 semantics disagree with its "
                f"Python environment: the abstract "
                f"fixed point misses {len(missing)} concrete states, e.g. {sorted(missing)[0]}"
            )
    states = dict(abstract.actions if abstract else concrete.actions)
    names = tuple(semantics.hidden_names) if semantics else ()
    return VerificationSet(
        task, formulation, states, concrete, abstract, names, cross, time.perf_counter() - started
    )


_WORKER = (
    "import json, sys\n"
    "from verifier.reach import cross_check, semantics_for\n"
    "from verifier.tasks import get_task\n"
    "task = get_task(sys.argv[1])\n"
    "result = cross_check(task, semantics_for(task), int(sys.argv[2]))\n"
    "print(json.dumps([result.steps, result.mismatches]))\n"
)


class _CrossCheckElsewhere:
    """`cross_check(task, its semantics, steps)` in a fresh Python process (the same
    interpreter and package) when the machine has a second core. The worker uses the same
    seed, so its result is the one computed here; wherever it cannot run apart (one core,
    NPI_VERIFY_WORKERS=0, no process, a worker that fails) `result` computes it in this
    process instead."""

    def __init__(self, task: Task, steps: int) -> None:
        self.task, self.steps = task, steps
        self.worker: subprocess.Popen[bytes] | None = None
        if (os.cpu_count() or 1) < 2 or os.environ.get("NPI_VERIFY_WORKERS") == "0":
            return
        package_root = str(Path(__file__).resolve().parent.parent)
        paths = [package_root, *filter(None, [os.environ.get("PYTHONPATH")])]
        try:
            self.worker = subprocess.Popen(
                [sys.executable, "-c", _WORKER, task.name, str(steps)],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env=dict(os.environ, PYTHONPATH=os.pathsep.join(paths),
                         **{MODULES_ENV: os.pathsep.join(TASKS.module_paths)}),
            )
        except OSError:
            self.worker = None

    def result(self) -> CrossCheck:
        if self.worker is not None:
            output, _ = self.worker.communicate()
            try:
                count, mismatches = json.loads(output)
                if self.worker.returncode == 0 and isinstance(count, int) and isinstance(mismatches, list):
                    return CrossCheck(count, [str(m) for m in mismatches])
            except ValueError:
                pass
        return cross_check(self.task, semantics_for(self.task), self.steps)

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.kill()
            self.worker.wait()


def _raise_if_growing(task: Task, formulation: str) -> None:
    """Without Z3 semantics: a program whose longest call keeps growing with the input size
    (8, 16, 32) loops inside one call, so its call-local sequences are unbounded."""
    rng = random.Random(0)
    longest: dict[str, list[int]] = defaultdict(list)
    for size in GROWTH_SIZES:
        per_program: dict[str, int] = defaultdict(int)
        for _ in range(GROWTH_SAMPLES):
            value = task.sample_input(rng, size)
            for call in split_calls(run_reference(task, formulation, value).steps):
                per_program[call[0].program] = max(per_program[call[0].program], len(call))
        for program in per_program:
            longest[program].append(per_program[program])
    for program, lengths in sorted(longest.items()):
        if len(lengths) == len(GROWTH_SIZES) and all(a < b for a, b in zip(lengths, lengths[1:])):
            raise UnboundedCall(program, (), lengths)
