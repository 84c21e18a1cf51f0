"""The verification set: exactness, completeness on large inputs, Z3 vs Python, loops."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from typing import Any

import pytest
import z3

from tests.conftest import vset_of
from verifier.errors import UnboundedCall
from verifier.runtime import run_reference, split_calls
from verifier.smt import AbstractDomain, Relation, Universal, semantics_for
from verifier.smt.product import ProductDomain, ProductSemantics
from verifier.tasks import TASKS
from verifier.tasks.base import NOP, RECURSIVE, Task
from verifier.tasks.bubblesort import semantics as bs
from verifier.vset import crosscheck
from verifier.vset.build import build_vset, raise_if_growing
from verifier.vset.concrete import concrete_states
from verifier.vset.crosscheck import CrossCheckElsewhere, cross_check
from verifier.vset.fixpoint import domain_for, explore

WITH_SEMANTICS = [name for name, task in TASKS.items() if semantics_for(task) is not None]


@pytest.fixture(scope="module")
def vsets() -> dict:
    return {name: vset_of(name) for name in WITH_SEMANTICS}


def test_bubblesort_v_is_exact_for_all_sizes() -> None:
    v = vset_of("bubblesort")
    assert v.coverage_proved and v.exact
    assert len(v.states) == len(v.concrete.actions) == 49
    assert v.abstract is not None and v.abstract.stats.unknown == 0
    cover = v.witness_cover()
    assert len(cover) == 2  # no single array reaches all of V (design §5.2)
    reached = set()
    for value in cover:
        for call in split_calls(run_reference(TASKS["bubblesort"], "recursive", value).steps):
            reached |= {(s.program, s.args, tuple(x.observation for x in call[: k + 1]))
                        for k, s in enumerate(call)}
    assert reached == set(v.states)


@pytest.mark.slow
def test_addition_v_is_exact_for_all_sizes(vsets: dict) -> None:
    """The row-by-row abstraction is exact, and the covering inputs witness all of it."""
    v = vsets["addition"]
    assert v.coverage_proved and v.exact
    assert len(v.states) == len(v.concrete.actions) == 77_056
    assert v.per_program() == {"ADD": 24_901, "ADD1": 343, "CARRY": 306, "LSHIFT": 51_506}


@pytest.fixture(scope="module")
def quicksort_fixed_point() -> tuple[Any, dict]:
    """Quicksort's abstract fixed point with its calls, and its domain."""
    task = TASKS["quicksort"]
    domain = domain_for(semantics_for(task))
    return domain, explore(task, domain)


def test_quicksort_v_is_exact_for_all_sizes(quicksort_fixed_point: tuple[Any, dict]) -> None:
    """Relational summaries (the frame rule: a call consumes its top frame and keeps the ones
    below) remove the 7 states a caller reached after its first recursive call returned with
    non-relational summaries; 43 call-local states is what reference runs reach."""
    _, (actions, _) = quicksort_fixed_point
    assert len(actions) == 43
    concrete = concrete_states(TASKS["quicksort"], RECURSIVE, target=actions)
    assert set(concrete.actions) == set(actions)


def test_relational_fixed_point_holds_every_concrete_point(
    quicksort_fixed_point: tuple[Any, dict],
) -> None:
    """Soundness of the relations: see `assert_holds_concrete_points`."""
    assert_holds_concrete_points(TASKS["quicksort"], *quicksort_fixed_point, [[2, 1, 3], [3, 3, 1, 2]])


def assert_holds_concrete_points(task: Task, domain: Any, fixed_point: tuple, inputs: list) -> None:
    """Replaying reference runs on `inputs` and a few random ones, every point a call reaches
    (its observations so far; the abstraction, then each relation between the call's entry
    environment and now, evaluated on the Z3 environments the semantics' primitives give from
    the encoded input) is a point of the fixed point's call from that entry; every exit is in
    its summary."""
    _, calls = fixed_point
    semantics = domain.semantics
    width = domain.width

    def value(term: Any) -> int:
        if isinstance(term, Universal):
            solver = z3.Solver()
            solver.add(z3.Not(term.body(*[z3.Int(f"x{k}") for k in range(len(term.kinds))])))
            return int(solver.check() == z3.unsat)
        return z3.simplify(term).as_long()

    def point(entry: Any, now: Any) -> tuple[int, ...]:
        terms = semantics.abstraction(now)
        if entry is not None:
            terms += [r.term(entry, now) for r in domain.relations]
        return tuple(value(t) for t in terms)

    def close(open_calls: list, depth: int, env: Any) -> None:
        """Calls deeper than `depth` have returned, in `env`: it is an exit of each."""
        for context, entry, _ in open_calls[depth:]:
            assert point(entry, env) in calls[context].exits
        del open_calls[depth:]

    rng = random.Random(3)
    checked = 0
    for value_ in inputs + [task.sample_input(rng, rng.randint(1, 5)) for _ in range(2)]:
        env = semantics.encode(task.initial_env(value_))
        open_calls: list[tuple[Any, Any, list]] = []  # (context, entry env, observations)
        for step in run_reference(task, RECURSIVE, value_).steps:
            close(open_calls, step.depth + 1, env)
            if len(open_calls) == step.depth:
                entry = env
                open_calls.append(((step.program, step.args, point(None, entry)), entry, []))
            context, entry, observed = open_calls[-1]
            observed.append(step.observation)
            now = point(entry, env)
            assert len(now) == width + len(domain.relations)
            assert (tuple(observed), now) in calls[context].seen, (value_, step)
            checked += 1
            if task.program(step.action.program).primitive and step.action.program != NOP:
                env = semantics.apply(env, step.action.program, step.action.args)
        close(open_calls, 0, env)
    assert checked > 100


@pytest.fixture(scope="module")
def values_fixed_point() -> tuple[Any, tuple]:
    """Bubble sort's (value encoder) abstract fixed point with its calls, and its domain."""
    task = TASKS["bubblesort-values"]
    domain = domain_for(semantics_for(task))
    return domain, explore(task, domain)


# Facts of the value encoder (12,615 states without any of them): each one's name, the
# states that come back without it per program, and their number. Those that carry the
# sorted suffix from pass to pass bring back, among others, the 165 states of a last pass
# that lowered A[1] (the relation `A[1]<=entry A[1]` and its frame i3==entry i3 also the
# 990 BUBBLESORT states where RESET brings back a first cell above the one the call began
# with).
VALUE_FACTS = [
    ("A[i1+1] if i2-i1==2 else 10", {"LSHIFT": 6690}, 6690),
    (bs.PASS_END, {"RESET": 45}, 45),
    (bs.SETTLED_NEXT, {"BUBBLESORT": 1128, "RESET": 36, "LSHIFT": 90}, 1254),
    (bs.PASS_CARRY, {"BUBBLESORT": 1128, "RESET": 36, "LSHIFT": 90}, 1254),
    (bs.FIRST_KEPT_LOW, {"BUBBLESORT": 990 + 165, "RESET": 45}, 1200),
    (bs.SAME_PASS, {"BUBBLESORT": 990 + 165, "RESET": 45}, 1200),
    (bs.FIRST_KEPT, {"BUBBLESORT": 165}, 165),
]
SUFFIX_FACTS = {name for name, programs, _ in VALUE_FACTS if "BUBBLESORT" in programs}


def values_variant(drop: str) -> Any:
    """The value encoder's semantics without one of its facts (a hidden predicate, or the
    relation with the composition of every return)."""
    base = type(semantics_for(TASKS["bubblesort-values"]))

    class Without(base):  # type: ignore[misc, valid-type]
        def hints(self) -> tuple:
            return tuple(p for p in super().hints() if p.name != drop)

        def relations(self) -> tuple:
            return tuple(r for r in super().relations() if r.name != drop)

        def linked_components(self) -> tuple[str, ...] | None:
            return tuple(n for n in super().linked_components() if n != drop)

        def composes_every_return(self) -> bool:
            return bool(self.relations())

    return Without(TASKS["bubblesort-values"], values=True)


@pytest.mark.slow
def test_bubblesort_values_v_is_exact_for_all_sizes(values_fixed_point: tuple[Any, tuple]) -> None:
    """Every abstract state is reached by a reference run: 4,725 call-local states (12,615
    with the observations and bit predicates alone; 4,890 before the sorted suffix was carried
    from pass to pass, the 165 others on BUBBLESORT's last pass)."""
    task = TASKS["bubblesort-values"]
    _, (actions, _) = values_fixed_point
    concrete = concrete_states(task, RECURSIVE, target=actions).actions
    assert set(concrete) == set(actions) and len(actions) == 4725


def _last_pass_lowered(key: tuple) -> bool:
    """A BUBBLESORT state that saw i3 == n after one pass that lowered A[1]: that pass was
    not the last (its array would have been sorted), so no input reaches it."""
    program, _, observed = key
    return (program == "BUBBLESORT" and len(observed) == 4 and observed[3][2] == 1
            and observed[2][0] < observed[0][0])


@pytest.mark.slow
@pytest.mark.parametrize(("drop", "programs", "more"), VALUE_FACTS)
def test_each_value_fact_removes_unreachable_states(
    values_fixed_point: tuple[Any, tuple], drop: str, programs: dict[str, int], more: int
) -> None:
    """Without each fact, the fixed point gains the states it removes (per program), none of
    them reached by a reference run; without a fact that carries the sorted suffix, among
    them the 165 BUBBLESORT states of a last pass that lowered A[1]."""
    task = TASKS["bubblesort-values"]
    _, (actions, _) = values_fixed_point
    weaker, _ = explore(task, AbstractDomain(values_variant(drop)))
    assert set(actions) < set(weaker)
    gained = set(weaker) - set(actions)
    assert dict(Counter(key[0] for key in gained)) == programs and len(gained) == more
    last_pass = {key for key in gained if _last_pass_lowered(key)}
    assert len(last_pass) == (165 if drop in SUFFIX_FACTS else 0)


def test_sorted_suffix_facts_hold_on_reference_runs() -> None:
    """On every step of reference runs, `settled(i3+1) or settled(i3) and max carried` holds,
    and `settled(i3+1)` holds throughout RESET (and the LSHIFT calls under it) and wherever
    a pass has ended (i2 == n + 1): the values the fixed point relies on (evaluated with Z3
    on the environments the semantics' primitives give)."""
    task = TASKS["bubblesort-values"]
    semantics = semantics_for(task)
    names = list(task.observation_names) + list(semantics.hidden_names)
    settled_next, carry = names.index("settled(i3+1)"), names.index(
        "settled(i3+1) or settled(i3) and max carried")

    def holds(term: Any) -> bool:
        solver = z3.Solver()
        solver.add(z3.Not(term.body(*[z3.Int(f"x{k}") for k in range(len(term.kinds))])))
        return solver.check() == z3.unsat

    checked = 0
    for value in ([3, 1, 2], [0, 9, 9, 1], [5, 4, 3, 2, 1], [7], [2, 2, 1]):
        env = semantics.encode(task.initial_env(value))
        stack: list[str] = []
        for step in run_reference(task, RECURSIVE, value).steps:
            del stack[step.depth:]
            stack.append(step.program)
            terms = semantics.abstraction(env)
            assert holds(terms[carry]), (value, step)
            pass_ended = z3.simplify(env["i2"] == env["n"] + 1)
            if "RESET" in stack or z3.is_true(pass_ended):
                assert holds(terms[settled_next]), (value, step)
            checked += 1
            if task.program(step.action.program).primitive and step.action.program != NOP:
                env = semantics.apply(env, step.action.program, step.action.args)
    assert checked > 300


@pytest.mark.slow
@pytest.mark.soundness
def test_values_fixed_point_holds_every_concrete_point(values_fixed_point: tuple[Any, tuple]) -> None:
    """The digit between the pointers, the pass-end facts and the relation hold on every
    point of reference runs: the fixed point contains them all."""
    assert_holds_concrete_points(TASKS["bubblesort-values"], *values_fixed_point,
                                 [[3, 1, 2], [0, 9, 9, 1], [5, 4, 3, 2, 1], [7]])


def test_relations_are_proved_kept_never_assumed() -> None:
    """Only the primitives Z3 proves to keep every relation carry their values over: quicksort's
    stack operations do not; a relation that SWAP breaks is not kept by SWAP; without
    relations, entering and returning are identities."""
    task = TASKS["quicksort"]
    domain = domain_for(semantics_for(task))
    assert not any(domain.keeps_relations("STACK", (k,)) for k in range(3))
    assert domain.keeps_relations("MOVE", (0, 1)) and domain.keeps_relations("SWAP", (2, 3))

    class ArrayKept(type(semantics_for(task))):  # type: ignore[misc]
        def relations(self) -> tuple[Relation, ...]:
            return (Relation("A kept", lambda entry, env: z3.If(
                entry["A"] == env["A"], z3.IntVal(1), z3.IntVal(0))),)

    broken = AbstractDomain(ArrayKept(task))
    assert broken.keeps_relations("MOVE", (0, 1)) and not broken.keeps_relations("SWAP", (2, 3))
    plain = domain_for(semantics_for(TASKS["bubblesort"]))
    state = next(iter(plain.initial_states()))
    assert plain.enter(state) == {state} and plain.ret(state, state, state) == {state}


@pytest.mark.slow
def test_toposort_v_is_exact_for_all_sizes(vsets: dict) -> None:
    """The depth-first-search invariants (quantified, instantiated) make V exact."""
    v = vsets["toposort"]
    assert v.coverage_proved and v.exact
    assert len(v.states) == len(v.concrete.actions) == 83
    assert v.per_program() == {"CHECK_CHILD": 7, "EXPLORE": 35, "NEXT_START": 6, "STACK": 16,
                               "TOPOSORT": 5, "TRAVERSE": 14}  # fmt: skip


def _concrete_abstraction(semantics: Any, env: Any) -> tuple[int, ...]:
    """A toposort environment's abstract state, each universal predicate evaluated at every
    vertex and stack position (and a margin around them)."""
    encoded = semantics.encode(env)
    ranges = {"vertex": range(-1, env.n + 3), "index": range(-1, env.p_stack + 3)}
    ranges["upper"] = ranges["index"]
    values = []
    for term in semantics.abstraction(encoded):
        if isinstance(term, Universal):
            choices = itertools.product(*(ranges[kind] for kind in term.kinds))
            holds = all(z3.is_true(z3.simplify(term.body(*map(z3.IntVal, c)))) for c in choices)
            values.append(int(holds))
        else:
            values.append(z3.simplify(term).as_long())
    return tuple(values)


@pytest.mark.slow
@pytest.mark.soundness
def test_toposort_abstract_posts_contain_the_concrete_steps() -> None:
    """Along reference runs, the abstract state after each primitive (hidden predicates and
    all) is one of the abstract posts of the state before it: the instantiated universal
    predicates and the ghost rank and stack positions are sound."""
    task = TASKS["toposort"]
    semantics = semantics_for(task)
    domain = AbstractDomain(semantics)
    rng = random.Random(5)
    steps = 0
    for _ in range(4):
        value = task.sample_input(rng, rng.randint(2, 5))
        env = task.initial_env(value)
        state = _concrete_abstraction(semantics, env)
        assert state in domain.initial_states()
        for step in run_reference(task, "recursive", value).steps:
            if not task.program(step.action.program).primitive or step.action.program == "NOP":
                continue
            task.apply(env, step.action.program, step.action.args)
            after = _concrete_abstraction(semantics, env)
            assert after in domain.post(state, step.action.program, step.action.args), (value, step)
            state = after
            steps += 1
    assert steps > 100


def test_product_posts_equal_the_joint_posts() -> None:
    """Asking Z3 part by part gives what one query over the whole pad gives: the rows of the
    addition pad really are independent."""
    task = TASKS["addition"]
    semantics = semantics_for(task)
    assert isinstance(semantics, ProductSemantics)
    product, joint = ProductDomain(semantics), AbstractDomain(semantics)
    initial = sorted(product.initial_states())
    assert set(initial) == joint.initial_states()
    rng = random.Random(3)
    state = rng.choice(initial)
    for program, args in [("WRITE", (3, 7)), ("PTR", (0, 0)), ("PTR", (2, 0)), ("WRITE", (2, 1)),
                          ("PTR", (2, 1)), ("PTR", (1, 0)), ("PTR", (3, 0))]:  # fmt: skip
        after = product.post(state, program, args)
        assert after == joint.post(state, program, args)
        state = sorted(after)[rng.randrange(len(after))]


@pytest.mark.slow
@pytest.mark.soundness
@pytest.mark.parametrize("task_name", WITH_SEMANTICS)
def test_v_contains_every_state_of_large_random_runs(task_name: str, vsets: dict) -> None:
    task, v = TASKS[task_name], vsets[task_name]
    rng = random.Random(99)
    low = task.large_test_size // 2  # 20 to 60 for most tasks; fewer disks for Hanoi's 2^n
    for _ in range(6):
        value = task.sample_input(rng, rng.randint(low, 3 * low))
        for call in split_calls(run_reference(task, "recursive", value).steps):
            for k, step in enumerate(call):
                key = (step.program, step.args, tuple(s.observation for s in call[: k + 1]))
                assert v.states[key] == step.action


@pytest.mark.slow
@pytest.mark.soundness
@pytest.mark.parametrize("task_name", WITH_SEMANTICS)
def test_z3_semantics_agree_with_python_on_random_steps(task_name: str) -> None:
    task = TASKS[task_name]
    result = cross_check(task, semantics_for(task), steps=3000, seed=7)
    assert result.steps == 3000 and result.mismatches == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "task_name,formulation",
    [(name, f) for name in WITH_SEMANTICS for f in TASKS[name].formulations if f != RECURSIVE],
)
def test_looping_formulations_are_unbounded(task_name: str, formulation: str) -> None:
    """Every formulation but the recursive one loops inside a call (non-recursive, partial)."""
    with pytest.raises(UnboundedCall, match="runs more than .* steps in one call"):
        build_vset(TASKS[task_name], formulation)


@pytest.mark.slow
@pytest.mark.parametrize("task_name", list(TASKS))
def test_growth_detector_flags_loops_and_spares_recursion(task_name: str) -> None:
    """Where no Z3 semantics exist, unbounded calls are found by growth with input size."""
    task = TASKS[task_name]
    raise_if_growing(task, "recursive")  # bounded calls: never flagged
    for formulation in task.formulations:
        if formulation != "recursive":
            with pytest.raises(UnboundedCall, match="grows with the input"):
                raise_if_growing(task, formulation)


def test_non_recursive_models_without_semantics_are_uncertifiable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("verifier.vset.build.semantics_for", lambda task: None)
    with pytest.raises(UnboundedCall, match="grows with the input"):
        build_vset(TASKS["toposort"], "non-recursive")


def test_cross_check_in_a_worker_gives_the_in_process_result(monkeypatch: pytest.MonkeyPatch) -> None:
    task = TASKS["bubblesort"]
    expected = cross_check(task, semantics_for(task), 200)
    monkeypatch.setattr(crosscheck.os, "cpu_count", lambda: 2)
    pending = CrossCheckElsewhere(task, 200)
    assert pending.worker is not None
    assert pending.result() == expected and pending.worker.returncode == 0
    monkeypatch.setenv("NPI_VERIFY_WORKERS", "0")
    assert CrossCheckElsewhere(task, 200).worker is None


@pytest.mark.parametrize("broken", ["no-interpreter", "worker-fails", "worker-lies"])
def test_a_failed_cross_check_worker_falls_back_to_this_process(
    broken: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = TASKS["bubblesort"]
    monkeypatch.setattr(crosscheck.os, "cpu_count", lambda: 2)
    if broken == "no-interpreter":
        monkeypatch.setattr(crosscheck.sys, "executable", "/nonexistent/python")
    elif broken == "worker-fails":
        monkeypatch.setattr(crosscheck, "_WORKER", "import sys; sys.exit(1)")
    else:  # a worker whose output is not a cross-check result is not believed
        monkeypatch.setattr(crosscheck, "_WORKER", "print('[1000, {}]')")
    assert CrossCheckElsewhere(task, 150).result() == cross_check(task, semantics_for(task), 150)


def test_array_at_builds_the_same_term_as_store() -> None:
    import z3

    from verifier.smt import array_at

    chained = z3.K(z3.IntSort(), z3.IntVal(7))
    for index, value in sorted({3: -1, 1: 4, 2: 0}.items()):
        chained = z3.Store(chained, index, value)
    assert array_at({3: -1, 1: 4, 2: 0}, 7).eq(chained)


def test_the_cross_check_worker_loads_task_modules(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task from a task module (--task-module) is cross-checked in the worker process too:
    the worker is told which modules this process loaded (else it could not find the task
    and the check would silently fall back to this process)."""
    from verifier.tasks import load_task_module

    module = tmp_path / "my_bubble.py"
    module.write_text(
        "from verifier.tasks import register\n"
        "from verifier.tasks.bubblesort.task import BubbleSort\n\n\n"
        "@register\nclass MyBubble(BubbleSort):\n    name = 'my-bubble'\n"
    )
    monkeypatch.setattr(TASKS, "module_paths", list(TASKS.module_paths))
    (task,) = load_task_module(str(module))
    try:
        monkeypatch.setattr(crosscheck.os, "cpu_count", lambda: 2)
        pending = CrossCheckElsewhere(task, 100)
        assert pending.worker is not None
        assert pending.result() == cross_check(task, semantics_for(task), 100)
        assert pending.worker.returncode == 0
    finally:
        del TASKS["my-bubble"]


def test_large_reference_runs_take_the_tasks_large_test_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """A task whose reference grows fast (Hanoi: 2^n - 1 moves) lowers the size certify tests."""
    task = TASKS["bubblesort"]
    monkeypatch.setattr(type(task), "large_test_size", 3)
    large = build_vset(task).large_reference_runs()
    assert (large.size, large.inputs, large.wrong, large.non_halting) == (3, 10, 0, 0)


def test_default_large_strategy_draws_up_to_the_large_test_size(monkeypatch: pytest.MonkeyPatch) -> None:
    from hypothesis import find
    from hypothesis.errors import NoSuchExample

    task = TASKS["bubblesort"]
    monkeypatch.setattr(type(task), "large_test_size", 2)
    default = Task.strategy(task, large=True)  # the base class's, which sorting tasks override
    assert len(find(default, lambda value: len(value) == 2)) == 2
    with pytest.raises(NoSuchExample):
        find(default, lambda value: len(value) > 2)
