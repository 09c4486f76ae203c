"""A Celery worker keeps its PostgreSQL connection from task to task (Celery's Django fixup
would open a new one for every task: settings.CELERY_DB_REUSE_MAX, tradingsite/celery.py), and
a connection that died between two tasks is replaced before the next one uses it."""

import uuid

import pytest
from django.db import connection

from tests.helpers import eur_usd_market, order_when, submit
from tests.workers import Worker

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
]


def backends(application_name: str) -> set[tuple[int, object]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, backend_start FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            [application_name],
        )
        return set(cursor.fetchall())


def filled(api, count: int) -> None:
    ids = [submit(api, type="market", time_in_force="ioc")["id"] for _ in range(count)]
    for order_id in ids:
        order_when(order_id, "filled")


def test_a_worker_keeps_its_connection_and_replaces_a_dead_one(api, instruments):
    eur_usd_market(size="100000000")
    name = f"fillmore-worker-{uuid.uuid4().hex[:8]}"
    worker = Worker(concurrency=1, extra_env={"CONN_MAX_AGE": "60", "DB_APPLICATION_NAME": name})
    try:
        # given a worker that has run a few tasks
        filled(api, 3)
        before = backends(name)
        assert before
        # when it runs many more
        filled(api, 8)
        # then it did so on the connections it had (none opened, none closed)
        assert backends(name) == before
        # and when PostgreSQL drops them between two tasks
        with connection.cursor() as cursor:
            for pid, _ in before:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        # the next orders still go through, on new connections
        filled(api, 2)
        assert backends(name).isdisjoint(before)
    finally:
        worker.stop()
