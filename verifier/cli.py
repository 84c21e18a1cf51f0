"""The `npi-verify` command line: the only code that prints or exits.

Exit codes: 0 success (or certified); 1 refuted / wrong answer; 2 usage error or bad input;
3 inconclusive or uncertifiable. Results go to stdout, progress and errors to stderr.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from verifier import __version__
from verifier.budget import BudgetExceeded, refuse_unless_fits, time_budget
from verifier.errors import InvalidInput, VerifierError
from verifier.tasks import TASKS, Task, get_task, load_task_module
from verifier.config import NPIConfig, TrainConfig
from verifier.tasks.base import FORMULATIONS, RECURSIVE
from verifier.tasks.registry import origin_of
from verifier.paths import check_output_file

if TYPE_CHECKING:  # torch-dependent modules are imported inside the commands that need them
    from verifier.checkpoint import Checkpoint

# Commands that need no model (tasks, trace, dataset, vset, --help, --version) never import
# torch: each command imports the torch-dependent modules it uses.

CONTEXT = {"help_option_names": ["-h", "--help"]}
UNWITNESSED_SHOWN = 5  # unwitnessed states `vset` prints (the ones a hidden predicate might remove)
EXIT_BROKEN_PIPE = 141  # what a shell reports for a process ended by SIGPIPE (128 + 13)


def _load_task_modules(ctx: click.Context, param: click.Parameter, paths: tuple[str, ...]) -> None:
    """Load each --task-module file (before any task name is looked up)."""
    for path in paths:
        try:
            load_task_module(path)
        except VerifierError as error:
            click.echo(f"npi-verify: error: {error}", err=True)
            ctx.exit(error.exit_code)


def task_module_option() -> click.Option:
    return click.Option(
        ["--task-module"], multiple=True, metavar="PATH", is_eager=True, expose_value=False,
        callback=_load_task_modules,
        help="Load a task defined in a single Python file (repeatable; see docs/new-task.md).",
    )


class _Group(click.Group):
    """Turns the library's errors into a one-line message and the error's exit code, and gives
    every command the --task-module option."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        cmd.params.append(task_module_option())
        super().add_command(cmd, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VerifierError as error:
            click.echo(f"npi-verify: error: {error}", err=True)
            ctx.exit(error.exit_code)
        except BrokenPipeError:
            _quiet_broken_pipe()
            ctx.exit(EXIT_BROKEN_PIPE)
        except OSError as error:  # an unwritable output path, a full disk: the user's to fix
            where = f": {error.filename}" if error.filename else ""
            click.echo(f"npi-verify: error: {error.strerror or error}{where}", err=True)
            ctx.exit(2)
        except MemoryError:
            click.echo("npi-verify: error: out of memory; give a smaller input or a --timeout",
                       err=True)
            ctx.exit(2)


def _quiet_broken_pipe() -> None:
    """The reader of our output went away (`| head`): stop quietly, as Unix tools do. Point
    stdout at /dev/null so that Python's final flush does not complain either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (a test runner)
        pass


@click.group(cls=_Group, context_settings=CONTEXT, params=[task_module_option()])
@click.version_option(__version__, "-V", "--version", prog_name="npi-verify")
def main() -> None:
    """Train, run and formally verify recursive Neural Programmer-Interpreters.

    Exit codes: 0 success or certified; 1 refuted, wrong answer, model did not halt,
    training budget exhausted, certificate no longer holds or a sweep cell ended in an
    error; 2 usage error or bad input;
    3 inconclusive or uncertifiable; 4 a --timeout budget ran out (nothing concluded);
    141 the reader of the output went away (a closed pipe)."""


def read_input_text(text: str) -> str:
    """The JSON text of `--input`: inline, @FILE, or @- for standard input."""
    if not text.startswith("@"):
        return text
    source = text[1:]
    if not source:
        raise InvalidInput("--input @ needs a file name, or @- for standard input")
    try:
        if source == "-":
            return sys.stdin.read()
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        where = "standard input" if source == "-" else f"file {source}"
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise InvalidInput(f"cannot read --input {where}: {reason}") from None


def parse_problem(task: Task, text: str) -> Any:
    """A task input from `--input`: inline JSON, @FILE, or @- for standard input."""
    text = read_input_text(text)
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


class _Names(click.Choice):
    """Lists the known names in --help; an unknown name is left to the library, whose error
    names the known ones in one line (click's own would print a usage block)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return value


class _TaskNames(_Names):
    """The registered task names, read when --help shows them (after --task-module loaded its
    tasks); a broken plug-in is reported by the command, not by --help."""

    def __init__(self) -> None:
        super().__init__([])

    @property  # type: ignore[override]
    def choices(self) -> list[str]:
        try:
            return list(TASKS)
        except VerifierError:
            return []

    @choices.setter
    def choices(self, value: Any) -> None:
        pass


TASK_CHOICE = _TaskNames()
task_option = click.option(
    "--task", "task_name", required=True, type=TASK_CHOICE, help="Task name (see `tasks`)."
)
formulation_option = click.option(
    "--formulation",
    default=RECURSIVE.value,
    show_default=True,
    type=_Names(list(FORMULATIONS)),
    help="Formulation of the reference program (partial: bubble sorts only).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
threads_option = click.option(
    "--threads", type=int, default=None,
    help="Torch threads for the model (default: $NPI_VERIFY_THREADS, else 1).",
)


_HARD_EXIT = False  # set by the console script: a budget that runs out ends the process


def entry() -> None:
    """The `npi-verify` console script (and `python -m verifier`)."""
    global _HARD_EXIT
    _HARD_EXIT = True
    main(prog_name="npi-verify")


def _end_now(error: BudgetExceeded) -> None:
    """Say why and end the process at once with exit 4, wherever the work was (in Z3's
    bindings an exception could be swallowed, and tearing torch down takes seconds)."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    os.write(2, f"npi-verify: error: {error}\n".encode())
    os._exit(error.exit_code)


def timeout_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--timeout SECONDS` for a command: the whole command runs under that wall-clock budget,
    and exits 4 with one line when it runs out (`what` says what was being done). Run from
    the console script, the command ends at once; in-process (tests, library callers) the
    work is interrupted with BudgetExceeded."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @click.option("--timeout", type=float, default=None, metavar="SECONDS",
                      help="Wall-clock budget; exit 4 with one line when it runs out.")
        @functools.wraps(command)
        def run(*args: Any, timeout: float | None, **kwargs: Any) -> Any:
            on_expiry = _end_now if _HARD_EXIT else None
            with time_budget(timeout, what, on_expiry):
                return command(*args, timeout=timeout, **kwargs)

        return run

    return decorate


class Status:
    """One status line or bar on stderr that replaces itself and is cleared when done;
    shown only on a terminal (tqdm decides), so logs and pipes get none of it."""

    def __init__(self, total: int | None = None, unit: str = "it") -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit=unit, leave=False, file=sys.stderr, disable=None,
                        dynamic_ncols=True, bar_format=None if total else "{desc}")

    def text(self, text: str) -> None:
        self.bar.set_description_str(text)

    def count(self, done: int, text: str | None = None) -> None:
        if text is not None:
            self.bar.set_postfix_str(text, refresh=False)
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


@contextmanager
def status(total: int | None = None, unit: str = "it") -> Iterator[Status]:
    line = Status(total, unit)
    try:
        yield line
    finally:
        line.close()


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
                    "input_example": json.loads(t.input_example),
                    "origin": origin_of(t),
                    "symbolic": t.symbolic,
                }
                for t in TASKS.values()
            ]
        )
        return
    for t in TASKS.values():
        click.echo(f"{t.name}: {t.summary}")
        if origin_of(t) != "built-in":
            click.echo(f"  defined by:   {origin_of(t)}")
        click.echo(f"  formulations: {', '.join(t.formulations)}")
        click.echo(f"  programs:     {' '.join(p.name for p in t.programs)} (entry {t.entry})")
        click.echo(f"  observation:  ({', '.join(t.observation_names)})")
        click.echo(f"  input:        {t.input_example}")


@main.command()
@task_option
@click.option("--input", "input_text", required=True, metavar="JSON",
              help="Problem as JSON, @FILE, or @- for standard input.")
@formulation_option
@json_option
@timeout_option("tracing the reference program")
def trace(
    task_name: str, input_text: str, formulation: str, as_json: bool, timeout: float | None
) -> None:
    """Run the reference program on one input and show its execution trace.

    The trace is streamed as it runs, in constant memory, whatever the input's size."""
    from verifier.runtime import run_reference
    from verifier.traces import trace_header, trace_line

    task = get_task(task_name)
    task.routines(formulation)
    value = parse_problem(task, input_text)
    refuse_unless_fits(task.min_reference_steps(value), timeout, "this input's trace")
    out = sys.stdout
    if as_json:  # the `trace --json` record, written field by field with its steps streamed
        head = {"task": task.name, "formulation": formulation, "input": task.input_to_json(value)}
        out.write(json.dumps(head)[:-1] + ', "steps": [')
        run = run_reference(task, formulation, value, record=False, on_step=_json_steps(out))
        out.write(f'], "output": {json.dumps(task.output(run.env))}}}\n')
        return
    out.write(trace_header(task) + "\n")
    run = run_reference(
        task, formulation, value, record=False,
        on_step=lambda step: out.write(trace_line(task, step) + "\n"),
    )
    out.write(
        f"{task.name} ({formulation}): input {json.dumps(task.input_to_json(value))} -> "
        f"output {json.dumps(task.output(run.env))} in {run.step_count} steps, "
        f"call depth {run.max_depth}\n"
    )


def _json_steps(out: Any) -> Callable[[Any], None]:
    """A step sink writing the elements of a streamed JSON `steps` array, comma-separated."""
    separator = ""

    def emit(step: Any) -> None:
        nonlocal separator
        out.write(separator + json.dumps(step.to_json()))
        separator = ", "

    return emit


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
    "--input", "inputs", multiple=True, metavar="JSON",
    help="Explicit input (JSON, @FILE or @-); repeatable.",
)
@click.option("-o", "--output", "path", type=click.Path(path_type=Path), required=True,
              help="Dataset file to write (.jsonl); its folder must exist.")
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
    from verifier.traces import EXPLICIT_INPUTS, Sampling, write_dataset

    task = get_task(task_name)
    task.routines(formulation)
    check_output_file(path)
    if inputs:
        if count is not None or max_size is not None or sizes is not None:
            raise VerifierError("give either --input or sampling options, not both")
        values = [parse_problem(task, text) for text in inputs]
        provenance = EXPLICIT_INPUTS
    elif sizes is not None:
        if count is not None or max_size is not None:
            raise VerifierError("give either --sizes or --count/--max-size, not both")
        listed = _int_list(sizes, "--sizes")
        sampling = Sampling(len(listed), 1, 1, seed, tuple(listed), cover)
        values, provenance = sampling.inputs(task), sampling.provenance()
    else:
        if count is None or max_size is None:
            raise VerifierError("dataset needs --count and --max-size (or --sizes, or --input)")
        sampling = Sampling(count, min_size, max_size, seed, cover=cover)
        values, provenance = sampling.inputs(task), sampling.provenance()
    written = write_dataset(task, formulation, values, path, provenance)
    click.echo(f"wrote {written} {task.name} ({formulation}) traces to {path}", err=True)


@main.command()
@task_option
@click.option("--formulation", default=None, type=_Names(list(FORMULATIONS)),
              help="Formulation (default: the dataset's, or recursive).")
@click.option("--data", "data_path", type=click.Path(path_type=Path), help="Trace dataset (.jsonl).")
@click.option("--count", type=int, help="Or sample this many training inputs ...")
@click.option("--max-size", type=int, help="... of sizes 1..max-size.")
@click.option("--cover", is_flag=True, help="With --count: coverage-guided inputs.")
@click.option("--seed", type=int, required=True, help="Seed for sampling, initialisation, batches.")
@click.option("--max-steps", type=int, default=TrainConfig.max_steps, show_default=True,
              help="Budget of optimizer updates.")
@click.option("--hidden", type=int, default=NPIConfig.d_hidden, show_default=True,
              help="LSTM units per layer.")
@click.option("--until-certified", is_flag=True,
              help="Counterexample-guided: train, certify, add the traces of failing inputs, "
                   "repeat until certified; also writes its training set and last certificate "
                   "(see --dataset, --certificate).")
@click.option("--start", type=int, default=None,
              help="With --until-certified: inputs to start from (the first of V's witness "
                   "cover, or see --start-size) [default: the task's, else 1].")
@click.option("--start-size", type=int, default=None,
              help="With --until-certified: start instead from the --start random inputs of "
                   "this size that reach the most states of V; 0: from the witness cover "
                   "[default: the task's, else 0].")
@click.option("--max-rounds", type=int, default=None,
              help="With --until-certified: rounds of training and certifying "
                   "[default: the task's, else 10].")
@click.option("--per-round", type=int, default=None,
              help="With --until-certified: inputs added at most after a refuted round "
                   "[default: the task's, else 5].")
@click.option("--dataset", "dataset_path", type=click.Path(path_type=Path), default=None,
              help="With --until-certified: write the final training set here "
                   "[default: MODEL.traces.jsonl].")
@click.option("--certificate", "certificate_path", type=click.Path(path_type=Path), default=None,
              help="With --until-certified: write the last certificate here "
                   "[default: MODEL.cert.json].")
@click.option("-o", "--output", "path", type=click.Path(path_type=Path), required=True,
              help="Checkpoint file to write; its folder must exist.")
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
    until_certified: bool,
    start: int | None,
    start_size: int | None,
    max_rounds: int | None,
    per_round: int | None,
    dataset_path: Path | None,
    certificate_path: Path | None,
    path: Path,
) -> None:
    """Train an NPI on reference traces until every training step is right.

    Exits 0 when the model is right on every step of its training set, 1 when the step
    budget ran out first (the model is written either way). The same command and seed give
    a byte-identical file.

    With --until-certified: exits 0 certified, 1 still refuted when the rounds ran out, 3
    inconclusive or uncertifiable (no input shows the failure); the model, its last
    certificate and its training set are written in every case. --max-steps is per round."""
    from verifier.checkpoint import save_checkpoint
    from verifier.traces import Sampling, sampled_training_set, training_set_from_file
    from verifier.training import provenance, steps_from_records
    from verifier.training import train as train_model

    task = get_task(task_name)
    check_output_file(path)
    if not 1 <= hidden <= 4096 or max_steps < 0:
        raise VerifierError("--hidden must be in 1..4096 and --max-steps non-negative")
    loop_options = (start, start_size, max_rounds, per_round)
    loop_files = (dataset_path, certificate_path)
    if until_certified:
        if data_path is not None or count is not None or max_size is not None or cover:
            raise VerifierError("--until-certified picks its own traces: give no --data, "
                                "--count, --max-size or --cover")
        _train_until_certified(task, formulation or RECURSIVE, seed, max_steps, hidden, path,
                               *loop_options, *loop_files)
        return
    if any(option is not None for option in (*loop_options, *loop_files)):
        raise VerifierError("--start, --start-size, --max-rounds, --per-round, --dataset and "
                            "--certificate need --until-certified")
    if data_path is not None:
        if count is not None or max_size is not None:
            raise VerifierError("give either --data or --count/--max-size, not both")
        data = training_set_from_file(data_path, task, formulation)
    else:
        if count is None or max_size is None:
            raise VerifierError("train needs --data, or --count and --max-size")
        sampling = Sampling(count, 1, max_size, seed, cover=cover)
        data = sampled_training_set(task, formulation or RECURSIVE, sampling)
    config = NPIConfig.for_task(task, d_hidden=hidden)
    settings = TrainConfig(seed=seed, max_steps=max_steps)
    line = Status()
    model, report = train_model(
        task,
        steps_from_records(data.records),
        config,
        settings,
        progress=lambda step, loss, acc: line.text(
            f"step {step}/{max_steps}  loss {loss:.4f}  training accuracy {acc:.2%}"
        ),
    )
    line.close()
    save_checkpoint(path, task, data.formulation, model, provenance(data, settings, report))
    verdict = "every training step right" if report.converged else (
        f"budget of {max_steps} steps ran out at training accuracy {report.accuracy:.2%}"
    )
    click.echo(
        f"{task.name} ({data.formulation}): {verdict}; {report.steps} updates on {report.calls} "
        f"unique calls ({report.call_steps} steps) in {report.seconds:.1f} s -> {path}"
    )
    if not report.converged:
        raise SystemExit(1)


def _train_until_certified(
    task: Task, formulation: str, seed: int, max_steps: int, hidden: int, path: Path,
    start: int | None, start_size: int | None, max_rounds: int | None,
    per_round: int | None, dataset: Path | None, certificate: Path | None,
) -> None:
    """`train --until-certified`: the loop of verifier.cegis, its rounds logged on stderr."""
    from verifier.cegis import LoopConfig, LoopFiles, train_until_certified, write_results

    loop = LoopConfig.from_options(start=start, start_size=start_size, max_rounds=max_rounds,
                                   per_round=per_round)
    files = LoopFiles.beside(path).moved(dataset, certificate)
    for output in (files.dataset, files.certificate):
        check_output_file(output)
    settings = TrainConfig(seed=seed, max_steps=max_steps)
    with status() as line:
        result = train_until_certified(
            task, formulation, NPIConfig.for_task(task, d_hidden=hidden), settings, loop,
            on_round=lambda done: line.bar.write(done.describe(), file=sys.stderr),
            progress=line.text,
        )
    write_results(result, files, settings)
    rounds = len(result.rounds)
    click.echo(
        f"{task.name} ({formulation}): {result.outcome.verdict.label} after {rounds} "
        f"round{'s' if rounds > 1 else ''} on {len(result.inputs)} traces "
        f"({result.total_steps} updates, {result.train_seconds:.1f} s of training) -> {path}; "
        f"training set {files.dataset}, certificate {files.certificate}"
    )
    if result.outcome.counterexample is not None:
        click.echo(f"  counterexample: {result.outcome.counterexample.describe(task)}")
    raise SystemExit(result.outcome.verdict.exit_code)


model_argument = click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))


@main.command()
@model_argument
@json_option
def info(model_path: Path, as_json: bool) -> None:
    """Show a checkpoint's task, formulation, config, training provenance and digests."""
    from verifier.checkpoint import describe_checkpoint, load_checkpoint

    data = describe_checkpoint(load_checkpoint(model_path))
    if as_json:
        _emit_json({"path": str(model_path), **data})
        return
    config = data["config"]
    sizes = " ".join(f"{k}={config[k]}" for k in ("d_state", "d_hidden", "d_program", "d_key",
                                                   "layers"))
    click.echo(f"{model_path}: {data['task']} ({data['formulation']}), {data['format']}")
    click.echo(f"  network          {sizes}; {data['parameters']} parameters")
    click.echo(f"  file sha256      {data['sha256']}")
    click.echo(f"  weights sha256   {data['weights_sha256']}")
    training = data["training"]
    click.echo("  training" + ("" if training else "         (no provenance recorded)"))
    for key in sorted(training):
        click.echo(f"    {key:<15} {json.dumps(training[key], sort_keys=True)}")


@main.command()
@model_argument
@click.option("--input", "input_text", required=True, metavar="JSON",
              help="Problem as JSON, @FILE, or @- for standard input.")
@click.option("--trace", "show_trace", is_flag=True,
              help="Include the execution trace (streamed as the model runs).")
@click.option("--expect-correct", is_flag=True,
              help="Exit 1 when the answer is wrong, not only when the model does not halt.")
@threads_option
@json_option
@timeout_option("running the model")
def run(
    model_path: Path,
    input_text: str,
    show_trace: bool,
    expect_correct: bool,
    threads: int | None,
    as_json: bool,
    timeout: float | None,
) -> None:
    """Run a trained model on one input (the task comes from the checkpoint).

    Exits 0 when the model halts, 1 when it does not halt within its limits (4x the
    reference program's steps and call depth) or, with --expect-correct, when its answer is
    wrong. `--json` prints {"output", "halted", "correct", "reason"} (reason: why it did not
    halt, else null) and, with --trace, "steps"."""
    from verifier.checkpoint import load_checkpoint
    from verifier.evaluation import prefilled_runs
    from verifier.npi import NPIPolicy
    from verifier.runtime import execute
    from verifier.threads import use_inference_threads
    from verifier.traces import trace_header, trace_line

    use_inference_threads(threads)
    checkpoint = load_checkpoint(model_path)
    task = checkpoint.task
    value = parse_problem(task, input_text)
    refuse_unless_fits(task.min_reference_steps(value), timeout, "this input's run")
    policy = NPIPolicy(checkpoint.model, task)
    (limits,), repeated = prefilled_runs(policy, task, checkpoint.formulation, [value])
    out = sys.stdout
    on_step: Callable[[int, Any], None] | None = None
    if show_trace and as_json:
        out.write('{"steps": [')
        emit = _json_steps(out)

        def on_step(_: int, step: Any) -> None:
            emit(step)

    elif show_trace:
        out.write(trace_header(task) + "\n")

        def on_step(_: int, step: Any) -> None:
            out.write(trace_line(task, step) + "\n")

    if repeated is not None and on_step is None:  # the model's run is the reference's
        (execution,) = repeated
    else:
        with status() as line:
            (execution,) = execute(
                task, policy, [value], limits, record=False,
                on_step=on_step,
                progress=lambda _, steps: line.text(f"step {steps:,}/{limits.max_steps:,}"),
            )
    output = task.output(execution.env) if execution.halted else None
    right = execution.halted and task.check(value, output)
    reason = None if execution.halted else execution.describe_stop(limits)
    if as_json:
        result = {"output": output, "halted": execution.halted, "correct": right, "reason": reason}
        if show_trace:
            out.write("], " + json.dumps(result, sort_keys=True)[1:] + "\n")
        else:
            _emit_json(result)
    elif execution.halted:
        verdict = "correct" if right else "WRONG"
        click.echo(f"output {json.dumps(output)} ({verdict}) in {execution.step_count} steps")
    else:
        click.echo(f"{reason}; no output")
    if not execution.halted or (expect_correct and not right):
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
@timeout_option("evaluating the model")
def evaluate(
    model_path: Path,
    sizes: str,
    samples: int,
    seed: int,
    batch_size: int | None,
    threads: int | None,
    as_json: bool,
    timeout: float | None,
) -> None:
    """Accuracy (whole answers right, by the task's independent check) per input size."""
    from verifier.checkpoint import load_checkpoint
    from verifier.evaluation import SizeResult, correct, evaluation_inputs, run_model
    from verifier.npi import NPIPolicy
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
        needed = sum(task.min_reference_steps(v) for v in values)
        refuse_unless_fits(needed, timeout, f"evaluating size {size}")
        with status(samples, "problem") as line:
            line.text(f"size {size}")
            runs = run_model(
                policy, task, checkpoint.formulation, values, batch_size or samples,
                progress=lambda done, steps: line.count(done, f"step {steps:,}"),
            )
        right = sum(correct(task, execution) for execution, _ in runs)
        results.append(SizeResult(size, samples, right / samples))
        if not as_json:
            click.echo(f"size {size:>5}: {right}/{samples} right ({right / samples:.1%})")
    if as_json:
        _emit_json({"task": task.name, "results": [r.to_json() for r in results]})


no_cache_option = click.option(
    "--no-cache", "no_cache", is_flag=True,
    help="Build the verification set anew: neither read nor write the V cache "
    "($NPI_VERIFY_CACHE_DIR, else $XDG_CACHE_HOME/npi-verify or ~/.cache/npi-verify).",
)


@main.command()
@task_option
@formulation_option
@json_option
@no_cache_option
@timeout_option("building the verification set")
def vset(
    task_name: str, formulation: str, as_json: bool, no_cache: bool, timeout: float | None
) -> None:
    """Compute the verification set V: every reachable call-local state.

    The text output counts V's states per program and says how V was built; `--json` lists
    every state with its reference action. Exits 0, or 3 when a call's sequences are
    unbounded (non-recursive formulations; `--json` then prints {"task", "formulation",
    "bounded": false, "program", "reason"})."""
    from verifier.errors import UnboundedCall
    from verifier.smt import semantics_for
    from verifier.smt.discover import origins
    from verifier.vcache import load_or_build

    task = get_task(task_name)
    task.routines(formulation)
    try:
        with status() as line:
            result, cache = load_or_build(task, formulation, line.text, use_cache=not no_cache)
    except UnboundedCall as error:
        if as_json:
            _emit_json({"task": task.name, "formulation": formulation, "bounded": False,
                        "program": error.program, "reason": str(error)})
        raise
    states = sorted(result.states.items(), key=lambda item: (item[0][0], item[0][1], item[0][2]))
    witnessed = result.concrete.actions.keys()
    if as_json:
        _emit_json({
            "task": task.name,
            "formulation": formulation,
            "states": [
                {"program": p, "args": list(a), "observations": [list(o) for o in obs],
                 "action": action.to_json(), "witnessed": (p, a, obs) in witnessed}
                for (p, a, obs), action in states
            ],
            "per_program": result.per_program(),
            "exact": result.exact,
            "coverage_proved": result.coverage_proved,
            "unwitnessed": len(result.unwitnessed),
            "concrete_states": len(result.concrete.actions),
            "predicates": origins(semantics_for(task), result.predicates),
            "witness_inputs": [task.input_to_json(v) for v in result.witness_cover()],
            **cache.evidence(),
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
    split = origins(semantics_for(task), result.predicates)
    click.echo(f"hidden predicates: {len(split['declared'])} declared, "
               f"{len(split['discovered'])} discovered")
    coverage = "proved for all sizes" if result.coverage_proved else "NOT proved (tested only)"
    click.echo(f"coverage {coverage}; exact: {result.exact}; unwitnessed: {len(result.unwitnessed)}")
    for program, args, observations in sorted(result.unwitnessed)[:UNWITNESSED_SHOWN]:
        steps = []
        for k, observation in enumerate(observations):  # observation, then the action taken
            action = result.states[(program, args, observations[: k + 1])]
            steps.append(f"[{task.format_observation(observation)}] {task.format_action(action)}")
        click.echo(f"  unwitnessed: in {task.program(program).format_call(args)}: "
                   + " ; ".join(steps))
    if len(result.unwitnessed) > UNWITNESSED_SHOWN:
        click.echo(f"  ... and {len(result.unwitnessed) - UNWITNESSED_SHOWN} more (--json lists "
                   "every state with a `witnessed` flag)")
    cover = result.witness_cover()
    click.echo(f"verification set: {len(cover)} witness inputs cover every witnessed state")
    click.echo(f"V cache: {cache.status} (key {cache.key_digest[:16]}){'; ' + cache.note if cache.note else ''}")


@main.command()
@model_argument
@click.option("--task", "task_name", type=TASK_CHOICE, default=None,
              help="Expected task: an error if the checkpoint is for another (default: its own).")
@click.option("-o", "--output", "cert_path", type=click.Path(path_type=Path),
              help="Write the certificate here (its folder must exist).")
@threads_option
@json_option
@no_cache_option
@timeout_option("certifying the model")
def certify(
    model_path: Path,
    task_name: str | None,
    cert_path: Path | None,
    threads: int | None,
    as_json: bool,
    no_cache: bool,
    timeout: float | None,
) -> None:
    """Prove the model right on every input of every size, or find a failing input.

    The task comes from the checkpoint. Exits 0 certified, 1 refuted, 3 inconclusive or
    uncertifiable, 2 bad input, 4 when --timeout ran out (nothing concluded)."""
    from verifier.certificate import build_certificate, write_certificate
    from verifier.checkpoint import load_checkpoint
    from verifier.threads import use_inference_threads
    from verifier.verify import certify as certify_model

    use_inference_threads(threads)
    if cert_path is not None:
        check_output_file(cert_path)
    checkpoint = load_checkpoint(model_path)
    task = checkpoint.task
    if task_name is not None and get_task(task_name) is not task:
        raise VerifierError(f"{model_path} is a {task.name} model, not {task_name}")
    with status() as line:
        outcome = certify_model(checkpoint, progress=line.text, use_cache=not no_cache)
    reference = model_path if cert_path is None else Path(os.path.relpath(model_path, cert_path.parent))
    certificate = build_certificate(checkpoint, reference, outcome, bundle=cert_path is not None)
    if cert_path is not None:
        write_certificate(cert_path, certificate)
    if as_json:
        _emit_json(certificate)
    else:
        _print_outcome(checkpoint, model_path, outcome, cert_path)
    raise SystemExit(outcome.verdict.exit_code)


def _print_outcome(
    checkpoint: Checkpoint, model_path: Path, outcome: Any, cert_path: Path | None
) -> None:
    task = checkpoint.task
    click.echo(f"{task.name} ({checkpoint.formulation}) {model_path}: {outcome.verdict.label}")
    click.echo(f"  {outcome.reason}")
    for obligation in outcome.obligations:
        click.echo(f"  {obligation.name:<22} {obligation.status}")
    if outcome.check is not None:
        coverage = next((o.evidence for o in outcome.obligations if o.name == "coverage"), {})
        cache = {"reused": "; V reused from the V cache", "built": "; V built and cached"}.get(
            coverage.get("vset_cache"), "")
        click.echo(f"  minimum decision margin {outcome.check.min_margin:.4f}; "
                   f"{outcome.seconds:.1f} s{cache}")
    if outcome.counterexample is not None:
        click.echo(f"  counterexample: {outcome.counterexample.describe(task)}")
    if cert_path is not None:
        click.echo(f"  certificate written to {cert_path}")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--junit", "junit_path", type=click.Path(path_type=Path),
              help="Also write JUnit XML (one test case per certificate).")
@click.option("--sarif", "sarif_path", type=click.Path(path_type=Path),
              help="Also write SARIF 2.1.0 (one result per failing certificate).")
@click.option("--summary", "summary_path", type=click.Path(path_type=Path),
              help="Append a Markdown table to this file (e.g. $GITHUB_STEP_SUMMARY).")
@threads_option
@json_option
@no_cache_option
@click.option("--timeout", type=float, default=None, metavar="SECONDS",
              help="Wall-clock budget; exit 4 when it runs out, with the reports of what was "
                   "finished.")
@click.option("--independent", is_flag=True,
              help="Re-check each certificate's proof bundle with the independent checker "
                   "(cvc5, numpy; no npi-verify code) instead of certifying again.")
def check(paths: tuple[Path, ...], junit_path: Path | None, sarif_path: Path | None,
          summary_path: Path | None, threads: int | None, as_json: bool,
          no_cache: bool, timeout: float | None, independent: bool) -> None:
    """CI proof gate: verify certificates' digests and model hashes, and re-run the check.

    A folder contributes its *.json files that declare the certificate format (the others are
    named on stderr and skipped); a file named explicitly is always checked. Ends with the
    line `N passed, M failed in T s`.

    Exits 0 when every certificate holds and certifies its model; 2 if any is edited or
    malformed; 1 if any no longer holds (model changed, verdict differs); 3 if a valid
    certificate's verdict is not `certified`. With --independent: exits 0 when every
    certificate re-checks, 1 when any is refused (each named with its one-line reason)."""
    from verifier import gate
    from verifier.threads import use_inference_threads

    use_inference_threads(threads)

    started = time.perf_counter()
    selection = gate.select_certificates(paths)
    if independent:
        _check_independently(selection, paths, started,
                             [o for o, v in [("--junit", junit_path), ("--sarif", sarif_path),
                                             ("--summary", summary_path), ("--json", as_json),
                                             ("--timeout", timeout)] if v])
    reports = {"--junit": junit_path, "--sarif": sarif_path, "--summary": summary_path}
    gate.check_outputs(reports, selection.certificates)
    for path, reason in selection.skipped:
        click.echo(f"npi-verify: skipped {path}: {reason}", err=True)
    gate.require_certificates(selection, paths)
    finished: list[Any] = []

    def show(result: Any) -> None:
        finished.append(result)
        if not as_json:
            click.echo(gate.result_line(result))

    def finish(report: Any) -> None:
        gate.write_reports(report, junit_path, sarif_path, summary_path)
        if as_json:
            _emit_json(gate.json_report(report))
        click.echo(gate.summary_line(report), err=as_json)

    def give_up(error: BudgetExceeded) -> None:
        """The budget ran out (console script): report what was finished, then end at once."""
        report = gate.interrupted(selection, finished, error, time.perf_counter() - started)
        for late in report.results[len(finished):]:
            show(late)
        finish(report)
        _end_now(error)

    with time_budget(timeout, "re-checking certificates", give_up if _HARD_EXIT else None):
        report = gate.run_gate(selection, on_result=show, use_cache=not no_cache)
    finish(report)
    raise SystemExit(report.exit_code)

def _check_independently(selection: Any, paths: tuple[Path, ...], started: float,
                         unsupported: list[str]) -> None:
    """`check --independent`: each certificate through `verifier.independent`, one line each."""
    from verifier import gate, independent

    if unsupported:
        raise VerifierError(f"--independent writes no reports and has no budget: drop {', '.join(unsupported)}")
    for path, reason in selection.skipped:
        click.echo(f"npi-verify: skipped {path}: {reason}", err=True)
    gate.require_certificates(selection, paths)
    failed = 0
    for path in selection.certificates:
        try:
            click.echo(f"{path}: {independent.recheck(path)}")
        except independent.Refused as error:
            failed += 1
            click.echo(f"{path}: refused: {error}")
    total = len(selection.certificates)
    click.echo(f"{total - failed} passed, {failed} failed in "
               f"{time.perf_counter() - started:.1f} s (independent re-check)")
    raise SystemExit(1 if failed else 0)


@main.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), required=True,
              help="Folder for cells/*.json and sweep.json; an interrupted sweep given the "
                   "same folder resumes there.")
@click.option("--jobs", type=int, default=None,
              help="Local worker processes, one thread each [default: 1].")
@click.option("--ray", "ray_address", metavar="ADDRESS", default=None,
              help="Run the cells as Ray tasks on the cluster at ADDRESS (`auto`: this "
                   "machine's; `local`: a new 2-CPU instance). Needs npi-verify[ray].")
def sweep(config_path: Path, out: Path, jobs: int | None, ray_address: str | None) -> None:
    """Train and certify a grid of tasks x training-set sizes x seeds x hyper-parameters.

    CONFIG is a TOML file (schema: verifier/sweep.py, README). Each cell's result is written
    to OUT/cells/ as it ends; OUT/sweep.json holds the table, and a Markdown summary goes to
    stdout. Exits 0 when every cell ended with a verdict (whichever), 1 when a cell ended in
    an error (recorded in its cell file), 2 for a bad CONFIG or option."""
    from verifier.executors import local_runner, ray_runner  # torch loads in the cells only
    from verifier.paths import check_output_folder
    from verifier.grid import read_config
    from verifier.sweep import render_summary, run_sweep

    config = read_config(config_path)
    check_output_folder(out)
    if ray_address is not None and jobs is not None:
        raise VerifierError("--jobs is for local processes; with --ray the cluster's CPUs "
                            "decide how many cells run at once")
    runner = ray_runner(ray_address) if ray_address is not None else local_runner(1 if jobs is None else jobs)
    total = len(config.cells())
    counted = 0

    def show(result: dict[str, Any], reused: bool) -> None:
        nonlocal counted
        counted += 1
        cell = result["cell"]
        what = result["verdict"] if result["status"] == "done" else f"error: {result['error']}"
        timing = "" if reused or result["status"] != "done" else (
            f" ({result['train_seconds']:.1f} s training, {result['certify_seconds']:.1f} s "
            "certifying)")
        click.echo(f"[{counted}/{total}] {cell['task']} traces={cell['traces']} "
                   f"seed={cell['seed']}: {what}{' (reused)' if reused else ''}{timing}",
                   err=True)

    done = run_sweep(config, out, runner, on_cell=show)
    click.echo(render_summary(done.table))
    errors = sum(r["status"] != "done" for r in done.table["cells"])
    click.echo(f"\n{total} cells ({done.ran} run, {done.reused} reused), {errors} errors "
               f"-> {done.path}")
    if errors:
        raise SystemExit(1)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--results", "results", multiple=True, type=click.Path(path_type=Path),
              help="`evaluate --json` output or docs/results.json (file or folder); repeatable.")
@click.option("--sweep", "sweeps", multiple=True, type=click.Path(path_type=Path),
              help="A sweep's OUT/sweep.json (`npi-verify sweep`): adds the table and figure "
                   "of the fraction certified by training traces; repeatable.")
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), required=True,
              help="Folder for appendix.tex, appendix.md, tables/, figures/.")
@click.option("--compile", "compile_pdf", is_flag=True,
              help="Also typeset appendix.pdf (pdflatex, bibtex, pdflatex twice).")
def appendix(paths: tuple[Path, ...], results: tuple[Path, ...], sweeps: tuple[Path, ...],
             out: Path, compile_pdf: bool) -> None:
    """Research appendix from certificates (CERT_OR_DIR...), each verified first.

    Exits 0, or 2 when a certificate fails verification, an input is malformed, or the
    LaTeX does not compile (the first error line is shown)."""
    from verifier.appendix.build import write_appendix  # matplotlib and jinja2 load here only
    from verifier.appendix.latex import compile_pdf as typeset
    from verifier.paths import check_output_folder

    check_output_folder(out)

    command = ["npi-verify", "appendix", *map(str, paths)]
    for path in results:
        command += ["--results", str(path)]
    for path in sweeps:
        command += ["--sweep", str(path)]
    command += ["-o", str(out)] + (["--compile"] if compile_pdf else [])
    written = write_appendix(list(paths), list(results), out, command, list(sweeps))
    certificates = "certificate" if written.certificates == 1 else "certificates"
    tables = "result table" if written.experiments == 1 else "result tables"
    swept = "" if not sweeps else (
        f", {written.sweeps} sweep table{'s' if written.sweeps != 1 else ''}")
    click.echo(f"wrote the appendix of {written.certificates} {certificates}"
               f" and {written.experiments} {tables}{swept} to {out}/appendix.tex and appendix.md")
    if compile_pdf:
        click.echo(f"compiled {typeset(out)}")


if __name__ == "__main__":  # pragma: no cover
    main()
