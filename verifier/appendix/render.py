"""The appendix's documents from jinja2 templates (package data).

LaTeX templates use delimiters that cannot clash with TeX (`((* ... *))` for statements,
`((( ... )))` for values), and every value is escaped on output by `finalize` with
pylatexenc's encoder unless a filter already produced LaTeX (a Markup value). Markdown
templates escape the characters Markdown gives a meaning to.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import jinja2
from markupsafe import Markup
from pylatexenc.latexencode import (
    RULE_DICT,
    UnicodeToLatexConversionRule,
    UnicodeToLatexEncoder,
)

from verifier.appendix.document import Cite, Code, Document, Emph, Ref, Segment

_ENCODER = UnicodeToLatexEncoder(
    non_ascii_only=False,
    replacement_latex_protection="braces-all",
    unknown_char_policy="replace",
    conversion_rules=[
        # `|`, `<` and `>` are not text characters in every font encoding; say what they are
        UnicodeToLatexConversionRule(RULE_DICT, {ord("|"): r"\textbar{}", ord("<"): r"\textless{}",
                                                 ord(">"): r"\textgreater{}"}),
        "defaults",
    ],
)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~$])")


def latex_escape(text: object) -> Markup:
    """Plain text as LaTeX that typesets as the same characters."""
    if isinstance(text, Markup):
        return text
    return Markup(_ENCODER.unicode_to_latex(str(text)))


def markdown_escape(text: object) -> Markup:
    """Plain text as Markdown that renders as the same characters (in tables too)."""
    if isinstance(text, Markup):
        return text
    return Markup(_MARKDOWN_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " "))


def _tex_segment(segment: Segment) -> Markup:
    if isinstance(segment, Code):
        return Markup(r"\texttt{%s}") % latex_escape(segment.text)
    if isinstance(segment, Emph):
        return Markup(r"\emph{%s}") % latex_escape(segment.text)
    if isinstance(segment, Cite):
        return Markup(r"\citep{%s}") % latex_escape(segment.key)
    if isinstance(segment, Ref):
        label = "tab" if segment.kind == "Table" else "fig"
        return Markup(r"%s~\ref{%s:%s}") % (segment.kind, label, segment.key)
    return latex_escape(segment)


def _md_code(text: str) -> Markup:
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return Markup(f"{fence}{pad}{text.replace('|', chr(92) + '|')}{pad}{fence}")


def _md_segment(segment: Segment) -> Markup:
    if isinstance(segment, Code):
        return _md_code(segment.text)
    if isinstance(segment, Emph):
        return Markup("*%s*") % markdown_escape(segment.text)
    if isinstance(segment, Cite):
        return Markup("[%s]") % markdown_escape(segment.text)
    if isinstance(segment, Ref):
        return markdown_escape(segment.text)
    return markdown_escape(segment)


def _join(render) -> callable:
    def join(segments: object) -> Markup:
        if isinstance(segments, str | Code | Emph | Cite | Ref):
            return render(segments)
        return Markup("").join(render(s) for s in segments)
    return join


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii")


def _environment(latex: bool) -> jinja2.Environment:
    loader = jinja2.PackageLoader("verifier.appendix", "templates")
    if latex:
        env = jinja2.Environment(
            loader=loader, block_start_string="((*", block_end_string="*))",
            variable_start_string="(((", variable_end_string=")))",
            comment_start_string="((=", comment_end_string="=))",
            finalize=latex_escape, autoescape=False, keep_trailing_newline=True,
            trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
        )
        env.filters["tex"] = _join(_tex_segment)
    else:
        env = jinja2.Environment(
            loader=loader, finalize=markdown_escape, autoescape=False,
            keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
            undefined=jinja2.StrictUndefined,
        )
        env.filters["md"] = _join(_md_segment)
    env.filters["verbatim"] = lambda text: Markup(_ascii(text))
    env.filters["raw"] = Markup
    return env


def render_documents(document: Document, figure_widths: dict[str, float], out: Path) -> list[str]:
    """appendix.tex, appendix-body.tex, tables/*.tex, appendix.md and references.bib; returns
    the files written, relative to `out`."""
    tex = _environment(latex=True)
    md = _environment(latex=False)
    tables = out / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    for table in document.tables:
        _write(tables / f"{table.key}.tex", tex.get_template("table.tex.j2").render(table=table))
    context = {"document": document, "widths": figure_widths}
    _write(out / "appendix-body.tex", tex.get_template("appendix-body.tex.j2").render(**context))
    _write(out / "appendix.tex", tex.get_template("appendix.tex.j2").render(**context))
    _write(out / "appendix.md", md.get_template("appendix.md.j2").render(**context))
    bib = resources.files("verifier.appendix").joinpath("templates/references.bib")
    _write(out / "references.bib", bib.read_text("utf-8"))
    return [f"tables/{t.key}.tex" for t in document.tables] + [
        "appendix-body.tex", "appendix.tex", "appendix.md", "references.bib"]


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="\n")
