"""The `npi-verify` command line: the only code that prints or exits.

Exit codes: 0 success (or certified); 1 refuted / wrong answer; 2 usage error or bad input;
3 inconclusive or uncertifiable. Results go to stdout, progress and errors to stderr.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
import torch

from verifier import __version__
from verifier.errors import InvalidInput, VerifierError
from verifier.runtime import run_reference
from verifier.tasks import TASKS, Task, get_task
from verifier.tasks.base import RECURSIVE
from verifier.certificate import build_certificate, junit_xml, recheck, write_certificate
from verifier.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from verifier.evaluation import SizeResult, correct, evaluation_inputs, run_model
from verifier.npi import NPIConfig, NPIPolicy
from verifier.reach import build_vset
from verifier.traces import (
    Sampling,
    canonical_line,
    format_trace,
    read_dataset,
    trace_record,
    write_dataset,
)
from verifier.training import TrainConfig, steps_from_records
from verifier.training import train as train_model
from verifier.verify import certify as certify_model


class _Group(click.Group):
    """Turns the library's errors into a one-line message and the error's exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VerifierError as error:
            click.echo(f"npi-verify: error: {error}", err=True)
            ctx.exit(error.exit_code)
        except OSError as error:  # an unwritable output path, a full disk: the user's to fix
            where = f": {error.filename}" if error.filename else ""
            click.echo(f"npi-verify: error: {error.strerror or error}{where}", err=True)
            ctx.exit(2)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="npi-verify")
def main() -> None:
    """Train, run and formally verify recursive Neural Programmer-Interpreters."""


def parse_problem(task: Task, text: str) -> Any:
    """A task input from `--input`: inline JSON, or @FILE to read the JSON from a file."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise InvalidInput(f"cannot read --input file {text[1:]}: {error}") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, ValueError) as error:
        raise InvalidInput(f"--input is not valid JSON ({error}); e.g. {task.input_example}") from None
    return task.parse_input(data)


def _int_list(text: str, option: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise VerifierError(f"{option} must be comma-separated integers, got {text!r}") from None


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, sort_keys=True))


task_option = click.option("--task", "task_name", required=True, help="Task name (see `tasks`).")
formulation_option = click.option(
    "--formulation",
    default=RECURSIVE,
    show_default=True,
    help="recursive, non-recursive, or partial (bubble sorts only).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
threads_option = click.option(
    "--threads", type=int, default=None,
    help="Torch threads for the model (default: $NPI_VERIFY_THREADS, else 1).",
)


@main.command()
@json_option
def tasks(as_json: bool) -> None:
    """List the tasks with their formulations, programs and observations."""
    if as_json:
        _emit_json(
            [
                {
                    "name": t.name,
                    "summary": t.summary,
                    "formulations": list(t.formulations),
                    "entry": t.entry,
                    "programs": [p.name for p in t.programs],
                    "observation": list(t.observation_names),
                    "input_example": t.input_example,
                }
                for t in TASKS.values()
            ]
        )
        return
    for t in TASKS.values():
        click.echo(f"{t.name}: {t.summary}")
        click.echo(f"  formulations: {', '.join(t.formulations)}")
        click.echo(f"  programs:     {' '.join(p.name for p in t.programs)} (entry {t.entry})")
        click.echo(f"  observation:  ({', '.join(t.observation_names)})")
        click.echo(f"  input:        {t.input_example}")


@main.command()
@task_option
@click.option("--input", "input_text", required=True, help="Problem as JSON, or @FILE.")
@formulation_option
@json_option
def trace(task_name: str, input_text: str, formulation: str, as_json: bool) -> None:
    """Run the reference program on one input and show its execution trace."""
    task = get_task(task_name)
    task.routines(formulation)
    value = parse_problem(task, input_text)
    run = run_reference(task, formulation, value)
    record = trace_record(task, formulation, run)
    if as_json:
        _emit_json(record)
        return
    click.echo(format_trace(task, run.steps))
    click.echo(
        f"{task.name} ({formulation}): input {json.dumps(record['input'])} -> "
        f"output {json.dumps(record['output'])} in {run.step_count} steps, "
        f"call depth {run.max_depth}"
    )


@main.command()
@task_option
@formulation_option
@click.option("--count", type=int, help="Number of sampled inputs.")
@click.option("--max-size", type=int, help="Largest input size (digits, length, vertices).")
@click.option("--min-size", type=int, default=1, show_default=True, help="Smallest input size.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed.")
@click.option(
    "--cover",
    is_flag=True,
    help="Pick each input from 25 candidates to cover the most call-local states.",
)
@click.option("--sizes", help="Comma-separated sizes, one sampled input each (instead of --count).")
@click.option(
    "--input", "inputs", multiple=True, help="Explicit input (JSON or @FILE); repeatable."
)
@click.option("-o", "--output", "path", type=click.Path(path_type=Path), required=True)
def dataset(
    task_name: str,
    formulation: str,
    count: int | None,
    max_size: int | None,
    min_size: int,
    seed: int,
    cover: bool,
    sizes: str | None,
    inputs: tuple[str, ...],
    path: Path,
) -> None:
    """Write a training set of reference traces (JSON lines) from sampled or given inputs."""
    task = get_task(task_name)
    task.routines(formulation)
    if inputs:
        if count is not None or max_size is not None or sizes is not None:
            raise VerifierError("give either --input or sampling options, not both")
        values = [parse_problem(task, text) for text in inputs]
        provenance: dict[str, Any] = {"inputs": "explicit"}
    elif sizes is not None:
        if count is not None or max_size is not None:
            raise VerifierError("give either --sizes or --count/--max-size, not both")
        listed = _int_list(sizes, "--sizes")
        values = Sampling(len(listed), 1, 1, seed, tuple(listed), cover).inputs(task)
        provenance = {"seed": seed, "sizes": listed, "cover": cover}
    else:
        if count is None or max_size is None:
            raise VerifierError("dataset needs --count and --max-size (or --sizes, or --input)")
        values = Sampling(count, min_size, max_size, seed, cover=cover).inputs(task)
        provenance = {"seed": seed, "size_range": [min_size, max_size], "cover": cover}
    written = write_dataset(task, formulation, values, path, provenance)
    click.echo(f"wrote {written} {task.name} ({formulation}) traces to {path}", err=True)


def _progress_line(text: str) -> None:
    """A self-overwriting progress line, shown only on a terminal."""
    if sys.stderr.isatty():
        click.echo(f"\r{text}\x1b[K", err=True, nl=False)


def _end_progress() -> None:
    if sys.stderr.isatty():
        click.echo("", err=True)


@main.command()
@task_option
@click.option("--formulation", default=None, help="Formulation (default: the dataset's, or recursive).")
@click.option("--data", "data_path", type=click.Path(path_type=Path), help="Trace dataset (.jsonl).")
@click.option("--count", type=int, help="Or sample this many training inputs ...")
@click.option("--max-size", type=int, help="... of sizes 1..max-size.")
@click.option("--cover", is_flag=True, help="With --count: coverage-guided inputs.")
@click.option("--seed", type=int, required=True, help="Seed for sampling, initialisation, batches.")
@click.option("--max-steps", type=int, default=TrainConfig.max_steps, show_default=True,
              help="Budget of optimizer updates.")
@click.option("--hidden", type=int, default=NPIConfig.d_hidden, show_default=True,
              help="LSTM units per layer.")
@click.option("-o", "--output", "path", type=click.Path(path_type=Path), required=True)
def train(
    task_name: str,
    formulation: str | None,
    data_path: Path | None,
    count: int | None,
    max_size: int | None,
    cover: bool,
    seed: int,
    max_steps: int,
    hidden: int,
    path: Path,
) -> None:
    """Train an NPI on reference traces until every training step is right.

    Exits 0 when the model is right on every step of its training set, 1 when the step
    budget ran out first (the model is written either way)."""
    task = get_task(task_name)
    if data_path is not None:
        if count is not None or max_size is not None:
            raise VerifierError("give either --data or --count/--max-size, not both")
        data = read_dataset(data_path)
        if data.task is not task:
            raise VerifierError(f"{data_path} holds {data.task.name} traces, not {task.name}")
        if formulation not in (None, data.formulation):
            raise VerifierError(f"{data_path} holds {data.formulation} traces, not {formulation}")
        formulation, records = data.formulation, data.traces
        digest = file_sha256(data_path)
        source = str(data_path)
    else:
        if count is None or max_size is None:
            raise VerifierError("train needs --data, or --count and --max-size")
        formulation = formulation or RECURSIVE
        task.routines(formulation)
        values = Sampling(count, 1, max_size, seed, cover=cover).inputs(task)
        records = [trace_record(task, formulation, run_reference(task, formulation, v))
                   for v in values]
        digest = hashlib.sha256(
            "\n".join(canonical_line(r) for r in records).encode()
        ).hexdigest()
        source = f"sampled: count={count} max_size={max_size} cover={cover}"
    if not 1 <= hidden <= 4096 or max_steps < 0:
        raise VerifierError("--hidden must be in 1..4096 and --max-steps non-negative")
    config = NPIConfig.for_task(task, d_hidden=hidden)
    settings = TrainConfig(seed=seed, max_steps=max_steps)
    model, report = train_model(
        task,
        steps_from_records(records),
        config,
        settings,
        progress=lambda step, loss, acc: _progress_line(
            f"step {step}/{max_steps}  loss {loss:.4f}  training accuracy {acc:.2%}"
        ),
    )
    _end_progress()
    training = {
        "dataset": source,
        "dataset_sha256": digest,
        "seed": seed,
        "steps": report.steps,
        "accuracy": report.accuracy,
        "converged": report.converged,
        "seconds": round(report.seconds, 2),
        "calls": report.calls,
        "call_steps": report.call_steps,
        "train_config": asdict(settings),
        "npi_verify": __version__,
        "torch": str(torch.__version__),
    }
    save_checkpoint(path, task, formulation, model, training)
    verdict = "every training step right" if report.converged else (
        f"budget of {max_steps} steps ran out at training accuracy {report.accuracy:.2%}"
    )
    click.echo(
        f"{task.name} ({formulation}): {verdict}; {report.steps} updates on {report.calls} "
        f"unique calls ({report.call_steps} steps) in {report.seconds:.1f} s -> {path}"
    )
    if not report.converged:
        raise SystemExit(1)


model_argument = click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))


@main.command()
@model_argument
@click.option("--input", "input_text", required=True, help="Problem as JSON, or @FILE.")
@click.option("--trace", "show_trace", is_flag=True, help="Include the execution trace.")
@threads_option
@json_option
def run(
    model_path: Path, input_text: str, show_trace: bool, threads: int | None, as_json: bool
) -> None:
    """Run a trained model on one input (the task comes from the checkpoint).

    Exits 0 when the model halts, 1 when it does not halt within its limits."""
    from verifier.threads import use_inference_threads

    use_inference_threads(threads)
    checkpoint = load_checkpoint(model_path)
    task = checkpoint.task
    value = parse_problem(task, input_text)
    policy = NPIPolicy(checkpoint.model, task)
    ((execution, limits),) = run_model(
        policy, task, checkpoint.formulation, [value], batch_size=1, record=show_trace
    )
    output = task.output(execution.env) if execution.halted else None
    if as_json:
        result: dict[str, Any] = {"output": output, "halted": execution.halted}
        if show_trace:
            result["steps"] = [step.to_json() for step in execution.steps]
        _emit_json(result)
    else:
        if show_trace:
            click.echo(format_trace(task, execution.steps))
        if execution.halted:
            verdict = "correct" if task.check(value, output) else "WRONG"
            click.echo(f"output {json.dumps(output)} ({verdict}) in {execution.step_count} steps")
        else:
            click.echo(f"{execution.describe_stop(limits)}; no output")
    if not execution.halted:
        raise SystemExit(1)


@main.command()
@model_argument
@click.option("--sizes", required=True, help="Comma-separated input sizes, e.g. 2,3,8,20,90.")
@click.option("--samples", type=int, default=30, show_default=True, help="Problems per size.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed.")
@click.option("--batch-size", type=int, default=None,
              help="Inputs run in lockstep (default: all samples of a size at once).")
@threads_option
@json_option
def evaluate(
    model_path: Path, sizes: str, samples: int, seed: int, batch_size: int | None,
    threads: int | None, as_json: bool,
) -> None:
    """Accuracy (whole answers right, by the task's independent check) per input size."""
    from verifier.threads import use_inference_threads

    use_inference_threads(threads)
    checkpoint = load_checkpoint(model_path)
    task = checkpoint.task
    size_list = _int_list(sizes, "--sizes")
    if min(size_list) < 1 or samples < 1 or (batch_size is not None and batch_size < 1):
        raise VerifierError("--sizes, --samples and --batch-size must be positive")
    policy = NPIPolicy(checkpoint.model, task)
    results = []
    for size in size_list:
        values = evaluation_inputs(task, size, samples, seed)
        done = [0]

        def tick(n: int, size: int = size) -> None:
            done[0] += n
            _progress_line(f"size {size}: {done[0]}/{samples} problems")

        runs = run_model(policy, task, checkpoint.formulation, values,
                         batch_size or samples, progress=tick)
        right = sum(correct(task, execution) for execution, _ in runs)
        results.append(SizeResult(size, samples, right / samples))
        _end_progress()
        if not as_json:
            click.echo(f"size {size:>5}: {right}/{samples} right ({right / samples:.1%})")
    if as_json:
        _emit_json({"task": task.name, "results": [r.to_json() for r in results]})


@main.command()
@task_option
@formulation_option
@json_option
def vset(task_name: str, formulation: str, as_json: bool) -> None:
    """Compute the verification set V: every reachable call-local state, with its action.

    Exits 0, or 3 when a call's sequences are unbounded (non-recursive formulations)."""
    task = get_task(task_name)
    task.routines(formulation)
    result = build_vset(task, formulation, progress=_progress_line)
    _end_progress()
    states = sorted(result.states.items(), key=lambda item: (item[0][0], item[0][1], item[0][2]))
    if as_json:
        _emit_json({
            "task": task.name,
            "formulation": formulation,
            "states": [
                {"program": p, "args": list(a), "observations": [list(o) for o in obs],
                 "action": action.to_json()}
                for (p, a, obs), action in states
            ],
            "per_program": result.per_program(),
            "exact": result.exact,
            "coverage_proved": result.coverage_proved,
            "unwitnessed": len(result.unwitnessed),
            "concrete_states": len(result.concrete.actions),
            "witness_inputs": [task.input_to_json(v) for v in result.witness_cover()],
        })
        return
    click.echo(f"{task.name} ({formulation}): |V| = {len(result.states)} call-local states")
    for program, count in result.per_program().items():
        click.echo(f"  {program:<14} {count}")
    if result.abstract is not None:
        stats = result.abstract.stats
        click.echo(f"abstract fixed point: {len(result.abstract.actions)} states, {stats.queries} "
                   f"Z3 queries ({stats.unknown} unknown) in {stats.seconds:.2f} s")
    click.echo(f"concrete runs: {len(result.concrete.actions)} states from "
               f"{result.concrete.inputs_run} inputs, by size {result.concrete.counts_by_size}")
    coverage = "proved for all sizes" if result.coverage_proved else "NOT proved (tested only)"
    click.echo(f"coverage {coverage}; exact: {result.exact}; unwitnessed: {len(result.unwitnessed)}")
    cover = result.witness_cover()
    click.echo(f"verification set: {len(cover)} witness inputs cover every witnessed state")


@main.command()
@model_argument
@task_option
@click.option("-o", "--output", "cert_path", type=click.Path(path_type=Path),
              help="Write the certificate here.")
@threads_option
@json_option
def certify(
    model_path: Path, task_name: str, cert_path: Path | None, threads: int | None, as_json: bool
) -> None:
    """Prove the model right on every input of every size, or find a failing input.

    Exits 0 certified, 1 refuted, 3 inconclusive or uncertifiable, 2 bad input."""
    from verifier.threads import use_inference_threads

    use_inference_threads(threads)
    task = get_task(task_name)
    checkpoint = load_checkpoint(model_path)
    if checkpoint.task is not task:
        raise VerifierError(f"{model_path} is a {checkpoint.task.name} model, not {task.name}")
    outcome = certify_model(checkpoint, progress=_progress_line)
    _end_progress()
    reference = model_path if cert_path is None else Path(os.path.relpath(model_path, cert_path.parent))
    certificate = build_certificate(checkpoint, reference, outcome)
    if cert_path is not None:
        write_certificate(cert_path, certificate)
    if as_json:
        _emit_json(certificate)
    else:
        click.echo(f"{task.name} ({checkpoint.formulation}) {model_path}: {outcome.verdict.label}")
        click.echo(f"  {outcome.reason}")
        for obligation in outcome.obligations:
            click.echo(f"  {obligation.name:<22} {obligation.status}")
        if outcome.check is not None:
            click.echo(f"  minimum decision margin {outcome.check.min_margin:.4f}; "
                       f"{outcome.seconds:.1f} s")
        if outcome.counterexample is not None:
            click.echo(f"  counterexample: {outcome.counterexample.describe(task)}")
        if cert_path is not None:
            click.echo(f"  certificate written to {cert_path}")
    raise SystemExit(outcome.verdict.exit_code)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--junit", "junit_path", type=click.Path(path_type=Path),
              help="Also write JUnit XML (one test case per certificate).")
@threads_option
def check(paths: tuple[Path, ...], junit_path: Path | None, threads: int | None) -> None:
    """CI proof gate: verify certificates' digests and model hashes, and re-run the check.

    Exits 0 when every certificate holds and certifies its model; 2 if any is edited or
    malformed; 1 if any no longer holds (model changed, verdict differs); 3 if a valid
    certificate's verdict is not `certified`."""
    from verifier.threads import use_inference_threads

    use_inference_threads(threads)
    files = _certificate_files(paths)
    results = [recheck(path) for path in files]
    for result in results:
        mark = "ok  " if result.code == 0 else "FAIL"
        click.echo(f"{mark} {result.path}: {result.message}")
    if junit_path is not None:
        junit_path.parent.mkdir(parents=True, exist_ok=True)
        junit_path.write_text(junit_xml(results), encoding="utf-8")
    codes = {r.code for r in results}
    for code in (2, 1, 3):
        if code in codes:
            raise SystemExit(code)


def _certificate_files(paths: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.glob("*.json")))
        elif path.is_file():
            files.append(path)
        else:
            raise VerifierError(f"{path} does not exist")
    if not files:
        raise VerifierError(f"no certificates (*.json) under {', '.join(map(str, paths))}")
    return files


if __name__ == "__main__":  # pragma: no cover
    main()
