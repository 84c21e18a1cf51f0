"""`npi-verify appendix`: numbers traced to verified certificates, escaping, determinism, LaTeX."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, Invoke, certify_copy
from verifier.appendix.latex import LatexError, compile_pdf
from verifier.certificate import digest_of, write_certificate
from verifier.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from verifier.tasks import TASKS
from verifier.tasks.bubblesort import BubbleSort

HAVE_TEX = shutil.which("pdflatex") is not None and shutil.which("bibtex") is not None
needs_tex = pytest.mark.skipif(
    not HAVE_TEX and os.environ.get("CI") != "true",
    reason="pdflatex not installed (in CI this test fails instead)",
)
WEIRD = "we_ird & 50% #1 $x {y} ~z ^w \\back"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny batches: a second thread only adds contention on CI's two shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def proof(bubblesort_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the fixture model and its certificate in proofs/cert.json."""
    return certify_copy(bubblesort_model, tmp_path_factory.mktemp("appendix"))


@pytest.fixture(scope="module")
def results(invoke: Invoke, proof: Path) -> Path:
    path = proof.parent.parent / "eval.json"
    code, out, err = invoke("evaluate", proof.parent.parent / "model.pt", "--sizes", "2,5",
                            "--samples", "4", "--json")
    assert code == 0, err
    path.write_text(out)
    return path


@pytest.fixture(scope="module")
def appendix(invoke: Invoke, proof: Path, results: Path) -> Path:
    out = proof.parent.parent / "out"
    code, stdout, err = invoke("appendix", proof.parent, "--results", results, "-o", out)
    assert code == 0, (stdout, err)
    return out


def _unlatex(cell: str) -> str:
    """A table cell's text: \\texttt{x} -> x, pylatexenc's escapes -> the characters."""
    cell = re.sub(r"\\texttt\{(.*)\}", r"\1", cell.strip())
    for latex, char in ((r"{\textendash}", "\u2013"), (r"{\_}", "_"), (r"{\textbar{}}", "|")):
        cell = cell.replace(latex, char)
    return cell


def tex_rows(path: Path) -> list[list[str]]:
    """The rows of a booktabs table file, header first, cells un-escaped."""
    text = path.read_text()
    body = text.split("\\toprule", 1)[1].split("\\bottomrule", 1)[0].replace("\\midrule", "")
    return [[_unlatex(c) for c in line.split(" & ")]
            for line in (x.strip().removesuffix("\\\\").strip() for x in body.splitlines()) if line]


def md_table(text: str, first_header: str) -> list[dict[str, str]]:
    lines = text.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    header = [re.sub(r"\\(.)", r"\1", c.strip()) for c in lines[start].strip("|").split(" | ")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [re.sub(r"\\(.)", r"\1", c.strip().strip("`"))
                 for c in line.strip().strip("|").split(" | ")]
        rows.append(dict(zip(header, cells)))
    return rows


def test_summary_numbers_equal_the_certificate(proof: Path, appendix: Path) -> None:
    data = json.loads(proof.read_text())
    coverage = next(o for o in data["obligations"] if o["name"] == "coverage")["evidence"]
    header, row = tex_rows(appendix / "tables" / "summary.tex")
    cells = dict(zip(header, row))
    md = md_table((appendix / "appendix.md").read_text(), "task")[0]
    for parsed in (cells, md):
        assert parsed["task"] == "bubblesort" and parsed["verdict"] == data["verdict"]
        assert data["model"]["sha256"].startswith(parsed["model"])
        assert data["digest"].startswith(parsed["source"]) and len(parsed["source"]) == 8
        assert int(parsed["|V| abs."]) == coverage["abstract_states"]
        assert int(parsed["concr."]) == coverage["concrete_states"]
        assert int(parsed["Z3 queries"]) == coverage["z3_queries"]
        assert float(parsed["margin"]) == data["min_margin"]
        assert float(parsed["s"]) == data["seconds"]
        assert int(parsed["cover"]) == len(data["verification_set"]["witness_inputs"])
        assert parsed["C17 set"] == "one array of 10"
        assert parsed["exact"] == ("yes" if data["verification_set"]["exact"] else "no")


def test_per_program_table_and_histogram_match_the_certificate(proof: Path, appendix: Path) -> None:
    data = json.loads(proof.read_text())
    (table,) = (appendix / "tables").glob("vset-*.tex")
    header, *rows = tex_rows(table)
    assert header == ["program", "|V|", "calls", "source"]
    assert {r[0]: int(r[1]) for r in rows} == data["verification_set"]["per_program"]
    assert {r[0]: r[2] for r in rows}["BUBBLE"] == "BSTEP"
    assert {r[3] for r in rows} == {data["digest"][:8]}
    agreement = next(o for o in data["obligations"] if o["name"] == "agreement")["evidence"]
    counts = agreement["margin_histogram"]["counts"]
    assert sum(n for _, n in counts) == data["verification_set"]["call_local_states"]
    for name in ("saturation", "margins", "accuracy", "callgraph-01-" + data["digest"][:8]):
        for suffix in ("pdf", "png"):
            assert (appendix / "figures" / f"{name}.{suffix}").stat().st_size > 1000


def test_generalization_table_equals_the_evaluation_results(results: Path, appendix: Path) -> None:
    measured = {r["size"]: r for r in json.loads(results.read_text())["results"]}
    header, *rows = tex_rows(appendix / "tables" / "generalization-01.tex")
    assert header == ["size", "samples", "eval", "C17"]
    for size, samples, ours, theirs in rows:
        assert int(samples) == measured[int(size)]["samples"]
        assert float(ours) == round(100 * measured[int(size)]["accuracy"], 1)
        assert theirs == "\u2013"  # the file does not say which of C17's experiments it is


def test_text_claims_termination_as_its_certificate_does(appendix: Path) -> None:
    body = (appendix / "appendix-body.tex").read_text()
    assert "\\emph{termination} (proved in 1 of 1)" in body
    assert "a certified model is correct on every input" in body
    assert "\\input{tables/summary}" in body
    assert "\\input{appendix-body}" in (appendix / "appendix.tex").read_text()
    assert "@inproceedings{cai2017" in (appendix / "references.bib").read_text()


def test_regeneration_is_byte_identical(
    invoke: Invoke, proof: Path, results: Path, appendix: Path
) -> None:
    before = {p.relative_to(appendix): p.read_bytes() for p in appendix.rglob("*") if p.is_file()}
    shutil.rmtree(appendix)
    code, _, err = invoke("appendix", proof.parent, "--results", results, "-o", appendix)
    assert code == 0, err
    after = {p.relative_to(appendix): p.read_bytes() for p in appendix.rglob("*") if p.is_file()}
    assert set(before) == set(after) and any(str(k).endswith(".png") for k in before)
    assert [k for k in before if before[k] != after[k]] == []


def test_an_edited_certificate_is_refused(invoke: Invoke, proof: Path, tmp_path: Path) -> None:
    edited = proof.parent / "edited.json"
    data = json.loads(proof.read_text())
    data["min_margin"] = 0.5
    edited.write_text(json.dumps(data))
    try:
        code, _, err = invoke("appendix", proof, edited, "-o", tmp_path / "out")
    finally:
        edited.unlink()
    assert code == 2 and len(err.strip().splitlines()) == 1 and "was edited" in err
    assert not (tmp_path / "out" / "appendix.tex").exists()


def test_a_certificate_whose_model_changed_is_refused(
    invoke: Invoke, proof: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(proof.parent.parent, folder, ignore=shutil.ignore_patterns("out"))
    with (folder / "model.pt").open("ab") as handle:
        handle.write(b"\0")
    code, _, err = invoke("appendix", folder / "proofs", "-o", tmp_path / "out")
    assert code == 2 and "changed since it was certified" in err
    assert len(err.strip().splitlines()) == 1


def test_malformed_results_are_refused(invoke: Invoke, proof: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"task": "bubblesort", "results": [{"size": 2, "samples": 3}]}))
    code, _, err = invoke("appendix", proof, "--results", bad, "-o", tmp_path / "out")
    assert code == 2 and "size, samples and accuracy" in err


@pytest.fixture(scope="module")
def weird(proof: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A certificate of a task whose name has every LaTeX special character, in a folder whose
    name has them too: the fixture's certificate, re-signed for a bubble-sort task of that
    name, and the fixture's model saved as a model of that task."""
    odd = type("OddTask", (BubbleSort,), {"name": "bubble_sort & co %#${}~^\\"})()
    patch = pytest.MonkeyPatch()
    patch.setitem(TASKS, odd.name, odd)
    folder = tmp_path_factory.mktemp("special") / WEIRD
    folder.mkdir()
    checkpoint = load_checkpoint(proof.parent.parent / "model.pt")
    save_checkpoint(folder / "m_1.pt", odd, "recursive", checkpoint.model, {"seed": 0})
    data = json.loads(proof.read_text())
    data.update(task=odd.name, model={"path": "m_1.pt", "sha256": file_sha256(folder / "m_1.pt")},
                verdict="inconclusive")
    data["digest"] = digest_of(data)
    write_certificate(folder / "c%1.json", data)
    yield folder
    patch.undo()


def test_special_characters_are_escaped(invoke: Invoke, weird: Path) -> None:
    out = weird / "out_{1}"
    code, _, err = invoke("appendix", weird / "c%1.json", "-o", out)
    assert code == 0, err
    summary = (out / "tables" / "summary.tex").read_text()
    assert (r"bubble{\_}sort {\&} co {\%}{\#}{\$}{\{}{\}}{\textasciitilde}{\textasciicircum}"
            r"{\textbackslash}") in summary
    sources = (out / "tables" / "sources.tex").read_text()
    assert r"we{\_}ird {\&} 50{\%} {\#}1 {\$}x {\{}y{\}} {\textasciitilde}z" in sources
    md = (out / "appendix.md").read_text()
    assert r"bubble\_sort & co %\#\${}\~^\\" in md
    assert "inconclusive" in summary


@needs_tex
def test_generated_latex_compiles_with_special_characters(invoke: Invoke, weird: Path) -> None:
    out = weird / "out_{1}"
    code, stdout, err = invoke("appendix", weird / "c%1.json", "-o", out, "--compile")
    assert code == 0, (stdout, err)
    pdf = (out / "appendix.pdf").read_bytes()
    assert pdf.startswith(b"%PDF")
    assert (out / "appendix.bbl").read_text().count("\\bibitem") == 4
    assert "undefined" not in (out / "appendix.log").read_text()  # citations and refs resolve
    compile_pdf(out)
    assert (out / "appendix.pdf").read_bytes() == pdf  # reproducible


@needs_tex
def test_a_latex_error_is_one_line_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "appendix.tex").write_text(
        "\\documentclass{article}\\begin{document}\\undefinedmacro\\end{document}\n")
    expected = r"^pdflatex failed on .*: ! Undefined control sequence\.$"
    with pytest.raises(LatexError, match=expected):
        compile_pdf(tmp_path)


def test_missing_pdflatex_is_one_line_with_exit_2(invoke: Invoke, proof: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("verifier.appendix.latex.shutil.which", lambda name: None)
    code, _, err = invoke("appendix", proof, "-o", tmp_path / "out", "--compile")
    assert code == 2 and err.startswith("npi-verify: error: --compile needs pdflatex")
    assert len(err.strip().splitlines()) == 1


def test_other_commands_do_not_load_matplotlib_or_jinja2() -> None:
    code = ("import sys, verifier.cli; "
            "sys.exit(bool({'matplotlib', 'jinja2', 'pylatexenc'} & set(sys.modules)))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


def test_paper_tables_results_file_puts_c17_beside_ours(invoke: Invoke, tmp_path: Path) -> None:
    """bench/paper_tables.py's JSON (here one small table of the shipped bubble-sort model)
    gives a generalization table with C17's Table 4 beside our numbers, traced to the model's
    shipped certificate."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import paper_tables
    finally:
        sys.path.remove(str(ROOT / "bench"))
    table = paper_tables.Table("Table 4 (small)", "two sizes", (2, 3),
                               (paper_tables.Column("recursive", "bubblesort.pt", "c17-table4"),),
                               {2: 3, 3: 3})
    lines, data = paper_tables.render_table(table)
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"format": "npi-verify-results/1", "command": "test",
                                   "seed": paper_tables.SEED, "tables": [data]}))
    code, _, err = invoke("appendix", ROOT / "proofs" / "bubblesort.json", "--results", results,
                          "-o", tmp_path / "out")
    assert code == 0, err
    header, *rows = tex_rows(tmp_path / "out" / "tables" / "generalization-01.tex")
    assert header == ["size", "samples", "recursive", "C17"]
    ours = {p["size"]: p for p in data["columns"][0]["results"]}
    assert [(int(r[0]), int(r[1]), float(r[2]), r[3]) for r in rows] == [
        (2, 3, round(100 * ours[2]["accuracy"], 1), "\u2013"), (3, 3, 100.0, "100")]
    assert lines[-2] == "| 3 | 3 | 100.0% / 100% |"
    shipped = json.loads((ROOT / "proofs" / "bubblesort.json").read_text())
    caption = (tmp_path / "out" / "tables" / "generalization-01.tex").read_text()
    assert f"certificate {shipped['digest'][:8]}" in caption


def test_a_rerun_removes_only_the_files_its_previous_run_wrote(
    invoke: Invoke, proof: Path, tmp_path: Path
) -> None:
    """Regenerating with fewer inputs leaves no stale table or figure; a user's file stays."""
    out = tmp_path / "out"
    shipped = ROOT / "proofs" / "bubblesort.json"
    assert invoke("appendix", proof, shipped, "-o", out)[0] == 0
    assert len(list((out / "tables").glob("vset-*.tex"))) == 2
    (out / "tables" / "mine.tex").write_text("kept")
    assert invoke("appendix", proof, "-o", out)[0] == 0
    assert len(list((out / "tables").glob("vset-*.tex"))) == 1
    assert (out / "tables" / "mine.tex").read_text() == "kept"
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    listed = set((out / ".appendix-files").read_text().splitlines())
    assert on_disk - listed == {"tables/mine.tex", ".appendix-files"}


def test_a_refuted_certificate_shows_its_counterexample(
    invoke: Invoke, proof: Path, tmp_path: Path
) -> None:
    """The counterexample section repeats the certificate's input, step and actions (here a
    certificate re-signed with a counterexample, as `certify` writes one for a refuted model)."""
    data = json.loads(proof.read_text())
    example = {"input": [3, 1, 2], "step": 7, "program": "BSTEP", "observations": [[0, 1, 1, 0]],
               "model_action": {"program": "RSHIFT", "args": [], "return": False},
               "reference_action": {"program": "COMPSWAP", "args": [], "return": False},
               "model_output": [3, 1, 2], "model_halted": True, "output_correct": False,
               "summary": "..."}
    data.update(verdict="refuted", counterexample=example)
    data["digest"] = digest_of(data)
    refuted = proof.parent / "refuted.json"
    write_certificate(refuted, data)
    try:
        code, _, err = invoke("appendix", refuted, "-o", tmp_path / "out")
    finally:
        refuted.unlink()
    assert code == 0, err
    md = (tmp_path / "out" / "appendix.md").read_text()
    section = md.split("## Counterexamples", 1)[1].split("##", 1)[0]
    assert (f"bubblesort (certificate `{data['digest'][:8]}`): input `[3, 1, 2]`, step 7 in "
            "`BSTEP`: model `RSHIFT()`, reference `COMPSWAP()`; model output `[3, 1, 2]` "
            "(wrong)") in section
    header, row = tex_rows(tmp_path / "out" / "tables" / "summary.tex")
    assert dict(zip(header, row))["verdict"] == "refuted"


@pytest.mark.parametrize("char, latex, markdown", [
    ("_", r"{\_}", r"\_"), ("&", r"{\&}", "&"), ("%", r"{\%}", "%"), ("#", r"{\#}", r"\#"),
    ("$", r"{\$}", r"\$"), ("{", r"{\{}", "{"), ("}", r"{\}}", "}"),
    ("~", r"{\textasciitilde}", r"\~"), ("^", r"{\textasciicircum}", "^"),
    ("\\", r"{\textbackslash}", "\\\\"), ("|", r"{\textbar{}}", r"\|"), ("*", "*", r"\*"),
])
def test_escape_filters(char: str, latex: str, markdown: str) -> None:
    from verifier.appendix.render import latex_escape, markdown_escape

    assert latex_escape(f"a{char}b") == f"a{latex}b"
    assert markdown_escape(f"a{char}b") == f"a{markdown}b"
    assert latex_escape(latex_escape("x_y")) == r"x{\_}y"  # escaped once, never twice


def test_an_uncertifiable_certificate_and_a_results_folder(
    invoke: Invoke, results: Path, tmp_path: Path
) -> None:
    """A non-recursive model's certificate (no V) gets dashes, not invented numbers; a folder
    given to --results is searched for *.json."""
    shutil.copy(ROOT / "models" / "bubblesort-non-recursive.pt", tmp_path / "nr.pt")
    (tmp_path / "proofs").mkdir()
    code, _, _ = invoke("certify", tmp_path / "nr.pt", "--task", "bubblesort",
                        "-o", tmp_path / "proofs" / "nr.json")
    assert code == 3
    (tmp_path / "results").mkdir()
    shutil.copy(results, tmp_path / "results" / "eval.json")
    code, _, err = invoke("appendix", tmp_path / "proofs", "--results", tmp_path / "results",
                          "-o", tmp_path / "out")
    assert code == 0, err
    header, row = tex_rows(tmp_path / "out" / "tables" / "summary.tex")
    cells = dict(zip(header, row))
    assert cells["verdict"] == "uncertifiable" and cells["task"] == "bubblesort (non-recursive)"
    assert {cells[k] for k in ("|V| abs.", "concr.", "exact", "cover", "margin")} == {"\u2013"}
    assert (tmp_path / "out" / "tables" / "generalization-01.tex").is_file()
    assert "no verification set" in (tmp_path / "out" / "appendix.md").read_text()


@pytest.fixture(scope="module")
def sweep_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real sweep of two cells: an untrained model (refuted) and a trained one (certified)
    for each of two update budgets, so the fraction certified is 0 at one and 1 at the other."""
    from verifier.executors import local_runner
    from verifier.grid import parse_config
    from verifier.sweep import run_sweep

    config = parse_config({"tasks": ["bubblesort"], "traces": [1, 2], "seeds": [0],
                           "inputs": {"max_size": 3},
                           "train": {"max_steps": [0, 300], "d_hidden": 32, "d_state": 32,
                                     "d_program": 16}})
    return run_sweep(config, tmp_path_factory.mktemp("sweep") / "out", local_runner(1)).path


def test_sweep_table_and_figure_count_the_cells(
        invoke: Invoke, proof: Path, sweep_table: Path, tmp_path: Path) -> None:
    code, out, err = invoke("appendix", proof, "--sweep", sweep_table, "-o", tmp_path / "out")
    assert code == 0, err
    assert "1 sweep table" in out
    cells = json.loads(sweep_table.read_text())["cells"]
    expected = sorted(
        (c["cell"]["hyper"]["max_steps"], c["cell"]["traces"], c["verdict"] == "certified")
        for c in cells)
    header, *rows = tex_rows(tmp_path / "out" / "tables" / "sweep-01.tex")
    assert header == ["task", "setting", "traces", "certified", "fraction", "errors"]
    assert sorted((int(r[1].split("=")[1]), int(r[2]), r[3] == "1/1") for r in rows) == expected
    assert {r[3] for r in rows} == {"0/1", "1/1"} and {r[5] for r in rows} == {"0"}
    for suffix in ("pdf", "png"):
        assert (tmp_path / "out" / "figures" / f"sweep.{suffix}").stat().st_size > 0
    markdown = (tmp_path / "out" / "appendix.md").read_text()
    assert "## Data efficiency" in markdown and "figures/sweep.png" in markdown
    assert f"--sweep {sweep_table}" in markdown  # the command that regenerates it


def test_a_malformed_sweep_table_is_refused(invoke: Invoke, proof: Path, sweep_table: Path,
                                            tmp_path: Path) -> None:
    data = json.loads(sweep_table.read_text())
    del data["cells"][0]["cell"]["traces"]
    bad = tmp_path / "sweep.json"
    bad.write_text(json.dumps(data))
    for path, message in [(bad, "malformed sweep table"), (proof, "is not an npi-verify-sweep/1"),
                          (tmp_path / "absent.json", "is not a file")]:
        code, _, err = invoke("appendix", proof, "--sweep", path, "-o", tmp_path / "out")
        assert code == 2 and err.count("\n") == 1 and message in err, err
