"""Hidden predicates as values, and predicates discovered from templates (verifier.smt.discover)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from verifier.errors import PluginError
from verifier.vset.concrete import concrete_states
from verifier.vset.fixpoint import abstract_states, domain_for
from verifier.smt import AbstractDomain, Predicate, Semantics, bit, discover, semantics_for
from verifier.tasks import TASKS
from verifier.tasks.bubblesort.task import BubbleSort

SYMBOLIC = sorted(name for name, task in TASKS.items() if task.symbolic and semantics_for(task))


def _fixed_point(task_name: str, names: list[str]) -> frozenset:
    """The call-local states of the abstract fixed point with exactly these discovered
    predicates (plus the task's hints)."""
    task = TASKS[task_name]
    semantics = task.semantics()
    table = {c.name: c for c in discover.candidates(semantics)}
    discover.assign(semantics, [table[n] for n in names])
    return frozenset(abstract_states(task, domain_for(semantics)).actions)


def _stored(task_name: str) -> list[str]:
    semantics = semantics_for(TASKS[task_name])
    entry = discover.read_stored(discover.stored_path(semantics))["tasks"].get(task_name, {})
    return entry.get("discovered", [])


@pytest.mark.parametrize("task_name", SYMBOLIC)
def test_predicates_are_values_with_unique_names(task_name: str) -> None:
    semantics = semantics_for(TASKS[task_name])
    assert all(isinstance(p, Predicate) for p in semantics.predicates)
    names = semantics.hidden_names
    assert len(set(names)) == len(names)
    assert len(semantics.hidden(semantics.fresh("t"))) == len(names)


@pytest.mark.parametrize("task_name", SYMBOLIC)
def test_candidates_are_the_same_on_every_instance(task_name: str) -> None:
    """Templates are rebuilt by name, so their order and names must not depend on the run."""
    task = TASKS[task_name]
    first = [(c.name, c.family) for c in discover.candidates(task.semantics())]
    assert first == [(c.name, c.family) for c in discover.candidates(task.semantics())]
    assert len({name for name, _ in first}) == len(first)


def test_bubblesort_is_exact_with_zero_declared_predicates() -> None:
    task = TASKS["bubblesort"]
    semantics = semantics_for(task)
    assert semantics.declared_names == ()
    assert semantics.hidden_names == tuple(_stored("bubblesort")) and semantics.hidden_names
    found = abstract_states(task, domain_for(semantics))
    assert set(found.actions) == set(concrete_states(task, target=found.actions).actions)
    assert len(found.actions) == 49


@pytest.mark.parametrize(
    "task_name", ["bubblesort", pytest.param("quicksort", marks=pytest.mark.slow)]  # 70 s
)
def test_every_discovered_predicate_is_needed(task_name: str) -> None:
    """Minimality: dropping any one discovered predicate lets V grow back."""
    names = _stored(task_name)
    assert names
    full = _fixed_point(task_name, names)
    assert full == frozenset(abstract_states(TASKS[task_name], domain_for(semantics_for(TASKS[task_name]))).actions)
    for k in range(len(names)):
        fewer = _fixed_point(task_name, names[:k] + names[k + 1:])
        assert fewer > full, names[k]


def test_origins_split_declared_from_discovered() -> None:
    quicksort = semantics_for(TASKS["quicksort"])
    split = discover.origins(quicksort, quicksort.hidden_names)
    assert split["declared"] == list(quicksort.declared_names)
    assert split["declared"] + split["discovered"] == list(quicksort.hidden_names)
    assert discover.origins(None, []) == {"declared": [], "discovered": []}


def test_a_stored_name_no_template_has_is_a_plugin_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = tmp_path / discover.FILE_NAME
    stored.write_text(json.dumps({"format": discover.FORMAT,
                                  "tasks": {"bubblesort": {"discovered": ["i2-i1==7"]}}}))
    monkeypatch.setattr(discover, "stored_path", lambda semantics: stored)
    with pytest.raises(PluginError, match="no template is named 'i2-i1==7'"):
        discover.load(TASKS["bubblesort"].semantics())
    stored.write_text("[1, 2]")
    with pytest.raises(PluginError, match="not a npi-verify-predicates/1 file"):
        discover.load(TASKS["bubblesort"].semantics())


class _Broken(BubbleSort):
    def __init__(self, hints: tuple) -> None:
        self._hints = hints

    def semantics(self) -> Semantics:
        semantics = super().semantics()
        semantics.hints = lambda: self._hints  # type: ignore[method-assign]
        return semantics


@pytest.mark.parametrize("hints, message", [
    (("i2==1",), "hints\\(\\) must return verifier.smt.Predicate values"),
    ((Predicate("i2-i1==0", lambda env: bit(env["i2"] == env["i1"])),),
     "two hidden predicates are named 'i2-i1==0'"),
    ((Predicate("bool", lambda env: env["i2"] == 1),), "predicate 'bool' must give an integer"),
    ((Predicate("raises", lambda env: env["missing"]),), "its predicates raised KeyError"),
    ((Predicate("one value", lambda env: bit(env["i2"] == 1), values=1),),
     "at least 2 values"),
])
def test_a_bad_hint_is_a_plugin_error(hints: tuple, message: str) -> None:
    with pytest.raises(PluginError, match=message):
        semantics_for(_Broken(hints))


def test_a_hint_declares_its_values_and_return_queries_name_their_components() -> None:
    """A hint that tracks a digit declares 11 values (the fallback of an undecided query tests
    every one); return queries ask about the components the semantics names, and a name that
    is no component is a plugin error."""
    semantics = semantics_for(TASKS["bubblesort-values"])
    ranges = dict(zip(semantics.hidden_names, semantics.ranges()[semantics.observation_size:]))
    assert ranges["A[i1+1] if i2-i1==2 else 10"] == 11 and ranges["i2==1"] == 2
    names = TASKS["bubblesort-values"].observation_names + semantics.hidden_names
    linked = AbstractDomain(semantics).linked
    assert [names[k] for k in linked] == list(semantics.linked_components())
    unnamed = type(semantics)(TASKS["bubblesort-values"], values=True)
    unnamed.linked_components = lambda: ("A[i3]",)  # type: ignore[method-assign]
    with pytest.raises(PluginError, match="names 'A\\[i3\\]', which is no component"):
        _ = AbstractDomain(unnamed).linked


@pytest.mark.slow
@pytest.mark.parametrize("task_name", ["bubblesort", "quicksort"])
def test_discovery_finds_exactly_the_stored_predicates(task_name: str) -> None:
    """The stored list is what the search finds now (so it is minimal and as exact as the
    templates allow), and the search gives the same list, in the same order, every run.
    (Toposort's search takes about half an hour: `python bench/discover_predicates.py --task
    toposort` checks it.)"""
    task = TASKS[task_name]
    found = discover.discover(task)
    assert list(found.discovered) == _stored(task_name)
    assert discover.discover(task).discovered == found.discovered


class _BrokenContents(BubbleSort):
    def __init__(self, contents) -> None:
        self._contents = contents

    def semantics(self) -> Semantics:
        semantics = super().semantics()
        semantics.initial_contents = self._contents  # type: ignore[method-assign]
        return semantics


@pytest.mark.parametrize("contents, message", [
    (lambda env: env["missing"], "its semantics raised KeyError"),
    (lambda env: 1, "initial_contents\\(\\) must give a Z3 boolean term, got int"),
])
def test_broken_initial_contents_are_a_plugin_error(contents, message: str) -> None:
    """Found when the semantics is loaded, one line, rather than a traceback from the
    cross-check or the whole proofs."""
    with pytest.raises(PluginError, match=message):
        semantics_for(_BrokenContents(contents))
