"""How many threads torch may use for model inference (issue 10).

A model step is a handful of small matrix products at batch 1 (or a few dozen inputs in
lockstep, most steps of which memoization answers without torch): a second intra-op thread
gains nothing there, and when another process keeps a core busy, torch's spinning threads wait
on each other and a run gets 4-50x slower. So inference commands use one thread unless told
otherwise: `--threads N`, else the environment variable NPI_VERIFY_THREADS, else 1.
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
    """Set torch's intra-op thread count for inference; return it."""
    import torch  # here, so that importing this module stays cheap

    threads = inference_threads(option)
    torch.set_num_threads(threads)
    return threads
