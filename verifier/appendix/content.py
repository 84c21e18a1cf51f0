"""What the appendix says, as data: sections of paragraphs, tables, figures and listings.

Every number comes from a verified certificate (or a results file) and every table row
names the certificate digest prefix it came from. The text says what the certificates say
and no more: an obligation is described by the status the certificate gives it.
"""

from __future__ import annotations

import json
import shlex
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verifier.appendix import paper
from verifier.appendix.sources import CertifiedModel, Experiment
from verifier.errors import BadFile, VerifierError
from verifier.runtime import run_reference
from verifier.tasks.base import NOP, Action
from verifier.traces import format_trace

TRACE_STEPS = 30  # steps shown in a trace listing
PREFIX = 8  # hex digits of a digest or sha256 shown in tables


@dataclass(frozen=True)
class Code:
    """Typewriter text (predicates, inputs, commands)."""

    text: str


@dataclass(frozen=True)
class Emph:
    text: str


@dataclass(frozen=True)
class Cite:
    """A reference in references.bib: \\citep{key} in LaTeX, [text] in Markdown."""

    key: str
    text: str


@dataclass(frozen=True)
class Ref:
    """A numbered table or figure: "Table~\\ref{tab:KEY}" in LaTeX, `text` in Markdown."""

    kind: str  # "Table" or "Figure"
    key: str
    text: str


Segment = str | Code | Emph | Cite | Ref
Cell = str | Code


@dataclass(frozen=True)
class Paragraph:
    segments: tuple[Segment, ...]
    kind: str = "paragraph"


@dataclass(frozen=True)
class Items:
    items: tuple[Paragraph, ...]
    kind: str = "items"


@dataclass(frozen=True)
class Table:
    key: str  # file stem under tables/, and the LaTeX label
    caption: tuple[Segment, ...]
    header: tuple[str, ...]
    align: str  # one LaTeX column letter per column
    rows: tuple[tuple[Cell, ...], ...]
    kind: str = "table"


@dataclass(frozen=True)
class Figure:
    key: str  # file stem under figures/
    caption: tuple[Segment, ...]
    kind: str = "figure"


@dataclass(frozen=True)
class Listing:
    caption: tuple[Segment, ...]
    text: str
    kind: str = "listing"


Block = Paragraph | Items | Table | Figure | Listing


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    sections: list[Section]
    tables: list[Table]
    figures: dict[str, Any]  # figure key -> the data figures.py draws


def p(*segments: Segment) -> Paragraph:
    return Paragraph(tuple(segments))


def short(hexdigest: str) -> str:
    return hexdigest[:PREFIX]


def slug(index: int, model: CertifiedModel) -> str:
    """A file-name-safe key per certificate: its position and digest prefix."""
    return f"{index + 1:02d}-{short(model.digest)}"


def build_document(
    models: list[CertifiedModel], experiments: list[Experiment], command: list[str]
) -> Document:
    """The whole appendix; `command` is the `npi-verify appendix ...` command line given."""
    figures: dict[str, Any] = {}
    sections = [
        Section("Method", method(models)),
        Section("Summary", summary(models)),
        Section("Verification sets", vset_blocks(models, figures)),
    ]
    if experiments:
        sections.append(Section("Generalization", generalization(experiments, models, figures)))
    refuted = [m for m in models if m.data.get("counterexample") is not None]
    if refuted:
        sections.append(Section("Counterexamples", [counterexamples(refuted)]))
    sections.append(Section("Traces and call graphs", trace_blocks(models, figures)))
    sections.append(Section("Reproducing this appendix", reproduce(models, experiments, command)))
    tables = [b for s in sections for b in s.blocks if isinstance(b, Table)]
    return Document("Verification of the NPI models", sections, tables, figures)


# -- method ---------------------------------------------------------------------------------

STATUS_MEANING = {
    "proved": "shown for inputs of every size",
    "checked": "decided exhaustively on every element of a finite set",
    "tested": "observed on finitely many inputs, not proved for all sizes",
    "failed": "shown not to hold",
    "unknown": "undecided: the solver answered unknown",
}
VERDICT_MEANING = {
    "certified": "coverage proved and agreement checked: the model takes the reference "
                 "program's action at every step of every input of every size",
    "refuted": "the model disagrees with the reference on a state that a concrete input "
               "reaches; the certificate gives that input",
    "inconclusive": "neither certified nor refuted: coverage not proved, a disagreement only on "
                    "states no input was found to reach, or a decision too close to a tie",
    "uncertifiable": "a call's step sequences grow with the input, so V is infinite",
}


def _count(models: list[CertifiedModel], name: str) -> str:
    statuses = Counter(
        (m.obligation(name) or {"status": "absent"})["status"] for m in models
    )
    n = len(models)
    return "; ".join(f"{status} in {k} of {n}" for status, k in sorted(statuses.items()))


def _span(values: list[int]) -> str:
    return "none" if not values else (
        str(values[0]) if min(values) == max(values) else f"{min(values)} to {max(values)}"
    )


def method(models: list[CertifiedModel]) -> list[Block]:
    verdicts = Counter(m.data["verdict"] for m in models)
    blocks: list[Block] = [p(
        "An NPI resets its hidden state at every subprogram call, so its decision at a step "
        "depends only on the call-local state: the program and arguments of the current call "
        "and the observations seen since it began. For each model, npi-verify builds the "
        "verification set V of call-local states and compares the model's decision with the "
        "reference program's action on every element of V, the argument of ",
        Cite("cai2017", "Cai, Shin and Song 2017"), " for NPIs that generalize via recursion "
        "(the NPI is ", Cite("reed2016", "Reed and de Freitas 2016"), "). Each certificate gives every obligation a status: ",
        *_joined([f"{s} ({meaning})" for s, meaning in STATUS_MEANING.items()]), ".",
    )]
    items = []
    semantics = [m.evidence("semantics") for m in models]
    runtimes = sorted({str(e.get("runtime")) for e in semantics if e.get("runtime")})
    claims = sorted({str(e.get("claim")) for e in semantics if e.get("claim")})
    items.append(p(Emph("semantics"), f" ({_count(models, 'semantics')}): interpreter ",
                   *_codes(runtimes), "; " + "; ".join(claims) + "." if claims else "."))
    coverage = [m.evidence("coverage") for m in models]
    proved = [e for m, e in zip(models, coverage)
              if (m.obligation("coverage") or {}).get("status") == "proved"]
    cross = [e.get("cross_checked_steps") for e in proved if isinstance(e.get("cross_checked_steps"), int)]
    text = (f" ({_count(models, 'coverage')}): V contains every call-local state reachable on "
            "some valid input of some size. Where proved, V is a least fixed point over abstract "
            "states (an observation with hidden predicates) whose primitive posts Z3 decided for "
            "inputs of every size")
    if cross:
        mismatches = sum(len(e.get("cross_check_mismatches", [])) for e in proved)
        text += (f"; the Z3 encoding of the primitives was cross-checked against the interpreter "
                 f"on {_span(sorted(cross))} random primitive steps per task, with {mismatches} "
                 "mismatches")
    exact = sum(bool((m.data["verification_set"] or {}).get("exact")) for m in models)
    text += (f". V is exact (the abstract states equal those reached by reference runs on "
             f"concrete inputs) in {exact} of {len(models)} certificates; where it is not, the "
             "states no input was found to reach are listed below.")
    tested = [m for m in models if (m.obligation("coverage") or {}).get("status") == "tested"]
    if tested:
        text += (f" In {len(tested)} certificates coverage is only tested: V is the set of states "
                 "reached by reference runs until it stopped growing.")
    items.append(p(Emph("coverage"), text))
    items.append(p(Emph("agreement"), f" ({_count(models, 'agreement')}): the model's decision "
                   "(next program, its arguments, the return flag) equals the reference action on "
                   "every element of V; the decision margin is the smallest logit gap of that "
                   "decision, and decisions closer than 0.001 to a tie were re-checked in float64."))
    small = [m.evidence("termination").get("small_inputs") for m in models]
    random_n = sorted({m.evidence("termination").get("random_inputs") for m in models} - {None})
    random_size = sorted({m.evidence("termination").get("random_input_size") for m in models} - {None})
    reference = (f": the reference program halted, with an answer that passes the task's "
                 f"independent check, on every input tried: the small inputs run to build V "
                 f"({_span(sorted(x for x in small if isinstance(x, int)))} per certificate)")
    if random_n:
        reference += (f" and {', '.join(map(str, random_n))} random inputs of size "
                      f"{', '.join(map(str, random_size))}")
    items.append(p(Emph("termination"), f" ({_count(models, 'termination')}) and ",
                   Emph("reference-correctness"),
                   f" ({_count(models, 'reference-correctness')})" + reference +
                   ". These are tested, not proved for all sizes."))
    blocks.append(Items(tuple(items)))
    blocks.append(p(
        "What holds for inputs of every size is therefore agreement with the reference program "
        "(for a certified model); that the reference program halts and answers correctly on "
        "every input is tested only. Verdicts: ",
        *_joined([f"{v}, {VERDICT_MEANING[v]} ({verdicts.get(v, 0)} of {len(models)})"
                  for v in VERDICT_MEANING]), ".",
    ))
    versions = {key: sorted({str(m.data["versions"].get(key)) for m in models
                             if m.data["versions"].get(key) is not None})
                for key in ("npi-verify", "z3", "torch")}
    semantics_versions = sorted({str(m.data["semantics"]) for m in models})
    blocks.append(p(
        "Trusted base, as the certificates record it: the interpreter semantics ",
        *_codes(semantics_versions), ", each task's reference program and its Z3 encoding of "
        "the primitives, Z3 ", *_codes(versions["z3"]), " ",
        Cite("demoura2008", "de Moura and Bj\u00f8rner 2008"), ", PyTorch ",
        *_codes(versions["torch"]), " ", Cite("paszke2019", "Paszke et al. 2019"),
        " for the model's forward pass on V, and npi-verify ", *_codes(versions["npi-verify"]), ".",
    ))
    return blocks


def _joined(texts: list[str]) -> list[Segment]:
    return ["; ".join(texts)]


def _codes(values: list[str]) -> list[Segment]:
    out: list[Segment] = []
    for k, value in enumerate(values):
        if k:
            out.append(", ")
        out.append(Code(value))
    return out or ["(not recorded)"]


# -- summary --------------------------------------------------------------------------------

def _dash(value: Any) -> str:
    return "\u2013" if value is None else str(value)


def summary(models: list[CertifiedModel]) -> list[Block]:
    rows = []
    for m in models:
        vset = m.data["verification_set"] or {}
        coverage = m.evidence("coverage")
        cover = vset.get("witness_inputs")
        rows.append((
            m.name, Code(short(m.data["model"]["sha256"])), _dash(m.training_traces),
            _dash(coverage.get("abstract_states")), _dash(coverage.get("concrete_states")),
            _dash(None if not vset else ("yes" if vset.get("exact") else "no")),
            _dash(None if cover is None else len(cover)),
            _dash(paper.verification_set(m.data["task"])),
            _dash(coverage.get("z3_queries")), _dash(m.data["min_margin"]), m.data["verdict"],
            _dash(m.data["seconds"]), Code(short(m.digest)),
        ))
    table = Table(
        "summary",
        ("One row per certificate. |V| abstract: states of the abstract fixed point (the "
         "over-approximation); concrete: states reached by reference runs; exact: the two are "
         "equal. Cover: witness inputs whose runs reach every witnessed state, beside the "
         "verification set C17 used. Margin: the smallest decision margin over V. Seconds: "
         "certify time. Source: the certificate's digest prefix.",),
        ("task", "model", "traces", "|V| abs.", "concr.", "exact", "cover", "C17 set",
         "Z3 queries", "margin", "verdict", "s", "source"),
        "llrrrlrlrrlrl", tuple(rows),
    )
    provenance = Table(
        "provenance",
        ("Training provenance, read from the checkpoint each certificate names (",
         Emph("traces"), " is counted in the dataset file only where its sha256 matches the "
         "recorded one).",),
        ("task", "dataset", "traces", "seed", "updates", "converged", "source"),
        "lllrrll",
        tuple(
            (m.name, Code(Path(m.training["dataset"]).name)
             if isinstance(m.training.get("dataset"), str) else "\u2013",
             _dash(m.training_traces), _dash(m.training.get("seed")),
             _dash(m.training.get("steps")), _dash({True: "yes", False: "no"}.get(m.training.get("converged"))),
             Code(short(m.digest)))
            for m in models
        ),
    )
    sources = Table(
        "sources",
        ("Certificates this appendix was generated from; each was verified (digest, model "
         "sha256, task) before use.",),
        ("digest", "certificate", "model", "model sha256"),
        "llll",
        tuple((Code(m.digest[:16]), Code(str(m.path)), Code(str(m.model_path)),
               Code(m.data["model"]["sha256"][:16])) for m in models),
    )
    intro = p(Ref("Table", "summary", "The first table below"), " summarizes each certificate, ",
              Ref("Table", "provenance", "the second"), " gives the training provenance of its "
              "model and ", Ref("Table", "sources", "the third"), " the files it was read from.")
    return [intro, table, provenance, sources]


# -- verification sets ----------------------------------------------------------------------

def vset_blocks(models: list[CertifiedModel], figures: dict[str, Any]) -> list[Block]:
    blocks: list[Block] = [p(
        "For each model: the size of V per program, the hidden predicates that refine the "
        "abstract states beyond the observation, and the states of V no concrete input was "
        "found to reach where V is not exact. ",
        Ref("Figure", "saturation", "The saturation figure"), " shows how the concrete V grows "
        "with input size against the abstract |V|.")]
    for index, m in enumerate(models):
        vset = m.data["verification_set"]
        if vset is None:
            blocks.append(p(f"{m.name}: no verification set (",
                            str(m.data.get("reason", m.data["verdict"])), ")."))
            continue
        calls = vset.get("calls")
        rows = tuple(
            (Code(program), str(count),
             Code(", ".join(calls.get(program, []))) if calls is not None else "\u2013",
             Code(short(m.digest)))
            for program, count in vset.get("per_program", {}).items()
        )
        blocks.append(Table(
            f"vset-{slug(index, m)}",
            (f"{m.name}: |V| per program ({vset['call_local_states']} call-local states in all) "
             "and the non-primitive programs its reference actions call.",),
            ("program", "|V|", "calls", "source"), "lrll", rows,
        ))
        coverage = m.evidence("coverage")
        predicates = coverage.get("hidden_predicates")
        if predicates:
            blocks.append(p(f"{m.name}: hidden predicates of the abstract states: ",
                            *_codes([str(x) for x in predicates]), "."))
        listed = coverage.get("unwitnessed_states", [])
        missing = coverage.get("unwitnessed", 0)
        if listed:
            blocks.append(unwitnessed_table(index, m, listed, missing))
        elif missing:
            blocks.append(p(f"{m.name}: {missing} states of V are unwitnessed; this certificate "
                            "does not list them."))
    saturation = {m.name: (m.evidence("coverage").get("concrete_states_by_size", []),
                           m.evidence("coverage").get("abstract_states"))
                  for m in models if m.evidence("coverage").get("concrete_states_by_size")}
    if saturation:
        figures["saturation"] = saturation
        blocks.append(Figure("saturation", (
            "Concrete V against the abstract |V| (dashed): the states reached by the reference "
            "runs that built V, counted after each input size searched (every input of the "
            "size while there are few enough, then the task's covering inputs, then random "
            "inputs). Where the count meets the dashed line, V is exact; a gap that stays open "
            "is the unwitnessed states.",)))
    margins = {m.name: m.evidence("agreement")["margin_histogram"]["counts"]
               for m in models if "margin_histogram" in m.evidence("agreement")}
    if margins:
        figures["margins"] = margins
        blocks.append(Figure("margins", (
            "Decision margins over V: how many states' decisions have their smallest logit gap "
            "in each decade. The closer to 0, the closer a decision is to a tie.",)))
    old = [m.name for m in models if m.data["verification_set"] is not None
           and "margin_histogram" not in m.evidence("agreement")]
    if old:
        blocks.append(p("The certificates of ", ", ".join(old), " were written before "
                        "certificates recorded margin histograms and call graphs: they give only "
                        "the minimum margin, and no call graph is drawn for them."))
    return blocks


def unwitnessed_table(index: int, m: CertifiedModel, listed: list[dict], missing: int) -> Table:
    task = m.task
    rows = []
    for state in listed:
        try:
            call = task.program(state["program"]).format_call(tuple(state["args"]))
            action = Action.from_json(state["action"])
            shown = "return" if action == Action(NOP, (), True) else (
                "NOP" if action.program == NOP else task.format_action(action)
                + ("; return" if action.ret else ""))
        except (VerifierError, KeyError, IndexError, TypeError, ValueError):
            raise BadFile(f"{m.path}: unwitnessed state {state} is not one of {task.name}") from None
        observations = " ".join("".join(map(str, o)) for o in state["observations"])
        rows.append((Code(call), Code(observations), Code(shown), Code(short(m.digest))))
    more = f" (the first {len(listed)} of {missing})" if missing > len(listed) else ""
    return Table(
        f"unwitnessed-{slug(index, m)}",
        (f"{m.name}: states of V that no input was found to reach{more}, with the reference "
         "action. Observations are written as digits of (",
         Code(", ".join(task.observation_names)), "), one group per step of the call.",),
        ("call", "observations", "reference action", "source"), "llll", tuple(rows),
    )


# -- generalization -------------------------------------------------------------------------

def generalization(
    experiments: list[Experiment], models: list[CertifiedModel], figures: dict[str, Any]
) -> list[Block]:
    by_sha = {m.data["model"]["sha256"]: m for m in models}
    blocks: list[Block] = [p(
        "Accuracy is the share of random problems whose whole answer is right by the task's "
        "independent check; these are measurements on finitely many inputs, not proofs. C17's "
        "numbers stand beside ours where the paper gives one.")]
    plots = {}
    for k, experiment in enumerate(experiments):
        sizes = sorted({pt.size for s in experiment.series for pt in s.points})
        header = ["size", "samples"]
        for s in experiment.series:
            header += [f"{s.title}", "C17"]
        rows = []
        for size in sizes:
            samples = sorted({pt.samples for s in experiment.series for pt in s.points if pt.size == size})
            row: list[Cell] = [str(size), "/".join(map(str, samples))]
            for s in experiment.series:
                point = next((pt for pt in s.points if pt.size == size), None)
                row.append("\u2013" if point is None else f"{100 * point.accuracy:.1f}")
                theirs = (paper.accuracy(experiment.task, s.experiment, s.formulation)
                          if s.experiment and s.formulation else {})
                row.append(theirs.get(size, "\u2013"))
            rows.append(tuple(row))
        models_named = []
        for s in experiment.series:
            if s.model_sha256:
                certified = by_sha.get(s.model_sha256)
                models_named.append(f"{s.title}: model {short(s.model_sha256)}" + (
                    f", certificate {short(certified.digest)}" if certified else ""))
        caption = f"{experiment.title} (task {experiment.task}), accuracy in percent. "
        caption += (experiment.note + " ") if experiment.note else ""
        caption += f"Source: {experiment.source}"
        caption += ("; " + "; ".join(models_named) + ".") if models_named else "."
        blocks.append(Table(f"generalization-{k + 1:02d}", (caption,), tuple(header),
                            "rr" + "rr" * len(experiment.series), tuple(rows)))
        plots[f"{experiment.title}"] = [
            (s.title, s.formulation, [(pt.size, pt.accuracy) for pt in s.points])
            for s in experiment.series
        ]
    figures["accuracy"] = plots
    blocks.append(Figure("accuracy", (
        "Accuracy against input size (log scale): recursive formulations solid, non-recursive "
        "dashed, partially recursive or unstated dotted.",)))
    return blocks


# -- counterexamples ------------------------------------------------------------------------

def counterexamples(models: list[CertifiedModel]) -> Items:
    items = []
    for m in models:
        example = m.data["counterexample"]
        items.append(p(
            f"{m.name} (certificate ", Code(short(m.digest)), "): input ",
            Code(json.dumps(example.get("input"))), f", step {example['step']} in ",
            Code(example["program"]), ": model ", Code(_action(m, example.get("model_action"))),
            ", reference ", Code(_action(m, example.get("reference_action"))), "; model output ",
            Code(json.dumps(example.get("model_output"))),
            " (the model did not halt)" if example.get("model_halted") is False else (
                " (passes the task's check)" if example.get("output_correct") else " (wrong)"),
            ".",
        ))
    return Items(tuple(items))


def _action(m: CertifiedModel, raw: Any) -> str:
    try:
        action = Action.from_json(raw)
        if action.program == NOP:
            return "return" if action.ret else "NOP"
        return m.task.format_action(action) + ("; return" if action.ret else "")
    except (VerifierError, KeyError, IndexError, TypeError, ValueError):
        raise BadFile(f"{m.path}: counterexample action {raw!r} is not one of {m.task.name}") from None


# -- traces and call graphs -----------------------------------------------------------------

def trace_blocks(models: list[CertifiedModel], figures: dict[str, Any]) -> list[Block]:
    blocks: list[Block] = []
    for index, m in enumerate(models):
        vset = m.data["verification_set"] or {}
        witnesses = vset.get("witness_inputs") or []
        if witnesses:
            try:
                value = m.task.parse_input(witnesses[0])
            except VerifierError as error:
                raise BadFile(f"{m.path}: witness input: {error}") from None
            run = run_reference(m.task, m.data["formulation"], value)
            shown = run.steps[:TRACE_STEPS]
            text = format_trace(m.task, shown)
            if len(run.steps) > len(shown):
                text += f"\n  ... {len(run.steps) - len(shown)} more steps"
            blocks.append(Listing((
                f"{m.name}: the reference program ({m.data['formulation']}) on the first witness "
                "input ", Code(json.dumps(witnesses[0])), ", "
                f"{len(run.steps)} steps, the first {len(shown)} shown; call depth is "
                "indentation, as in C17's Figures 1-2 (certificate ", Code(short(m.digest)), ").",
            ), text))
        calls = vset.get("calls")
        if calls is not None:
            key = f"callgraph-{slug(index, m)}"
            figures[key] = (m.task.entry, calls)
            blocks.append(Figure(key, (
                f"{m.name}: call graph over V: an edge for every non-primitive program a "
                "reference action of V calls; a loop is a recursive call (certificate ",
                Code(short(m.digest)), ").",)))
    return blocks


# -- reproduce ------------------------------------------------------------------------------

def reproduce(
    models: list[CertifiedModel], experiments: list[Experiment], command: list[str]
) -> list[Block]:
    lines = [
        shlex.join(["npi-verify", "certify", str(m.model_path), "--task", m.data["task"],
                    "-o", str(m.path)])
        for m in models
    ]
    lines.append(shlex.join(command))
    blocks: list[Block] = [
        p("The certificates were written by the first commands below (certify times differ "
          "from run to run; the verdict and V do not) and this appendix by the last:"),
        Listing((), "\n".join(lines)),
    ]
    sources = sorted({e.source for e in experiments})
    if sources:
        blocks.append(p("Results files (measurements: ", "; ".join(sources), ") come from ",
                        Code("python bench/paper_tables.py"), " (the combined file) or ",
                        Code("npi-verify evaluate MODEL --sizes ... --json"), "."))
    return blocks
