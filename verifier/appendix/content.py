"""What the appendix says, as data: sections of paragraphs, tables, figures and listings.

Every number comes from a verified certificate (or a results file) and every table row
names the certificate digest prefix it came from. The text says what the certificates say
and no more: an obligation is described by the status the certificate gives it.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from verifier.appendix import paper
from verifier.appendix.document import (
    Block,
    Cell,
    Code,
    Document,
    Emph,
    Figure,
    Items,
    Listing,
    Ref,
    Section,
    Table,
    p,
)
from verifier.appendix.method import codes, method
from verifier.appendix.sources import CertifiedModel, Experiment, Sweep
from verifier.errors import BadFile, VerifierError
from verifier.runtime import run_reference
from verifier.tasks.base import NOP, Action
from verifier.traces import format_trace

TRACE_STEPS = 30  # steps shown in a trace listing
PREFIX = 8  # hex digits of a digest or sha256 shown in tables


def short(hexdigest: str) -> str:
    return hexdigest[:PREFIX]


def slug(index: int, model: CertifiedModel) -> str:
    """A file-name-safe key per certificate: its position and digest prefix."""
    return f"{index + 1:02d}-{short(model.digest)}"


def build_document(
    models: list[CertifiedModel], experiments: list[Experiment], command: list[str],
    sweeps: list[Sweep] | None = None,
) -> Document:
    """The whole appendix; `command` is the `npi-verify appendix ...` command line given."""
    sweeps = sweeps or []
    figures: dict[str, Any] = {}
    sections = [
        Section("Method", method(models)),
        Section("Summary", summary(models)),
        Section("Verification sets", vset_blocks(models, figures)),
        Section("The reference programs", reference_blocks(models)),
    ]
    if experiments:
        sections.append(Section("Generalization", generalization(experiments, models, figures)))
    if sweeps:
        sections.append(Section("Data efficiency", data_efficiency(sweeps, figures)))
    refuted = [m for m in models if m.data.get("counterexample") is not None]
    if refuted:
        sections.append(Section("Counterexamples", [counterexamples(refuted)]))
    sections.append(Section("Traces and call graphs", trace_blocks(models, figures)))
    sections.append(Section("Reproducing this appendix",
                            reproduce(models, experiments, command, sweeps)))
    tables = [b for s in sections for b in s.blocks if isinstance(b, Table)]
    return Document("Verification of the NPI models", sections, tables, figures)


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
             _dash(m.training.get("steps")),
             _dash({True: "yes", False: "no"}.get(m.training.get("converged"))),
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


# -- the reference programs -------------------------------------------------------------

def reference_blocks(models: list[CertifiedModel]) -> list[Block]:
    """Termination and reference correctness per certificate: how many lemmas over V's paths
    were proved, and, where some were not, which and why."""
    rows, missing = [], []
    for m in models:
        termination = m.evidence("termination").get("proof") or {}
        correctness = m.evidence("reference-correctness").get("proof") or {}
        statuses = [(m.obligation(n) or {}).get("status") for n in ("termination",
                                                                      "reference-correctness")]
        rows.append((
            m.name, _dash(statuses[0]), _dash(statuses[1]), _dash(correctness.get("routines")),
            _dash(correctness.get("paths")), _dash(termination.get("recursive_call_sites")),
            _dash(termination.get("lemmas")), _dash(correctness.get("lemmas")),
            _dash(correctness.get("z3_seconds")), _dash(correctness.get("specification")),
            Code(short(m.digest)),
        ))
        for name, proof in (("termination", termination), ("reference-correctness", correctness)):
            for lemma in proof.get("lemmas_not_proved") or []:
                missing.append(p(f"{m.name}, {name}: ", Code(str(lemma.get("lemma"))), ": ",
                                 str(lemma.get("why") or lemma.get("status"))))
    table = Table(
        "reference",
        ("The reference program of each certificate. Routines and paths: routines of the "
         "recursive program and the distinct action sequences through them in V; sites: "
         "recursive call sites; lemmas: the solver queries each obligation rests on (a "
         "precondition at every call, a postcondition at every return, a smaller ranking value "
         "at every recursive call, the initial state, the specification, and for the sorts a "
         "permutation lemma per primitive); s: Z3 seconds for all of them.",),
        ("task", "termination", "correctness", "routines", "paths", "sites", "lemmas T",
         "lemmas C", "s", "specification", "source"),
        "lllrrrrrrll", tuple(rows),
    )
    intro = p(Ref("Table", "reference", "The table below"), " states what was proved about "
              "each reference program, from the contracts its task declares (see Method).")
    blocks: list[Block] = [intro, table]
    if missing:
        blocks.append(p("Lemmas not proved (the obligation then stays tested):"))
        blocks.append(Items(tuple(missing)))
    return blocks


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
                            *codes([str(x) for x in predicates]), "."))
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
    histograms = {m.name: m.evidence("agreement").get("margin_histogram", {}).get("counts")
                  for m in models}
    margins = {name: counts for name, counts in histograms.items() if counts}  # none: no logits
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
            raise BadFile(f"{m.path}: unwitnessed state {state} is not {task.name}'s") from None
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
            samples = sorted({pt.samples for s in experiment.series for pt in s.points
                              if pt.size == size})
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


# -- data efficiency (sweeps) ---------------------------------------------------------------

def data_efficiency(sweeps: list[Sweep], figures: dict[str, Any]) -> list[Block]:
    blocks: list[Block] = [p(
        "Each cell of a sweep trains one model on a number of reference traces with one seed "
        "and certifies it. The fraction certified is over the cells that ended with a verdict "
        "(cells that ended in an error are counted apart). A model counted as certified was "
        "proved to agree with the reference program on every input of every size; the others "
        "were refuted, or nothing was concluded.")]
    plots: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for k, sweep in enumerate(sweeps):
        rows: list[tuple[Cell, ...]] = []
        for r in sweep.rows:
            share = "\u2013" if not r.finished else f"{r.certified / r.finished:.2f}"
            rows.append((Code(r.task), r.setting or "\u2013", str(r.traces),
                         f"{r.certified}/{r.finished}", share, str(r.errors)))
            if r.finished:
                label = (r.setting or "all cells") + (f" (sweep {k + 1})" if len(sweeps) > 1 else "")
                plots.setdefault(r.task, {}).setdefault(label, []).append(
                    (r.traces, r.certified / r.finished))
        caption = (f"Models certified by number of training traces ({sweep.seeds} seed"
                   f"{'s' if sweep.seeds != 1 else ''} per cell; training inputs: {sweep.inputs}). "
                   f"Source: {sweep.source}.")
        blocks.append(Table(f"sweep-{k + 1:02d}", (caption,),
                            ("task", "setting", "traces", "certified", "fraction", "errors"),
                            "llrrrr", tuple(rows)))
    figures["sweep"] = plots
    blocks.append(Figure("sweep", (
        "Fraction of models certified against the number of training traces (log scale), one "
        "panel per task and one line per setting of the hyper-parameters the sweep varied.",)))
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
        raise BadFile(f"{m.path}: counterexample action {raw!r} is not {m.task.name}'s") from None


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

TASK_MODULE_ORIGIN = "task module "  # how verifier.tasks.registry names a --task-module task


def task_module_options(models: list[CertifiedModel]) -> list[str]:
    """`--task-module PATH` for each task of `models` that a single file defines, in order."""
    paths = dict.fromkeys(
        m.data["task_definition"]["origin"][len(TASK_MODULE_ORIGIN):] for m in models
        if m.data["task_definition"]["origin"].startswith(TASK_MODULE_ORIGIN)
    )
    return [part for path in paths for part in ("--task-module", path)]

def reproduce(
    models: list[CertifiedModel], experiments: list[Experiment], command: list[str],
    sweeps: list[Sweep] | None = None,
) -> list[Block]:
    loads = task_module_options(models)  # plug-in tasks defined in files need them everywhere
    lines = [
        shlex.join(["npi-verify", *loads, "certify", str(m.model_path), "--task", m.data["task"],
                    "-o", str(m.path)])
        for m in models
    ]
    lines.append(shlex.join([*command[:1], *loads, *command[1:]]))
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
    if sweeps:
        blocks.append(p("Sweep tables (", "; ".join(sorted(s.source for s in sweeps)),
                        ") are the ", Code("sweep.json"), " that ",
                        Code("npi-verify sweep CONFIG -o OUT"), " writes into OUT; a cell's "
                        "timings differ from run to run, its verdict does not."))
    return blocks
