"""The cyclic collector paused for a phase (verifier.heap): off while it runs, restored as it
was after it, also when it raises and when phases nest."""

from __future__ import annotations

import gc

import pytest

from verifier.heap import collector_paused


@collector_paused
def _state() -> bool:
    return gc.isenabled()


@collector_paused
def _nested() -> tuple[bool, bool]:
    return _state(), gc.isenabled()


@collector_paused
def _raises() -> None:
    raise ValueError("boom")


def test_the_collector_is_off_during_the_phase_and_on_again_after() -> None:
    assert gc.isenabled()
    assert _state() is False
    assert _nested() == (False, False)
    assert gc.isenabled()
    with pytest.raises(ValueError):
        _raises()
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        assert _state() is False
        assert not gc.isenabled()
    finally:
        gc.enable()
