"""An independent re-checker of npi-verify certificates and their proof bundles.

It imports nothing from npi-verify, only the standard library, numpy, safetensors and cvc5
(not the Z3 that produced the proofs). Per certificate it checks (1) its digest, its bundle's
sha256 and the weights digest recomputed from the safetensors bytes; (2) that the abstract
fixed point is closed: each initial state opens the entry call, every point's successors (its
primitive's post, or the callee's exits through the recorded relation compositions) are points
of its call, and each call's exits are exactly what its returning points produce; (3) that V
is the fixed point's projection, one legal reference label per call-local state; (4) that
the coverage queries are exactly those the fixed point needs, that a claim of `proved` for
termination or reference correctness has every lemma V's paths need, and that cvc5 gives
every query its expected answer; (5) that the model, in float64 from the weights, takes the
reference label on every node of V, with the certificate's counts and margin. Anything else
is refused in one line. Usage: `python -m verifier.independent CERT.json...` (exit 0 when
every certificate passes, else 1). Trusted: the task's semantics as written in the templates
and lemma scripts, and the reference labels.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import struct
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

BUNDLE_FORMAT = "npi-verify-bundle/1"
BUNDLE_SUFFIX = ".bundle.json.gz"  # beside the certificate: x.json -> x.bundle.json.gz
WEIGHTS_DIGEST = "npi-verify-weights/1"
MARGIN_TOLERANCE = 1e-4  # float64 vs the certificate's float32 minimum margin
QUERY_LIMIT_MS = 60_000  # cvc5's budget per query
SCOPES = ("(push", "(pop", "(reset")  # commands a recorded query may not hold
ANSWERS = ("sat", "unsat")  # the answers a query may expect
Weights = dict[str, np.ndarray]  # the model's tensors by name, in float64


class Refused(Exception):
    """The certificate does not re-check; the message says why in one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


def canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def read_certificate(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The certificate and its bundle, each checked against its digest (the certificate
    records the bundle's sha256), the verdict `certified`, and both for one task."""
    try:
        certificate = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise Refused(f"cannot read certificate: {error}") from None
    if not isinstance(certificate, dict) or not isinstance(certificate.get("digest"), str):
        raise Refused("not an npi-verify certificate")
    body = {k: v for k, v in certificate.items() if k != "digest"}
    if hashlib.sha256(canonical(body).encode()).hexdigest() != certificate["digest"]:
        raise Refused("certificate edited: its digest does not match its content")
    if certificate.get("verdict") != "certified":
        raise Refused(f"the certificate's verdict is {certificate.get('verdict')!r}, not certified")
    record = certificate.get("bundle")
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        reason = record.get("unavailable") if isinstance(record, dict) else None
        raise Refused("the certificate has no proof bundle" + (f": {reason}" if reason else ""))
    name = path.name.removesuffix(".json") + BUNDLE_SUFFIX
    try:
        raw = (path.parent / name).read_bytes()
    except OSError as error:
        raise Refused(f"cannot read bundle {name}: {error.strerror or error}") from None
    if hashlib.sha256(raw).hexdigest() != record["sha256"]:
        raise Refused(f"bundle {name} was edited: its sha256 does not match the certificate's")
    try:
        bundle = json.loads(gzip.decompress(raw))
    except (OSError, EOFError, ValueError, zlib.error) as error:
        raise Refused(f"bundle {name} is not gzip-compressed JSON: {error}") from None
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise Refused(f"bundle {name} is not an {BUNDLE_FORMAT} bundle")
    for name in ("task", "formulation"):
        if bundle.get(name) != certificate.get(name):
            raise Refused(f"the bundle's {name} {bundle.get(name)!r} is not the certificate's")
    return certificate, bundle


def read_weights(path: Path, certificate: dict[str, Any], bundle: dict[str, Any]) -> Weights:
    """The model's tensors, after checking their digest against the certificate and bundle."""
    from safetensors.numpy import load

    named = certificate.get("model", {}).get("path")
    if not isinstance(named, str):
        raise Refused("the certificate names no model file")
    try:
        raw = (path.parent / named).read_bytes()
    except OSError as error:
        raise Refused(f"cannot read model {named}: {error.strerror or error}") from None
    try:
        (length,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + length])
        config = json.loads(header.pop("__metadata__")["config"])
        tensors = load(raw)
    except Exception as error:  # noqa: BLE001 (struct, JSON and safetensors errors alike)
        raise Refused(f"model {named} is not an npi-verify safetensors file ({error})") from None
    digest = hashlib.sha256(f"{WEIGHTS_DIGEST}\n{canonical(config)}\n".encode())
    start = 8 + length
    for name, entry in sorted(header.items()):
        digest.update((canonical([name, entry["dtype"], entry["shape"]]) + "\n").encode())
        digest.update(raw[start + entry["data_offsets"][0] : start + entry["data_offsets"][1]])
    found, certified = digest.hexdigest(), str(certificate["model"].get("weights_sha256"))
    if found != certified:
        raise Refused(f"model {named} has other weights than the certified ones (weights "
                      f"digest {found[:12]}, certificate {certified[:12]})")
    if found != bundle["model"]["weights_sha256"] or config != bundle["model"]["config"]:
        raise Refused("the bundle is for other weights than the certificate")
    weights = {name: np.asarray(array, dtype=np.float64) for name, array in tensors.items()}
    if not all(np.isfinite(array).all() for array in weights.values()):
        raise Refused(f"model {named} holds non-finite weights")
    return weights


class Bundle:
    """The bundle's tables, indexed for the checks."""

    def __init__(self, data: dict[str, Any]) -> None:
        """Raises KeyError, TypeError, ValueError or IndexError where the bundle is malformed."""
        self.entry, self.nop = str(data["entry"]), str(data["nop"])
        self.programs = {p[0]: (bool(p[1]), tuple(p[2])) for p in data["programs"]}
        abstraction = data["abstraction"]
        self.size, self.width = int(abstraction["observation_size"]), int(abstraction["width"])
        self.parts = [tuple(p["indices"]) for p in abstraction["parts"]]
        if sorted(i for p in self.parts for i in p) != list(range(self.width)):
            raise ValueError("the parts do not own each abstract component once")
        self.routes = {(p, tuple(a)): int(k) for p, a, k in abstraction["routes"]}
        # relations (optional): a point is the abstraction then their values, an entry the first
        self.relations = int(abstraction.get("relations", 0))
        self.linked = abstraction.get("linked", [])
        self.compose_all = bool(abstraction.get("composes_every_return", False))  # even kept ones
        self.states = [tuple(s) for s in data["states"]]
        if any(len(s) not in (self.width, self.width + self.relations) for s in self.states):
            raise ValueError("an abstract state of the wrong width")
        self.enters = {tuple(e): frozenset(map(tuple, f)) for e, f in data.get("enters", [])}
        self.returns = {tuple(k): frozenset(map(tuple, f)) for k, f in data.get("returns", [])}
        self.keeps = {(p, tuple(a)) for p, a in data.get("keeps", [])}
        self.initial = [{tuple(s) for s in found} for found in data["initial"]]
        self.posts = {(int(k), tuple(state), program, tuple(args)): frozenset(map(tuple, found))
                      for k, state, program, args, found in data["posts"]}
        if len(self.posts) != len(data["posts"]):
            raise ValueError("a post is recorded twice")
        self.nodes, self.contexts, self.queries = data["vset"], data["contexts"], data["queries"]
        self.templates, self.lemmas = data["templates"], data.get("lemmas", [])
        self.model_config = data["model"]["config"]


def check_vset(b: Bundle) -> tuple[list[tuple[str, tuple]], list[int], dict]:
    """V's nodes are a prefix forest with legal labels: returns each node's (program, args), its
    depth, and the index of children by (parent, observation) and of roots by key."""
    calls: list[tuple[str, tuple]] = []
    depth: list[int] = []
    index: dict[tuple, int] = {}
    for n, node in enumerate(b.nodes):
        parent, observation, (program, args, ret) = node[0], tuple(node[1]), node[2]
        if not -1 <= parent < n:
            raise Refused(f"V node {n} names parent {parent}, not an earlier node")
        root = parent == -1  # a root also names its call
        calls.append((node[3], tuple(node[4])) if root else calls[parent])
        depth.append(1 if root else depth[parent] + 1)
        if (key := (calls[n] if root else parent, observation)) in index:
            raise Refused(f"V holds the call-local state of node {n} twice")
        index[key] = n
        if program not in b.programs or not isinstance(ret, bool):
            raise Refused(f"V node {n} is labelled with an unknown program {program!r}")
        ranges = b.programs[program][1]
        if len(args) != len(ranges) or any(not 0 <= a < r for a, r in zip(args, ranges)):
            raise Refused(f"V node {n}'s label {program}{args} has illegal arguments")
    return calls, depth, index


def joint_post(b: Bundle, state: tuple, program: str, args: tuple) -> frozenset[tuple]:
    """The successors of a point under a primitive, from the recorded posts."""
    if len(state) > b.width:  # relations: carried over where the primitive keeps them
        if (program, args) in b.keeps:
            after = joint_post(b, state[: b.width], program, args)
            return frozenset(a + state[b.width :] for a in after)
        part, where = 0, range(len(state))
    elif (part := b.routes.get((program, args))) is None:
        raise Refused(f"no part is recorded for primitive {program}{list(args)}")
    else:
        where = b.parts[part]
    found = b.posts.get((part, tuple(state[i] for i in where), program, args))
    if found is None:
        raise Refused(f"the fixed point lacks the transition of {program}{list(args)} from "
                      f"{list(state)}")
    return frozenset(place(state, where, after) for after in found)


def place(state: Sequence[int], where: Sequence[int], values: Sequence[int]) -> tuple:
    """`state` with `values` written at the indices `where`."""
    moved = list(state)
    for i, value in zip(where, values, strict=True):
        moved[i] = value
    return tuple(moved)


def check_fixed_point(b: Bundle, calls: list, index: dict) -> int:
    """The fixed point is closed and V is its projection; returns the number of points."""
    contexts: dict[tuple, tuple[set, frozenset]] = {}  # (program, args, entry): points, exits
    for program, args, entry, points, exits in b.contexts:
        key = (program, tuple(args), b.states[entry])
        if key in contexts:
            raise Refused(f"call {program}{args} is recorded twice for one entry state")
        for state, node in points:
            if not (0 <= node < len(b.nodes)) or calls[node] != key[:2]:
                raise Refused(f"a point of {program}{args} names V node {node} of another call")
            if tuple(b.nodes[node][1]) != b.states[state][: b.size]:
                raise Refused(f"V node {node}'s observation is not its point's abstract state's")
        seen = {(node, b.states[state]) for state, node in points}
        contexts[key] = (seen, frozenset(b.states[s] for s in exits))
    if missed := len(b.nodes) - len({n for seen, _ in contexts.values() for n, _ in seen}):
        raise Refused(f"V is not the projection of the fixed point: {missed} nodes are in no call")
    for choice in itertools.product(*(sorted(s) for s in b.initial)):
        initial = (0,) * b.width
        for where, local in zip(b.parts, choice, strict=True):
            initial = place(initial, where, local)
        if (b.entry, (), initial) not in contexts:
            raise Refused(f"the fixed point has no {b.entry} call from initial state "
                          f"{list(initial)}")
    keeps = keeping_calls(b, contexts) if b.relations else {}
    for (program, args, entry), (seen, exits) in contexts.items():
        root = index.get(((program, args), entry[: b.size]))
        firsts = [entry + r for r in b.enters.get(entry, ())] if b.relations else [entry]
        if (b.relations and entry not in b.enters) or any((root, f) not in seen for f in firsts):
            raise Refused(f"call {program}{list(args)} from {list(entry)} lacks its first point")
        produced: set[tuple] = set()
        for node, state in seen:
            step, step_args, ret = b.nodes[node][2]
            if b.programs[step][0]:
                after = {state} if step == b.nop else joint_post(b, state, step, tuple(step_args))
            elif (called := (step, tuple(step_args), state[: b.width])) not in contexts:
                raise Refused(f"the fixed point lacks the call {step}{step_args} from abstract "
                              f"state {list(state)}")
            else:
                kept = not b.relations or (keeps[called] and not b.compose_all)
                after = {r for x in contexts[called][1] for r in returned(b, entry, state, x, kept)}
            if ret:
                produced |= after
                continue
            for successor in after:
                if (index.get((node, successor[: b.size])), successor) not in seen:
                    raise Refused(f"the fixed point is not closed: in call {program}{list(args)}, "
                                  f"V node {node} has successor {list(successor)} outside it")
        if produced != exits:
            raise Refused(f"the summary of call {program}{list(args)} from {list(entry)} is not "
                          "what its returning points produce")
    return sum(len(seen) for seen, _ in contexts.values())


def keeping_calls(b: Bundle, contexts: dict) -> dict[tuple, bool]:
    """The calls that run only primitives keeping the relations and call only such calls."""
    keeps, changed = dict.fromkeys(contexts, True), True
    while changed:
        changed = False
        for key, (seen, _) in contexts.items():
            steps = [(b.nodes[n][2][0], tuple(b.nodes[n][2][1]), s[: b.width]) for n, s in seen]
            if keeps[key] and not all(keeps.get((p, a, s), True) if not b.programs[p][0]
                                      else p == b.nop or (p, a) in b.keeps for p, a, s in steps):
                keeps[key], changed = False, True
    return keeps


def returned(b: Bundle, entry: tuple, site: tuple, exit: tuple, keeps: bool) -> tuple[tuple, ...]:
    """A caller's points after a callee's exit: the caller's relation values (if any) carried
    over where the callee keeps them, else the recorded composition of the relations."""
    w = b.width
    if keeps:
        return (exit[:w] + site[w:],)
    key = (tuple(entry[k] for k in b.linked) + tuple(site[k] for k in b.linked) + site[w:]
           + tuple(exit[k] for k in b.linked) + exit[w:])
    if key not in b.returns:
        raise Refused(f"the fixed point lacks the return of exit {list(exit)} to {list(site)}")
    return tuple(exit[:w] + r for r in b.returns[key])


def equal(names: Sequence[str], values: Sequence[int]) -> str:
    terms = [f"(= {n} {v if v >= 0 else f'(- {-v})'})" for n, v in zip(names, values, strict=True)]
    return terms[0] if len(terms) == 1 else f"(and {' '.join(terms)})"


def coverage_queries(b: Bundle) -> dict[tuple[int, str], str]:
    """The coverage queries the fixed point needs: (template, assertions) -> expected answer."""
    templates = {canonical([x["part"], x["kind"], x["program"], x["args"]]): t
                 for t, x in enumerate(b.templates)}  # by (part, kind, program, args)
    needed: dict[tuple[int, str], str] = {}

    def add(key: tuple, what: str, state: tuple | None, found: Iterable[tuple]) -> None:
        if (t := templates.get(canonical(key))) is None:
            raise Refused(f"the bundle has no {what}")
        names = b.templates[t]["vars"]
        targets = names if state is None else b.templates[t]["next_vars"]
        fixed = "" if state is None else f"(assert {equal(names, state)})\n"
        found = sorted(found)
        blocked = "".join(f"(assert (not {equal(targets, f)}))\n" for f in found)
        needed[(t, fixed + blocked)] = "unsat"
        for f in found:
            needed[(t, fixed + f"(assert {equal(targets, f)})\n")] = "sat"

    for part, found in enumerate(b.initial):
        add((part, "initial", None, None), f"initial template for part {part}", None, found)
    for kind, records in (("enter", b.enters), ("return", b.returns)):
        for state, found in sorted(records.items()):
            add((0, kind, None, None), f"{kind} template", state, found)
    for program, args in sorted(b.keeps):  # the template alone: nothing breaks a relation
        what = f"query that {program}{list(args)} keeps the relations"
        add((0, "keeps", program, args), what, None, ())
    for (part, state, program, args), found in sorted(b.posts.items()):
        kind = "post" if len(state) == len(b.parts[part]) else "relational post"
        what = f"template for primitive {program}{list(args)}"
        add((part, kind, program, args), what, state, found)
    return needed


def check_queries(b: Bundle) -> int:
    """The recorded coverage queries are the needed ones, and cvc5 gives every recorded query
    its expected answer; returns the number re-solved."""
    if not isinstance(b.queries, dict) or "coverage" not in b.queries:
        raise Refused("the bundle records no coverage queries")
    needed = coverage_queries(b)
    recorded = {(t, text): expect for t, expect, text in b.queries["coverage"]}
    for key, expect in needed.items():
        if key not in recorded:
            raise Refused(f"coverage query missing: {describe(b, key, expect)}")
        if recorded[key] != expect:
            raise Refused(f"coverage query {describe(b, key, expect)} records the expected answer "
                          f"{recorded[key]}, but the fixed point needs {expect}")
    if extra := set(recorded) - set(needed):
        raise Refused(f"{len(extra)} recorded coverage queries are not queries of the fixed point")
    groups: dict[int, list[tuple[str, str, str]]] = {}  # template -> its queries
    for name, queries in sorted(b.queries.items()):
        for t, expect, text in queries:
            if not (isinstance(t, int) and 0 <= t < len(b.templates)) or expect not in ANSWERS:
                raise Refused(f"a {name} query names template {t} or expects {expect!r}")
            if any(c in text for c in SCOPES):
                raise Refused(f"a {name} query changes the solver's scopes")
            what = f"a {name} query that expects {expect}: {describe(b, (t, text), expect)}"
            groups.setdefault(t, []).append((text, expect, what))
    solve_all((b.templates[t]["smt2"], f"template {t}", queries)
              for t, queries in sorted(groups.items()))
    return sum(map(len, groups.values()))


def describe(b: Bundle, key: tuple[int, str], expect: str) -> str:
    t = b.templates[key[0]]
    what = "initial states" if t["kind"] == "initial" else f"post of {t['program']}{t['args']}"
    return f"{what} ({expect}) {key[1].splitlines()[0] if key[1] else ''}"


NEEDS = {"termination": ("rank", "pre", "post", "entry"),
         "reference-correctness": ("pre", "post", "entry", "specification")}


def needed_lemmas(b: Bundle, calls: list) -> dict[str, set]:
    """The lemmas V's paths need, by kind: `pre` at every call, `rank` at every call inside a
    cycle of the call graph, `post` at every return, each at its site (routine, arguments, and
    the action sequence that leads there); `entry` and `specification` once (site None)."""
    sites: dict[str, set] = {"pre": set(), "post": set(), "entry": {None}, "specification": {None}}
    paths: list[tuple] = []
    edges: dict[tuple, set[tuple]] = {}
    for n, (parent, _observation, (program, args, ret), *_root) in enumerate(b.nodes):
        paths.append((paths[parent] if parent >= 0 else ()) + ((program, tuple(args), ret),))
        if not b.programs[program][0]:
            sites["pre"].add((*calls[n], paths[n]))
            edges.setdefault(calls[n], set()).add((program, tuple(args)))
        if ret:
            sites["post"].add((*calls[n], paths[n]))
    reach: dict[tuple, set[tuple]] = {r: set() for r in edges}  # called, directly or not
    for routine, work in ((r, [r]) for r in edges):
        while work:
            fresh = edges.get(work.pop(), set()) - reach[routine]
            reach[routine] |= fresh
            work += fresh
    # a call inside a cycle: the routine it calls reaches the caller again
    sites["rank"] = {s for s in sites["pre"] if s[:2] in reach.get(s[2][-1][:2], ())}
    return sites


def check_lemmas(b: Bundle, certificate: dict[str, Any], calls: list) -> int:
    """Each lemma a `proved` termination or reference correctness needs is recorded as proved,
    and cvc5 answers `unsat` to every script of every lemma so recorded; returns their number."""
    recorded = {(lemma["kind"], canonical(lemma["site"])): lemma for lemma in b.lemmas}
    needed = needed_lemmas(b, calls)
    claims = {o.get("name"): o.get("status") for o in certificate.get("obligations", [])}
    for obligation, kinds in NEEDS.items():
        if claims.get(obligation) != "proved":
            continue
        for kind in kinds:
            for site in sorted(needed[kind], key=repr):
                lemma = recorded.get((kind, canonical(site)), {"status": "missing"})
                if lemma["status"] != "proved":
                    raise Refused(f"the certificate says {obligation} is proved, but its {kind} "
                                  f"lemma at {site} is {lemma['status']}")
    proved = [lemma for lemma in b.lemmas if lemma["status"] == "proved"]
    for lemma in proved:
        if not lemma["smt2"]:
            raise Refused(f"the lemma recorded as proved has no query: {lemma['name']}")
        what = f"the {lemma['obligation']} lemma recorded as proved: {lemma['name']}"
        for script in lemma["smt2"]:
            body, _, rest = script.rpartition("(check-sat)")
            if not body or rest.strip() or any(c in body for c in SCOPES + ("(check-sat",)):
                raise Refused("a lemma's query is not one script ending in (check-sat)")
            solve_all([(body, what, [("", "unsat", what)])])  # its assertions, nothing to add
    return len(proved)


def solve_all(groups: Iterable[tuple[str, str, list[tuple[str, str, str]]]]) -> None:
    """Re-solve with cvc5, one solver per group `(preamble, what, queries)`: the preamble, then
    each query `(assertions, expected answer, what)` in a scope of its own, answered as expected."""
    for preamble, name, queries in groups:
        solver, run = cvc5_solver()
        run(preamble, name)
        for text, expect, what in queries:
            solver.push()
            if (answer := run(text, what, check=True)) != expect:
                raise Refused(f"cvc5 answers {answer} to {what}")
            solver.pop()


def cvc5_solver() -> tuple[Any, Any]:
    """A cvc5 solver for any logic, and a function that runs SMT-LIB2 text on it. Incremental
    also for one query: one of quicksort's quantified lemmas times out without it."""
    try:
        import cvc5
    except ImportError:
        raise Refused("cvc5 is not installed (pip install 'npi-verify[independent]')") from None
    solver = cvc5.Solver()
    for option, value in (("incremental", "true"), ("tlimit-per", str(QUERY_LIMIT_MS)),
                          ("arrays-exp", "true"),  # constant arrays
                          ("ee-mode", "central")):  # one of toposort's lemmas times out without it
        solver.setOption(option, value)
    solver.setLogic("ALL")
    symbols = cvc5.SymbolManager(solver.getTermManager())
    parser = cvc5.InputParser(solver, symbols)

    def run(text: str, what: str, check: bool = False) -> str:
        """Runs `text`; with `check`, then answers sat, unsat or unknown (and why)."""
        try:
            parser.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, text, "input")
            while not (command := parser.nextCommand()).isNull():
                command.invoke(solver, symbols)
            return str(solver.checkSat()) if check else ""
        except RuntimeError as error:
            raise Refused(f"cvc5 fails on {what}: {str(error).splitlines()[0]}") from None

    return solver, run


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def check_model(b: Bundle, w: Weights, calls: list, depth: list[int]) -> float:
    """The NPI's decision on every node of V, in float64, against the labels, one batched LSTM
    step per depth of V; returns the smallest decision margin (return logit from 0, best
    program and argument over the next)."""
    config = b.model_config
    sizes, names = list(config["observation_sizes"]), list(config["program_names"])
    if names != list(b.programs) or config.get("numeric_slots"):
        raise Refused("the model's programs are not the bundle's, or it reads numbers")
    arg_size, layers, d = int(config["arg_size"]), int(config["layers"]), int(config["d_hidden"])
    slots = (w["encoder.0.weight"].shape[1] - sum(sizes)) // arg_size
    ids = {name: k for k, name in enumerate(names)}
    # the values legal per program and argument slot
    legal = np.array([[*r, *[0] * (slots - len(r))] for _, r in b.programs.values()], np.int64)
    n = len(b.nodes)
    observations = np.array([node[1] for node in b.nodes], dtype=np.int64).reshape(n, -1)
    if observations.shape[1] != len(sizes) or ((observations < 0) | (observations >= sizes)).any():
        raise Refused("an observation of V is out of the model's ranges")
    called = np.array([[*a, *[0] * (slots - len(a)), ids[p]] for p, a in calls], dtype=np.int64)
    # per node: the one-hot column of each observation and argument, then the call's program
    features = np.concatenate([observations, called.reshape(n, slots + 1)], axis=1)
    features[:, :-1] += np.cumsum([0, *sizes, *[arg_size] * slots])[:-1]
    labels = np.array([[ids[p], r, *a, *[0] * (slots - len(a))] for _, _, (p, a, r), *_ in b.nodes],
                      dtype=np.int64).reshape(n, 2 + slots)  # program, return, arguments
    parents = np.array([node[0] for node in b.nodes], dtype=np.int64)
    position = np.zeros(n, dtype=np.int64)  # each node's row in its level's arrays
    hidden = np.zeros((0, 2, layers, d))  # the previous level's LSTM states (h, c per layer)
    smallest, depths = float("inf"), np.array(depth)
    for level in sorted(set(depth)):
        rows = np.flatnonzero(depths == level)
        position[rows], previous = np.arange(len(rows)), hidden
        hidden = np.zeros((len(rows), 2, layers, d))
        for start in range(0, len(rows), 4096):  # bounded memory on wide levels
            chunk, state = rows[start : start + 4096], hidden[start : start + 4096]
            if level > 1:
                state[:] = previous[position[parents[chunk]]]
            decision, margin = decide(w, lstm_step(w, features[chunk], state), legal)
            if (wrong := np.flatnonzero((decision != labels[chunk]).any(axis=1))).size:
                node, (p, ret, *args) = int(chunk[wrong[0]]), decision[wrong[0]].tolist()
                decided = [names[p], args[: len(b.programs[names[p]][1])], bool(ret)]
                raise Refused(f"the model decides {decided} at V node {node} ({calls[node][0]}"
                              f"{list(calls[node][1])}, depth {level}); the reference label is "
                              f"{b.nodes[node][2]}")
            smallest = min(smallest, float(margin.min()))
    return smallest


def lstm_step(w: Weights, features: np.ndarray, state: np.ndarray) -> np.ndarray:
    """One NPI step from one-hot `features` (program id last) and the LSTM `state`, which it
    updates in place; returns the top layer's output."""
    x = np.zeros((len(features), w["encoder.0.weight"].shape[1]))
    np.put_along_axis(x, features[:, :-1], 1.0, axis=1)
    s = np.maximum(x @ w["encoder.0.weight"].T + w["encoder.0.bias"], 0.0)
    s = s @ w["encoder.2.weight"].T + w["encoder.2.bias"]
    inputs = np.concatenate([s, w["program_embedding.weight"][features[:, -1]]], axis=1)
    for k in range(state.shape[2]):
        gates = (inputs @ w[f"lstm.weight_ih_l{k}"].T + w[f"lstm.bias_ih_l{k}"]
                 + state[:, 0, k] @ w[f"lstm.weight_hh_l{k}"].T + w[f"lstm.bias_hh_l{k}"])
        i, f, g, o = np.split(gates, 4, axis=1)  # torch's gate order
        state[:, 1, k] = sigmoid(f) * state[:, 1, k] + sigmoid(i) * np.tanh(g)
        state[:, 0, k] = inputs = sigmoid(o) * np.tanh(state[:, 1, k])
    return inputs


def decide(w: Weights, out: np.ndarray, legal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The heads' decisions from the LSTM's output `out` laid out as the labels (each argument
    the best value legal for the chosen program; unused slots 0), and their margins."""
    end = (out @ w["end_head.weight"].T + w["end_head.bias"])[:, 0]
    logits = (out @ w["key_head.weight"].T + w["key_head.bias"]) @ w["program_keys"].T
    decision = np.zeros((len(out), 2 + legal.shape[1]), dtype=np.int64)
    decision[:, 0], decision[:, 1] = logits.argmax(axis=1), end >= 0
    top = np.sort(logits, axis=1)
    margin = np.minimum(np.abs(end), top[:, -1] - top[:, -2] if logits.shape[1] > 1 else np.inf)
    for slot in range(legal.shape[1]):
        values = out @ w[f"arg_heads.{slot}.weight"].T + w[f"arg_heads.{slot}.bias"]
        allowed = legal[decision[:, 0], slot]
        values = np.where(np.arange(values.shape[1]) < allowed[:, None], values, -np.inf)
        decision[:, 2 + slot] = np.where(allowed > 0, values.argmax(axis=1), 0)
        if values.shape[1] > 1:  # else no argument takes two values: nothing to decide
            top = np.sort(values, axis=1)
            with np.errstate(invalid="ignore"):  # -inf - -inf where fewer than 2 values are legal
                margin = np.minimum(margin, np.where(allowed > 1, top[:, -1] - top[:, -2], np.inf))
    return decision, margin


def recheck(path: Path) -> str:
    """Re-check one certificate and its bundle; a one-line summary, or Refused."""
    started = time.perf_counter()
    certificate, data = read_certificate(path)
    try:
        weights = read_weights(path, certificate, data)
        b = Bundle(data)
        calls, depth, index = check_vset(b)
        points = check_fixed_point(b, calls, index)
        margin = check_model(b, weights, calls, depth)
        queries, lemmas = check_queries(b), check_lemmas(b, certificate, calls)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise Refused(f"the bundle or certificate is malformed ({type(error).__name__}: "
                      f"{error})") from None
    recorded = certificate.get("verification_set") or {}
    if recorded.get("call_local_states") != len(b.nodes):
        raise Refused(f"the certificate counts {recorded.get('call_local_states')} call-local "
                      f"states, V has {len(b.nodes)}")
    if recorded.get("per_program") != dict(Counter(p for p, _ in calls)):
        raise Refused("the certificate's states per program are not V's")
    claimed = certificate.get("min_margin")
    if not isinstance(claimed, (int, float)) or not abs(claimed - margin) <= MARGIN_TOLERANCE:
        raise Refused(f"the certificate's minimum margin {claimed} is not the {margin:.6f} "
                      "re-computed in float64")
    return (f"re-checked independently: {len(b.nodes)} states of V, {points} points of the "
            f"fixed point, {queries} queries and {lemmas} lemmas re-solved by cvc5, minimum "
            f"margin {margin:.6f} in float64 ({time.perf_counter() - started:.1f} s)")


def main(argv: Sequence[str] | None = None) -> int:
    paths = list(sys.argv[1:] if argv is None else argv)
    if not paths:
        print("usage: python -m verifier.independent CERT.json...", file=sys.stderr)
        return 2
    failed = 0
    for name in paths:
        try:
            print(f"{name}: {recheck(Path(name))}")
        except Refused as error:
            failed += 1
            print(f"{name}: refused: {error}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
