"""The Celery worker yields the CPU to the web on a shared machine (settings.WORKER_NICE):
the worker and its prefork children run at that niceness; 0 leaves them as started."""

import psutil
import pytest
from django.conf import settings

from tests.workers import Worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def _group(worker: Worker) -> list[psutil.Process]:
    main = psutil.Process(worker.process.pid)
    return [main, *main.children(recursive=True)]


def test_the_worker_and_its_children_run_at_the_configured_niceness():
    assert settings.WORKER_NICE == 10  # the default
    worker = Worker()
    try:
        children = 2 if settings.IS_POSTGRES else 0  # prefork -c 2; solo on SQLite
        processes = wait_for(
            lambda: (group := _group(worker))[children:] and group,
            message="the prefork children",
        )
        assert {process.nice() for process in processes} == {10}
    finally:
        worker.stop()


def test_zero_leaves_the_worker_as_started():
    started_at = psutil.Process().nice()
    worker = Worker(extra_env={"WORKER_NICE": "0"})
    try:
        assert {process.nice() for process in _group(worker)} == {started_at}
    finally:
        worker.stop()
