"""Speed targets of issue 10, each measured side by side in one run and printed as a ratio.

    python bench/speed.py [--out docs/speed.md] [--repeats 3]

1. `run` of a shipped recursive model vs its reference program through the same interpreter,
   on the same input, in-process, nothing printed: 5,000-digit addition, bubble sort of 300
   integers, quicksort of 1,000 integers (target: at most 3x). `run` is timed as the command
   does it after loading the checkpoint: a fresh (cold-cache) policy, the reference run that
   sets the model's limits (and collects the prefixes it prefills), the prefill, then the
   model run; and, for comparison, the same without the prefill. All sides are timed
   `--repeats` times, interleaved; the ratio is of the fastest CPU time (this process's) of
   each, since the machine is shared: the wall times are shown beside it.
2. Memoized vs plain step-by-step execution (one torch step per interpreter step) of
   models/bubblesort.pt on 100 integers: model execution alone, with the step limits computed
   beforehand; the plain run is measured whole, once (target: at least 100x).
3. Threads: the same work at 1 thread (the default) and 2 threads (torch's and numpy's BLAS
   pools, as `--threads` sets them; the numpy workload also with numpy's BLAS at its own
   default), with the machine as it is and with a `python -c 'while True: pass'` process
   started (and killed) by this bench to keep a core busy (target: the default loses at most
   1.5x to the hog). 2 threads with the hog is run once (it is the slow case); the others are
   the fastest of the repeats. The CPU time of the default run is shown beside its wall time:
   equal CPU times with and without the hog mean the run did no extra work, it got less of
   the cores.
4. Non-recursive models (prefixes rarely repeat) memoized vs plain: not slower.
5. For information: the addition row's model again on a second 5,000-digit input with the
   cache left warm by the first, as `evaluate` runs its inputs (CPU time).
6. Cold `certify` of every model with a shipped proof (`npi-verify certify MODEL --no-cache -o
   FILE`, a process of its own, once each; target: under 5 s on an idle machine), and the
   proof gate `npi-verify check proofs/` with the V cache warm (a first pass fills a fresh
   cache directory, the second is timed; target: under 15 s). These are absolute targets:
   the ratio is the time over the target. `--no-certify` leaves them out.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from verifier import __version__  # noqa: E402
from verifier.checkpoint import Checkpoint, load_checkpoint  # noqa: E402
from verifier.evaluation import correct, evaluation_inputs, model_limits, run_model  # noqa: E402
from verifier.npi import NPIPolicy  # noqa: E402
from verifier.runtime import execute, run_reference  # noqa: E402
from verifier.threads import DEFAULT_THREADS, use_inference_threads  # noqa: E402

SEED = 0


@dataclass
class Row:
    what: str
    measured: str
    ratio: float
    target: str
    met: bool | None  # None: no target, shown for information


def model(name: str) -> Checkpoint:
    return load_checkpoint(ROOT / "models" / name)


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def timed_both(work: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall and CPU (this process) seconds of `work`, and its result."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def run_vs_reference(name: str, size: int, what: str, repeats: int) -> Row:
    checkpoint = model(name)
    task, formulation = checkpoint.task, checkpoint.formulation
    (value,) = evaluation_inputs(task, size, 1, SEED)

    def run(prefill: bool = True) -> Any:  # what `npi-verify run` does after loading
        policy = NPIPolicy(checkpoint.model, task)
        ((execution, _),) = run_model(policy, task, formulation, [value], batch_size=1,
                                      prefill=prefill)
        return execution, policy

    references, runs, lazy = [], [], []  # (wall, CPU) of each repeat
    for _ in range(repeats):
        wall, cpu, reference = timed_both(
            lambda: run_reference(task, formulation, value, record=False))
        references.append((wall, cpu))
        wall, cpu, (execution, policy) = timed_both(run)
        runs.append((wall, cpu))
        wall, cpu, (unfilled, _) = timed_both(lambda: run(prefill=False))
        lazy.append((wall, cpu))
    assert execution.halted and correct(task, execution), f"{name} is wrong on {what}"
    assert execution.step_count == reference.step_count == unfilled.step_count
    cache = policy.cache
    ratio = min(c for _, c in runs) / min(c for _, c in references)
    measured = (f"CPU: run {min(c for _, c in runs):.2f} s vs reference "
                f"{min(c for _, c in references):.2f} s (run without prefill "
                f"{min(c for _, c in lazy):.2f} s, "
                f"{min(c for _, c in lazy) / min(c for _, c in references):.2f}x); wall: run "
                f"{min(w for w, _ in runs):.2f} s vs reference {min(w for w, _ in references):.2f} s "
                f"({reference.step_count:,} steps; {cache.prefilled:,} model steps prefilled, "
                f"{cache.misses:,} computed in the run, {cache.hits:,} looked up; "
                f"{'the model repeats the reference run, not run again' if cache.replayed else 'the model run'})")
    print(f"{what}: {measured}: {ratio:.2f}x", flush=True)
    return Row(f"`run` {name}, {what}, vs reference (CPU time)", measured, ratio, "<= 3x",
               ratio <= 3.0)


def warm_addition(repeats: int) -> Row:
    """A second 5,000-digit input with the prefix tree the first one left (as in `evaluate`)."""
    checkpoint = model("addition.pt")
    task, formulation = checkpoint.task, checkpoint.formulation
    first, second = evaluation_inputs(task, 5000, 2, SEED + 1)
    references, runs = [], []
    for _ in range(repeats):
        policy = NPIPolicy(checkpoint.model, task)
        run_model(policy, task, formulation, [first], batch_size=1)
        before = policy.cache.misses, policy.cache.prefilled
        _, seconds, reference = timed_both(
            lambda: run_reference(task, formulation, second, record=False))
        references.append(seconds)
        _, seconds, ((execution, _),) = timed_both(
            lambda policy=policy: run_model(policy, task, formulation, [second], batch_size=1))
        runs.append(seconds)
    assert execution.halted and correct(task, execution)
    ratio = min(runs) / min(references)
    measured = (f"CPU: run {min(runs):.2f} s vs reference {min(references):.2f} s; "
                f"{policy.cache.prefilled - before[1]:,} model steps prefilled, "
                f"{policy.cache.misses - before[0]:,} computed in the run")
    print(f"5,000-digit addition, warm cache: {measured}: {ratio:.2f}x", flush=True)
    return Row("`run` addition.pt, a second 5,000-digit input, cache warm from a first one "
               "(CPU time)", measured, ratio, "none", None)


def memoized_vs_plain(repeats: int) -> Row:
    """Model execution alone (the limits, from one reference run, are computed beforehand)."""
    checkpoint = model("bubblesort.pt")
    task, formulation = checkpoint.task, checkpoint.formulation
    (value,) = evaluation_inputs(task, 100, 1, SEED)
    limits = model_limits(task, formulation, value)
    outcomes = {}
    for memoize in (True, False):
        best = None
        for _ in range(repeats if memoize else 1):  # the plain run is measured whole, once
            policy = NPIPolicy(checkpoint.model, task, memoize=memoize)
            seconds, (execution,) = timed(
                lambda policy=policy: execute(task, policy, [value], [limits], record=False))
            if best is None or seconds < best[0]:
                best = (seconds, execution)
        outcomes[memoize] = best
        print(f"bubble sort of 100, {'memoized' if memoize else 'plain'}: {best[0]:.2f} s",
              flush=True)
    (fast, mine), (slow, theirs) = outcomes[True], outcomes[False]
    assert mine.halted and mine.step_count == theirs.step_count
    assert task.output(mine.env) == task.output(theirs.env)
    ratio = slow / fast
    measured = (f"plain {slow:.1f} s (one whole run) vs memoized {fast:.2f} s (cold cache), "
                f"{mine.step_count:,} steps each, same output")
    return Row("bubblesort.pt on 100 integers, plain vs memoized model execution", measured,
               ratio, ">= 100x", ratio >= 100)


def non_recursive_vs_plain(name: str, size: int, what: str, repeats: int) -> Row:
    """A non-recursive model, whose long calls rarely repeat a prefix: the cache must not cost."""
    checkpoint = model(name)
    task, formulation = checkpoint.task, checkpoint.formulation
    (value,) = evaluation_inputs(task, size, 1, SEED)
    limits = model_limits(task, formulation, value)
    best: dict[bool, float] = {}
    for memoize in (True, False):
        for _ in range(repeats):
            policy = NPIPolicy(checkpoint.model, task, memoize=memoize)
            seconds, (execution,) = timed(
                lambda policy=policy: execute(task, policy, [value], [limits], record=False))
            best[memoize] = min(best.get(memoize, seconds), seconds)
            if memoize:
                cache = policy.cache
            else:
                plain_steps = execution.step_count
    ratio = best[False] / best[True]
    measured = (f"plain {best[False]:.2f} s vs memoized {best[True]:.2f} s, {plain_steps:,} steps; "
                f"{cache.hits:,} looked up, tree of {cache.size:,} nodes")
    print(f"{name}, {what}: {measured}: {ratio:.2f}x", flush=True)
    return Row(f"non-recursive {name}, {what}, plain vs memoized model execution", measured,
               ratio, ">= 1x (not slower)", ratio >= 1.0)


@contextmanager
def hog() -> Iterator[None]:
    """Another process keeping a core busy for the duration."""
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it get going
        yield
    finally:
        process.kill()
        process.wait()


def timed_cpu(work: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all its threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def thread_rows(repeats: int) -> list[Row]:
    """Time two workloads at 1 and 2 threads (torch's and numpy's BLAS pools both, as
    `use_inference_threads` sets them), without and with a hog; for the numpy workload also at
    1 torch thread with numpy's BLAS left at its own default (one thread per core), the
    default before the BLAS pool was bounded."""
    addition, bubblesort = model("addition.pt"), model("bubblesort.pt")
    (sum_1000,) = evaluation_inputs(addition.task, 1000, 1, SEED)
    (array_8,) = evaluation_inputs(bubblesort.task, 8, 1, SEED)
    blas_default = os.cpu_count() or 1
    workloads = {
        "`run` addition.pt, two 1,000-digit operands (memoized: numpy, no torch step)": (
            lambda: run_model(NPIPolicy(addition.model, addition.task), addition.task,
                              addition.formulation, [sum_1000], batch_size=1),
            [DEFAULT_THREADS, 2, "blas"],
        ),
        "plain torch steps, bubblesort.pt on 8 integers (one torch call per step)": (
            lambda: run_model(NPIPolicy(bubblesort.model, bubblesort.task, memoize=False),
                              bubblesort.task, bubblesort.formulation, [array_8], batch_size=1),
            [DEFAULT_THREADS, 2],
        ),
    }
    names = {DEFAULT_THREADS: f"{DEFAULT_THREADS} thread (default)", 2: "2 threads",
             "blas": f"1 torch thread, BLAS at {blas_default}"}
    rows = []
    for what, (work, settings) in workloads.items():
        seconds: dict[tuple[Any, bool], tuple[float, float]] = {}
        for busy in (False, True):
            with hog() if busy else contextlib.nullcontext():
                for setting in settings:
                    if setting == "blas":
                        use_inference_threads(1)
                        threadpool_limits(blas_default, user_api="blas")
                    else:
                        use_inference_threads(setting)
                    times = 1 if (setting, busy) == (2, True) else repeats  # it collapses: once
                    seconds[setting, busy] = min(timed_cpu(work) for _ in range(times))
                    wall, cpu = seconds[setting, busy]
                    print(f"{what}: {names[setting]}{' + hog' if busy else ''}: {wall:.2f} s "
                          f"(CPU {cpu:.2f} s), load {os.getloadavg()[0]:.1f}", flush=True)
        use_inference_threads(DEFAULT_THREADS)
        default, loaded = seconds[DEFAULT_THREADS, False], seconds[DEFAULT_THREADS, True]
        default_loss = loaded[0] / default[0]
        shown = "; ".join(
            f"{names[setting]}: {seconds[setting, False][0]:.2f} s, with hog "
            f"{seconds[setting, True][0]:.2f} s{' (one run)' if setting == 2 else ''}"
            for setting in settings)
        measured = (f"{shown}; CPU time of the default {default[1]:.2f} s, with hog "
                    f"{loaded[1]:.2f} s (2 threads with hog / default with hog: "
                    f"{seconds[2, True][0] / loaded[0]:.1f}x)")
        rows.append(Row(f"{what}: default with hog vs default", measured, default_loss,
                        "<= 1.5x", default_loss <= 1.5))
    return rows


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"load average at start {load}; python {platform.python_version()}, "
            f"torch {torch.__version__}, npi-verify {__version__}")


def _mark(met: bool | None, yes: str, no: str, neither: str) -> str:
    return neither if met is None else yes if met else no


def markdown(rows: list[Row], where: str, seconds: float) -> str:
    lines = [
        "# Speed (issue 10)",
        "",
        "Generated by `python bench/speed.py --out docs/speed.md`; every ratio is of two timings "
        "taken side by side in the same run. Times are the fastest of the repeats unless a row "
        "says otherwise.",
        "",
        f"Machine: {where}. Whole bench: {seconds:.0f} s. The machine is shared: a load "
        "average above 1 means other work ran on it during the bench.",
        "",
        "| what | measured | ratio | target | met |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r.what} | {r.measured} | {r.ratio:.2f}x | {r.target} | "
              f"{_mark(r.met, 'yes', 'NO', '–')} |" for r in rows]
    lines += [
        "",
        "Reading the rows:",
        "",
        "- A `run` costs the reference run that sets its limits, the interpreter's own work, "
        "and a model step (numpy, `verifier/inference.py`) per call-local prefix seen for the "
        "first time; repeats are lookups. The sorting models meet only a few dozen distinct "
        "prefixes. Addition's observations carry digits, so each new long sum brings thousands "
        "of new prefixes, even with the cache warm from another sum. The reference run collects "
        "the prefixes it visits, and the cache is *prefilled* with the model's steps for them, "
        "one batched step per depth (*model steps prefilled*; `NPIPolicy.prefill`), before the "
        "model runs: where the model agrees with the reference its run looks them up; the "
        "prefixes where it does not are computed in the run, one sequential step each "
        "(*computed in the run*). *Run without prefill* is the same run computing every new "
        "prefix sequentially. The reference run also records the action it took after each "
        "prefix; when the prefilled model decides every one of them the same way "
        "(`PrefixCache.repeats`), the model's run is the reference run, step for step, and is "
        "not run again (*the model repeats the reference run*): such a `run` costs the "
        "reference run with its collecting and the prefill, which is why it can cost less than "
        "the reference run through the generic interpreter. Where a replay is out of reach "
        "(a prefix too deep to keep, or the set full), a reference run stops collecting after "
        "a window of `PREFIX_WINDOW` steps with few new prefixes.",
        "- The hog rows: a single-threaded run loses only its share of the cores, which on a "
        "machine already busy with other work (see the load average) is more than on an idle "
        "one: its CPU time stays the same with the hog, its wall time is what the scheduler "
        "gives it. The 2-thread columns show the collapse that the 1-thread default avoids; "
        "numpy's BLAS left at one thread per core costs CPU time for nothing on the numpy "
        "workload.",
        "- The cold `certify` and proof-gate rows have absolute targets (5 s, 15 s): their "
        "ratio is the time over the target, so below 1.00x meets it.",
    ]
    return "\n".join(lines) + "\n"


PROVED = ("addition", "bubblesort", "bubblesort-int", "bubblesort-values", "hanoi", "quicksort",
          "toposort")  # the models with a certificate in proofs/
CERTIFY_TARGET = 5.0  # seconds, cold, per model
GATE_TARGET = 15.0  # seconds, the whole warm proof gate


def _timed_command(arguments: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall and CPU seconds of `python -m verifier ARGUMENTS` in a process of its own."""
    before = os.times()
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "verifier", *arguments], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - started
    after = os.times()
    return wall, (after.children_user - before.children_user
                  + after.children_system - before.children_system)


def certify_rows(folder: Path) -> list[Row]:
    """Cold `certify` of each proved model, and the warm proof gate (see the docstring)."""
    rows = []
    for name in PROVED:
        wall, cpu = _timed_command(["certify", f"models/{name}.pt", "--no-cache",
                                    "-o", str(folder / f"{name}.json")])
        ratio = wall / CERTIFY_TARGET
        print(f"cold certify {name}: {wall:.1f} s (CPU {cpu:.1f} s)", flush=True)
        rows.append(Row(f"cold `certify` models/{name}.pt (`--no-cache`, its own process)",
                        f"{wall:.1f} s (CPU {cpu:.1f} s, cross-check worker included)",
                        ratio, "< 5 s", wall < CERTIFY_TARGET))
    cache = {"NPI_VERIFY_CACHE_DIR": str(folder / "cache")}
    _timed_command(["check", "proofs/"], cache)  # fills the cache
    wall, cpu = _timed_command(["check", "proofs/"], cache)
    print(f"warm proof gate: {wall:.1f} s (CPU {cpu:.1f} s)", flush=True)
    rows.append(Row(f"`npi-verify check proofs/` ({len(PROVED)} certificates), V cache warm",
                    f"{wall:.1f} s (CPU {cpu:.1f} s)", wall / GATE_TARGET, "< 15 s",
                    wall < GATE_TARGET))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the results as markdown here")
    parser.add_argument("--no-certify", action="store_true",
                        help="leave out the cold certify and warm proof gate rows")
    args = parser.parse_args()
    use_inference_threads(DEFAULT_THREADS)  # torch's and numpy's BLAS pools, as the CLI does
    where = machine()
    print(where, flush=True)
    started = time.perf_counter()
    rows = [
        run_vs_reference("addition.pt", 5000, "5,000-digit addition", args.repeats),
        run_vs_reference("bubblesort.pt", 300, "bubble sort of 300 integers", args.repeats),
        run_vs_reference("quicksort.pt", 1000, "quicksort of 1,000 integers", args.repeats),
        warm_addition(args.repeats),
        memoized_vs_plain(args.repeats),
        non_recursive_vs_plain("addition-non-recursive.pt", 200, "200-digit addition",
                               args.repeats),
        non_recursive_vs_plain("quicksort-non-recursive.pt", 20, "quicksort of 20 integers",
                               args.repeats),
        *thread_rows(args.repeats),
    ]
    if not args.no_certify:
        with tempfile.TemporaryDirectory() as folder:
            rows += certify_rows(Path(folder))
    seconds = time.perf_counter() - started
    where += "; at the end " + ", ".join(f"{x:.1f}" for x in os.getloadavg())
    for row in rows:
        print(f"{_mark(row.met, 'ok  ', 'MISS', 'info')} {row.ratio:8.2f}x "
              f"(target {row.target}) {row.what}")
    if args.out:
        args.out.write_text(markdown(rows, where, seconds), encoding="utf-8")


if __name__ == "__main__":
    main()
