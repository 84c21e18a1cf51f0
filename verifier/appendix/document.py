"""The appendix as data: sections of paragraphs, tables, figures and listings, whose text is
made of segments (plain text, code, emphasis, citations, references) that render.py turns
into LaTeX or Markdown."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Code:
    """Typewriter text (predicates, inputs, commands)."""

    text: str


@dataclass(frozen=True)
class Emph:
    text: str


@dataclass(frozen=True)
class Cite:
    """A reference in references.bib: \\citep{key} in LaTeX, [text] in Markdown."""

    key: str
    text: str


@dataclass(frozen=True)
class Ref:
    """A numbered table or figure: "Table~\\ref{tab:KEY}" in LaTeX, `text` in Markdown."""

    kind: str  # "Table" or "Figure"
    key: str
    text: str


Segment = str | Code | Emph | Cite | Ref
Cell = str | Code


@dataclass(frozen=True)
class Paragraph:
    segments: tuple[Segment, ...]
    kind: str = "paragraph"


@dataclass(frozen=True)
class Items:
    items: tuple[Paragraph, ...]
    kind: str = "items"


@dataclass(frozen=True)
class Table:
    key: str  # file stem under tables/, and the LaTeX label
    caption: tuple[Segment, ...]
    header: tuple[str, ...]
    align: str  # one LaTeX column letter per column
    rows: tuple[tuple[Cell, ...], ...]
    kind: str = "table"


@dataclass(frozen=True)
class Figure:
    key: str  # file stem under figures/
    caption: tuple[Segment, ...]
    kind: str = "figure"


@dataclass(frozen=True)
class Listing:
    caption: tuple[Segment, ...]
    text: str
    kind: str = "listing"


Block = Paragraph | Items | Table | Figure | Listing


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    sections: list[Section]
    tables: list[Table]
    figures: dict[str, Any]  # figure key -> the data figures.py draws


def p(*segments: Segment) -> Paragraph:
    return Paragraph(tuple(segments))
