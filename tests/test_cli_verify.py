"""CLI: vset, certify and check, with a model fine-tuned to be wrong on one state."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, Invoke, certify_copy, vset_of, weaken_bubblesort
from verifier.certificate import digest_of
from verifier.check import check_model
from verifier.checkpoint import load_checkpoint, save_checkpoint
from verifier.npi import pad_args
from verifier.runtime import Step
from verifier.tasks.base import RETURN
from verifier.training import TrainConfig, call_batch, loss, step_accuracy

SHIPPED = ROOT / "models" / "bubblesort.pt"


@pytest.fixture(scope="module")
def certified(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return certify_copy(SHIPPED, tmp_path_factory.mktemp("proof"))


def test_vset_json(invoke: Invoke, certified: Path) -> None:
    code, out, _ = invoke("vset", "--task", "bubblesort", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["exact"] and data["unwitnessed"] == 0 and len(data["states"]) == 49
    assert sum(data["per_program"].values()) == 49
    state = data["states"][0]
    assert set(state) == {"program", "args", "observations", "action", "witnessed"}
    assert set(state["action"]) == {"program", "args", "return"}
    # Bubble sort declares no predicate: every one of V's is discovered from templates.
    assert data["predicates"] == {"declared": [], "discovered": list(vset_of("bubblesort").predicates)}
    assert len(data["predicates"]["discovered"]) == 7


def test_vset_of_a_looping_formulation_exits_3(invoke: Invoke) -> None:
    """The error names a function that loops (all three loop in this formulation; which one
    the abstract exploration reaches first depends on its order)."""
    code, _, err = invoke("vset", "--task", "bubblesort", "--formulation", "non-recursive")
    assert code == 3 and len(err.strip().splitlines()) == 1
    assert re.search(r"error: (BUBBLESORT|BUBBLE|RESET) runs more than 64 steps in one call", err)


def test_certificate_content(certified: Path) -> None:
    data = json.loads(certified.read_text())
    assert data["verdict"] == "certified" and data["format"] == "npi-verify-certificate/1"
    assert data["verification_set"]["call_local_states"] == 49
    assert {o["name"]: o["status"] for o in data["obligations"]}["coverage"] == "proved"
    assert data["model"]["path"] == "../model.pt"
    model = load_checkpoint(certified.parent.parent / "model.pt")
    assert data["model"]["sha256"] == model.sha256
    assert data["model"]["weights_sha256"] == model.weights_sha256


def test_check_passes_and_writes_junit(invoke: Invoke, certified: Path, tmp_path: Path) -> None:
    code, out, _ = invoke("check", certified.parent, "--junit", tmp_path / "j.xml")
    assert code == 0 and out.startswith("ok")
    assert 'failures="0"' in (tmp_path / "j.xml").read_text()


def test_check_refuses_an_edited_certificate(
    invoke: Invoke, certified: Path, tmp_path: Path
) -> None:
    edited = tmp_path / "edited.json"
    data = json.loads(certified.read_text())
    data["verification_set"]["call_local_states"] = 50
    edited.write_text(json.dumps(data))
    shutil.copy(certified.parent.parent / "model.pt", tmp_path.parent / "model.pt")
    code, out, _ = invoke("check", edited, "--junit", tmp_path / "j.xml")
    assert code == 2 and "edited" in out
    junit = (tmp_path / "j.xml").read_text()
    assert 'errors="1"' in junit and 'failures="0"' in junit  # exit 2 is an error in JUnit


def test_check_refuses_a_changed_model(invoke: Invoke, certified: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(certified.parent.parent, folder)
    model = folder / "model.pt"
    checkpoint = load_checkpoint(model)
    with torch.no_grad():
        checkpoint.model.end_head.bias.add_(1e-3)
    save_checkpoint(model, checkpoint.task, checkpoint.formulation, checkpoint.model, {})
    code, out, _ = invoke("check", folder / "proofs")
    assert code == 1 and "changed since it was certified (other weights)" in out


def _copy_with_resaved_model(certified: Path, tmp_path: Path) -> Path:
    """The proof folder with its model re-saved under other provenance: new file bytes,
    the same config and weights."""
    folder = tmp_path / "copy"
    shutil.copytree(certified.parent.parent, folder)
    model = folder / "model.pt"
    checkpoint = load_checkpoint(model)
    save_checkpoint(model, checkpoint.task, checkpoint.formulation, checkpoint.model,
                    {"note": "retrained elsewhere"})
    assert load_checkpoint(model).sha256 != checkpoint.sha256
    return folder / "proofs" / certified.name


def test_check_accepts_the_same_weights_in_a_different_file(
    invoke: Invoke, certified: Path, tmp_path: Path
) -> None:
    """The proof is about the network, so it still holds; check says what differs."""
    code, out, _ = invoke("check", _copy_with_resaved_model(certified, tmp_path))
    assert code == 0, out
    assert out.startswith("ok") and "same weights, different file (../model.pt); certified" in out


def test_an_old_certificate_without_a_weights_digest(
    invoke: Invoke, certified: Path, tmp_path: Path
) -> None:
    """Certificates written before weights_sha256 are still read; without the digest a
    different file can only be reported as a changed model."""
    path = _copy_with_resaved_model(certified, tmp_path)
    data = json.loads(path.read_text())
    del data["model"]["weights_sha256"]
    data["digest"] = digest_of(data)
    path.write_text(json.dumps(data))
    code, out, _ = invoke("check", path)
    assert code == 1 and "changed since it was certified" in out
    shutil.copy(certified.parent.parent / "model.pt", path.parent.parent / "model.pt")
    code, out, _ = invoke("check", path)
    assert code == 0 and "same weights" not in out


def test_check_refuses_a_weights_digest_that_does_not_match_the_certified_file(
    invoke: Invoke, certified: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(certified.parent.parent, folder)
    path = folder / "proofs" / certified.name
    data = json.loads(path.read_text())
    data["model"]["weights_sha256"] = "0" * 64
    data["digest"] = digest_of(data)
    path.write_text(json.dumps(data))
    code, out, _ = invoke("check", path)
    assert code == 2 and "weights_sha256 does not match" in out


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["certify", SHIPPED, "--task", "quicksort"], "is a bubblesort model, not quicksort"),
        (["certify", SHIPPED, "--task", "sorting"], "unknown task"),
        (["certify", "README.md", "--task", "bubblesort"], "not an npi-verify model file"),
        (["check", "/nonexistent"], "does not exist"),
    ],
)
def test_bad_input_exits_2(invoke: Invoke, args: list, fragment: str) -> None:
    code, _, err = invoke(*args)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err


def test_non_recursive_model_is_uncertifiable(invoke: Invoke) -> None:
    code, out, _ = invoke("certify", ROOT / "models" / "bubblesort-non-recursive.pt",
                          "--task", "bubblesort", "--json")
    assert code == 3 and json.loads(out)["verdict"] == "uncertifiable"


def _fine_tune_with_one_flipped_label(tmp_path: Path) -> tuple[Path, tuple]:
    """Fine-tune the shipped model on V with one reachable state's label flipped."""
    checkpoint = load_checkpoint(SHIPPED)
    vset = vset_of("bubblesort")
    flipped = ("COMPSWAP", (), ((0, 1, 1, 0),))  # reference: SWAP(I1, I2) and return
    labels = dict(vset.states)
    assert labels[flipped].program == "SWAP"
    labels[flipped] = RETURN
    leaves = [k for k in labels if not any(o[:2] == k[:2] and o[2][:-1] == k[2] for o in labels)]
    calls = [
        [Step(0, p, a, obs[j], labels[(p, a, obs[: j + 1])]) for j in range(len(obs))]
        for p, a, obs in leaves
    ]
    model = checkpoint.model
    data = call_batch(model.config, calls)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    torch.manual_seed(0)
    model.train()
    for _ in range(TrainConfig.max_steps):
        optimizer.zero_grad()
        loss(model, data).backward()
        optimizer.step()
        if step_accuracy(model, checkpoint.task, data) == 1.0:
            break
    model.eval()
    path = tmp_path / "flipped.pt"
    save_checkpoint(path, checkpoint.task, "recursive", model, {"note": "one flipped label"})
    return path, flipped


@pytest.mark.slow
@pytest.mark.soundness
def test_model_wrong_on_one_state_is_refuted_with_a_reproducing_counterexample(
    invoke: Invoke, tmp_path: Path
) -> None:
    path, flipped = _fine_tune_with_one_flipped_label(tmp_path)
    code, out, _ = invoke("certify", path, "--task", "bubblesort", "--json")
    assert code == 1
    data = json.loads(out)
    assert data["verdict"] == "refuted"
    example = data["counterexample"]
    assert example["program"] == "COMPSWAP" and example["observations"] == [[0, 1, 1, 0]]
    assert example["model_action"] == {"program": "NOP", "args": [], "return": True}
    assert example["reference_action"] == {"program": "SWAP", "args": [0, 1], "return": True}
    # the counterexample input reproduces: the model's answer is wrong (or it does not halt)
    code, out, _ = invoke("run", path, "--input", json.dumps(example["input"]), "--json")
    result = json.loads(out)
    assert not result["halted"] or result["output"] != sorted(example["input"])
    assert result["output"] == example["model_output"]


def test_a_near_tie_is_never_certified(invoke: Invoke, tmp_path: Path) -> None:
    """Shift the return logit so that one decision of V sits exactly on the 0.5 threshold."""
    checkpoint = load_checkpoint(SHIPPED)
    vset = vset_of("bubblesort")
    model = checkpoint.model
    key = ("BUBBLESORT", (), ((1, 1, 1, 1),))  # the sorted-already call: reference returns
    assert key in vset.states
    ids = {n: k for k, n in enumerate(model.config.program_names)}
    with torch.no_grad():
        end, _, _, _ = model(torch.tensor([ids[key[0]]]), torch.tensor([pad_args(key[1])]),
                             torch.tensor([list(key[2])]))
        model.end_head.bias.sub_(end[0, -1])  # this decision's return logit becomes 0.0
    result = check_model(model, checkpoint.task, vset.states)
    assert result.min_margin < 1e-5
    path = tmp_path / "tie.pt"
    save_checkpoint(path, checkpoint.task, "recursive", model, {})
    code, out, _ = invoke("certify", path, "--task", "bubblesort", "--json")
    assert code != 0 and json.loads(out)["verdict"] != "certified"


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["model"].update(path=5),
        lambda d: d.update(verification_set=[1, 2]),
        lambda d: d.update(verdict="proved-ish"),
        lambda d: d.update(model="models/x.pt"),
        lambda d: d["model"].update(weights_sha256=5),
    ],
)
def test_check_refuses_a_retyped_certificate_with_a_recomputed_digest(
    invoke: Invoke, certified: Path, tmp_path: Path, edit
) -> None:
    data = json.loads(certified.read_text())
    edit(data)
    data["digest"] = digest_of(data)
    path = tmp_path / "retyped.json"
    path.write_text(json.dumps(data))
    code, out, _ = invoke("check", path)
    assert code == 2 and out.startswith("FAIL")


def test_unwritable_output_is_a_one_line_error(invoke: Invoke, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = invoke("dataset", "--task", "addition", "--count", "2", "--max-size", "1",
                          "-o", blocker / "sub" / "x.jsonl")
    assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_vset_names_the_unwitnessed_states_step_by_step(
    invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where V is not exact, `vset` shows the states no input reaches (what a hidden predicate
    would have to remove) with the actions between their observations; --json flags them.
    V is exact on every task, so bubble sort is given semantics without its predicate
    `i2==1` (34 unwitnessed states); with its own, it lists none."""
    code, out, _ = invoke("vset", "--task", "bubblesort", "--no-cache")
    assert code == 0 and "exact: True; unwitnessed: 0" in out and "unwitnessed: in" not in out
    weaken_bubblesort(monkeypatch)
    code, out, _ = invoke("vset", "--task", "bubblesort", "--no-cache")
    lines = [line for line in out.splitlines() if line.startswith("  unwitnessed: in ")]
    assert code == 0 and "exact: False; unwitnessed: 34" in out
    assert len(lines) == 5 and "... and 29 more" in out
    steps = [line.split(": ", 2)[2].split(" ; ") for line in lines]  # [observation] action
    assert all(step.startswith("[A[i1]<=A[i2]=") and "] " in step for s in steps for step in s)
    assert max(map(len, steps)) > 1
    code, out, _ = invoke("vset", "--task", "bubblesort", "--no-cache", "--json")
    report = json.loads(out)
    assert sum(not state["witnessed"] for state in report["states"]) == report["unwitnessed"] == 34


def test_check_refuses_a_proof_claimed_but_not_found_again(
    invoke: Invoke, certified: Path
) -> None:
    """A certificate whose obligation status is not what certifying again finds (here
    termination re-signed as `tested`) fails with obligation-changed."""
    data = json.loads(certified.read_text())
    statuses = {o["name"]: o["status"] for o in data["obligations"]}
    assert statuses["termination"] == statuses["reference-correctness"] == "proved"
    for obligation in data["obligations"]:
        if obligation["name"] == "termination":
            obligation["status"] = "tested"
    data["digest"] = digest_of(data)
    path = certified.parent / "claims-less.json"
    path.write_text(json.dumps(data))
    code, out, _ = invoke("check", path)
    assert code == 1 and "re-check gives termination proved, certificate says tested" in out
