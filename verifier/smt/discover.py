"""Hidden predicates found automatically: counterexample-guided refinement over templates.

A task's abstraction is its observation plus hidden predicates. The task declares only the
predicates no template expresses (`Semantics.hints`) and a small vocabulary of its symbolic
environment (`Semantics.vocabulary`: the size, named pointers, arrays with their ends, stacks,
flags, constants). From the vocabulary `candidates` builds generic templates, each a
`Predicate` whose name says what it is:

- pointer differences `q-p==d` for d in -2..2;
- a pointer against 1, n and n+1 (`p==1`, `p<1`, `p==n`, `p>n`, `p==n+1`, `1<=p<=n`; only
  where the environment has a size) and against the ends of each array (`p==A.first-1`,
  `p==A.first`, `p==A.first+1`, `p<A.first`, `p>A.first`, the same for `A.last`);
- cells at or next to pointers and array ends: neighbours in order (`A[x]<=A[x+1]`, read as
  true where x or x+1 lies outside the array), two pointers' cells in order, a cell at or
  next to a pointer equal to a declared constant;
- flags; stack depth (`S.depth==0`, `==1`, `>=2`); top- and bottom-frame facts (a pointer
  equal to a field of the top or bottom frame, top fields in order).

Templates come in families (every difference of one pointer pair, one pointer against the
bounds, the cells around one pointer, ...), because members often only help together: bubble
sort needs i2-i1 == 0, 1 and 2 at once, and no one of them shrinks the fixed point alone.

`discover` starts from the observation plus the hints, computes the abstract fixed point and
the concrete states, and while some abstract call-local state has no concrete witness adds
the family that shrinks the fixed point most (fewest call-local states, then fewest abstract
states projected onto the predicates chosen so far, which refining can only shrink; ties go
to the first family, and a trial that asks for more than twice the abstract posts of the
best one so far is abandoned, counted in posts, not seconds, so every run makes the same
choices). It stops when the fixed point equals the concrete set or no family helps, then
drops, last first, every discovered predicate without which the fixed point stays the same
set: each one kept adds states back when dropped. Where the fixed point of the hints alone is
too large to explore (more than START_BUDGET posts), it starts from every pointer and value
template instead; for a product of independent parts (addition's rows) even that multiplies
out of reach, which is why addition declares its predicates.

Soundness does not depend on the search. Any predicate is a term of the environment, so the
abstraction over-approximates whatever predicates it holds: V is the abstract fixed point,
the concrete runs only witness its states, and V is exact when the two are equal. Discovery
only chooses which terms to track.

Why discovery does not run inside every `build_vset`: each trial costs one abstract fixed
point (bubble sort 0.1 s, quicksort 1.3 s, toposort 4 s, addition 9 s on an idle machine,
more with coarser abstractions) and a search tries every family per round. Measured on a
busy 2-core machine: bubble sort's search takes 12 to 30 s (50 fixed points), quicksort's 80
to 100 s (16), toposort's 27 minutes (42, each with its 16 universal hints); bubble sort with
the value encoder had not finished after 40 minutes (four rounds). V itself is built in 1 to 10 s. Its result is stored instead: `predicates.json` in the
package of the task's semantics, keyed by task name, lists the discovered predicates' names
(templates are rebuilt from the vocabulary by name), with the sizes of the fixed point and
the concrete set it reached. `semantics_for` loads it (a name no template has is a
PluginError); `python bench/discover_predicates.py --task T --write` regenerates it, and
without `--write` checks it. Tests check that every discovered predicate of bubble sort is
needed (V grows back without it) and, marked slow, that the search finds exactly the stored
list on every task. The file is part of the task's definition digest, so V's cache key
changes when it does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import z3

from verifier.errors import PluginError
from verifier.smt import Abstract, Predicate, Semantics, SymEnv, Vocabulary, bit

FILE_NAME = "predicates.json"
FORMAT = "npi-verify-predicates/1"
DIFFERENCES = (-2, -1, 0, 1, 2)
START_BUDGET = 200_000  # abstract posts the fixed point of the hints alone may ask for


@dataclass(frozen=True)
class Candidate:
    """A template instance: its name in the joint abstraction, the part it belongs to (the
    index of a `ProductSemantics` part, else None) and the predicate over that part's env."""

    name: str
    part: int | None
    predicate: Predicate
    family: str

    @property
    def discrete(self) -> bool:
        """Whether it compares pointers (with each other, the size, array ends) or a cell with
        a constant: facts a fixed point too coarse to explore starts from."""
        return self.family.split(": ")[-1].startswith(("ptr ", "val "))


def _template_terms(vocabulary: Vocabulary) -> list[tuple[str, str, Any]]:
    """(family, name, 0/1 term) for every template over one vocabulary, in a fixed order.
    A family (say every difference of one pointer pair) is tried as one unit: its members
    often only help together (bubble sort needs i2-i1 == 0, 1 and 2 at once)."""
    out: list[tuple[str, str, Any]] = []
    pointers = list(vocabulary.pointers.items())
    n = vocabulary.size
    for k, (p, pt) in enumerate(pointers):
        for q, qt in pointers[k + 1:]:
            out += [(f"ptr {q}-{p}", f"{q}-{p}=={d}", bit(qt - pt == d)) for d in DIFFERENCES]
    for p, pt in pointers:
        family = f"ptr {p} vs bounds"
        if n is not None:  # without a size, positions are relative to the arrays' ends only
            out += [(family, f"{p}==1", bit(pt == 1)), (family, f"{p}<1", bit(pt < 1)),
                    (family, f"{p}==n", bit(pt == n)), (family, f"{p}>n", bit(pt > n)),
                    (family, f"{p}==n+1", bit(pt == n + 1)),
                    (family, f"1<={p}<=n", bit(z3.And(pt >= 1, pt <= n)))]
        for array in vocabulary.arrays:
            for end, et in (("first", array.first), ("last", array.last)):
                if _same(et, 1) or (n is not None and _same(et, n)):
                    continue  # already compared with 1 and n
                label, family = f"{array.name}.{end}", f"ptr {p} vs {array.name}"
                out += [(family, f"{p}=={label}-1", bit(pt == et - 1)),
                        (family, f"{p}=={label}", bit(pt == et)),
                        (family, f"{p}=={label}+1", bit(pt == et + 1)),
                        (family, f"{p}<{label}", bit(pt < et)),
                        (family, f"{p}>{label}", bit(pt > et))]
    for array in vocabulary.arrays:
        read, first, last, a = array.read, array.first, array.last, array.name

        def inside(i: Any, first: Any = first, last: Any = last) -> z3.BoolRef:
            return z3.And(i >= first, i <= last)

        def ordered(family: str, left: str, right: str, x: Any, read: Any = read,
                    a: str = a) -> tuple[str, str, Any]:
            holds = z3.Or(z3.Not(inside(x)), z3.Not(inside(x + 1)), read(x) <= read(x + 1))
            return (family, f"{a}[{left}]<={a}[{right}]", bit(holds))

        for p, pt in pointers:
            out += [ordered(f"{a} at {p}", f"{p}-1", p, pt - 1),
                    ordered(f"{a} at {p}", p, f"{p}+1", pt)]
        out += [ordered(f"{a} ends", "first", "first+1", first),
                ordered(f"{a} ends", "last-1", "last", last - 1)]
        for k, (p, pt) in enumerate(pointers):
            for q, qt in pointers[k + 1:]:
                holds = z3.And(inside(pt), inside(qt), read(pt) <= read(qt))
                out.append((f"{a}[{p}] vs {a}[{q}]", f"{a}[{p}]<={a}[{q}]", bit(holds)))
        for p, pt in pointers:
            for label, x in ((f"{p}-1", pt - 1), (p, pt), (f"{p}+1", pt + 1)):
                out += [(f"val {a}[{label}]", f"{a}[{label}]=={c}", bit(read(x) == c))
                        for c in vocabulary.constants]
    for name, flag in vocabulary.flags.items():
        out.append((f"flag {name}", name, bit(flag)))
    for stack in vocabulary.stacks:
        depth, s = stack.depth, stack.name
        out += [(f"{s} depth", f"{s}.depth==0", bit(depth == 0)),
                (f"{s} depth", f"{s}.depth==1", bit(depth == 1)),
                (f"{s} depth", f"{s}.depth>=2", bit(depth >= 2))]
        fields = list(stack.fields.items())
        for frame, at in (("top", depth), ("bottom", z3.IntVal(1))):
            for f, get in fields:
                for p, pt in pointers:
                    holds = z3.Or(depth == 0, pt == get(at))
                    out.append((f"{s} {frame} vs {p}", f"{s} empty or {p}=={s}.{frame}.{f}", bit(holds)))
        for k, (f, get) in enumerate(fields):
            for g, get2 in fields[k + 1:]:
                holds = z3.And(depth > 0, get(depth) < get2(depth))
                out.append((f"{s} top", f"{s}.top.{f}<{s}.top.{g}", bit(holds)))
    return out


def _same(term: Any, value: Any) -> bool:
    return bool(z3.is_true(z3.simplify(term == value)))


class _Templates:
    """The templates over `vocabulary_of(env)`, built for one env at a time: an abstraction
    asks for every predicate of one env in a row, so the last env's terms are kept."""

    def __init__(self, vocabulary_of: Callable[[SymEnv], Vocabulary]) -> None:
        self.vocabulary_of = vocabulary_of
        self._last: tuple[SymEnv, list[Any]] | None = None

    def terms(self, env: SymEnv) -> list[Any]:
        if self._last is None or self._last[0] is not env:
            self._last = (env, [term for _, _, term in _template_terms(self.vocabulary_of(env))])
        return self._last[1]

    def predicates(self, env: SymEnv) -> list[tuple[str, Predicate]]:
        """(family, predicate) for every template."""
        named = [(family, name) for family, name, _ in _template_terms(self.vocabulary_of(env))]
        if len({name for _, name in named}) != len(named):
            raise PluginError("predicate templates repeat a name: vocabulary names must differ")
        return [(family, Predicate(name, _Pick(self, k))) for k, (family, name) in enumerate(named)]


@dataclass(frozen=True)
class _Pick:
    """Template number `index` of a `_Templates`, as a function of the env."""

    templates: _Templates
    index: int

    def __call__(self, env: SymEnv) -> Any:
        return self.templates.terms(env)[self.index]


def candidates(semantics: Semantics) -> list[Candidate]:
    """Every template over the semantics' vocabulary (part by part for a product), in a
    fixed order, named as in the joint abstraction."""
    parts = getattr(semantics, "parts", None)
    if parts is None:
        found = _Templates(semantics.vocabulary).predicates(semantics.fresh("template"))
        return [Candidate(p.name, None, p, family) for family, p in found]
    out = []
    for k, part in enumerate(parts):
        for family, p in _Templates(part.vocabulary).predicates(part.fresh("template")):
            out.append(Candidate(f"{part.name}: {p.name}", k, p, f"{part.name}: {family}"))
    return out


def assign(semantics: Semantics, chosen: Iterable[Candidate]) -> None:
    """Make `chosen` the semantics' discovered predicates (each part's, for a product)."""
    chosen = list(chosen)
    parts = getattr(semantics, "parts", None)
    if parts is None:
        semantics.discovered = tuple(c.predicate for c in chosen)
        return
    for k, part in enumerate(parts):
        part.discovered = tuple(c.predicate for c in chosen if c.part == k)


def stored_path(semantics: Semantics) -> Path:
    """Where a task's discovered predicates are stored: next to its semantics' module."""
    import sys

    module = sys.modules[type(semantics).__module__]
    return Path(module.__file__ or "").resolve().parent / FILE_NAME


def read_stored(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"format": FORMAT, "tasks": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise PluginError(f"{path}: not a predicates file ({error})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("tasks"), dict):
        raise PluginError(f"{path}: not a {FORMAT} file")
    return data


def load(semantics: Semantics) -> list[str]:
    """Give the semantics the discovered predicates stored for its task (none where the file
    or the task's entry is missing); their names. PluginError for a name no template has."""
    path = stored_path(semantics)
    entry = read_stored(path)["tasks"].get(semantics.task.name)
    if entry is None:
        return []
    names = entry.get("discovered") if isinstance(entry, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise PluginError(f"{path}: {semantics.task.name}: 'discovered' must be a list of names")
    table = {c.name: c for c in candidates(semantics)}
    unknown = [n for n in names if n not in table]
    if unknown:
        raise PluginError(f"{path}: {semantics.task.name}: no template is named {unknown[0]!r}; "
                          "regenerate it with python -m verifier.smt.discover --task "
                          f"{semantics.task.name} --write")
    assign(semantics, [table[n] for n in names])
    return names


class _TooLarge(Exception):
    """A candidate's fixed point explores far more than the current one: not a refinement
    worth having (and never the best), so it is skipped."""


class _Recorder:
    """An abstract domain that records every abstract state it is asked about or answers,
    and gives up after `budget` posts."""

    def __init__(self, domain: Any, budget: int | None) -> None:
        self.domain, self.budget = domain, budget
        self.semantics = domain.semantics
        self.reached: set[Abstract] = set()
        self.posts = 0

    @property
    def stats(self) -> Any:
        return self.domain.stats

    def initial_states(self) -> frozenset[Abstract]:
        states = self.domain.initial_states()
        self.reached |= states
        return states

    @property
    def width(self) -> int:
        return self.domain.width

    def enter(self, entry: Abstract) -> frozenset[Abstract]:
        return self.domain.enter(entry)

    def keeps_relations(self, program: str, args: Any) -> bool:
        return self.domain.keeps_relations(program, args)

    def ret(self, entry: Abstract, site: Abstract, exit: Abstract) -> frozenset[Abstract]:
        self.posts += 1  # a return composition counts like a post against the budget
        if self.budget is not None and self.posts > self.budget:
            raise _TooLarge
        after = self.domain.ret(entry, site, exit)
        self.reached |= after
        return after

    def post(self, state: Abstract, program: str, args: Any) -> frozenset[Abstract]:
        self.posts += 1
        if self.budget is not None and self.posts > self.budget:
            raise _TooLarge
        after = self.domain.post(state, program, args)
        self.reached |= after
        return after


@dataclass(frozen=True)
class Evaluation:
    """The abstract fixed point under one choice of discovered predicates."""

    chosen: tuple[str, ...]
    states: frozenset  # its call-local states
    reached: frozenset[Abstract]  # the abstract environment states it reached
    layout: tuple[str, ...]  # what each component of those states is
    posts: int

    def projected(self, names: Iterable[str]) -> int:
        """How many distinct reached states there are on the components `names` (plus the
        observation): a refinement can only make this smaller."""
        keep = set(names)
        indices = [k for k, name in enumerate(self.layout) if name.startswith("obs:") or name in keep]
        return len({tuple(state[k] for k in indices) for state in self.reached})


@dataclass(frozen=True)
class Discovery:
    """What `discover` found for one task."""

    task: str
    formulation: str
    hints: tuple[str, ...]
    discovered: tuple[str, ...]
    abstract_states: int
    concrete_states: int
    candidates: int
    fixed_points: int

    @property
    def exact(self) -> bool:
        return self.abstract_states == self.concrete_states

    def to_json(self) -> dict[str, Any]:
        return {"formulation": self.formulation, "hints": list(self.hints),
                "discovered": list(self.discovered), "abstract_states": self.abstract_states,
                "concrete_states": self.concrete_states, "candidates": self.candidates,
                "fixed_points": self.fixed_points}


def discover(task: Any, formulation: str = "recursive",
             progress: Callable[[str], None] | None = None) -> Discovery:
    """Counterexample-guided search for the discovered predicates of `task` (see the module
    docstring); deterministic. Works on fresh semantics instances (`task.semantics()`), so
    the checked instance `semantics_for` keeps is never changed."""
    from verifier.errors import VerifierError
    from verifier.errors import UnboundedCall
    from verifier.vset.concrete import concrete_states
    from verifier.vset.fixpoint import abstract_states, domain_for

    say = progress or (lambda text: None)
    table = candidates(task.semantics())
    hints = task.semantics().hidden_names  # a fresh instance has no discovered predicates
    pool = [c for c in table if c.name not in hints]
    families: dict[str, list[Candidate]] = {}
    for c in pool:
        families.setdefault(c.family, []).append(c)
    count = 0

    def evaluate(chosen: list[Candidate], budget: int | None) -> Evaluation | None:
        nonlocal count
        count += 1
        semantics = task.semantics()
        assign(semantics, chosen)
        recorder = _Recorder(domain_for(semantics), budget)
        try:
            found = abstract_states(task, recorder, formulation)
        except (_TooLarge, UnboundedCall):
            return None
        layout = tuple(f"obs:{k}" for k in range(semantics.observation_size)) + semantics.hidden_names
        return Evaluation(tuple(c.name for c in chosen), frozenset(found.actions),
                          frozenset(recorder.reached), layout, recorder.posts)

    chosen: list[Candidate] = []
    current = evaluate(chosen, START_BUDGET)
    if current is None:  # too coarse to explore: start from the discrete templates instead
        chosen = [c for c in pool if c.discrete]
        say(f"start: the observation alone is too coarse; from {len(chosen)} pointer and value "
            "templates")
        current = evaluate(chosen, None)
    assert current is not None
    concrete = frozenset(concrete_states(task, formulation, target=current.states).actions)
    if not concrete <= current.states:
        raise VerifierError(f"{task.name}: the abstract fixed point misses concrete states: "
                            "its Z3 semantics disagree with the Python environment")
    say(f"start: {len(current.states)} abstract, {len(concrete)} concrete call-local states")
    while current.states != concrete:
        names = hints + current.chosen
        score = (len(current.states), len(current.reached))
        best: tuple[tuple[int, int], str, Evaluation, list[Candidate]] | None = None
        for family, members in families.items():
            added = [c for c in members if c not in chosen]
            if not added:
                continue
            # A trial that asks for more than twice the posts of the best one so far is not
            # finished (counted, not timed, so every run skips the same ones).
            budget = 20 * current.posts + 1000 if best is None else 2 * best[2].posts + 1000
            trial = evaluate(chosen + added, budget)
            if trial is None:
                continue
            trial_score = (len(trial.states), trial.projected(names))
            if trial_score < score and (best is None or trial_score < best[0]):
                best = (trial_score, family, trial, chosen + added)
        if best is None:
            break
        _, family, current, chosen = best
        say(f"+ {family}: {len(current.states)} abstract call-local states")
    for candidate in reversed(list(chosen)):  # the last family's members first
        rest = [c for c in chosen if c is not candidate]
        trial = evaluate(rest, None)
        if trial is not None and trial.states == current.states:
            chosen = rest
            say(f"- {candidate.name}: not needed")
    return Discovery(task.name, formulation, hints, tuple(c.name for c in chosen),
                     len(current.states), len(concrete), len(pool), count)


def write_stored(semantics: Semantics, found: Discovery) -> Path:
    """Store a discovery in the predicates file of the semantics' package (other tasks'
    entries kept); the file's path."""
    path = stored_path(semantics)
    data = read_stored(path)
    data["tasks"][found.task] = found.to_json()
    data["tasks"] = dict(sorted(data["tasks"].items()))
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def origins(semantics: Semantics | None, names: Iterable[str]) -> dict[str, list[str]]:
    """`names` (a verification set's predicates) split into the declared ones (the task's
    hints) and the discovered ones, each in abstraction order."""
    declared = set(semantics.declared_names) if semantics is not None else set()
    names = list(names)
    return {"declared": [n for n in names if n in declared],
            "discovered": [n for n in names if n not in declared]}
