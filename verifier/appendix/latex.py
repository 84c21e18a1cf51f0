"""Compile the appendix: pdflatex, bibtex, pdflatex twice, in the output folder."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from verifier.errors import VerifierError

TIMEOUT = 300  # seconds per run; a TeX run that waits for input is killed


class LatexError(VerifierError):
    """pdflatex or bibtex is missing, or the document does not compile."""


def compile_pdf(folder: Path, name: str = "appendix") -> Path:
    """Typeset folder/NAME.tex into folder/NAME.pdf with its bibliography."""
    for tool in ("pdflatex", "bibtex"):
        if shutil.which(tool) is None:
            raise LatexError(f"--compile needs {tool}, which is not on PATH (install TeX Live, "
                             "e.g. texlive-latex-recommended)")
    latex = ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", name]
    _run(latex, folder, name)
    _run(["bibtex", name], folder, name)
    _run(latex, folder, name)
    _run(latex, folder, name)
    return folder / f"{name}.pdf"


def _run(command: list[str], folder: Path, name: str) -> None:
    """Run one TeX tool; LatexError with the first error line when it fails."""
    # a fixed date makes the PDF reproducible (pdfTeX writes it as CreationDate and in the ID)
    env = {"SOURCE_DATE_EPOCH": "0", **os.environ, "FORCE_SOURCE_DATE": "1"}
    try:
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, env=env,
                              errors="replace", timeout=TIMEOUT, stdin=subprocess.DEVNULL,
                              check=False)
    except subprocess.TimeoutExpired:
        raise LatexError(f"{command[0]} did not finish within {TIMEOUT} s") from None
    if done.returncode > (1 if command[0] == "bibtex" else 0):  # bibtex exits 1 on warnings
        first = _first_error(folder, name, done.stdout)
        raise LatexError(f"{command[0]} failed on {folder / name}: {first}")


def _first_error(folder: Path, name: str, output: str) -> str:
    """The first `! ...` line of the LaTeX log (or bibtex's first error line)."""
    log = folder / f"{name}.log"
    text = log.read_text("utf-8", errors="replace") if log.is_file() else ""
    for source in (text, output):
        for line in source.splitlines():
            if line.startswith("!"):
                return line.strip()
    for line in output.splitlines():
        if "error" in line.lower():
            return line.strip()
    return "see the log in the output folder"
