"""The library's own exception types. Only the CLI turns them into messages and exit codes."""

from __future__ import annotations


class VerifierError(Exception):
    """Base class: an error the user can act on. `exit_code` is what the CLI exits with."""

    exit_code = 2


class InvalidInput(VerifierError):
    """A problem input (`--input`) that is not valid for its task."""


class UnknownName(VerifierError):
    """An unknown task, formulation or program name."""


class PluginError(VerifierError):
    """A task definition (built-in, plug-in or --task-module file) that is broken: it cannot
    be imported, misses a declaration, or its reference program or Z3 semantics misbehave."""


class BadFile(VerifierError):
    """An unreadable, malformed or hostile file (dataset, checkpoint, certificate)."""


class EditedCertificate(BadFile):
    """A certificate whose digest does not match its content: it was edited after it was written."""


class PolicyError(VerifierError):
    """A policy emitted an action that is not a legal program call."""


class UndecidedPost(VerifierError):
    """Z3 could not decide an abstract post, and too many candidates remain to test one by
    one: the verification set cannot be proved complete (inconclusive)."""

    exit_code = 3


class UnboundedCall(VerifierError):
    """A call whose call-local sequences grow without bound: V is infinite (uncertifiable)."""

    exit_code = 3

    def __init__(self, program: str, reason: str) -> None:
        super().__init__(reason)
        self.program = program


class ReferenceBug(PluginError):
    """A reference program broke its own contract: a bug in the task's definition (a plug-in's,
    or npi-verify's own for a built-in task), reported in one line like any broken plug-in."""
