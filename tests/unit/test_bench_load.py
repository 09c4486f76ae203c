"""The bench's load generator pauses its own garbage collector while a timed window runs
(tests/bench/load.py, `measured`): its pauses would be counted as the server's latency."""

import gc

import pytest

from tests.bench.load import measured


async def _window(fail: bool = False) -> bool:
    if fail:
        raise RuntimeError("the window failed")
    return gc.isenabled()


def test_a_window_runs_without_the_collector_and_gives_it_back():
    assert gc.isenabled()
    assert measured(_window()) is False
    assert gc.isenabled()


def test_a_failed_window_gives_the_collector_back():
    with pytest.raises(RuntimeError, match="the window failed"):
        measured(_window(fail=True))
    assert gc.isenabled()
