"""The appendix's figures, drawn with matplotlib (Agg) and written byte-deterministically:
fixed rcParams, a fixed SVG hash salt, no dates or versions in the PDF and PNG metadata."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import networkx as nx  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from verifier.tasks.base import NON_RECURSIVE, RECURSIVE  # noqa: E402

RC = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "pdf.fonttype": 42,
    "svg.hashsalt": "npi-verify",
    "path.simplify": False,
    "figure.dpi": 100,
}
PDF_METADATA = {"CreationDate": None, "Producer": "npi-verify", "Creator": "npi-verify"}
PNG_METADATA = {"Software": None}
PNG_DPI = 150
STYLE = {RECURSIVE: "-", NON_RECURSIVE: "--"}


TEXT_WIDTH = 6.7  # inches of a page's text width (A4 with 2 cm margins)


def write_figures(figures: dict[str, Any], folder: Path) -> dict[str, float]:
    """Draw every figure of the document into folder/KEY.pdf and folder/KEY.png; returns the
    share of the text width each is shown at (its natural width, at most the whole)."""
    folder.mkdir(parents=True, exist_ok=True)
    widths = {}
    with matplotlib.rc_context(RC):
        for key, data in figures.items():
            if key == "saturation":
                figure = saturation(data)
            elif key == "margins":
                figure = margins(data)
            elif key == "accuracy":
                figure = accuracy(data)
            elif key == "sweep":
                figure = fraction_certified(data)
            else:
                figure = call_graph(*data)
            figure.savefig(folder / f"{key}.pdf", metadata=PDF_METADATA)
            figure.savefig(folder / f"{key}.png", metadata=PNG_METADATA, dpi=PNG_DPI)
            widths[key] = min(1.0, figure.get_figwidth() / TEXT_WIDTH)
            plt.close(figure)
    return widths


def _grid(count: int, height: float = 1.9) -> tuple[Figure, list[Any]]:
    columns = min(count, 3)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.3 * columns + 0.4, height * rows),
                                squeeze=False, layout="constrained")
    flat = [ax for row in axes for ax in row]
    for ax in flat[count:]:
        ax.set_visible(False)
    return figure, flat[:count]


def saturation(data: dict[str, tuple[list[list[int]], int | None]]) -> Figure:
    figure, axes = _grid(len(data))
    for ax, (name, (by_size, abstract)) in zip(axes, data.items()):
        sizes = [s for s, _ in by_size]
        counts = [n for _, n in by_size]
        ax.plot(sizes, counts, marker="o", markersize=3, color="C0", label="concrete")
        if abstract is not None:
            ax.axhline(abstract, linestyle="--", color="C3", linewidth=1,
                       label=f"abstract |V| = {abstract}")
        ax.set_title(name)
        ax.set_xlabel("input size")
        ax.set_ylabel("states")
        ax.set_ylim(bottom=0, top=max(counts + [abstract or 0]) * 1.5)  # room for the legend
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(loc="upper left", frameon=False)
    return figure


def margins(data: dict[str, list[list[int | None]]]) -> Figure:
    figure, axes = _grid(len(data))
    for ax, (name, counts) in zip(axes, data.items()):
        labels = ["\u22640" if k is None else f"$10^{{{k}}}$" for k, _ in counts]
        heights = [n for _, n in counts]
        bars = ax.bar(range(len(counts)), heights, color="C0", width=0.6)
        ax.bar_label(bars, fontsize=6)  # a decade holding a handful of states stays visible
        ax.set_yscale("log")
        ax.set_ylim(0.5, 4 * max(heights, default=1))
        ax.set_xticks(range(len(counts)), labels)
        ax.set_xlim(-0.7, max(len(counts), 3) - 0.3)
        ax.set_title(name)
        ax.set_xlabel("decision margin, from (decade)")
        ax.set_ylabel("states of V (log)")
    return figure


def accuracy(data: dict[str, list[tuple[str, str | None, list[tuple[int, float]]]]]) -> Figure:
    figure, axes = _grid(len(data), height=2.1)
    for ax, (title, series) in zip(axes, data.items()):
        for k, (label, formulation, points) in enumerate(series):
            ax.plot([s for s, _ in points], [100 * a for _, a in points],
                    STYLE.get(formulation or "", ":"), marker="o", markersize=3, color=f"C{k}",
                    label=label)
        ax.set_xscale("log")
        sizes = sorted({s for _, _, points in series for s, _ in points})
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_ylim(-5, 105)
        ax.set_title(title, wrap=True)
        ax.set_xlabel("input size")
        ax.set_ylabel("accuracy (%)")
        ax.legend(frameon=False)
    return figure


def fraction_certified(data: dict[str, dict[str, list[tuple[int, float]]]]) -> Figure:
    """Per task, the fraction of a sweep's models certified against the training traces."""
    figure, axes = _grid(len(data), height=2.1)
    for ax, (task, series) in zip(axes, data.items()):
        for k, (label, points) in enumerate(series.items()):
            ax.plot([n for n, _ in points], [share for _, share in points], marker="o", markersize=3,
                    color=f"C{k}", label=label)
        ax.set_xscale("log")
        sizes = sorted({n for points in series.values() for n, _ in points})
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(task)
        ax.set_xlabel("training traces")
        ax.set_ylabel("fraction certified")
        ax.legend(frameon=False)
    return figure


def call_graph(entry: str, calls: dict[str, list[str]]) -> Figure:
    """Programs in layers by their call distance from the entry program (networkx), each a
    box sized to its name; an arrow per call, a loop on the right for a recursive call.
    Everything is sorted, so the same graph is always drawn the same way."""
    graph = nx.DiGraph()
    graph.add_nodes_from(sorted(calls))
    graph.add_edges_from((a, b) for a in sorted(calls) for b in sorted(calls[a]))
    depth = dict(nx.single_source_shortest_path_length(graph, entry)) if entry in graph else {}
    last = max(depth.values(), default=-1)
    layers: dict[int, list[str]] = {}
    for node in sorted(graph):
        layers.setdefault(depth.get(node, last + 1), []).append(node)  # unreached: last layer
    width = max(len(row) for row in layers.values())
    figure, ax = plt.subplots(figsize=(1.6 * width + 0.6, 0.75 * len(layers) + 0.3),
                              layout="constrained")
    ax.set_xlim(-width / 2, width / 2)
    ax.set_ylim(-len(layers) + 0.5, 0.5)
    ax.set_axis_off()
    boxes = {}
    for level, row in sorted(layers.items()):
        for x, node in enumerate(row):
            boxes[node] = ax.text(x - (len(row) - 1) / 2, -level, node, ha="center",
                                  va="center", family="DejaVu Sans Mono", fontsize=7,
                                  bbox={"boxstyle": "round,pad=0.4", "fc": "white", "ec": "black"})
    arrow = {"arrowstyle": "-|>,head_length=0.5,head_width=0.25", "color": "black", "lw": 0.8,
             "shrinkA": 0, "shrinkB": 0}
    for caller, callee in sorted(graph.edges):
        if caller == callee:
            ax.annotate("", xy=(1.0, 0.2), xycoords=boxes[caller], xytext=(1.0, 0.8),
                        textcoords=boxes[caller],
                        arrowprops={**arrow, "connectionstyle": "arc,angleA=0,angleB=0,armA=16,"
                                                                 "armB=16,rad=5"})
        else:
            down = depth.get(callee, last + 1) > depth.get(caller, last + 1)
            ax.annotate("", xy=(0.5, 1.0 if down else 0.0), xycoords=boxes[callee],
                        xytext=(0.5, 0.0 if down else 1.0), textcoords=boxes[caller],
                        arrowprops={**arrow, "connectionstyle": "arc3,rad=0.0"})
    return figure
