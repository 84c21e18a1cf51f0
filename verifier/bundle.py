"""The proof bundle: everything needed to re-check a certificate without npi-verify.

`certify -o CERT.json` writes `CERT.bundle.json.gz` beside the certificate, and the
certificate records the bundle's sha256. The bundle is gzip-compressed canonical JSON
(sorted keys, no spaces, gzip without a name or a time stamp), so the same inputs give the
same bytes. `verifier/independent.py` re-checks it with cvc5, numpy and safetensors only.
Its fields (format `npi-verify-bundle/1`):

- `task`, `formulation`, `entry` (the entry program), `nop` (the no-op primitive's name),
  `programs`: `[name, primitive, arg_ranges]` in the model's program order;
- `model`: the certified `weights_sha256` (see `verifier.weights`) and the network `config`;
- `abstraction`: `observation_size` (an abstract state starts with the observation), `width`,
  `parts`: `{name, indices}` (the components of the joint abstract state each independent
  part owns; one part holding every component for a task that is not a product), and
  `routes`: `[program, args, part]`, the part each primitive call changes;
- `states`: the joint abstract states, referenced by index elsewhere;
- `initial`: per part, its abstract initial states (the joint ones are their product);
- `posts`: `[part, local state, program, args, successors]`: the abstract post Z3 found;
- `vset`: V as a prefix forest, parents first: `[parent, observation, action]` with action
  `[program, args, return]`, and a root (parent -1) also names its `program, args`;
- `contexts`: the fixed point's calls `[program, args, entry state, points, exits]`, a point
  `[state, V node]` (the node names the call's observations so far), `exits` the summary;
- `templates`: per part, the SMT-LIB2 assertions (Z3's `to_smt2`, let-names renumbered) of
  the initial condition (`kind` "initial", abstraction bound to `vars`) or of one primitive
  (`kind` "post", the abstraction before it bound to `vars`, after it to `next_vars`);
- `queries`: per obligation, `[template, expected answer, assertions]`: the query is the
  template's text, then the assertions, then `(check-sat)`. For `coverage`, per initial set and
  per post: the template with the state fixed and every found state blocked is `unsat`, and
  with each found state fixed is `sat`. `termination` and `reference-correctness` are empty
  lists: their queries are the lemmas';
- `lemmas`: the lemmas of the whole proof (`verifier.induction`): `obligation`, `kind` (pre,
  rank, post, entry, specification, permutation, ranking), `name`, `site` (for a path lemma:
  `[program, args, actions]`, the routine and the action sequence `[program, args, return]`
  that ends at the call or the return it is about), `status` (proved, refuted, unknown) and
  `smt2`, its queries, one per conjunct of its goal, each a whole SMT-LIB2 script: `unsat`
  to every one proves it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


from verifier.checkpoint import Checkpoint
from verifier.errors import VerifierError
from verifier.induction import Induction, Lemma
from verifier.vset.fixpoint import Domain, domain_for
from verifier.vset.result import VerificationSet
from verifier.smt import AbstractDomain, semantics_for
from verifier.smt.product import ProductDomain
from verifier.smt.script import smt2
from verifier.tasks.base import NOP, Action, Args, Task

BUNDLE_FORMAT = "npi-verify-bundle/1"
BUNDLE_SUFFIX = ".bundle.json.gz"
OBLIGATIONS = ("coverage", "termination", "reference-correctness")
Abstract = tuple[int, ...]
Context = tuple[str, Args, Abstract]
_SHIFT = 32  # a V node (below 2**32) packed under a state index: sorted as one integer
_LOW = (1 << _SHIFT) - 1


def bundle_path(certificate: Path) -> Path:
    """Where the bundle of a certificate lies: `x.json` -> `x.bundle.json.gz`."""
    stem = certificate.name[:-5] if certificate.name.endswith(".json") else certificate.name
    return certificate.with_name(stem + BUNDLE_SUFFIX)


def bundle_unavailable(checkpoint: Checkpoint, vset: VerificationSet | None) -> str | None:
    """Why no bundle can be written for this certification, or None when one can."""
    if vset is None:
        return "no verification set (a call is unbounded)"
    if checkpoint.task.numeric_slots:
        return ("the model reads integer observations, whose decisions were proved by interval "
                "bounds, not evaluated on finitely many states")
    if vset.abstract is None:
        return "the task has no Z3 semantics, so there is no coverage proof"
    if not vset.coverage_proved:
        return "coverage is not proved"
    return None


def build_bundle(
    checkpoint: Checkpoint, vset: VerificationSet, induction: Induction | None = None
) -> bytes:
    """The bundle's bytes for a model, its V and the lemmas of its whole proof (see the
    module docstring)."""
    task = checkpoint.task
    semantics = semantics_for(task)
    assert semantics is not None and vset.abstract is not None
    node_of, vset_rows = _forest(vset.states)
    record = vset.abstract.record
    if record is not None:  # V was built in this process: its fixed point, as explored
        domain = record.domain
        calls = _recorded(record.calls, record.prefixes, node_of)
    else:  # V came from the cache: explore its fixed point again, with V's actions as labels
        domain = domain_for(semantics)
        calls = _fixed_point(task, domain, vset.states, node_of)
    size = semantics.observation_size
    parts = domain.domains if isinstance(domain, ProductDomain) else [domain]
    indices = [list(domain._indices(k)) for k in range(len(parts))] if isinstance(
        domain, ProductDomain) else [list(range(len(semantics.ranges())))]
    states = sorted({s for c, rec in calls.items() for s in (c[2], *rec.exits)}
                    | {point[1] for rec in calls.values() for point in rec.seen})
    state_index = {s: k for k, s in enumerate(states)}
    contexts = []
    for (program, args, entry), rec in sorted(calls.items()):
        # [state, node] pairs in order, sorted as one integer each (JSON writes tuples as lists)
        packed = sorted([state_index[s] << _SHIFT | node for node, s in rec.seen])
        points = [(k >> _SHIFT, k & _LOW) for k in packed]
        contexts.append([program, list(args), state_index[entry], points,
                         sorted(state_index[s] for s in rec.exits)])
    projected = {node for rec in calls.values() for node, _ in rec.seen}
    if len(projected) != len(vset.states):  # the record must be the fixed point V came from
        raise VerifierError(f"{task.name}: the recorded fixed point projects to "
                            f"{len(projected)} call-local states, V has {len(vset.states)}")

    initials = [part.initial_states() for part in parts]
    templates, queries, posts, routes = _solver_record(parts, initials)
    data = {
        "format": BUNDLE_FORMAT,
        "task": task.name,
        "formulation": vset.formulation,
        "entry": task.entry,
        "nop": NOP,
        "programs": [[p.name, p.primitive, list(p.arg_ranges)] for p in task.programs],
        "model": {"weights_sha256": checkpoint.weights_sha256,
                  "config": checkpoint.model.config.to_json()},
        "abstraction": {"observation_size": size, "width": len(semantics.ranges()),
                        "parts": [{"name": getattr(p.semantics, "name", task.name),
                                   "indices": ix} for p, ix in zip(parts, indices)],
                        "routes": sorted([p, list(a), k] for p, a, k in routes)},
        "states": [list(s) for s in states],
        "initial": [sorted(map(list, found)) for found in initials],
        "posts": posts,
        "vset": vset_rows,
        "contexts": contexts,
        "templates": templates,
        "queries": {"coverage": queries, **{name: [] for name in OBLIGATIONS[1:]}},
        "lemmas": [] if induction is None else [_lemma(lemma) for lemma in induction.lemmas],
    }
    text = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return gzip.compress(text, compresslevel=6, mtime=0)


def _lemma(lemma: Lemma) -> dict[str, Any]:
    """A lemma of termination or reference correctness: where it is, what Z3 said, its query."""
    site = None if lemma.routine is None else [
        lemma.routine[0], list(lemma.routine[1]),
        [[a.program, list(a.args), a.ret] for a in lemma.actions]]
    return {"obligation": lemma.obligation, "kind": lemma.kind, "name": lemma.name,
            "site": site, "status": lemma.status, "smt2": list(lemma.smt2)}


def _solver_record(
    parts: Sequence[AbstractDomain], initials: Sequence[frozenset[Abstract]]
) -> tuple[list[dict[str, Any]], list[list[Any]], list[list[Any]], set[tuple[str, Args, int]]]:
    """Per part: the SMT-LIB2 templates of its initial condition and of each primitive it
    computed posts for, the coverage queries of its initial set and of each post, its posts,
    and the route of each primitive to the part."""
    templates: list[dict[str, Any]] = []
    queries: list[list[Any]] = []
    posts: list[list[Any]] = []
    routes: set[tuple[str, Args, int]] = set()
    for k, part in enumerate(parts):
        names, text = _initial_template(part)
        templates.append({"part": k, "kind": "initial", "program": None, "args": None,
                          "vars": names, "next_vars": None, "smt2": text})
        queries += _queries(len(templates) - 1, names, None, None, initials[k])
        for (program, args) in sorted(part._templates):
            solver, now, after = part._templates[(program, args)]
            names, next_names = [str(n) for n in now], [str(n) for n in after]
            templates.append({"part": k, "kind": "post", "program": program,
                              "args": list(args), "vars": names, "next_vars": next_names,
                              "smt2": smt2(solver.assertions())})
            for (state, p, a), successors in sorted(part._posts.items()):
                if (p, a) == (program, args):
                    routes.add((program, args, k))
                    posts.append([k, list(state), program, list(args), sorted(map(list, successors))])
                    queries += _queries(len(templates) - 1, names, next_names, state, successors)
    return templates, queries, posts, routes


def bundle_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Call:
    __slots__ = ("seen", "exits", "return_sites")

    def __init__(self) -> None:
        self.seen: set[tuple[int, Abstract]] = set()  # (V node of the observations, state now)
        self.exits: set[Abstract] = set()
        self.return_sites: list[tuple[Context, int, bool]] = []


def _recorded(
    explored: Mapping[Context, Any], prefixes: Sequence[Any], node_of: Mapping[Any, int]
) -> dict[Context, _Call]:
    """The calls of a fixed point as `abstract_states` explored them (a point's observations
    so far are its prefix node there: `prefixes`), named by their node in V's prefix forest
    instead (what `_fixed_point` records)."""
    forest = [node_of.get(key, -1) for key in prefixes]  # -1: pushed, never explored
    calls: dict[Context, _Call] = {}
    for context, explored_call in explored.items():
        call = calls[context] = _Call()
        call.seen = {(forest[node], state) for node, state in explored_call.seen}
        call.exits = set(explored_call.exits)
    return calls


def _fixed_point(
    task: Task, domain: Domain, actions: Mapping[Any, Action], node_of: Mapping[Any, int]
) -> dict[Context, _Call]:
    """The calls of the abstract fixed point (`verifier.vset.fixpoint.abstract_states`), explored
    again with V's actions as the labels, recording each call's points and exit summary.
    A call's observations so far are named by their node in V's prefix forest."""
    size = domain.semantics.observation_size
    primitive = {p.name for p in task.programs if p.primitive}
    label = [action for _, action in sorted((node_of[k], a) for k, a in actions.items())]
    child: dict[tuple[int, tuple[int, ...]], int] = {}
    root: dict[tuple[str, Args, tuple[int, ...]], int] = {}
    for (program, args, observed), node in node_of.items():
        if len(observed) == 1:
            root[(program, args, observed[0])] = node
        else:
            child[(node_of[(program, args, observed[:-1])], observed[-1])] = node
    calls: dict[Context, _Call] = {}
    work: list[tuple[Context, int, Abstract]] = []
    exits: deque[tuple[Context, frozenset[Abstract]]] = deque()

    def lacking(context: Context, state: Abstract) -> VerifierError:
        return VerifierError(f"{task.name}: V lacks a call-local state of its own fixed point "
                             f"(in {context[0]}{list(context[1])}, observing {list(state[:size])})")

    def open_call(context: Context) -> _Call:
        if context not in calls:
            calls[context] = _Call()
            node = root.get((context[0], context[1], context[2][:size]))
            if node is None:
                raise lacking(context, context[2])
            work.append((context, node, context[2]))
        return calls[context]

    def continue_with(context: Context, node: int, ret: bool, after: Iterable[Abstract]) -> None:
        if ret:
            exits.append((context, frozenset(after)))
            return
        for state in sorted(after):
            next_node = child.get((node, state[:size]))
            if next_node is None:
                raise lacking(context, state)
            work.append((context, next_node, state))

    for entry in sorted(domain.initial_states()):
        open_call((task.entry, (), entry))
    while work or exits:
        if exits:
            context, reached = exits.popleft()
            call = calls[context]
            new = reached - call.exits
            if new:
                call.exits |= new
                for site, node, ret in call.return_sites:
                    continue_with(site, node, ret, new)
            continue
        context, node, current = work.pop()
        if (node, current) in calls[context].seen:
            continue
        calls[context].seen.add((node, current))
        action = label[node]
        if action.program in primitive:
            after = (current,) if action.program == NOP else domain.post(
                current, action.program, action.args)
            continue_with(context, node, action.ret, after)
        else:
            callee = open_call((action.program, action.args, current))
            callee.return_sites.append((context, node, action.ret))
            continue_with(context, node, action.ret, callee.exits)
    return calls


def _forest(states: Mapping[Any, Action]) -> tuple[dict[Any, int], list[tuple[Any, ...]]]:
    """V as rows of a prefix forest, parents before children, and each key's row."""
    keys = sorted(states, key=lambda k: (len(k[2]), k[0], k[1], k[2]))
    node_of: dict[Any, int] = {}
    rows: list[tuple[Any, ...]] = []  # tuples: JSON writes them as the lists documented
    for key in keys:
        program, args, observed = key
        action = states[key]
        if len(observed) == 1:
            rows.append((-1, observed[0], (action.program, action.args, action.ret),
                         program, args))
        else:
            rows.append((node_of[(program, args, observed[:-1])], observed[-1],
                         (action.program, action.args, action.ret)))
        node_of[key] = len(rows) - 1
    return node_of, rows


def _initial_template(part: AbstractDomain) -> tuple[list[str], str]:
    """The initial condition with the abstraction bound to variables, as
    `AbstractDomain.initial_states` poses it."""
    sem = part.semantics
    env = sem.fresh("e")
    facts, (names,) = part._bind([env], [("abstract", sem.abstraction(env))])
    return [str(n) for n in names], smt2([sem.domain(env), sem.initial(env), *facts])


def _literal(value: int) -> str:
    return str(value) if value >= 0 else f"(- {-value})"


def _equal(names: Sequence[str], values: Sequence[int]) -> str:
    terms = [f"(= {n} {_literal(v)})" for n, v in zip(names, values, strict=True)]
    return terms[0] if len(terms) == 1 else f"(and {' '.join(terms)})"


def _queries(
    template: int, names: list[str], next_names: list[str] | None, state: Abstract | None,
    found: Iterable[Abstract],
) -> list[list[Any]]:
    """The coverage queries of one initial set (state None) or one post."""
    fixed = "" if state is None else f"(assert {_equal(names, state)})\n"
    targets = names if next_names is None else next_names
    found = sorted(found)
    closure = fixed + "".join(f"(assert (not {_equal(targets, f)}))\n" for f in found)
    return [[template, "unsat", closure]] + [
        [template, "sat", fixed + f"(assert {_equal(targets, f)})\n"] for f in found]
