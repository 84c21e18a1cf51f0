"""The CI proof gate as CI systems read it: selection, summary line, JSON, JUnit, SARIF, Markdown.

One certificate is made by certifying a copy of the shipped bubble-sort model (as
test_cli_verify does); the failing ones are derived from it without re-certifying anything
big. Reports are validated against the published schemas vendored in tests/schemas/.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
import xmlschema
import yaml
from jsonschema import Draft4Validator, FormatChecker
from pre_commit.clientlib import load_manifest

from tests.conftest import ROOT, CliRun, Invoke, certify_copy
from verifier.certificate import FAILURES, Recheck, digest_of
from verifier.gate import GateReport, select_certificates, summary_markdown

SCHEMAS = Path(__file__).parent / "schemas"
SARIF = Draft4Validator(json.loads((SCHEMAS / "sarif-schema-2.1.0.json").read_text()),
                        format_checker=FormatChecker())
JUNIT = xmlschema.XMLSchema(SCHEMAS / "junit-10.xsd")
SUMMARY_LINE = re.compile(r"^(\d+) passed, (\d+) failed in \d+\.\d s$")


def sarif_errors(log: dict) -> list[str]:
    return [error.message for error in SARIF.iter_errors(log)]


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """proofs/good.json certifies ../model.pt (a copy of the shipped bubble-sort model);
    proofs/notes.json is some other JSON that a folder may hold."""
    good = certify_copy(ROOT / "models" / "bubblesort.pt", tmp_path_factory.mktemp("repo"),
                        "good.json")
    (good.parent / "notes.json").write_text('{"note": "not a certificate"}\n')
    return good


@pytest.fixture(scope="module")
def passing(
    invoke: Invoke, good: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[CliRun, Path]:
    """`check` on the folder of one good certificate, with every report."""
    out = tmp_path_factory.mktemp("reports")
    run = invoke("check", good.parent, "--junit", out / "j.xml", "--sarif", out / "s.sarif",
                 "--summary", out / "summary.md")
    return run, out


def _resign(data: dict) -> dict:
    data["digest"] = digest_of(data)
    return data


@pytest.fixture(scope="module")
def failing(invoke: Invoke, good: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of certificates that fail in every way but one that needs a big re-check."""
    folder = tmp_path_factory.mktemp("failing")
    proofs = folder / "proofs"
    proofs.mkdir()
    text = good.read_text()
    data = json.loads(text)
    edited = dict(data, min_margin=0.5)
    (proofs / "edited.json").write_text(json.dumps(edited))
    (proofs / "truncated.json").write_text(text[:300])
    shutil.copy(good.parent.parent / "model.pt", folder / "changed.pt")
    with (folder / "changed.pt").open("ab") as stream:
        stream.write(b"\0")
    model = {"path": "../changed.pt", "sha256": data["model"]["sha256"]}
    changed = _resign(dict(data, model=model))
    (proofs / "changed.json").write_text(json.dumps(changed))
    shutil.copy(ROOT / "models" / "bubblesort-non-recursive.pt", folder / "nr.pt")
    run = invoke("certify", folder / "nr.pt", "--task", "bubblesort", "-o", proofs / "nr.json")
    assert run.code == 3, run
    (proofs / "other.json").write_text('[1, 2, 3]\n')
    return proofs


@pytest.fixture(scope="module")
def failing_run(invoke: Invoke, failing: Path) -> tuple[CliRun, Path]:
    out = failing.parent / "reports"
    out.mkdir()
    run = invoke("check", failing, "--json", "--junit", out / "j.xml", "--sarif", out / "s.sarif",
                 "--summary", out / "summary.md")
    return run, out


# --- the text output and the summary line ----------------------------------------------------


def test_passing_folder_skips_other_json_and_ends_with_the_summary_line(passing, good) -> None:
    run, _ = passing
    assert run.code == 0, run
    first, last = run.out.splitlines()
    assert re.fullmatch(rf"ok   {re.escape(str(good))}: certified; re-checked 49 call-local "
                        r"states in \d+\.\d s", first)
    assert SUMMARY_LINE.match(last).groups() == ("1", "0")
    assert run.err == (f"npi-verify: skipped {good.parent / 'notes.json'}: "
                       'no "format": "npi-verify-certificate/1" field\n')


def test_failing_folder_keeps_truncated_certificates_and_skips_other_json(
    invoke: Invoke, failing
) -> None:
    run = invoke("check", failing)
    assert run.code == 2
    lines = run.out.splitlines()
    assert [line.split()[1].rstrip(":") for line in lines[:-1]] == [
        str(failing / name) for name in ("changed.json", "edited.json", "nr.json", "truncated.json")
    ]
    assert all(line.startswith("FAIL ") for line in lines[:-1])
    assert SUMMARY_LINE.match(lines[-1]).groups() == ("0", "4")
    assert run.err == f"npi-verify: skipped {failing / 'other.json'}: " \
                      'no "format": "npi-verify-certificate/1" field\n'


def test_an_explicit_file_that_is_not_a_certificate_fails_with_2(
    invoke: Invoke, good: Path
) -> None:
    run = invoke("check", good.parent / "notes.json")
    assert run.code == 2 and run.out.startswith("FAIL ")
    assert "not an npi-verify certificate" in run.out
    assert SUMMARY_LINE.match(run.out.splitlines()[-1]).groups() == ("0", "1")


def test_a_folder_without_certificates_is_a_one_line_error(invoke: Invoke, tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text('{"name": "x"}')
    run = invoke("check", tmp_path)
    assert run.code == 2 and run.out == ""
    assert run.err.splitlines() == [
        f"npi-verify: skipped {tmp_path / 'package.json'}: "
        'no "format": "npi-verify-certificate/1" field',
        "npi-verify: error: no npi-verify certificates (npi-verify-certificate/1) under "
        f"{tmp_path}",
    ]


@pytest.mark.parametrize("option", ["--junit", "--sarif", "--summary"])
def test_a_report_path_in_a_missing_folder_is_refused_before_any_work(
    invoke: Invoke, good: Path, tmp_path: Path, option: str
) -> None:
    run = invoke("check", good, option, tmp_path / "missing" / "report")
    assert run.code == 2 and run.out == ""
    assert run.err == (f"npi-verify: error: {option} {tmp_path / 'missing' / 'report'}: "
                       f"directory {tmp_path / 'missing'} does not exist\n")
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("second,message", [
    (("--sarif", "same"), "--junit and --sarif name the same file same"),
    (("--summary", "proofs/edited.json"),
     "--summary proofs/edited.json is a certificate being checked"),
])
def test_reports_never_overwrite_each_other_or_a_certificate(
    invoke: Invoke, failing: Path, monkeypatch, second: tuple[str, str], message: str
) -> None:
    monkeypatch.chdir(failing.parent)
    before = (failing / "edited.json").read_bytes()
    run = invoke("check", "proofs", "--junit", "same", *second)
    assert run.code == 2 and run.out == "" and run.err == f"npi-verify: error: {message}\n"
    assert (failing / "edited.json").read_bytes() == before and not Path("same").exists()


def test_select_keeps_other_versions_of_the_format_and_skips_non_objects(tmp_path: Path) -> None:
    (tmp_path / "v2.json").write_text('{"format": "npi-verify-certificate/2"}')
    (tmp_path / "list.json").write_text('[{"format": "npi-verify-certificate/1"}]')
    (tmp_path / "comments.json").write_text('// a JSON-with-comments file\n{"a": 1}')
    selection = select_certificates([tmp_path, tmp_path / ".." / tmp_path.name / "v2.json"])
    assert selection.certificates == [tmp_path / "v2.json"]  # once, though named twice
    assert [path.name for path, _ in selection.skipped] == ["comments.json", "list.json"]


# --- --json ------------------------------------------------------------------------------------


def test_json_gives_one_result_per_certificate_and_totals(failing_run, failing: Path) -> None:
    run, _ = failing_run
    assert run.code == 2
    data = json.loads(run.out)  # stdout is the JSON alone; the summary line goes to stderr
    assert SUMMARY_LINE.match(run.err.splitlines()[-1]).groups() == ("0", "4")
    by_name = {Path(r["path"]).name: r for r in data["results"]}
    assert {name: (r["code"], r["failure"]) for name, r in by_name.items()} == {
        "changed.json": (1, "model-changed"),
        "edited.json": (2, "certificate-edited"),
        "nr.json": (3, "not-certified"),
        "truncated.json": (2, "certificate-malformed"),
    }
    assert by_name["nr.json"]["task"] == "bubblesort"
    assert by_name["nr.json"]["verdict"] == "uncertifiable"
    assert by_name["edited.json"]["task"] is None and by_name["edited.json"]["verdict"] is None
    assert by_name["changed.json"]["task"] == "bubblesort"
    assert by_name["changed.json"]["verdict"] is None  # stopped before certifying again
    for result in data["results"]:
        assert set(result) == {"path", "task", "verdict", "states", "code", "failure", "message",
                               "seconds", "vset_cache"}
        assert result["seconds"] >= 0 and "\n" not in result["message"]
    assert (data["passed"], data["failed"], data["exit_code"]) == (0, 4, 2)
    assert data["seconds"] >= sum(r["seconds"] for r in data["results"]) - 0.01
    assert data["skipped"] == [{"path": str(failing / "other.json"),
                                "reason": 'no "format": "npi-verify-certificate/1" field'}]


def test_json_of_a_passing_certificate_records_its_re_check(invoke: Invoke, good: Path) -> None:
    run = invoke("check", good, "--json")
    assert run.code == 0
    (result,) = json.loads(run.out)["results"]
    assert (result["task"], result["verdict"], result["states"], result["code"]) == (
        "bubblesort", "certified", 49, 0)
    assert result["failure"] is None
    # recheck timed itself: at least the certify time it reports in its message
    certify_seconds = float(re.search(r"in (\d+\.\d) s$", result["message"]).group(1))
    assert result["seconds"] >= certify_seconds - 0.05 and result["seconds"] > 0


# --- JUnit ---------------------------------------------------------------------------------------


def test_junit_of_a_passing_run_validates_and_carries_times(passing) -> None:
    _, out = passing
    xml = (out / "j.xml").read_text()
    JUNIT.validate(xml)
    suite = JUNIT.to_dict(xml)
    assert (suite["@tests"], suite["@failures"], suite["@errors"]) == ("1", "0", "0")
    (case,) = suite["testcase"]
    assert float(case["@time"]) > 0 and float(suite["@time"]) >= float(case["@time"])


def test_junit_of_failures_validates_and_splits_errors_from_failures(failing_run) -> None:
    _, out = failing_run
    xml = (out / "j.xml").read_text()
    JUNIT.validate(xml)
    suite = JUNIT.to_dict(xml)
    assert (suite["@tests"], suite["@failures"], suite["@errors"]) == ("4", "2", "2")
    kinds = {Path(c["@name"]).name: "error" if "error" in c else "failure"
             for c in suite["testcase"]}
    assert kinds == {"changed.json": "failure", "edited.json": "error", "nr.json": "failure",
                     "truncated.json": "error"}
    assert all("@time" in case for case in suite["testcase"])


def test_the_old_junit_without_errors_does_not_validate() -> None:
    """The schema test can fail: a suite without `errors` (what check wrote before) is refused."""
    old = ('<?xml version="1.0"?><testsuite name="npi-verify proofs" tests="1" failures="0">'
           '<testcase classname="npi-verify.check" name="x.json" /></testsuite>')
    assert not JUNIT.is_valid(old)


# --- SARIF ---------------------------------------------------------------------------------------


def test_sarif_of_a_passing_run_is_valid_with_zero_results(passing) -> None:
    _, out = passing
    log = json.loads((out / "s.sarif").read_text())
    assert sarif_errors(log) == []
    assert log["version"] == "2.1.0" and log["runs"][0]["results"] == []
    assert log["runs"][0]["tool"]["driver"]["name"] == "npi-verify"


def test_sarif_has_one_error_per_failing_certificate(failing_run, failing: Path) -> None:
    run, out = failing_run
    log = json.loads((out / "s.sarif").read_text())
    assert sarif_errors(log) == []
    (sarif_run,) = log["runs"]
    rules = [rule["id"] for rule in sarif_run["tool"]["driver"]["rules"]]
    assert rules == list(FAILURES)
    messages = {r["path"]: r["message"] for r in json.loads(run.out)["results"]}
    results = sarif_run["results"]
    assert len(results) == 4
    # the certificates lie outside the working directory, so their URIs are file: URIs
    expected = {Path(path).as_uri(): message for path, message in messages.items()}
    for result in results:
        assert result["level"] == "error" and rules[result["ruleIndex"]] == result["ruleId"]
        (location,) = result["locations"]
        uri = location["physicalLocation"]["artifactLocation"]["uri"]
        assert result["message"]["text"] == expected[uri]
    assert sorted(r["ruleId"] for r in results) == [
        "certificate-edited", "certificate-malformed", "model-changed", "not-certified"]


def test_sarif_uri_is_relative_to_the_working_directory(
    invoke: Invoke, failing: Path, monkeypatch
) -> None:
    monkeypatch.chdir(failing.parent)
    run = invoke("check", "proofs/edited.json", "proofs/../proofs/nr.json", "--sarif", "s.sarif")
    assert run.code == 2
    log = json.loads((failing.parent / "s.sarif").read_text())
    assert sarif_errors(log) == []
    uris = [r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            for r in log["runs"][0]["results"]]
    assert uris == ["proofs/edited.json", "proofs/../proofs/nr.json"]


def test_the_sarif_schema_test_can_fail() -> None:
    bad = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}},
                                        "results": [{"level": "fatal", "message": {"text": "m"}}]}]}
    assert sarif_errors(bad)


# --- Markdown summary ----------------------------------------------------------------------------


def _table(markdown: str) -> list[list[str]]:
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]


def test_summary_of_a_passing_run(passing, good: Path) -> None:
    _, out = passing
    markdown = (out / "summary.md").read_text()
    header, row = _table(markdown)
    assert header == ["certificate", "task", "verdict", "states", "time", "status"]
    assert row[:4] == [str(good).replace("_", r"\_"), "bubblesort", "certified", "49"]
    assert re.fullmatch(r"\d+\.\d s", row[4]) and row[5] == "✅ holds"
    assert re.search(r"^\*\*1 passed, 0 failed in \d+\.\d s\*\* \(exit 0\)$", markdown, re.M)


def test_summary_of_failures_is_appended_and_names_each_failure(
    invoke: Invoke, failing_run
) -> None:
    _, out = failing_run
    markdown = (out / "summary.md").read_text()
    rows = {Path(row[0].replace("\\", "")).name: row for row in _table(markdown)[1:]}
    assert rows["edited.json"][1:4] == ["—", "—", "—"]
    assert rows["edited.json"][5].startswith("❌ certificate-edited (exit 2): ")
    assert rows["nr.json"][1:3] == ["bubblesort", "uncertifiable"]
    assert "other.json" in markdown.split("Skipped (not certificates):")[1]
    before = markdown
    invoke("check", out.parent / "proofs" / "edited.json", "--summary", out / "summary.md")
    after = (out / "summary.md").read_text()
    assert after.startswith(before) and after.count("### npi-verify proof gate") == 2


def test_summary_cells_escape_markdown() -> None:
    result = Recheck(Path("a|b_c.json"), 2, "bad | worse\nline", "certificate-malformed")
    report = GateReport([result], [], 0.0)
    (_, row) = _table(summary_markdown(report))
    assert row[0] == r"a\|b\_c.json"
    assert row[5] == r"❌ certificate-malformed (exit 2): bad \| worse line"


# --- pre-commit ----------------------------------------------------------------------------------


def test_pre_commit_hook_is_a_valid_manifest_that_runs_the_gate(
    invoke: Invoke, failing: Path, monkeypatch
) -> None:
    hook, system = load_manifest(str(ROOT / ".pre-commit-hooks.yaml"))  # validates it
    assert (hook["id"], hook["language"], hook["pass_filenames"]) == (
        "npi-verify-check", "python", False)
    # `system` works in every pre-commit; pre-commit 4.4+ reads it as its new name `unsupported`
    raw = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert (raw[1]["id"], raw[1]["language"]) == ("npi-verify-check-system", "system")
    same = ("entry", "args", "files", "pass_filenames")
    assert [system[k] for k in same] == [hook[k] for k in same]
    files = re.compile(hook["files"])
    assert files.search("proofs/bubblesort.json") and files.search("models/bubblesort.pt")
    assert not files.search("README.md") and not files.search("verifier/cli.py")
    command, *args = hook["entry"].split() + hook["args"]
    assert command == "npi-verify"  # the console script pyproject.toml installs
    monkeypatch.chdir(failing.parent)  # a repository whose proofs/ has failing certificates
    run = invoke(*args)
    assert run.code == 2 and "FAIL proofs/edited.json" in run.out


# --- README's CI job --------------------------------------------------------------------------


def test_readme_ci_job_runs_the_gate_as_written(
    invoke: Invoke, failing: Path, tmp_path: Path, monkeypatch
) -> None:
    """The ready-to-paste job's gate step runs as written, and uploads the files it writes."""
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    (workflow,) = [yaml.safe_load(b) for b in blocks if "proofs.yml" in b]
    steps = workflow["jobs"]["proof-gate"]["steps"]
    (gate_step,) = [s for s in steps if "npi-verify check" in s.get("run", "")]
    uploads = {s["uses"].split("@")[0]: s["with"] for s in steps if "with" in s and "uses" in s}
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "step-summary.md"))
    command, subcommand, *args = shlex.split(os.path.expandvars(gate_step["run"]))
    assert (command, subcommand) == ("npi-verify", "check")
    monkeypatch.chdir(failing.parent)  # a checkout whose proofs/ has failing certificates
    run = invoke(subcommand, *args)
    assert run.code == 2
    sarif = json.loads(Path(uploads["github/codeql-action/upload-sarif"]["sarif_file"]).read_text())
    assert sarif_errors(sarif) == [] and len(sarif["runs"][0]["results"]) == 4
    JUNIT.validate(Path(uploads["actions/upload-artifact"]["path"]).read_text())
    assert "| certificate | task | verdict |" in (tmp_path / "step-summary.md").read_text()


def test_readme_lists_every_sarif_rule_with_its_exit_code() -> None:
    readme = " ".join((ROOT / "README.md").read_text().split())
    listed = re.search(r"`ruleId` the failed condition: (.*?)\.\n?", readme).group(1)
    documented = {}
    for group, code in re.findall(r"((?:`[a-z-]+`,? )+)\(exit (\d)\)", listed):
        documented.update({rule: int(code) for rule in re.findall(r"`([a-z-]+)`", group)})
    assert documented == {rule: int(re.search(r"exit (\d)", text).group(1))
                          for rule, text in FAILURES.items()}
