"""Checks on a file a command is going to write, made before any work starts, so that a long
run never ends in an error about its output (and no directory is ever created silently)."""

from __future__ import annotations

import os
from pathlib import Path

from verifier.errors import VerifierError


def check_output_file(path: Path) -> None:
    """Raise VerifierError unless `path` can be written as a file: it is not a directory, its
    parent directory exists, and both are writable."""
    parent = path.parent
    if path.is_dir():
        raise VerifierError(f"output {path} is a directory; give a file name")
    if not parent.exists():
        raise VerifierError(f"output directory {parent} does not exist (create it first)")
    if not parent.is_dir():
        raise VerifierError(f"output {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise VerifierError(f"output {path} is not writable")


def check_output_folder(path: Path) -> None:
    """Raise VerifierError unless `path` can be used as an output folder: an existing
    directory, or a new one whose parent directory exists (only the last level is created)."""
    if path.exists() and not path.is_dir():
        raise VerifierError(f"output folder {path} is a file; give a folder")
    parent = path.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist (create it first)"
        raise VerifierError(f"output folder {path}: {parent} {what}")
    target = path if path.exists() else parent
    if not os.access(target, os.W_OK | os.X_OK):
        raise VerifierError(f"output folder {path} is not writable")
