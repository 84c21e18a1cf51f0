"""`npi-verify appendix`: verified certificates and results -> the appendix in a folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from verifier.appendix.content import build_document
from verifier.appendix.document import Document
from verifier.appendix.figures import write_figures
from verifier.appendix.render import render_documents
from verifier.appendix.sources import load_certificates, load_results, load_sweeps

MANIFEST = ".appendix-files"  # the files the last run wrote, relative to the output folder


@dataclass(frozen=True)
class Written:
    document: Document
    out: Path
    certificates: int
    experiments: int
    sweeps: int = 0


def write_appendix(
    certificates: list[Path], results: list[Path], out: Path, command: list[str],
    sweeps: list[Path] | None = None,
) -> Written:
    """Verify every certificate (BadFile on the first that fails), read the results and the
    sweep tables, and write appendix.tex, appendix-body.tex, tables/, figures/, appendix.md
    and references.bib into `out`. `command` is the command line shown as the way to
    regenerate it."""
    models = load_certificates(certificates)
    experiments = load_results(results)
    tables = load_sweeps(sweeps or [])
    document = build_document(models, experiments, command, tables)
    out.mkdir(exist_ok=True)  # its parent exists: the command line checked it
    widths = write_figures(document.figures, out / "figures")
    written = [f"figures/{key}.{suffix}" for key in widths for suffix in ("pdf", "png")]
    written += render_documents(document, widths, out)
    _replace_manifest(out, sorted(written))
    return Written(document, out, len(models), len(experiments), len(tables))


def _replace_manifest(out: Path, written: list[str]) -> None:
    """Delete what the previous run listed in MANIFEST and this run did not write (the table
    or figure of a certificate no longer given), then list this run's files. Only files an
    appendix run wrote are ever deleted."""
    manifest = out / MANIFEST
    if manifest.is_file():
        for name in set(manifest.read_text("utf-8").splitlines()) - set(written):
            stale = out / name
            if name and ".." not in Path(name).parts and stale.is_file():
                stale.unlink()
    manifest.write_text("".join(f"{name}\n" for name in written), encoding="utf-8")
