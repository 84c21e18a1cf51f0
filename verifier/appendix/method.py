"""The method paragraphs: what each obligation's status means and which status the
certificates give it, what holds for all sizes and what is only tested, the trusted base."""

from __future__ import annotations

from collections import Counter

from verifier.appendix.document import Block, Cite, Code, Emph, Items, Segment, p
from verifier.appendix.sources import CertifiedModel

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


REFERENCE_OBLIGATIONS = ("termination", "reference-correctness")


def _count(models: list[CertifiedModel], name: str) -> str:
    statuses = Counter(
        (m.obligation(name) or {"status": "not recorded"})["status"] for m in models
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
        "(the NPI is ", Cite("reed2016", "Reed and de Freitas 2016"), "). Each certificate "
        "gives every obligation a status: ",
        *_joined([f"{s} ({meaning})" for s, meaning in STATUS_MEANING.items()]), ".",
    )]
    items = []
    semantics = [m.evidence("semantics") for m in models]
    runtimes = sorted({str(e.get("runtime")) for e in semantics if e.get("runtime")})
    claims = sorted({str(e.get("claim")) for e in semantics if e.get("claim")})
    items.append(p(Emph("semantics"), f" ({_count(models, 'semantics')}): interpreter ",
                   *codes(runtimes), "; " + "; ".join(claims) + "." if claims else "."))
    coverage = [m.evidence("coverage") for m in models]
    proved = [e for m, e in zip(models, coverage)
              if (m.obligation("coverage") or {}).get("status") == "proved"]
    cross = [e["cross_checked_steps"] for e in proved
             if isinstance(e.get("cross_checked_steps"), int)]
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
             "states no input was found to reach are counted below (and listed, up to 50, "
             "where the certificate records them).")
    tested = [m for m in models if (m.obligation("coverage") or {}).get("status") == "tested"]
    if tested:
        text += (f" In {len(tested)} certificates coverage is only tested: V is the set of states "
                 "reached by reference runs until it stopped growing.")
    items.append(p(Emph("coverage"), text))
    agreement = [m.evidence("agreement") for m in models]
    fragile = sum(e.get("fragile_decisions", 0) for e in agreement)
    changed = sum(e.get("fragile_changed_in_float64", 0) for e in agreement)
    items.append(p(Emph("agreement"), f" ({_count(models, 'agreement')}): the model's decision "
                   "(next program, its arguments, the return flag) equals the reference action on "
                   "every element of V; a decision's margin is its smallest logit gap (the return "
                   "logit's distance from 0, the gap between the best and second-best program and "
                   f"argument). {fragile} near-tie decisions were re-checked in float64, and "
                   f"{changed} of them changed."))
    small = [m.evidence("termination").get("small_inputs") for m in models]
    random_n = sorted({m.evidence("termination").get("random_inputs") for m in models} - {None})
    random_size = sorted(
        {m.evidence("termination").get("random_input_size") for m in models} - {None})
    reference = (f" halted, with an answer that passes the task's "
                 f"independent check, on every input tried: the small inputs run to build V "
                 f"({_span(sorted(x for x in small if isinstance(x, int)))} per certificate)")
    if random_n:
        reference += (f" and {', '.join(map(str, random_n))} random inputs of size "
                      f"{', '.join(map(str, random_size))}")
    proved = [m for m in models if all(
        (m.obligation(name) or {}).get("status") == "proved" for name in REFERENCE_OBLIGATIONS)]
    items.append(p(Emph("termination"), f" ({_count(models, 'termination')}) and ",
                   Emph("reference-correctness"),
                   f" ({_count(models, 'reference-correctness')}): where proved, for inputs of "
                   "every size: each routine of the reference program declares a contract "
                   "(pre- and postcondition over the environment, and a ranking function for a "
                   "recursive routine); Z3 proves, along every path of the routine in V, that "
                   "it calls each subprogram in the subprogram's precondition, calls itself "
                   "with a smaller non-negative rank, and returns in its postcondition, taking "
                   "a subprogram call by the callee's contract and the frame rule; the entry "
                   "routine's precondition holds initially and its postcondition implies the "
                   "task's specification. Besides, the reference program" + reference + "."))
    blocks.append(Items(tuple(items)))
    if len(proved) == len(models):
        ending = ("What holds for inputs of every size is therefore agreement with the reference "
                  "program (for a certified model), and that the reference program halts with a "
                  "correct answer on every input: a certified model is correct on every input. ")
    else:
        ending = ("What holds for inputs of every size is therefore agreement with the reference "
                  "program (for a certified model); that the reference program halts and "
                  f"answers correctly on every input is proved for {len(proved)} of "
                  f"{len(models)} certificates and tested only for the others (each names the "
                  "lemma that is not proved and why). ")
    blocks.append(p(
        ending + "Verdicts: ",
        *_joined([f"{v}, {VERDICT_MEANING[v]} ({verdicts.get(v, 0)} of {len(models)})"
                  for v in VERDICT_MEANING]), ".",
    ))
    versions = {key: sorted({str(m.data["versions"].get(key)) for m in models
                             if m.data["versions"].get(key) is not None})
                for key in ("npi-verify", "z3", "torch")}
    semantics_versions = sorted({str(m.data["semantics"]) for m in models})
    blocks.append(p(
        "Trusted base, as the certificates record it: the interpreter semantics ",
        *codes(semantics_versions), ", each task's reference program and its Z3 encoding of "
        "the primitives, Z3 ", *codes(versions["z3"]), " ",
        Cite("demoura2008", "de Moura and Bj\u00f8rner 2008"), ", PyTorch ",
        *codes(versions["torch"]), " ", Cite("paszke2019", "Paszke et al. 2019"),
        " for the model's forward pass on V, and npi-verify ", *codes(versions["npi-verify"]), ".",
    ))
    return blocks


def _joined(texts: list[str]) -> list[Segment]:
    return ["; ".join(texts)]


def codes(values: list[str]) -> list[Segment]:
    out: list[Segment] = []
    for k, value in enumerate(values):
        if k:
            out.append(", ")
        out.append(Code(value))
    return out or ["(not recorded)"]
