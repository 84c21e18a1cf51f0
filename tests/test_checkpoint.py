from __future__ import annotations

import hashlib
import json
import pickle
import random
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save as numpy_safetensors

import verifier.checkpoint as checkpoint_module
from verifier.checkpoint import (
    LEGACY_FORMAT,
    MAX_HEADER_BYTES,
    MODEL_FORMAT,
    load_checkpoint,
    model_weights_sha256,
    save_checkpoint,
)
from verifier.errors import BadFile
from verifier.npi import NPI, NPIConfig
from verifier.tasks import TASKS
from verifier.weights import canonical_json, encode_safetensors


def _legacy_dict(model: NPI, task: str = "bubblesort", training: object = None) -> dict:
    """What npi-verify wrote before safetensors (`npi-verify-model/1`, a torch.save dict)."""
    return {
        "format": LEGACY_FORMAT,
        "task": task,
        "formulation": "recursive",
        "config": model.config.to_json(),
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": {"seed": 0} if training is None else training,
    }


def _save_raw(path: Path, data: object) -> Path:
    torch.save(data, path)
    return path


def test_round_trip(bubblesort_model: Path, tmp_path: Path) -> None:
    loaded = load_checkpoint(bubblesort_model)
    assert loaded.task is TASKS["bubblesort"] and loaded.formulation == "recursive"
    assert loaded.format == MODEL_FORMAT
    again = tmp_path / "again.pt"
    save_checkpoint(again, loaded.task, loaded.formulation, loaded.model, loaded.training)
    reloaded = load_checkpoint(again)
    for (name, a), (_, b) in zip(
        loaded.model.state_dict().items(), reloaded.model.state_dict().items()
    ):
        assert torch.equal(a, b), name
    assert reloaded.training == {"seed": 0}
    assert again.read_bytes() == bubblesort_model.read_bytes()


def test_new_files_are_safetensors_with_json_metadata(bubblesort_model: Path) -> None:
    """Any safetensors reader (here with numpy, no torch) gets the weights and metadata."""
    assert not zipfile.is_zipfile(bubblesort_model)
    model = load_checkpoint(bubblesort_model).model
    with safe_open(str(bubblesort_model), framework="numpy") as handle:
        metadata = handle.metadata()
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    assert metadata["format"] == MODEL_FORMAT and metadata["task"] == "bubblesort"
    assert json.loads(metadata["config"])["d_hidden"] == model.config.d_hidden
    assert json.loads(metadata["training"]) == {"seed": 0}
    assert set(tensors) == set(model.state_dict())
    assert all(np.array_equal(tensors[k], v.numpy()) for k, v in model.state_dict().items())


def test_same_model_and_provenance_give_the_same_bytes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = NPI(NPIConfig.for_task(TASKS["addition"], d_hidden=8))
    first, second = tmp_path / "1.pt", tmp_path / "2.pt"
    task = TASKS["addition"]
    save_checkpoint(first, task, "recursive", model, {"b": 1, "a": [2, {"y": 0, "x": 1}]})
    save_checkpoint(second, task, "recursive", model, {"a": [2, {"x": 1, "y": 0}], "b": 1})
    assert first.read_bytes() == second.read_bytes()


def test_loading_a_new_file_never_unpickles(
    bubblesort_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a safetensors checkpoint must not reach a pickle loader")

    monkeypatch.setattr(checkpoint_module.torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    assert load_checkpoint(bubblesort_model).format == MODEL_FORMAT


def test_legacy_files_still_load_with_the_same_weights_digest(
    bubblesort_model: Path, tmp_path: Path
) -> None:
    new = load_checkpoint(bubblesort_model)
    legacy_path = _save_raw(tmp_path / "legacy.pt", _legacy_dict(new.model))
    legacy = load_checkpoint(legacy_path)
    assert legacy.format == LEGACY_FORMAT and legacy.training == {"seed": 0}
    assert legacy.sha256 != new.sha256
    assert legacy.weights_sha256 == new.weights_sha256


def test_weights_digest_follows_the_weights_not_the_file(
    bubblesort_model: Path, tmp_path: Path
) -> None:
    base = load_checkpoint(bubblesort_model)
    other_provenance = tmp_path / "provenance.pt"
    save_checkpoint(other_provenance, base.task, "recursive", base.model, {"seed": 1})
    relabelled = load_checkpoint(other_provenance)
    assert relabelled.sha256 != base.sha256 and relabelled.weights_sha256 == base.weights_sha256
    with torch.no_grad():
        base.model.end_head.bias.add_(1e-6)
    assert model_weights_sha256(base.model) != relabelled.weights_sha256


def test_weights_digest_is_the_documented_hash(bubblesort_model: Path) -> None:
    """Recomputed from the docstring's recipe with numpy and safetensors only, as an outside
    checker would."""
    with safe_open(str(bubblesort_model), framework="numpy") as handle:
        config = json.loads(handle.metadata()["config"])
        digest = hashlib.sha256(f"npi-verify-weights/1\n{canonical_json(config)}\n".encode())
        for name in sorted(handle.keys()):
            array = handle.get_tensor(name)
            digest.update(f'["{name}","F32",{json.dumps(list(array.shape))}]\n'.replace(" ", "")
                          .encode())
            digest.update(array.astype("<f4").tobytes())
    assert load_checkpoint(bubblesort_model).weights_sha256 == digest.hexdigest()


class _Exploit:
    """Unpickling this would create a marker file if code from the file were run."""

    marker = ""

    def __reduce__(self) -> tuple:
        return (Path.touch, (Path(self.marker),))


def test_hostile_pickle_is_refused_without_running_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _Exploit.marker = str(marker)
    for name, writer in (
        ("torch-zip.pt", lambda p: torch.save({"format": LEGACY_FORMAT, "x": _Exploit()}, p)),
        ("raw.pkl", lambda p: p.write_bytes(pickle.dumps(_Exploit()))),
    ):
        path = tmp_path / name
        writer(path)
        with pytest.raises(BadFile, match="not an npi-verify model file"):
            load_checkpoint(path)
    assert not marker.exists()


def _edited_legacy(bubblesort_model: Path, tmp_path: Path, edit) -> Path:
    data = _legacy_dict(load_checkpoint(bubblesort_model).model)
    edit(data)
    return _save_raw(tmp_path / "edited.pt", data)


@pytest.mark.parametrize(
    "edit,fragment",
    [
        (lambda d: d.update(format="something/1"), "not an npi-verify model file"),
        (lambda d: d.update(format=MODEL_FORMAT), "without format npi-verify-model/1"),
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
        (lambda d: d.update(training={"x": torch.zeros(1)}), "plain JSON"),
    ],
)
def test_malformed_legacy_checkpoints_are_refused(
    bubblesort_model: Path, tmp_path: Path, edit, fragment: str
) -> None:
    with pytest.raises(BadFile, match=fragment):
        load_checkpoint(_edited_legacy(bubblesort_model, tmp_path, edit))


def _parts(bubblesort_model: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    with safe_open(str(bubblesort_model), framework="numpy") as handle:
        return handle.metadata(), {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118


def _with_config(metadata: dict, **change: object) -> None:
    config = json.loads(metadata["config"])
    config.update(change)
    metadata["config"] = json.dumps(config)


@pytest.mark.parametrize(
    "edit,fragment",
    [
        (lambda m, t: m.update(format="something/1"), "not an npi-verify model file.*something/1"),
        (lambda m, t: m.clear(), "not an npi-verify model file.*no npi-verify metadata"),
        (lambda m, t: m.pop("training"), "exactly the keys"),
        (lambda m, t: m.update(extra="1"), "exactly the keys"),
        (lambda m, t: m.update(task="sorting"), "unknown task"),
        (lambda m, t: m.update(formulation="partially"), "no formulation"),
        (lambda m, t: m.update(config="{not json"), "config is not valid JSON"),
        (lambda m, t: m.update(config="[" * 100_000 + "]" * 100_000), "config is not valid JSON"),
        (lambda m, t: m.update(training='{"accuracy": NaN}'), "training is not valid JSON"),
        (lambda m, t: m.update(training="[1]"), "provenance is not a mapping"),
        (lambda m, t: _with_config(m, d_hidden=10**9), "d_hidden must be an integer"),
        (lambda m, t: _with_config(m, program_names=["X"]), "does not match task"),
        (lambda m, t: t.pop("end_head.bias"), "missing \\['end_head.bias'\\]"),
        (lambda m, t: t.update(extra=np.zeros(1, np.float32)), "unexpected \\['extra'\\]"),
        (lambda m, t: t.update({"end_head.bias": np.zeros(3, np.float32)}), "has shape \\(3,\\)"),
        (lambda m, t: t.update({"end_head.bias": np.zeros(1, np.float64)}), "F64, expected"),
        (lambda m, t: t["end_head.bias"].fill(np.inf), "non-finite"),
    ],
)
def test_malformed_safetensors_checkpoints_are_refused(
    bubblesort_model: Path, tmp_path: Path, edit, fragment: str
) -> None:
    metadata, tensors = _parts(bubblesort_model)
    edit(metadata, tensors)
    path = tmp_path / "edited.pt"
    path.write_bytes(encode_safetensors(tensors, metadata))
    with pytest.raises(BadFile, match=fragment):
        load_checkpoint(path)


def _header(data: bytes) -> tuple[dict, bytes]:
    length = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def _with_header(header: dict, body: bytes, pad: int = 0) -> bytes:
    text = json.dumps(header).encode() + b" " * pad
    return struct.pack("<Q", len(text)) + text + body


def _shifted_offsets(data: bytes) -> bytes:
    header, body = _header(data)
    header["end_head.bias"]["data_offsets"][1] += 4
    return _with_header(header, body)


def _metadata_number(data: bytes) -> bytes:
    header, body = _header(data)
    header["__metadata__"]["task"] = 5
    return _with_header(header, body)


@pytest.mark.parametrize(
    "damage,fragment",
    [
        (lambda d: d[:-100], "malformed safetensors"),
        (lambda d: d[:200], "truncated"),
        (lambda d: struct.pack("<Q", 2**40) + d[8:], "header of 1099511627776 bytes; at most"),
        (lambda d: struct.pack("<Q", 60_000) + d[8:50_000], "truncated"),
        (lambda d: d + b"trailing", "malformed safetensors"),
        (_shifted_offsets, "malformed safetensors"),
        (_metadata_number, "malformed safetensors"),
        (lambda d: _with_header(*_header(d), pad=MAX_HEADER_BYTES),
         "header of \\d+ bytes; at most"),
    ],
)
def test_damaged_safetensors_files_are_refused(
    bubblesort_model: Path, tmp_path: Path, damage, fragment: str
) -> None:
    path = tmp_path / "damaged.pt"
    path.write_bytes(damage(bubblesort_model.read_bytes()))
    with pytest.raises(BadFile, match=f"not an npi-verify model file.*{fragment}"):
        load_checkpoint(path)


def test_foreign_safetensors_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "foreign.safetensors"
    path.write_bytes(numpy_safetensors({"w": np.zeros(2, np.float32)}))
    with pytest.raises(BadFile, match="not an npi-verify model file.*no npi-verify metadata"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "content,fragment",
    [
        (b"", "is empty, not an npi-verify model file"),
        (b"not a checkpoint\n", "is not an npi-verify model file"),
        (b"weights: 1.0\n", "is not an npi-verify model file"),
        (random.Random(0).randbytes(4096), "is not an npi-verify model file"),
        (bytes(range(256)) * 8, "is not an npi-verify model file"),
        (b"PK\x03\x04 truncated zip", "is not an npi-verify model file"),
    ],
)
def test_files_that_are_not_models_get_one_clear_line(
    content: bytes, fragment: str, tmp_path: Path
) -> None:
    path = tmp_path / "corrupt.pt"
    path.write_bytes(content)
    with pytest.raises(BadFile, match=fragment) as error:
        load_checkpoint(path)
    assert "\n" not in str(error.value)


def test_a_zip_that_is_not_a_torch_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "archive.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(BadFile, match="not an npi-verify model file"):
        load_checkpoint(path)


def test_missing_file_and_directory_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BadFile, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(BadFile, match="is a directory, not a model file"):
        load_checkpoint(tmp_path)


def test_a_checkpoint_for_another_task_does_not_fit(tmp_path: Path) -> None:
    """Weights of a quicksort model relabelled as bubble sort do not pass validation."""
    model = NPI(NPIConfig.for_task(TASKS["quicksort"]))
    path = tmp_path / "q.pt"
    save_checkpoint(path, TASKS["quicksort"], "recursive", model, {})
    metadata, tensors = _parts(path)
    metadata["task"] = "bubblesort"
    relabelled = tmp_path / "relabelled.pt"
    relabelled.write_bytes(encode_safetensors(tensors, metadata))
    with pytest.raises(BadFile, match="does not match task"):
        load_checkpoint(relabelled)
    with pytest.raises(BadFile, match="does not match task"):
        load_checkpoint(_save_raw(tmp_path / "legacy.pt", _legacy_dict(model, "bubblesort", {})))
