"""Budgets on long work: a wall-clock deadline, and step budgets known before a run starts.

A time budget is a process-wide deadline (`time_budget`): when it passes, the work in progress
is interrupted with `BudgetExceeded`, wherever it is. Nothing is concluded from interrupted
work: a budget that runs out is never a verdict.

Some work is known to be too large before it starts: a reference program's step count has a
cheap lower bound for several tasks (`Task.min_reference_steps`), and no run of the
interpreter executes more than `MAX_STEPS_PER_SECOND` steps a second, so an input whose lower
bound exceeds what the budget could possibly run is refused up front.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

from verifier.errors import VerifierError

# No run of the interpreter comes near this rate (reference runs measure about 10^5-10^6 steps
# a second on one core): a bound used only to refuse work that cannot possibly fit a budget.
MAX_STEPS_PER_SECOND = 10_000_000


class BudgetExceeded(VerifierError):
    """A --timeout or --max-steps budget ran out (or provably would): nothing was concluded."""

    exit_code = 4


@contextmanager
def time_budget(seconds: float | None, what: str) -> Iterator[None]:
    """Interrupt the body with BudgetExceeded after `seconds` of wall-clock time (None: no
    limit). Uses SIGALRM, so it works in the main thread of a Unix process."""
    if seconds is None:
        yield
        return
    if not seconds > 0 or math.isinf(seconds):
        raise VerifierError(f"--timeout must be a positive number of seconds, got {seconds}")
    started = time.monotonic()

    def expire(signum: int, frame: object) -> None:
        elapsed = time.monotonic() - started
        raise BudgetExceeded(f"time budget of {seconds:g} s ran out after {elapsed:.1f} s "
                             f"while {what}; nothing was concluded")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def refuse_unless_fits(
    min_steps: int, max_steps: int | None, seconds: float | None, what: str
) -> None:
    """Refuse work whose reference run provably needs more than the step budget, or more
    steps than the interpreter could run within the time budget."""
    if max_steps is not None and min_steps > max_steps:
        raise BudgetExceeded(
            f"{what} needs at least {min_steps:,} steps, more than --max-steps {max_steps:,}; "
            "refused before starting"
        )
    if seconds is not None and min_steps > seconds * MAX_STEPS_PER_SECOND:
        raise BudgetExceeded(
            f"{what} needs at least {min_steps:,} steps, more than any run can do in "
            f"--timeout {seconds:g} s (at most {MAX_STEPS_PER_SECOND:,} steps/s); "
            "refused before starting"
        )
