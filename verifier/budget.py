"""Budgets on long work: a wall-clock deadline, and work known too large before it starts.

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
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from verifier.errors import VerifierError

# No run of the interpreter comes near this rate (reference runs measure about 10^5-10^6 steps
# a second on one core): a bound used only to refuse work that cannot possibly fit a budget.
MAX_STEPS_PER_SECOND = 10_000_000
MAX_TIMEOUT = 100_000_000  # seconds (over three years): the OS timer takes no more
DEFER_SECONDS = 0.01  # a budget that runs out inside Z3's bindings is enforced this much later
RETRY_SECONDS = 0.5  # and raised again after this long, should the first one be swallowed


class BudgetExceeded(VerifierError):
    """A --timeout budget ran out (or provably would): nothing was concluded."""

    exit_code = 4


@contextmanager
def time_budget(
    seconds: float | None, what: str, on_expiry: Callable[[BudgetExceeded], None] | None = None
) -> Iterator[None]:
    """Interrupt the body with BudgetExceeded after `seconds` of wall-clock time (None: no
    limit). Uses SIGALRM, so it works in the main thread of a Unix process.

    The exception is raised where the body happens to be, except inside Z3's Python bindings
    or an object finalizer: raised there it would be swallowed ("Exception ignored in
    __del__") or garbled by ctypes, so the timer is re-armed to fire DEFER_SECONDS later.
    `on_expiry`, if given, is called instead of raising (a command line that must end at
    once, whatever the code under it does with exceptions)."""
    if seconds is None:
        yield
        return
    if not 0 < seconds <= MAX_TIMEOUT or math.isnan(seconds):
        raise VerifierError(
            f"--timeout must be a number of seconds in (0, {MAX_TIMEOUT:,}], got {seconds:g}"
        )
    started = time.monotonic()

    def expire(signum: int, frame: FrameType | None) -> None:
        elapsed = time.monotonic() - started
        error = BudgetExceeded(f"time budget of {seconds:g} s ran out after {elapsed:.1f} s "
                               f"while {what}; nothing was concluded")
        if on_expiry is not None:
            on_expiry(error)
        if _unsafe(frame):
            signal.setitimer(signal.ITIMER_REAL, DEFER_SECONDS)
            return
        # Raised again later should something swallow it; leaving the block disarms it.
        signal.setitimer(signal.ITIMER_REAL, RETRY_SECONDS)
        raise error

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _unsafe(frame: FrameType | None) -> bool:
    """Whether an exception raised in `frame` could be lost: some frame of the stack is in
    Z3's bindings (ctypes calls, reference-counting finalizers) or in a `__del__`."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "__del__" or Z3_PATH in code.co_filename:
            return True
        frame = frame.f_back
    return False


Z3_PATH = f"{os.sep}z3{os.sep}"


def refuse_unless_fits(min_steps: int, seconds: float | None, what: str) -> None:
    """Refuse work whose reference run provably needs more steps than the interpreter could
    run within the time budget."""
    if seconds is not None and min_steps > seconds * MAX_STEPS_PER_SECOND:
        raise BudgetExceeded(
            f"{what} needs at least {min_steps:,} steps, more than any run can do in "
            f"--timeout {seconds:g} s (at most {MAX_STEPS_PER_SECOND:,} steps/s); "
            "refused before starting"
        )
