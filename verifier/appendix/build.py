"""`npi-verify appendix`: verified certificates and results -> the appendix in a folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from verifier.appendix.content import Document, build_document
from verifier.appendix.figures import write_figures
from verifier.appendix.render import render_documents
from verifier.appendix.sources import load_certificates, load_results


@dataclass(frozen=True)
class Written:
    document: Document
    out: Path
    certificates: int
    experiments: int


def write_appendix(
    certificates: list[Path], results: list[Path], out: Path, command: list[str]
) -> Written:
    """Verify every certificate (BadFile on the first that fails), read the results, and
    write appendix.tex, appendix-body.tex, tables/, figures/, appendix.md and references.bib
    into `out`. `command` is the command line shown as the way to regenerate it."""
    models = load_certificates(certificates)
    experiments = load_results(results)
    document = build_document(models, experiments, command)
    out.mkdir(parents=True, exist_ok=True)
    widths = write_figures(document.figures, out / "figures")
    render_documents(document, widths, out)
    return Written(document, out, len(models), len(experiments))
