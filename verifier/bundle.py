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

Where the semantics declares relations (`verifier.smt.Relation`: a call's exit related to its
entry), a point is the abstraction followed by their values and a call's entry state is the
abstraction alone; `abstraction` adds `relations` (how many) and `linked` (the components a
return query asks about, `AbstractDomain.linked`), and the bundle adds `enters`
(`[entry, relation values]`: a call's first points, template kind "enter"), `returns`
(`[linked entry + linked site point + linked exit point, relation values]`, kind "return")
and `keeps` (`[program, args]`: primitives proved to keep every relation, kind "keeps", whose
query is `unsat`); posts from a point with relation values use kind "relational post". Where
the semantics composes every return (`Semantics.composes_every_return`), `abstraction` adds
`composes_every_return: true`: also the exits of calls that keep the relations go through
`returns`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import z3

from verifier.checkpoint import Checkpoint
from verifier.errors import VerifierError
from verifier.heap import collector_paused
from verifier.induction import Induction, Lemma
from verifier.smt import AbstractDomain, semantics_for
from verifier.smt.product import ProductDomain
from verifier.smt.script import smt2
from verifier.tasks.base import NOP, Action, Args, Task
from verifier.vset.fixpoint import Call, Domain, domain_for, explore
from verifier.vset.result import VerificationSet

BUNDLE_FORMAT = "npi-verify-bundle/1"
BUNDLE_SUFFIX = ".bundle.json.gz"
OBLIGATIONS = ("coverage", "termination", "reference-correctness")
Abstract = tuple[int, ...]
Context = tuple[str, Args, Abstract]


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


@collector_paused
def build_bundle(
    checkpoint: Checkpoint, vset: VerificationSet, induction: Induction | None = None
) -> bytes:
    """The bundle's bytes for a model, its V and the lemmas of its whole proof (see the
    module docstring)."""
    task = checkpoint.task
    semantics = semantics_for(task)
    assert semantics is not None and vset.abstract is not None
    # The fixed point V was computed with where it is at hand (its domain holds the answers
    # the bundle records), else the same exploration again. The lemmas' script text can differ
    # between the two (Z3 orders terms by creation, and a domain kept alive changes that): the
    # same lemmas either way; `proofs/regenerate.sh` certifies with --no-cache, one path.
    domain, explored = vset.abstract.explored or (domain_for(semantics), None)
    node_of, vset_rows = _forest(vset.states)
    if explored is None:
        explored = explore(task, domain, vset.formulation)[1]
    calls = _fixed_point(task, explored, node_of)
    size = semantics.observation_size
    parts = domain.domains if isinstance(domain, ProductDomain) else [domain]
    indices = [list(domain._indices(k)) for k in range(len(parts))] if isinstance(
        domain, ProductDomain) else [list(range(len(semantics.ranges())))]
    states = sorted({s for c, (_, exits) in calls.items() for s in (c[2], *exits)}
                    | {point[1] for seen, _ in calls.values() for point in seen})
    state_index = {s: k for k, s in enumerate(states)}
    contexts = []
    for (program, args, entry), (seen, exits) in sorted(calls.items()):
        points = sorted((state_index[s], node) for node, s in seen)  # tuples: faster to sort
        contexts.append([program, list(args), state_index[entry], points,
                         sorted(state_index[s] for s in exits)])
    projected = {node for seen, _ in calls.values() for node, _ in seen}
    if len(projected) != len(vset.states):  # the record must be the fixed point V came from
        raise VerifierError(f"{task.name}: the recorded fixed point projects to "
                            f"{len(projected)} call-local states, V has {len(vset.states)}")

    initials = [part.initial_states() for part in parts]
    templates, queries, posts, routes, relational = _solver_record(parts, initials)
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
                        "routes": sorted([p, list(a), k] for p, a, k in routes),
                        **_relations_record(domain)},
        "states": states,  # tuples, written as JSON arrays like lists
        "initial": [sorted(map(list, found)) for found in initials],
        "posts": posts,
        "vset": vset_rows,
        "contexts": contexts,
        **({name: rows for name, rows in relational.items()} if relational["enters"] else {}),
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
) -> tuple[list[dict[str, Any]], list[list[Any]], list[list[Any]], set[tuple[str, Args, int]],
           dict[str, list[list[Any]]]]:
    """Per part: the SMT-LIB2 templates of its initial condition and of each primitive it
    computed posts for, the coverage queries of its initial set and of each post, its posts,
    and the route of each primitive to the part; and where the semantics declares relations,
    the records of `enter`, `ret` and the primitives that keep the relations."""
    templates: list[dict[str, Any]] = []
    queries: list[list[Any]] = []
    posts: list[list[Any]] = []
    routes: set[tuple[str, Args, int]] = set()
    relational: dict[str, list[list[Any]]] = {"enters": [], "returns": [], "keeps": []}

    def template(k: int, kind: str, program: str | None, args: Args | None, now: Sequence[Any],
                 after: Sequence[Any] | None, assertions: Sequence[z3.BoolRef]) -> int:
        templates.append({"part": k, "kind": kind, "program": program,
                          "args": None if args is None else list(args),
                          "vars": [str(n) for n in now],
                          "next_vars": None if after is None else [str(n) for n in after],
                          "smt2": smt2(assertions)})
        return len(templates) - 1

    for k, part in enumerate(parts):
        names, text = _initial_template(part)
        templates.append({"part": k, "kind": "initial", "program": None, "args": None,
                          "vars": names, "next_vars": None, "smt2": text})
        queries += _queries(len(templates) - 1, names, None, None, initials[k])
        for key in sorted(part._templates):
            program, args = key[:2]
            relational_post = len(key) == 3
            solver, now, after = part._templates[key]
            t = template(k, "relational post" if relational_post else "post", program, args,
                         now, after, solver.assertions())
            names, next_names = templates[t]["vars"], templates[t]["next_vars"]
            for (state, p, a), successors in sorted(part._posts.items()):
                if (p, a) == (program, args) and (len(state) > part.width) == relational_post:
                    routes.add((program, args, k))
                    posts.append([k, list(state), program, list(args), sorted(map(list, successors))])
                    queries += _queries(t, names, next_names, state, successors)
        width = part.width
        for kind, records, name in (("enter", part._enters, "enters"),
                                    ("return", part._returns, "returns")):
            if kind not in part._relational:
                continue
            solver, now, after = part._relational[kind]
            t = template(k, kind, None, None, now, after, solver.assertions())
            for state, found in sorted(records.items()):
                fixed = state if kind == "enter" else state[0] + state[1] + state[2]
                found = frozenset(f[width:] for f in found) if kind == "enter" else found
                relational[name].append([list(fixed), sorted(map(list, found))])
                queries += _queries(t, templates[t]["vars"], templates[t]["next_vars"], fixed, found)
        for (program, args), kept in sorted(part._keeps.items()):
            if kept:
                t = template(k, "keeps", program, args, [], None, part._keep_queries[(program, args)])
                relational["keeps"].append([program, list(args)])
                queries.append([t, "unsat", ""])
    return templates, queries, posts, routes, relational


def _relations_record(domain: Domain) -> dict[str, Any]:
    """Where the semantics declares relations: how many (a point is the abstraction, then
    their values), the components `ret` asks about (`AbstractDomain.linked`) and whether
    every return is composed (`Semantics.composes_every_return`; recorded only where it is)."""
    if isinstance(domain, ProductDomain) or not domain.relations:
        return {}
    every = domain.semantics.composes_every_return()
    return {"relations": len(domain.relations), "linked": list(domain.linked),
            **({"composes_every_return": True} if every else {})}


def bundle_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fixed_point(
    task: Task, explored: Mapping[Context, Call], node_of: Mapping[Any, int]
) -> dict[Context, tuple[set[tuple[int, Abstract]], set[Abstract]]]:
    """The calls of the abstract fixed point (`verifier.vset.fixpoint.explore`), each with its
    points (V node of the call's observations so far, state now) and its exit summary."""
    calls = {}
    rows: dict[int, list[int]] = {}  # per prefix forest: its nodes' rows in the bundle's forest
    for context, call in explored.items():
        keys = call.prefixes.keys
        row = rows.get(id(keys))
        if row is None:
            try:
                row = rows[id(keys)] = [node_of[key] for key in keys]
            except KeyError as missing:
                raise VerifierError(f"{task.name}: V lacks a call-local state of its own fixed "
                                    f"point ({missing.args[0]})") from None
        calls[context] = ({(row[node], state) for node, state in call.points}, call.exits)
    return calls


def _forest(states: Mapping[Any, Action]) -> tuple[dict[Any, int], list[list[Any]]]:
    """V as rows of a prefix forest, parents before children, and each key's row."""
    keys = sorted(states, key=lambda k: (len(k[2]), k[0], k[1], k[2]))
    node_of: dict[Any, int] = {}
    rows: list[list[Any]] = []
    for key in keys:
        program, args, observed = key
        action = states[key]
        row: list[Any] = [-1 if len(observed) == 1 else node_of[(program, args, observed[:-1])],
                          list(observed[-1]), [action.program, list(action.args), action.ret]]
        if len(observed) == 1:
            row += [program, list(args)]
        node_of[key] = len(rows)
        rows.append(row)
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
