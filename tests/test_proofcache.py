"""The proof cache (verifier.proofcache): whole proofs reused only from an entry whose key and
digests match; anything edited, foreign or undecided is proved anew."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

from verifier import proofcache
from verifier.induction import UNKNOWN, prove
from verifier.smt import semantics_for
from verifier.tasks.registry import get_task
from verifier.vcache import BUILT, REUSED
from verifier.vset.build import build_vset


@pytest.fixture(scope="module")
def bubblesort() -> tuple[Any, Any, Any]:
    task = get_task("bubblesort")
    vset = build_vset(task)
    return task, semantics_for(task), vset.states


@pytest.fixture()
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("NPI_VERIFY_CACHE_DIR", str(tmp_path))
    return tmp_path


def _entry(cache: Path) -> Path:
    (path,) = (cache / "proofs").iterdir()
    return path


def test_a_stored_proof_is_reused_as_it_was_proved(bubblesort: tuple, cache: Path) -> None:
    task, semantics, states = bubblesort
    built, status, note = proofcache.load_or_prove(task, "recursive", semantics, states)
    assert (status, note) == (BUILT, "")
    reused, status, note = proofcache.load_or_prove(task, "recursive", semantics, states)
    assert (status, note) == (REUSED, "")
    assert reused.lemmas == built.lemmas == prove(task, "recursive", semantics, states).lemmas
    assert (reused.routines, reused.paths, reused.recursive_sites, reused.contracts,
            reused.specification) == (built.routines, built.paths, built.recursive_sites,
                                      built.contracts, built.specification)


def test_an_edited_entry_is_proved_anew(bubblesort: tuple, cache: Path) -> None:
    task, semantics, states = bubblesort
    proofcache.load_or_prove(task, "recursive", semantics, states)
    path = _entry(cache)
    data = gzip.decompress(path.read_bytes()).replace(b'"status":"proved"', b'"status":"refuted"', 1)
    path.write_bytes(gzip.compress(data))
    proof, status, note = proofcache.load_or_prove(task, "recursive", semantics, states)
    assert status == BUILT and note.startswith("edited proof entry ignored")
    assert all(lemma.status == "proved" for lemma in proof.lemmas)


def test_an_entry_for_another_v_is_not_used(bubblesort: tuple, cache: Path) -> None:
    """Another V (one state's action changed) is another key: the entry copied under its name
    is foreign, and is proved anew."""
    task, semantics, states = bubblesort
    proofcache.load_or_prove(task, "recursive", semantics, states)
    other = dict(states)
    key = next(iter(other))
    other[key] = other[key].__class__(other[key].program, other[key].args, not other[key].ret)
    theirs = proofcache.entry_path(proofcache.proof_key(task, "recursive", other))
    theirs.write_bytes(_entry(cache).read_bytes())
    found, why = proofcache.read_entry(theirs, proofcache.proof_key(task, "recursive", other))
    assert found is None and why.startswith("foreign proof entry ignored")


def test_a_corrupt_entry_is_proved_anew(bubblesort: tuple, cache: Path) -> None:
    task, semantics, states = bubblesort
    proofcache.load_or_prove(task, "recursive", semantics, states)
    _entry(cache).write_bytes(b"not gzip")
    _, status, note = proofcache.load_or_prove(task, "recursive", semantics, states)
    assert status == BUILT and note.startswith("corrupt proof entry ignored")


def test_a_proof_with_an_unknown_answer_is_not_stored(
    bubblesort: tuple, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task, semantics, states = bubblesort
    real = proofcache.prove

    def undecided(*args: Any) -> Any:
        proof = real(*args)
        first = proof.lemmas[0]
        proof.lemmas[0] = first.__class__(first.obligation, first.kind, first.name, UNKNOWN,
                                          "the solver answered unknown (timeout)", first.smt2,
                                          first.routine, first.actions)
        return proof

    monkeypatch.setattr(proofcache, "prove", undecided)
    _, status, note = proofcache.load_or_prove(task, "recursive", semantics, states)
    assert status == BUILT and "not stored" in note
    assert not (cache / "proofs").exists() or not list((cache / "proofs").iterdir())


def test_certificates_say_whether_the_proof_was_reused(cache: Path) -> None:
    """With the caches, the termination and correctness evidence says `built`, then `reused`;
    with --no-cache (use_cache=False) the proof is made anew and the evidence has no entry."""
    from verifier.checkpoint import load_checkpoint
    from verifier.verify import certify

    checkpoint = load_checkpoint(Path(__file__).parent.parent / "models" / "hanoi.pt")
    seen, statuses = [], []
    for use_cache in (True, True, False):
        outcome = certify(checkpoint, use_cache=use_cache)
        evidence = {o.name: o.evidence["proof"] for o in outcome.obligations if "proof" in o.evidence}
        seen.append({name: proof.get("proof_cache") for name, proof in evidence.items()})
        statuses.append([(o.name, o.status) for o in outcome.obligations])
    assert statuses[0] == statuses[1] == statuses[2]
    assert seen == [{"termination": BUILT, "reference-correctness": BUILT},
                    {"termination": REUSED, "reference-correctness": REUSED},
                    {"termination": None, "reference-correctness": None}]
