"""The datasets in traces/ are exactly what their recorded provenance regenerates."""

from __future__ import annotations

from pathlib import Path

import pytest

from verifier.tasks import TASKS
from verifier.tasks.base import NON_RECURSIVE, RECURSIVE
from verifier.cegis import METHOD
from verifier.traces import EXPLICIT_INPUTS, Sampling, read_dataset, write_dataset

SHIPPED = sorted((Path(__file__).parent.parent / "traces").glob("*.jsonl"))


def test_every_task_has_training_sets_for_the_paper_formulations() -> None:
    """A shipped training set per task for its recursive formulation and, where the task has
    one, the non-recursive formulation it is compared with (a partial formulation is an
    extra: only the bubble sorts of C17 Table 1 ship one)."""
    names = {p.stem for p in SHIPPED}
    for name, task in TASKS.items():
        for formulation in (RECURSIVE, NON_RECURSIVE):
            if formulation in task.formulations:
                assert f"{name}-{formulation}" in names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_dataset_regenerates_byte_for_byte(path: Path, tmp_path: Path) -> None:
    data = read_dataset(path)
    header = data.header
    if header.get("inputs") == "explicit":
        values = [data.task.parse_input(t["input"]) for t in data.traces]
        provenance = EXPLICIT_INPUTS
    elif header.get("inputs") == METHOD:  # the loop's inputs; only training re-picks them
        values = [data.task.parse_input(t["input"]) for t in data.traces]
        provenance = {k: header[k] for k in ("inputs", "seed", "rounds")}
        assert header["rounds"][-1] == len(values)
    else:
        if "size_range" in header:
            low, high = header["size_range"]
            sampling = Sampling(header["count"], low, high, header["seed"], cover=header["cover"])
        else:
            sizes = tuple(header["sizes"])
            sampling = Sampling(len(sizes), 1, 1, header["seed"], sizes, header["cover"])
        values = sampling.inputs(data.task)
        provenance = sampling.provenance()
    again = tmp_path / path.name
    write_dataset(data.task, data.formulation, values, again, provenance)
    assert again.read_bytes() == path.read_bytes()
    for trace in data.traces:
        assert data.task.check(data.task.parse_input(trace["input"]), trace["output"])
