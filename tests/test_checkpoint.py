from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from verifier.checkpoint import MODEL_FORMAT, load_checkpoint, save_checkpoint
from verifier.errors import BadFile
from verifier.npi import NPI, NPIConfig
from verifier.tasks import TASKS


def test_round_trip(bubblesort_model: Path, tmp_path: Path) -> None:
    loaded = load_checkpoint(bubblesort_model)
    assert loaded.task is TASKS["bubblesort"] and loaded.formulation == "recursive"
    again = tmp_path / "again.pt"
    save_checkpoint(again, loaded.task, loaded.formulation, loaded.model, loaded.training)
    reloaded = load_checkpoint(again)
    for (name, a), (_, b) in zip(
        loaded.model.state_dict().items(), reloaded.model.state_dict().items()
    ):
        assert torch.equal(a, b), name
    assert reloaded.training == {"seed": 0}


class _Exploit:
    """Unpickling this would create a marker file if code from the file were run."""

    marker = ""

    def __reduce__(self) -> tuple:
        return (Path.touch, (Path(self.marker),))


def test_hostile_pickle_is_refused_without_running_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _Exploit.marker = str(marker)
    for name, writer in (
        ("torch-zip.pt", lambda p: torch.save({"format": MODEL_FORMAT, "x": _Exploit()}, p)),
        ("raw.pkl", lambda p: p.write_bytes(pickle.dumps(_Exploit()))),
    ):
        path = tmp_path / name
        writer(path)
        with pytest.raises(BadFile, match="not a loadable npi-verify model"):
            load_checkpoint(path)
    assert not marker.exists()


def _save_raw(path: Path, data: object) -> Path:
    torch.save(data, path)
    return path


def _edited(bubblesort_model: Path, tmp_path: Path, edit) -> Path:
    data = torch.load(bubblesort_model, weights_only=True)
    edit(data)
    return _save_raw(tmp_path / "edited.pt", data)


@pytest.mark.parametrize(
    "edit,fragment",
    [
        (lambda d: d.update(format="something/1"), "not an npi-verify model"),
        (lambda d: d.pop("state_dict"), "lacks state_dict"),
        (lambda d: d.update(task="sorting"), "unknown task"),
        (lambda d: d.update(formulation="partially"), "no formulation"),
        (lambda d: d["config"].update(d_hidden=10**9), "d_hidden must be an integer"),
        (lambda d: d["config"].update(arities=[0]), "does not match task"),
        (lambda d: d["config"].pop("layers"), "exactly the fields"),
        (lambda d: d["state_dict"].pop("end_head.bias"), "does not have the NPI's parameters"),
        (lambda d: d["state_dict"].update({"end_head.bias": torch.zeros(3)}), "has shape"),
        (lambda d: d["state_dict"]["end_head.bias"].fill_(float("nan")), "non-finite"),
        (lambda d: d.update(training=[1]), "provenance"),
    ],
)
def test_malformed_checkpoints_are_refused(
    bubblesort_model: Path, tmp_path: Path, edit, fragment: str
) -> None:
    with pytest.raises(BadFile, match=fragment):
        load_checkpoint(_edited(bubblesort_model, tmp_path, edit))


@pytest.mark.parametrize(
    "content", [b"", b"not a checkpoint", b"PK\x03\x04 truncated zip", bytes(range(256)) * 8]
)
def test_corrupt_bytes_are_refused(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "corrupt.pt"
    path.write_bytes(content)
    with pytest.raises(BadFile):
        load_checkpoint(path)


def test_truncated_checkpoint_is_refused(bubblesort_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.pt"
    path.write_bytes(bubblesort_model.read_bytes()[:2000])
    with pytest.raises(BadFile):
        load_checkpoint(path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadFile, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_a_checkpoint_for_another_task_does_not_fit(tmp_path: Path) -> None:
    """Weights of a quicksort model relabelled as bubble sort do not pass validation."""
    model = NPI(NPIConfig.for_task(TASKS["quicksort"]))
    path = tmp_path / "q.pt"
    save_checkpoint(path, TASKS["quicksort"], "recursive", model, {})
    data = torch.load(path, weights_only=True)
    data["task"] = "bubblesort"
    with pytest.raises(BadFile, match="does not match task"):
        load_checkpoint(_save_raw(tmp_path / "relabelled.pt", data))
    assert zipfile.is_zipfile(path)
