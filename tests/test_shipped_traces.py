"""The datasets in traces/ are exactly what their recorded provenance regenerates."""

from __future__ import annotations

from pathlib import Path

import pytest

from verifier.traces import Sampling, read_dataset, write_dataset

SHIPPED = sorted((Path(__file__).parent.parent / "traces").glob("*.jsonl"))


def test_every_task_and_formulation_has_a_training_set() -> None:
    names = {p.stem for p in SHIPPED}
    for task, formulations in {
        "addition": ("recursive", "non-recursive"),
        "addition-5sums": ("recursive", "non-recursive"),
        "bubblesort": ("recursive", "non-recursive", "partial"),
        "bubblesort-values": ("recursive", "non-recursive", "partial"),
        "toposort": ("recursive", "non-recursive"),
        "toposort-1trace": ("recursive", "non-recursive"),
        "quicksort": ("recursive", "non-recursive"),
    }.items():
        for formulation in formulations:
            assert f"{task}-{formulation}" in names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_dataset_regenerates_byte_for_byte(path: Path, tmp_path: Path) -> None:
    data = read_dataset(path)
    header = data.header
    if header.get("inputs") == "explicit":
        values = [data.task.parse_input(t["input"]) for t in data.traces]
        provenance = {"inputs": "explicit"}
    elif "size_range" in header:
        low, high = header["size_range"]
        values = Sampling(header["count"], low, high, header["seed"], cover=header["cover"]).inputs(
            data.task
        )
        provenance = {"seed": header["seed"], "size_range": [low, high], "cover": header["cover"]}
    else:
        sizes = tuple(header["sizes"])
        values = Sampling(len(sizes), 1, 1, header["seed"], sizes, header["cover"]).inputs(data.task)
        provenance = {"seed": header["seed"], "sizes": list(sizes), "cover": header["cover"]}
    again = tmp_path / path.name
    write_dataset(data.task, data.formulation, values, again, provenance)
    assert again.read_bytes() == path.read_bytes()
    for trace in data.traces:
        assert data.task.check(data.task.parse_input(trace["input"]), trace["output"])
