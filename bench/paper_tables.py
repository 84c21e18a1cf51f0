"""Regenerate docs/results.md: our measurements of C17's Tables 1-4 and the addition claims.

    python bench/paper_tables.py                # writes docs/results.md (tens of minutes)
    python bench/paper_tables.py --out FILE     # elsewhere

Each cell: the shipped model in models/ on `samples` random problems of that size (seeded,
the same problems for every model of a table), accuracy = whole answer right by the task's
independent check; a model that does not halt within 4x the reference program's steps counts
as wrong. The paper's number stands beside ours.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from verifier.checkpoint import Checkpoint, load_checkpoint  # noqa: E402
from verifier.evaluation import correct, evaluation_inputs, run_model  # noqa: E402
from verifier.npi import NPIPolicy  # noqa: E402

SEED = 2017


@dataclass(frozen=True)
class Column:
    title: str
    model: str
    paper: dict[int, str]


@dataclass(frozen=True)
class Table:
    title: str
    note: str
    sizes: tuple[int, ...]
    columns: tuple[Column, ...]
    samples: dict[int, int]  # sizes evaluated on fewer than 30 problems


TABLES = (
    Table(
        "Table 1 — bubble sort, value encoder (task `bubblesort-values`)",
        "Trained on 100 arrays of length at most 2. Paper: C17 Table 1.",
        (2, 3, 4, 8, 20, 90),
        (
            Column("non-recursive", "bubblesort-values-non-recursive.pt",
                   {2: "100", 3: "6.7", 4: "10", 8: "0", 20: "0", 90: "0"}),
            Column("partially recursive", "bubblesort-values-partial.pt",
                   {2: "100", 3: "23", 4: "10", 8: "0", 20: "0", 90: "0"}),
            Column("fully recursive", "bubblesort-values.pt",
                   {2: "100", 3: "100", 4: "100", 8: "100", 20: "100", 90: "100"}),
        ),
        {90: 10},
    ),
    Table(
        "Table 2 — topological sort, trained on one 5-vertex graph",
        "The single training graph has edges (1,2),(1,5),(2,4),(2,5),(3,5). Paper: C17 Table 2.",
        (5, 6, 7, 8, 70),
        (
            Column("non-recursive", "toposort-1trace-non-recursive.pt",
                   {5: "6.7", 6: "6.7", 7: "3.3", 8: "0", 70: "0"}),
            Column("recursive", "toposort-1trace.pt",
                   {5: "100", 6: "100", 7: "100", 8: "100", 70: "100"}),
        ),
        {},
    ),
    Table(
        "Topological sort, trained on 6 graphs (one of 5 vertices, five of 7)",
        "C17 reports that both versions generalize up to 120 vertices with this training set.",
        (5, 8, 20, 70, 120),
        (
            Column("non-recursive", "toposort-non-recursive.pt", {120: "100"}),
            Column("recursive", "toposort.pt", {120: "100"}),
        ),
        {},
    ),
    Table(
        "Table 3 — quicksort",
        "Trained on 4 arrays of length 5. Paper: C17 Table 3.",
        (3, 5, 7, 11, 15, 20, 22, 25, 30, 70),
        (
            Column("non-recursive", "quicksort-non-recursive.pt",
                   {3: "100", 5: "100", 7: "100", 11: "73.3", 15: "60", 20: "30", 22: "20",
                    25: "3.33", 30: "3.33", 70: "0"}),
            Column("recursive", "quicksort.pt",
                   {s: "100" for s in (3, 5, 7, 11, 15, 20, 22, 25, 30, 70)}),
        ),
        {},
    ),
    Table(
        "Table 4 — bubble sort, comparison encoder (task `bubblesort`)",
        "Ours: both trained on 100 arrays of length at most 2 (paper-notes §4). C17 trained "
        "the non-recursive model of this table on arrays of length 6-7, so its column is not "
        "directly comparable. Paper: C17 Table 4.",
        (3, 4, 5, 6, 7, 8, 9, 10, 20, 70),
        (
            Column("non-recursive", "bubblesort-non-recursive.pt",
                   {3: "100", 4: "100", 5: "100", 6: "90", 7: "86.7", 8: "6.7", 9: "0",
                    10: "0", 20: "0", 70: "0"}),
            Column("recursive", "bubblesort.pt",
                   {s: "100" for s in (3, 4, 5, 6, 7, 8, 9, 10, 20, 70)}),
        ),
        {70: 10},
    ),
    Table(
        "Addition (digits of the longer operand)",
        "Full set: 200 sums of at most 3 digits; extreme set: 5 one-digit sums. C17: both "
        "full-set versions generalize to 5000 digits; the recursive one also from 5 sums.",
        (1, 3, 10, 100, 1000, 5000),
        (
            Column("non-recursive", "addition-non-recursive.pt", {5000: "100"}),
            Column("recursive", "addition.pt", {5000: "100"}),
            Column("non-recursive, 5 sums", "addition-5sums-non-recursive.pt", {}),
            Column("recursive, 5 sums", "addition-5sums.pt", {5000: "100"}),
        ),
        {1000: 10, 5000: 5},
    ),
)


@functools.cache
def shipped_policy(model_file: str) -> tuple[Checkpoint, NPIPolicy]:
    """A shipped model with one memoized policy, shared by every size of its column."""
    checkpoint = load_checkpoint(ROOT / "models" / model_file)
    return checkpoint, NPIPolicy(checkpoint.model, checkpoint.task)


def measure(model_file: str, size: int, samples: int) -> float:
    checkpoint, policy = shipped_policy(model_file)
    task = checkpoint.task
    values = evaluation_inputs(task, size, samples, SEED)
    runs = run_model(policy, task, checkpoint.formulation, values, batch_size=samples)
    return 100.0 * sum(correct(task, run) for run, _ in runs) / samples


def render_table(table: Table) -> list[str]:
    header = ["size", "samples"] + [f"{c.title} (ours / paper)" for c in table.columns]
    lines = [f"### {table.title}", "", table.note, "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for size in table.sizes:
        samples = table.samples.get(size, 30)
        cells = [str(size), str(samples)]
        for column in table.columns:
            started = time.perf_counter()
            ours = measure(column.model, size, samples)
            print(f"{column.model} size {size}: {ours:.1f}% "
                  f"({time.perf_counter() - started:.1f} s)", file=sys.stderr, flush=True)
            paper = column.paper.get(size, "–")
            cells.append(f"{ours:.1f}% / {paper}{'%' if paper != '–' else ''}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    args = parser.parse_args()
    torch.set_num_threads(2)
    started = time.perf_counter()
    body: list[str] = []
    for table in TABLES:
        body += render_table(table)
    print(f"{(time.perf_counter() - started) / 60:.0f} minutes", file=sys.stderr)
    lines = [
        "# Reproducing the paper's generalization tables",
        "",
        "Generated by `python bench/paper_tables.py` (evaluation seed "
        f"{SEED}; about 20 minutes on 2 cores). Each cell is our shipped "
        "model's accuracy on random problems of that size (whole answer right, by the task's "
        "independent check; not halting within 4x the reference program's steps counts as "
        "wrong), beside the figure C17 reports (– where the paper gives none). 30 problems per "
        "size unless the samples column says fewer, to keep the run time bounded.",
        "",
        *body,
        "### Causes of the differences from the paper",
        "",
        "- *Addition from 5 one-digit sums*: the five traces show ADD1 five digit pairs, so the "
        "network sees five entries of the 200-entry column-addition table and cannot infer the "
        "rest; we do not reproduce C17's claim for this set, whatever the formulation.",
        "- *Non-recursive addition*: in our runs it fails beyond the training length, where C17 "
        "reports generalization; its single ADD call must carry the whole loop in the LSTM state.",
        "- *Table 4, non-recursive*: trained on arrays of length at most 2 like the recursive "
        "model, not on lengths 6-7 as in C17, so it fails from length 3 on.",
        "- *Training sets*: ours keep the paper's counts and sizes but pick each input from 25 "
        "random candidates to cover the most call-local states (`traces/README.md`); uniformly "
        "random sets of the same size left the recursive addition model wrong on 27% of 8-digit "
        "sums.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
