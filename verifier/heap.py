"""Python's cyclic garbage collector paused while a phase builds large structures that live
on (V's prefix trees, the fixed point's points, the proof bundle's rows).

Each collection of the oldest generation walks every live container, and such a phase
allocates millions of them, so it spent up to a fifth of `certify` in collections that freed
nothing (addition: 18.3 s of CPU with the collector, 14.2 s without it). Reference counting
still frees every object outside a cycle at once; cycles made meanwhile wait until the
collector resumes, after the phase."""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def collector_paused(function: Callable[P, R]) -> Callable[P, R]:
    """`function` with the cyclic collector paused while it runs (nested uses are fine: the
    outermost restores the collector as it found it)."""

    @functools.wraps(function)
    def paused(*args: P.args, **kwargs: P.kwargs) -> R:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return paused
