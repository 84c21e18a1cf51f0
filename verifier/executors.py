"""Where a sweep's cells run: local processes (the default) or Ray tasks.

A runner takes the cells' payloads and yields each cell's result as it ends (in any order);
each result comes from `verifier.sweep.run_cell`, which never raises, so one failing cell
never stops the others. Ray is an optional extra (`pip install 'npi-verify[ray]'`).
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
from collections.abc import Iterator
from typing import Any

from verifier.errors import VerifierError
from verifier.sweep import CELL_FORMAT, Runner, run_cell

RAY_LOCAL = "local"  # --ray local: start a Ray instance in this process with LOCAL_CPUS
LOCAL_CPUS = 2


def local_runner(jobs: int) -> Runner:
    """Cells one after another in this process (jobs = 1), or in `jobs` worker processes
    (spawned, so no thread or lock state of this process is inherited)."""
    if jobs < 1:
        raise VerifierError(f"--jobs must be at least 1, got {jobs}")

    def run(payloads: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        if jobs == 1 or len(payloads) <= 1:
            yield from map(run_cell, payloads)
            return
        build_vsets(payloads)
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
            futures = {pool.submit(run_cell, p): p for p in payloads}
            try:
                for future in concurrent.futures.as_completed(futures):
                    yield _result(future, futures[future])
            finally:  # interrupted: do not start the cells still queued
                for future in futures:
                    future.cancel()

    return run


def build_vsets(payloads: list[dict[str, Any]]) -> None:
    """Build (or find in the V cache) the V of every task and formulation of `payloads` here,
    once, before cells start side by side: else each worker that starts a cell of a task
    builds the same V at the same time. A V that cannot be built is left to the cells,
    whose results then say why."""
    from verifier.tasks import get_task
    from verifier.vcache import load_or_build

    pairs = dict.fromkeys((p["cell"]["task"], p["cell"]["formulation"]) for p in payloads)
    for name, formulation in pairs:
        try:
            task = get_task(name)
            if not task.numeric_slots:  # checked symbolically, over another task's V
                load_or_build(task, formulation)
        except VerifierError:
            pass


def _result(future: concurrent.futures.Future, payload: dict[str, Any]) -> dict[str, Any]:
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001 - a worker that died (killed, out of memory)
        return died(payload, f"the worker process died: {type(error).__name__}: {error}")


def died(payload: dict[str, Any], message: str) -> dict[str, Any]:
    """The error cell of a cell whose worker never returned a result."""
    from verifier import __version__

    return {"format": CELL_FORMAT, "npi_verify": __version__, "cell": payload["cell"],
            "status": "error", "error": " ".join(message.split()), "verdict": None,
            "train_seconds": None, "certify_seconds": None}


def ray_runner(address: str) -> Runner:
    """Cells as Ray tasks (one CPU each) on the cluster at `address` (`auto`: the one this
    machine belongs to; `local`: a new instance in this process with LOCAL_CPUS CPUs).
    VerifierError when Ray is not installed or the cluster cannot be reached."""
    try:
        import ray
    except ImportError:
        raise VerifierError("--ray needs Ray: pip install 'npi-verify[ray]'") from None

    def run(payloads: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        started = not ray.is_initialized()
        if started:
            options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False,
                                       "include_dashboard": False}
            try:
                if address == RAY_LOCAL:
                    ray.init(num_cpus=LOCAL_CPUS, **options)
                else:
                    ray.init(address=address, **options)
            except Exception as error:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError
                raise VerifierError(f"cannot start or reach Ray at {address!r}: "
                                    f"{' '.join(str(error).split())}") from None
        if address == RAY_LOCAL:  # the workers share this machine's V cache
            build_vsets(payloads)
        try:
            task = ray.remote(num_cpus=1, max_retries=0)(run_cell)
            refs = {task.remote(p): p for p in payloads}
            waiting = list(refs)
            try:
                while waiting:
                    done, waiting = ray.wait(waiting, num_returns=1)
                    try:
                        yield ray.get(done[0])
                    except Exception as error:  # noqa: BLE001 - a worker or node that died
                        yield died(refs[done[0]], f"the Ray task failed: {error}")
            finally:
                for ref in waiting:
                    ray.cancel(ref, force=True)
        finally:
            if started:
                ray.shutdown()

    return run
