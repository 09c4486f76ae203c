"""Every long-running process freezes its start-up objects once it is ready to work
(tradingsite/gcfreeze.py): the Celery worker's parent and each of its children, beat, the
market-data loop (the web: tests/unit/test_wsgi_freeze.py). A full garbage collection then
scans what the process made since, not the ~110,000 objects of start-up."""

import gc
import re

import psutil
import pytest
from celery.signals import beat_init

from brokers.management.commands import run_market_data
from tests.workers import Worker, wait_for
from tradingsite import celery as celery_module
from tradingsite.gcfreeze import freeze_startup_objects

FROZE = re.compile(r"gc: (worker child|worker) \(pid (\d+)\) froze its start-up objects: (\d+)")


def test_freezing_collects_then_freezes_what_is_left():
    before = gc.get_freeze_count()
    try:
        frozen = freeze_startup_objects("test")
        assert frozen == gc.get_freeze_count() > before
        assert gc.get_count()[0] < 100  # collected first: the youngest generation is empty
    finally:
        gc.unfreeze()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_and_each_child_freeze_their_start_up_objects():
    worker = Worker(loglevel="info")
    try:
        main = psutil.Process(worker.process.pid)
        # prefork -c 2 on PostgreSQL; on SQLite one solo process is parent and child alike
        children = [c.pid for c in main.children()] or [main.pid]

        def frozen_by() -> dict[tuple[str, int], int]:
            with open(worker.log.name) as log:
                found = FROZE.findall(log.read())
            return {(kind, int(pid)): int(count) for kind, pid, count in found}

        wanted = {("worker", main.pid), *(("worker child", pid) for pid in children)}
        seen = wait_for(
            lambda: (found := frozen_by()).keys() >= wanted and found,
            message=f"the freeze of {sorted(wanted)} in {worker.log.name}",
        )
        assert all(seen[key] > 50_000 for key in wanted), seen
    finally:
        worker.stop()


def test_beat_freezes_when_it_starts(monkeypatch):
    calls = []
    monkeypatch.setattr(celery_module, "freeze_startup_objects", calls.append)
    beat_init.send(sender=None)
    assert calls == ["beat"]


@pytest.mark.parametrize(("steps", "frozen"), [(None, ["market data"]), (3, [])])
def test_market_data_freezes_only_when_it_runs_until_stopped(monkeypatch, steps, frozen):
    calls = []
    monkeypatch.setattr(run_market_data, "freeze_startup_objects", calls.append)
    monkeypatch.setattr(run_market_data, "run_market", lambda **kwargs: 0)
    run_market_data.Command().handle(interval_ms=10, steps=steps, venue="sim")
    assert calls == frozen
