"""The V cache: entries round-trip exactly; corrupt, edited or foreign entries are rebuilt."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.conftest import Invoke, vset_of
from verifier import vcache
from verifier.tasks import TASKS
from verifier.vcache import BUILT, OFF, REUSED, cache_key, entry_path, load_or_build
from verifier.vset.result import VerificationSet

TASK = TASKS["bubblesort"]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A fresh cache folder; building V returns the session's V and is counted."""
    monkeypatch.setenv(vcache.ENV_VAR, str(tmp_path / "cache"))
    builds: list[str] = []

    def build(task, formulation, progress=None):
        builds.append(task.name)
        return vset_of(task.name)

    monkeypatch.setattr(vcache, "build_vset", build)
    return builds


def _same(a: VerificationSet, b: VerificationSet) -> None:
    assert list(a.states.items()) == list(b.states.items())  # same states, same order
    assert list(a.concrete.actions.items()) == list(b.concrete.actions.items())
    assert a.concrete.witness == b.concrete.witness
    assert a.concrete.per_input == b.concrete.per_input
    assert a.concrete.counts_by_size == b.concrete.counts_by_size
    assert (a.concrete.inputs_run, a.concrete.saturated) == (b.concrete.inputs_run, b.concrete.saturated)
    assert a.abstract is not None and b.abstract is not None
    assert a.abstract.stats == b.abstract.stats and a.abstract.contexts == b.abstract.contexts
    assert a.cross == b.cross and a.predicates == b.predicates
    assert a.witness_cover() == b.witness_cover()
    assert a.large_reference_runs() == b.large_reference_runs()
    assert (a.coverage_proved, a.exact, a.unwitnessed) == (b.coverage_proved, b.exact, b.unwitnessed)


@pytest.mark.slow
@pytest.mark.soundness
@pytest.mark.parametrize("task_name", [name for name, task in TASKS.items() if task.symbolic])
def test_entry_round_trips_exactly(task_name: str, tmp_path: Path) -> None:
    task = TASKS[task_name]
    original = vset_of(task_name)
    key = cache_key(task, "recursive")
    path = tmp_path / "entry.json.gz"
    vcache.write_entry(path, key, original)
    loaded, why = vcache.read_entry(path, task, key)
    assert loaded is not None, why
    _same(original, loaded)


def test_second_use_reuses_the_entry(cache: list[str]) -> None:
    first, info = load_or_build(TASK, "recursive")
    assert info.status == BUILT and cache == ["bubblesort"]
    second, again = load_or_build(TASK, "recursive")
    assert again.status == REUSED and again.key_digest == info.key_digest and cache == ["bubblesort"]
    _same(first, second)


def test_no_cache_neither_reads_nor_writes(cache: list[str], tmp_path: Path) -> None:
    _, info = load_or_build(TASK, "recursive", use_cache=False)
    assert info.status == OFF and not (tmp_path / "cache").exists()
    load_or_build(TASK, "recursive")
    _, info = load_or_build(TASK, "recursive", use_cache=False)
    assert info.status == OFF and cache == ["bubblesort"] * 3


def _rewrite(path: Path, change) -> None:
    head, _, payload = gzip.decompress(path.read_bytes()).partition(b"\n")
    head, payload = change(head, payload)
    path.write_bytes(gzip.compress(head + b"\n" + payload))


def _flip_first_action(head: bytes, payload: bytes) -> tuple[bytes, bytes]:
    data = json.loads(payload)
    data["actions"][0]["return"] = not data["actions"][0]["return"]
    return head, vcache.canonical(data)


def _reseal(head: bytes, payload: bytes) -> tuple[bytes, bytes]:
    """Recompute both digests: what someone editing the entry on purpose would do."""
    header = json.loads(head)
    header["payload_sha256"] = vcache.sha256(payload)
    header.pop("digest")
    header["digest"] = vcache.sha256(vcache.canonical(header))
    return vcache.canonical(header), payload


def _foreign_version(head: bytes, payload: bytes) -> tuple[bytes, bytes]:
    header = json.loads(head)
    header["key"]["npi-verify"] = "0.0.1"
    header["key_digest"] = vcache.sha256(vcache.canonical(header["key"]))
    return _reseal(vcache.canonical(header), payload)


def _malformed(head: bytes, payload: bytes) -> tuple[bytes, bytes]:
    data = json.loads(payload)
    data["states"][0] = ["BUBBLESORT"]  # too short to unpack
    return _reseal(head, vcache.canonical(data))


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda path: path.write_bytes(path.read_bytes()[:200]), "corrupt"),
        (lambda path: path.write_bytes(b"not gzip at all"), "corrupt"),
        (lambda path: _rewrite(path, _flip_first_action), "edited"),
        (lambda path: _rewrite(path, lambda h, p: (h.replace(b'"format"', b'"formaT"'), p)), "foreign"),
        (lambda path: _rewrite(path, lambda h, p: (h.replace(b"bubblesort", b"bubblesorT", 1), p)), "edited"),
        (lambda path: _rewrite(path, _foreign_version), "foreign"),
        (lambda path: _rewrite(path, _malformed), "corrupt"),
    ],
    ids=["truncated", "garbage", "payload-edited", "not-an-entry", "header-edited",
         "other-package-version", "resealed-but-malformed"],
)
def test_damaged_entry_is_rebuilt_never_trusted(cache: list[str], damage, why: str) -> None:
    load_or_build(TASK, "recursive")
    path = entry_path(cache_key(TASK, "recursive"))
    damage(path)
    vset, info = load_or_build(TASK, "recursive")
    assert info.status == BUILT and why in info.note and cache == ["bubblesort"] * 2
    _same(vset, vset_of("bubblesort"))
    _, info = load_or_build(TASK, "recursive")  # the rebuilt entry replaced the damaged one
    assert info.status == REUSED and cache == ["bubblesort"] * 2


def test_other_package_version_uses_another_entry(cache: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _, first = load_or_build(TASK, "recursive")
    monkeypatch.setattr(vcache, "__version__", "9.9.9")
    _, info = load_or_build(TASK, "recursive")
    assert info.status == BUILT and info.key_digest != first.key_digest and len(cache) == 2


def test_key_names_sources_and_predicates() -> None:
    key = cache_key(TASKS["toposort"], "recursive")
    assert "verifier.vset.fixpoint" in key["sources"] and "verifier.smt" in key["sources"]
    assert key["task_definition"]["module"] == "verifier.tasks.toposort.task"
    assert key["task_definition"] != cache_key(TASKS["quicksort"], "recursive")["task_definition"]
    assert key["predicates"] and key["z3_semantics"].startswith("TopoSortSemantics/")
    assert cache_key(TASK, "recursive") != cache_key(TASK, "partial")


def test_unwritable_cache_still_gives_v(cache: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(vcache.ENV_VAR, str(blocker / "below-a-file"))
    vset, info = load_or_build(TASK, "recursive")
    assert info.status == BUILT and "not stored" in info.note and len(vset.states) == 49


def test_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(vcache.ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert vcache.cache_dir() == tmp_path / "xdg" / "npi-verify"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert vcache.cache_dir() == tmp_path / "home" / ".cache" / "npi-verify"
    monkeypatch.setenv(vcache.ENV_VAR, str(tmp_path / "mine"))
    assert vcache.cache_dir() == tmp_path / "mine"


def test_vset_command_reports_the_cache(invoke: Invoke, cache: list[str]) -> None:
    first = invoke("vset", "--task", "bubblesort", "--json")
    second = invoke("vset", "--task", "bubblesort", "--json")
    bypass = invoke("vset", "--task", "bubblesort", "--json", "--no-cache")
    statuses = [json.loads(r.out)["vset_cache"] for r in (first, second, bypass)]
    assert statuses == [BUILT, REUSED, OFF]
    same = [{k: v for k, v in json.loads(r.out).items() if not k.startswith("vset_cache")}
            for r in (first, second, bypass)]
    assert same[0] == same[1] == same[2]


def test_a_v_without_a_coverage_proof_is_not_kept(cache: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A solver `unknown` (a busy machine can cause one) must not stick: rebuilt every time."""
    unproved = vset_of("bubblesort")
    monkeypatch.setattr(unproved.abstract.stats, "unknown", 1)
    _, info = load_or_build(TASK, "recursive")
    assert info.status == BUILT and "not stored" in info.note
    _, info = load_or_build(TASK, "recursive")
    assert info.status == BUILT and len(cache) == 2


def test_an_entry_built_without_its_semantics_is_foreign(cache: list[str]) -> None:
    key = cache_key(TASK, "recursive")
    plain = vset_of("bubblesort")
    abstract, plain.abstract = plain.abstract, None
    try:
        vcache.write_entry(entry_path(key), key, plain)  # as a buggy or hostile writer would
    finally:
        plain.abstract = abstract
    vset, info = load_or_build(TASK, "recursive")
    assert info.status == BUILT and "foreign" in info.note and vset.abstract is not None


def test_check_reuses_v_and_no_cache_bypasses_it(invoke: Invoke, tmp_path: Path) -> None:
    """The proof gate builds V once, reuses it on the next run, and `--no-cache` rebuilds it;
    the certificate's coverage evidence says which."""
    import shutil

    shipped = Path(__file__).parent.parent / "models" / "bubblesort.pt"
    shutil.copy(shipped, tmp_path / "model.pt")
    made = invoke("certify", tmp_path / "model.pt", "-o", tmp_path / "c.json")
    assert made.code == 0, made
    evidence = {o["name"]: o["evidence"] for o in json.loads((tmp_path / "c.json").read_text())["obligations"]}
    assert evidence["coverage"]["vset_cache"] == BUILT and len(evidence["coverage"]["vset_cache_key"]) == 64
    statuses = []
    for extra in ([], ["--no-cache"]):
        run = invoke("check", tmp_path / "c.json", "--json", *extra)
        assert run.code == 0, run
        statuses.append(json.loads(run.out)["results"][0]["vset_cache"])
    assert statuses == [REUSED, OFF]
