"""How many threads torch may use for model inference (issue 10).

A model step is a handful of small matrix products at batch 1 (or a few dozen inputs in
lockstep, most steps of which memoization answers without torch): a second intra-op thread
gains nothing there, and when another process keeps a core busy, torch's spinning threads wait
on each other and a run gets 4-50x slower. So inference commands use one thread unless told
otherwise: `--threads N`, else the environment variable NPI_VERIFY_THREADS, else 1.

The count applies to both thread pools a run can touch: torch's (plain steps, `certify`) and
numpy's BLAS (memoized first visits, `verifier/inference.py`). OpenBLAS otherwise starts one
thread per core, and splitting a 128 x 512 matrix-vector product between two threads gains
nothing: a 1,000-digit addition took 0.16 s of CPU with two BLAS threads and 0.13 s with one
(`bench/speed.py`, on the shared 2-core machine).
"""

from __future__ import annotations

import os

from verifier.errors import InvalidInput

ENV_VARIABLE = "NPI_VERIFY_THREADS"
DEFAULT_THREADS = 1


def inference_threads(option: int | None) -> int:
    """The thread count for inference: the option, else $NPI_VERIFY_THREADS, else 1."""
    if option is not None:
        if option < 1:
            raise InvalidInput(f"--threads must be a positive integer, not {option}")
        return option
    text = os.environ.get(ENV_VARIABLE, "").strip()
    if not text:
        return DEFAULT_THREADS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidInput(f"{ENV_VARIABLE} must be a positive integer, not {text!r}")
    return value


def use_inference_threads(option: int | None) -> int:
    """Set torch's intra-op thread count and numpy's BLAS thread count for inference; return
    the count."""
    import torch  # here, so that importing this module stays cheap
    from threadpoolctl import threadpool_limits

    threads = inference_threads(option)
    torch.set_num_threads(threads)
    threadpool_limits(threads, user_api="blas")  # for the rest of the process
    return threads
