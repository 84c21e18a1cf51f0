"""The CI proof gate: which files are certificates, re-checking them, and the reports CI reads.

`check` re-checks every certificate (verifier.certificate.recheck) and reports the results as
text lines, JSON, JUnit XML, SARIF 2.1.0 (code-scanning UIs) and a Markdown table (CI job
summaries). The exit code is the worst finding: 2 (edited or malformed) before 1 (no longer
holds) before 3 (valid, not certified), else 0.
"""

from __future__ import annotations

import hashlib
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from verifier import __version__
from verifier.certificate import CERTIFICATE_FORMAT, FAILURES, Recheck, recheck
from verifier.budget import BudgetExceeded
from verifier.errors import VerifierError

SARIF_SCHEMA = ("https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/"
                "sarif-schema-2.1.0.json")
_FORMAT_FAMILY = CERTIFICATE_FORMAT.split("/")[0]  # "npi-verify-certificate"


@dataclass(frozen=True)
class Selection:
    """The certificates to re-check, and the files of the given folders that are not ones."""

    certificates: list[Path]
    skipped: list[tuple[Path, str]]  # (file, why it is not a certificate)


def select_certificates(paths: Iterable[Path]) -> Selection:
    """Files given by name are re-checked whatever they hold (a non-certificate fails with 2);
    in a folder, each `*.json` that declares the certificate format is, the others are skipped.

    A folder's file that is not valid JSON but mentions the format (a truncated certificate)
    or declares another version of it is kept, so that it fails instead of passing unseen.
    A file named twice (a folder and one of its files) is checked once.
    Raises VerifierError for a path that does not exist."""
    certificates: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            for file in sorted(f for f in path.glob("*.json") if f.is_file()):
                reason = _not_a_certificate(file)
                if reason is None:
                    certificates.append(file)
                else:
                    skipped.append((file, reason))
        elif path.is_file():
            certificates.append(path)
        else:
            raise VerifierError(f"{path} does not exist")
    return Selection(_first_mentions(certificates), skipped)


def _first_mentions(files: list[Path]) -> list[Path]:
    seen: set[Path] = set()
    unique = []
    for file in files:
        if file.resolve() not in seen:
            seen.add(file.resolve())
            unique.append(file)
    return unique


def require_certificates(selection: Selection, paths: Iterable[Path]) -> None:
    """A gate with nothing to check must not pass: VerifierError when the selection is empty."""
    if not selection.certificates:
        where = ", ".join(map(str, paths))
        raise VerifierError(f"no npi-verify certificates ({CERTIFICATE_FORMAT}) under {where}")


def _not_a_certificate(path: Path) -> str | None:
    """Why a folder's file is not a certificate, or None when it is one (or claims to be)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None  # unreadable: let the re-check report it rather than skip it
    try:
        data = json.loads(text)
    except ValueError:
        return None if _FORMAT_FAMILY in text else "not JSON, and no certificate format in it"
    declared = data.get("format") if isinstance(data, dict) else None
    if isinstance(declared, str) and declared.split("/")[0] == _FORMAT_FAMILY:
        return None
    return f'no "format": "{CERTIFICATE_FORMAT}" field'


@dataclass(frozen=True)
class GateReport:
    """The re-check of every selected certificate, in order, and the wall time of all of them."""

    results: list[Recheck]
    skipped: list[tuple[Path, str]]
    seconds: float

    @property
    def passed(self) -> int:
        return sum(r.code == 0 for r in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed

    @property
    def exit_code(self) -> int:
        codes = {r.code for r in self.results}
        return next((code for code in (2, 1, 4, 3) if code in codes), 0)


def run_gate(
    selection: Selection,
    on_result: Callable[[Recheck], None] | None = None,
    use_cache: bool = True,
) -> GateReport:
    """Re-check each certificate in turn; `on_result` sees each result as soon as it is known.
    A --timeout that interrupts a re-check (BudgetExceeded) ends the gate with what was
    finished (see `interrupted`). `use_cache=False` rebuilds each V rather than reusing it
    from the V cache."""
    start = time.perf_counter()
    results: list[Recheck] = []
    for path in selection.certificates:
        try:
            result = recheck(path, use_cache=use_cache)
        except BudgetExceeded as error:
            report = interrupted(selection, results, error, time.perf_counter() - start)
            for late in report.results[len(results):]:
                if on_result is not None:
                    on_result(late)
            return report
        results.append(result)
        if on_result is not None:
            on_result(result)
    return GateReport(results, selection.skipped, time.perf_counter() - start)


def interrupted(
    selection: Selection, finished: list[Recheck], error: BudgetExceeded, seconds: float
) -> GateReport:
    """The gate's report when its budget ran out: the finished results, then every other
    certificate marked `budget-exceeded` (the first with the budget's message)."""
    rest = selection.certificates[len(finished):]
    late = [Recheck(path, error.exit_code, str(error) if k == 0 else "not re-checked: the "
                    "--timeout budget had run out", "budget-exceeded")
            for k, path in enumerate(rest)]
    return GateReport([*finished, *late], selection.skipped, seconds)


def check_outputs(outputs: dict[str, Path | None], certificates: Iterable[Path]) -> None:
    """Refuse report paths that cannot be written before any work starts: a folder, a missing
    parent folder, one file named by two options, or a certificate that would be overwritten."""
    protected = {file.resolve() for file in certificates}
    seen: dict[Path, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        if path.is_dir():
            raise VerifierError(f"{option} {path} is a directory")
        if not path.parent.is_dir():
            raise VerifierError(f"{option} {path}: directory {path.parent} does not exist")
        key = path.resolve()
        if key in protected:
            raise VerifierError(f"{option} {path} is a certificate being checked")
        if key in seen:
            raise VerifierError(f"{seen[key]} and {option} name the same file {path}")
        seen[key] = option


def result_line(result: Recheck) -> str:
    """One text line per certificate: `ok   PATH: message` or `FAIL PATH: message`."""
    mark = "ok  " if result.code == 0 else "FAIL"
    return f"{mark} {result.path}: {result.message}"


def summary_line(report: GateReport) -> str:
    """`N passed, M failed in T s`, the last line `check` prints."""
    return f"{report.passed} passed, {report.failed} failed in {report.seconds:.1f} s"


def json_report(report: GateReport) -> dict[str, Any]:
    """What `check --json` prints: one entry per certificate, the skipped files and totals."""
    return {
        "results": [
            {
                "path": str(r.path),
                "task": r.task,
                "verdict": r.verdict,
                "states": r.states,
                "code": r.code,
                "failure": r.failure,
                "message": r.message,
                "seconds": round(r.seconds, 3),
                "vset_cache": r.vset_cache,
            }
            for r in report.results
        ],
        "skipped": [{"path": str(path), "reason": reason} for path, reason in report.skipped],
        "passed": report.passed,
        "failed": report.failed,
        "seconds": round(report.seconds, 3),
        "exit_code": report.exit_code,
    }


def junit_xml(report: GateReport) -> str:
    """One test suite, one test case per certificate: exit 2 is an `error`, 1 and 3 `failure`s."""
    results = report.results
    suite = ET.Element(
        "testsuite",
        name="npi-verify proofs",
        tests=str(len(results)),
        failures=str(sum(r.code in (1, 3) for r in results)),
        errors=str(sum(r.code == 2 for r in results)),
        skipped="0",
        time=f"{report.seconds:.3f}",
    )
    for result in results:
        case = ET.SubElement(suite, "testcase", classname="npi-verify.check",
                             name=str(result.path), time=f"{result.seconds:.3f}")
        if result.code != 0:
            kind = "error" if result.code == 2 else "failure"
            element = ET.SubElement(case, kind, message=result.message, type=str(result.failure))
            element.text = result.message
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def sarif_log(report: GateReport) -> dict[str, Any]:
    """A SARIF 2.1.0 log: one `error` result per failing certificate, located at the file."""
    rule_ids = list(FAILURES)
    rules = [
        {
            "id": rule,
            "name": "".join(part.capitalize() for part in rule.split("-")),
            "shortDescription": {"text": f"npi-verify check: {FAILURES[rule]}"},
            "defaultConfiguration": {"level": "error"},
        }
        for rule in rule_ids
    ]
    results = [_sarif_result(r, rule_ids.index(str(r.failure)))
               for r in report.results if r.code != 0]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "npi-verify", "version": __version__,
                                    "semanticVersion": __version__, "rules": rules}},
                "invocations": [{"executionSuccessful": True, "exitCode": report.exit_code}],
                "results": results,
            }
        ],
    }


def _sarif_result(result: Recheck, rule_index: int) -> dict[str, Any]:
    uri = _artifact_uri(result.path)
    fingerprint = hashlib.sha256(f"{result.failure}\0{uri}".encode()).hexdigest()
    return {
        "ruleId": result.failure,
        "ruleIndex": rule_index,
        "level": "error",
        "message": {"text": result.message},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": uri},
                    # the whole certificate is the finding; code scanning needs a start line
                    "region": {"startLine": 1},
                }
            }
        ],
        "partialFingerprints": {"npiVerifyCertificate/v1": fingerprint},
        "properties": {"exitCode": result.code, "task": result.task, "verdict": result.verdict},
    }


def _artifact_uri(path: Path) -> str:
    """Relative to the working directory where possible (code scanning resolves it against
    the checkout, where CI runs the gate); elsewhere a file: URI."""
    if path.is_absolute():
        try:
            path = path.relative_to(Path.cwd())
        except ValueError:
            return path.as_uri()
    return quote(path.as_posix())


def summary_markdown(report: GateReport) -> str:
    """A Markdown table for a CI job summary (GitHub's $GITHUB_STEP_SUMMARY)."""
    lines = [
        "### npi-verify proof gate",
        "",
        "| certificate | task | verdict | states | time | status |",
        "|---|---|---|---:|---:|---|",
    ]
    for r in report.results:
        status = "✅ holds" if r.code == 0 else f"❌ {r.failure} (exit {r.code}): {r.message}"
        cells = [str(r.path), r.task, r.verdict, r.states, f"{r.seconds:.1f} s", status]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", f"**{summary_line(report)}** (exit {report.exit_code})"]
    if report.skipped:
        lines += ["", "Skipped (not certificates): "
                  + ", ".join(f"{_cell(str(p))} ({_cell(why)})" for p, why in report.skipped)]
    return "\n".join(lines) + "\n"


# What can change the meaning of text inside a table cell (a cell never starts a line).
_MARKDOWN_SPECIAL = "\\`*_[]<>|~"


def _cell(value: object) -> str:
    """A table cell: `—` for unknown, Markdown's special characters escaped, one line."""
    if value is None:
        return "—"
    text = " ".join(str(value).split())
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in text)


def write_reports(report: GateReport, junit: Path | None, sarif: Path | None,
                  summary: Path | None) -> None:
    """Write the reports asked for; the summary is appended, as job summaries expect."""
    if junit is not None:
        junit.write_text(junit_xml(report), encoding="utf-8")
    if sarif is not None:
        sarif.write_text(json.dumps(sarif_log(report), indent=2) + "\n", encoding="utf-8")
    if summary is not None:
        with summary.open("a", encoding="utf-8") as stream:
            stream.write(summary_markdown(report))
