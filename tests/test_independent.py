"""The proof bundle and the independent re-checker: a certified bubble sort model re-checks,
and each way of tampering with its bundle, weights or certificate is refused in one line."""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import verifier.independent as independent
from verifier.bundle import BUNDLE_SUFFIX, build_bundle, bundle_path
from verifier.certificate import digest_of
from verifier.checkpoint import load_checkpoint
from verifier.verify import certify

from tests.conftest import Invoke, run_cli

pytest.importorskip("cvc5")

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "bubblesort.pt"
OTHER_MODEL = ROOT / "models" / "bubblesort-non-recursive.pt"


@pytest.fixture(scope="module")
def certified(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with model.pt and cert.json (certified, with its bundle beside it)."""
    folder = tmp_path_factory.mktemp("certified")
    shutil.copy(MODEL, folder / "model.pt")
    run = run_cli("certify", folder / "model.pt", "-o", folder / "cert.json")
    assert run.code == 0, (run.out, run.err)
    return folder / "cert.json"


def copy_of(certificate: Path, tmp_path: Path) -> Path:
    for name in ("model.pt", "cert.json", "cert" + BUNDLE_SUFFIX):
        shutil.copy(certificate.parent / name, tmp_path / name)
    return tmp_path / "cert.json"


def tamper(certificate: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy whose bundle `edit` changed, re-signed: the certificate records the new bundle's
    sha256 under a recomputed digest, so only the re-check's own checks can find the edit."""
    copy = copy_of(certificate, tmp_path)
    where = bundle_path(copy)
    bundle = json.loads(gzip.decompress(where.read_bytes()))
    edit(bundle)
    raw = gzip.compress(json.dumps(bundle, sort_keys=True).encode(), mtime=0)
    where.write_bytes(raw)
    resign(copy, lambda data: data["bundle"].update(sha256=hashlib.sha256(raw).hexdigest()))
    return copy


def resign(certificate: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(certificate.read_text())
    edit(data)
    data["digest"] = digest_of(data)
    certificate.write_text(json.dumps(data))


def refusal(certificate: Path) -> str:
    with pytest.raises(independent.Refused) as caught:
        independent.recheck(certificate)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_certified_bundle_rechecks(certified: Path) -> None:
    summary = independent.recheck(certified)
    assert "49 states of V" in summary and "77 queries and 31 lemmas re-solved by cvc5" in summary
    recorded = json.loads(certified.read_text())["bundle"]
    assert recorded["sha256"] == hashlib.sha256(bundle_path(certified).read_bytes()).hexdigest()


def test_rechecker_imports_nothing_from_npi_verify() -> None:
    tree = ast.parse(Path(independent.__file__).read_text())
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names]
    imported += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert imported and not [m for m in imported if m.split(".")[0] == "verifier"]
    assert {m.split(".")[0] for m in imported} <= set(sys.stdlib_module_names) | {
        "numpy", "safetensors", "cvc5", "__future__"}


def test_rechecker_is_small_enough_to_audit() -> None:
    """Issue 13: at most ~600 lines, each within the project's 100 columns."""
    lines = Path(independent.__file__).read_text().splitlines()
    assert len(lines) <= 600 and max(map(len, lines)) <= 100


def test_rechecker_runs_as_a_script(certified: Path) -> None:
    run = subprocess.run([sys.executable, independent.__file__, str(certified)],
                         capture_output=True, text=True, cwd="/")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith(f"{certified}: re-checked independently")


def test_check_independent_command(certified: Path, tmp_path: Path, invoke: Invoke) -> None:
    code, out, _ = invoke("check", "--independent", certified.parent)
    assert code == 0, out
    assert "1 passed, 0 failed" in out
    edited = copy_of(certified, tmp_path)
    bundle_path(edited).write_bytes(b"x" + bundle_path(edited).read_bytes())
    code, out, _ = invoke("check", "--independent", edited)
    assert code == 1
    assert f"{edited}: refused: bundle cert{BUNDLE_SUFFIX} was edited" in out
    code, _, err = invoke("check", "--independent", certified, "--junit", tmp_path / "j.xml")
    assert code == 2 and err.startswith("npi-verify: error: --independent writes no reports")


def test_bundle_is_deterministic(certified: Path) -> None:
    checkpoint = load_checkpoint(MODEL)
    outcome = certify(checkpoint)
    assert outcome.vset is not None
    first = build_bundle(checkpoint, outcome.vset, outcome.induction)
    assert build_bundle(checkpoint, outcome.vset, outcome.induction) == first
    assert first == bundle_path(certified).read_bytes()
    # The bundle records the fixed point V was built with; one read from the V cache has
    # none at hand and is explored again, to the same bytes.
    assert outcome.vset.abstract is not None and outcome.vset.abstract.explored is not None
    outcome.vset.abstract.explored = None
    assert build_bundle(checkpoint, outcome.vset, outcome.induction) == first


def test_edited_bundle_is_refused(certified: Path, tmp_path: Path) -> None:
    copy = copy_of(certified, tmp_path)
    data = gzip.decompress(bundle_path(copy).read_bytes()).replace(b'"unsat"', b'"sat"', 1)
    bundle_path(copy).write_bytes(gzip.compress(data, mtime=0))
    assert "was edited: its sha256 does not match" in refusal(copy)


def test_swapped_weights_are_refused(certified: Path, tmp_path: Path) -> None:
    copy = copy_of(certified, tmp_path)
    shutil.copy(OTHER_MODEL, copy.parent / "model.pt")
    assert "has other weights than the certified ones" in refusal(copy)


def test_swapped_weights_with_a_resigned_certificate_are_refused(
    certified: Path, tmp_path: Path
) -> None:
    copy = copy_of(certified, tmp_path)
    shutil.copy(OTHER_MODEL, copy.parent / "model.pt")
    other = load_checkpoint(OTHER_MODEL).weights_sha256
    resign(copy, lambda data: data["model"].update(weights_sha256=other))
    assert refusal(copy) == "the bundle is for other weights than the certificate"


def test_dropped_query_is_refused(certified: Path, tmp_path: Path) -> None:
    copy = tamper(certified, tmp_path, lambda b: b["queries"]["coverage"].pop(7))
    assert refusal(copy).startswith("coverage query missing")


def test_flipped_expected_answer_is_refused(certified: Path, tmp_path: Path) -> None:
    def flip(bundle: dict[str, Any]) -> None:
        query = bundle["queries"]["coverage"][3]
        query[1] = "sat" if query[1] == "unsat" else "unsat"

    assert "records the expected answer" in refusal(tamper(certified, tmp_path, flip))


def test_removed_transition_is_refused(certified: Path, tmp_path: Path) -> None:
    copy = tamper(certified, tmp_path, lambda b: b["posts"].pop(0))
    assert "the fixed point lacks the transition of" in refusal(copy)


def test_removed_point_is_refused(certified: Path, tmp_path: Path) -> None:
    def drop_point(bundle: dict[str, Any]) -> None:
        context = max(bundle["contexts"], key=lambda c: len(c[3]))
        context[3].pop()

    message = refusal(tamper(certified, tmp_path, drop_point))
    assert ("the fixed point is not closed" in message or "V is not the projection" in message
            or "lacks its first point" in message)


def test_removed_exit_of_a_summary_is_refused(certified: Path, tmp_path: Path) -> None:
    def drop_exit(bundle: dict[str, Any]) -> None:
        next(c for c in bundle["contexts"] if c[4])[4].pop()

    message = refusal(tamper(certified, tmp_path, drop_exit))
    assert "is not what its returning points produce" in message or "not closed" in message


def drop_successor(bundle: dict[str, Any]) -> None:
    post = next(p for p in bundle["posts"] if len(p[4]) > 1)
    post[4].pop()


def test_removed_successor_is_refused(certified: Path, tmp_path: Path) -> None:
    message = refusal(tamper(certified, tmp_path, drop_successor))
    assert message.startswith("coverage query missing: post of ")


def test_removed_successor_with_matching_queries_is_refused_by_cvc5(
    certified: Path, tmp_path: Path
) -> None:
    def drop_and_requery(bundle: dict[str, Any]) -> None:
        drop_successor(bundle)
        needed = independent.coverage_queries(independent.Bundle(bundle))
        bundle["queries"]["coverage"] = [[t, expect, text] for (t, text), expect in needed.items()]

    message = refusal(tamper(certified, tmp_path, drop_and_requery))
    assert message.startswith("cvc5 answers sat to a coverage query that expects unsat: post of")


def test_changed_label_is_refused(certified: Path, tmp_path: Path) -> None:
    def relabel(bundle: dict[str, Any]) -> None:
        # a returning leaf of V now says it does not return: the model does
        leaf = next(node for node in bundle["vset"] if node[2][2])
        leaf[2][2] = False

    message = refusal(tamper(certified, tmp_path, relabel))
    assert "the fixed point is not closed" in message or "the model decides" in message


def test_model_disagreeing_with_a_label_is_refused(certified: Path) -> None:
    """The float64 model against V's labels, on its own (a relabelled bundle usually breaks
    the fixed point's closure first, which the test above accepts)."""
    data = json.loads(gzip.decompress(bundle_path(certified).read_bytes()))
    certificate = json.loads(certified.read_text())
    weights = independent.read_weights(certified, certificate, data)
    bundle = independent.Bundle(data)
    calls, depth, _ = independent.check_vset(bundle)
    assert independent.check_model(bundle, weights, calls, depth) == pytest.approx(
        certificate["min_margin"], abs=1e-6)
    node = next(n for n in bundle.nodes if n[0] == -1 and n[2][1])
    node[2][1] = [1 - node[2][1][0]] + node[2][1][1:]
    with pytest.raises(independent.Refused, match="the model decides .* the reference label is"):
        independent.check_model(bundle, weights, calls, depth)


def test_query_cvc5_disagrees_with_is_refused(certified: Path, tmp_path: Path) -> None:
    def contradict(bundle: dict[str, Any]) -> None:
        bundle["templates"][0]["smt2"] += "(assert false)\n"

    assert "cvc5 answers unsat to a coverage query that expects sat" in refusal(
        tamper(certified, tmp_path, contradict))


def test_certificate_claims_are_compared(certified: Path, tmp_path: Path) -> None:
    copy = copy_of(certified, tmp_path)
    resign(copy, lambda data: data.update(min_margin=0.5))
    assert "minimum margin 0.5 is not the" in refusal(copy)
    resign(copy, lambda data: data["verification_set"].update(call_local_states=50))
    assert "counts 50 call-local states, V has 49" in refusal(copy)


def test_certificate_without_bundle_is_refused(certified: Path, tmp_path: Path) -> None:
    copy = copy_of(certified, tmp_path)
    resign(copy, lambda data: data.update(bundle={"unavailable": "no reason"}))
    assert refusal(copy) == "the certificate has no proof bundle: no reason"


def test_malformed_bundle_is_refused(certified: Path, tmp_path: Path) -> None:
    copy = tamper(certified, tmp_path, lambda b: b["contexts"][0].__setitem__(2, 10**6))
    assert refusal(copy).startswith("the bundle or certificate is malformed (IndexError")


def _lemma_index(bundle: dict[str, Any], kind: str) -> int:
    return next(k for k, lemma in enumerate(bundle["lemmas"]) if lemma["kind"] == kind)


@pytest.mark.parametrize("kind", ["rank", "post", "pre", "specification"])
def test_dropped_lemma_of_a_proved_obligation_is_refused(
    certified: Path, tmp_path: Path, kind: str
) -> None:
    copy = tamper(certified, tmp_path, lambda b: b["lemmas"].pop(_lemma_index(b, kind)))
    message = refusal(copy)
    assert "is proved, but its " + kind + " lemma at" in message and message.endswith("missing")


def test_lemma_recorded_as_refuted_is_refused(certified: Path, tmp_path: Path) -> None:
    def refute(bundle: dict[str, Any]) -> None:
        bundle["lemmas"][_lemma_index(bundle, "rank")]["status"] = "refuted"

    assert "termination is proved, but its rank lemma" in refusal(tamper(certified, tmp_path, refute))


def test_lemma_cvc5_does_not_prove_is_refused(certified: Path, tmp_path: Path) -> None:
    def weaken(bundle: dict[str, Any]) -> None:  # drop every assertion but the last (not goal)
        lemma = bundle["lemmas"][_lemma_index(bundle, "rank")]
        script = lemma["smt2"][0]
        head, _, _ = script.partition("(assert")
        lemma["smt2"][0] = head + "(assert" + script.rsplit("(assert", 1)[1]

    assert "cvc5 answers sat to the termination lemma recorded as proved" in refusal(
        tamper(certified, tmp_path, weaken))


def test_a_lemma_that_is_not_one_script_is_refused(certified: Path, tmp_path: Path) -> None:
    def scoped(bundle: dict[str, Any]) -> None:
        bundle["lemmas"][0]["smt2"][0] = "(push 1)\n" + bundle["lemmas"][0]["smt2"][0]

    assert refusal(tamper(certified, tmp_path, scoped)) == (
        "a lemma's query is not one script ending in (check-sat)")


def test_a_proved_lemma_without_queries_is_refused(certified: Path, tmp_path: Path) -> None:
    def empty(bundle: dict[str, Any]) -> None:
        bundle["lemmas"][_lemma_index(bundle, "post")]["smt2"] = []

    assert "the lemma recorded as proved has no query" in refusal(tamper(certified, tmp_path, empty))


def test_unproved_claims_need_no_lemmas(certified: Path, tmp_path: Path) -> None:
    """A certificate that claims less (tested) than the bundle shows still re-checks."""
    copy = tamper(certified, tmp_path, lambda b: b["lemmas"].clear())
    with pytest.raises(independent.Refused):
        independent.recheck(copy)

    def tested(data: dict[str, Any]) -> None:
        for obligation in data["obligations"]:
            if obligation["name"] in ("termination", "reference-correctness"):
                obligation["status"] = "tested"

    resign(copy, tested)
    assert "re-checked independently" in independent.recheck(copy)


def _certified_copy(tmp_path_factory: pytest.TempPathFactory, model: str) -> Path:
    """The certificate of a copy of shipped `model`, certified afresh in its own folder."""
    folder = tmp_path_factory.mktemp(model.removesuffix(".pt"))
    shutil.copy(ROOT / "models" / model, folder / "model.pt")
    run = run_cli("certify", folder / "model.pt", "-o", folder / "cert.json")
    assert run.code == 0, (run.out, run.err)
    return folder / "cert.json"


@pytest.fixture(scope="module")
def certified_quicksort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A certified quicksort model: its fixed point has relational summaries."""
    return _certified_copy(tmp_path_factory, "quicksort.pt")


@pytest.mark.slow
def test_relational_bundle_rechecks(certified_quicksort: Path) -> None:
    bundle = json.loads(gzip.decompress(bundle_path(certified_quicksort).read_bytes()))
    assert bundle["abstraction"]["relations"] == 4 and bundle["returns"] and bundle["keeps"]
    assert "43 states of V" in independent.recheck(certified_quicksort)


@pytest.mark.slow
def test_relational_records_tampered_are_refused(certified_quicksort: Path, tmp_path: Path) -> None:
    """A dropped return composition, a dropped proof that a primitive keeps the relations,
    and a claim that a stack operation keeps them (no query shows it) are each refused."""
    def claim_stack_keeps(bundle: dict[str, Any]) -> None:
        bundle["keeps"].append(["STACK", [2]])

    for name, edit, reason in (
        ("returns", lambda b: b["returns"].pop(0), "lacks the return of exit"),
        ("keeps", lambda b: b["keeps"].pop(0), "lacks the transition of"),
        ("stack", claim_stack_keeps, "lacks the transition of STACK"),  # its plain posts
    ):
        folder = tmp_path / name
        folder.mkdir()
        assert reason in refusal(tamper(certified_quicksort, folder, edit)), name


@pytest.fixture(scope="module")
def certified_values(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A certified bubble-sort model with the value encoder: every return is composed."""
    return _certified_copy(tmp_path_factory, "bubblesort-values.pt")


@pytest.mark.slow
def test_composed_returns_recheck_and_cannot_be_dropped(certified_values: Path, tmp_path: Path) -> None:
    """Where every return is composed, the re-checker composes likewise; a bundle that says
    otherwise expects the exits of pointer-only calls back unpruned, which the fixed point
    does not hold."""
    bundle = json.loads(gzip.decompress(bundle_path(certified_values).read_bytes()))
    assert bundle["abstraction"]["composes_every_return"] is True
    assert "4725 states of V" in independent.recheck(certified_values)
    plain = tamper(certified_values, tmp_path, lambda b: b["abstraction"].pop("composes_every_return"))
    assert "the fixed point is not closed" in refusal(plain)
