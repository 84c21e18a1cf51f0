"""The `npi-verify` command line: the only code that prints or exits.

Exit codes: 0 success (or certified); 1 refuted / wrong answer; 2 usage error or bad input;
3 inconclusive or uncertifiable. Results go to stdout, progress and errors to stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from verifier import __version__
from verifier.errors import InvalidInput, VerifierError
from verifier.runtime import run_reference
from verifier.tasks import TASKS, Task, get_task
from verifier.tasks.base import RECURSIVE
from verifier.traces import Sampling, format_trace, trace_record, write_dataset


class _Group(click.Group):
    """Turns the library's errors into a one-line message and the error's exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VerifierError as error:
            click.echo(f"npi-verify: error: {error}", err=True)
            ctx.exit(error.exit_code)


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


if __name__ == "__main__":  # pragma: no cover
    main()
