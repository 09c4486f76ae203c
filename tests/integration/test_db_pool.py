"""Django's PostgreSQL connection pool in a real ASGI web process (uvicorn) on the test
database: a burst of requests never holds more backends than the pool's maximum, and a request
that finds the pool exhausted is refused with a clean 503 instead of a 500 or a hang.

The test process itself runs without a pool (DB_POOL is off outside ASGI web processes)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from tests.workers import WebProcess, wait_for, worker_database_url

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def pg() -> Iterator[psycopg.Connection]:
    """A connection of the test's own, outside Django (usable from any thread)."""
    conn = psycopg.connect(worker_database_url(), autocommit=True)
    yield conn
    conn.close()


def backends(conn: psycopg.Connection, application_name: str) -> int:
    return conn.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = %s",
        [application_name],
    ).fetchone()[0]


def lock_waiters(conn: psycopg.Connection, application_name: str) -> int:
    return conn.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = %s AND wait_event_type = 'Lock'",
        [application_name],
    ).fetchone()[0]


class BackendSampler(threading.Thread):
    """Counts the web process's backends every few milliseconds until stopped."""

    def __init__(self, application_name: str) -> None:
        super().__init__(daemon=True)
        self.application_name = application_name
        self.samples: list[int] = []
        self._halt = threading.Event()

    def run(self) -> None:
        with psycopg.connect(worker_database_url(), autocommit=True) as conn:
            while not self._halt.is_set():
                self.samples.append(backends(conn, self.application_name))
                time.sleep(0.005)

    def stop(self) -> list[int]:
        self._halt.set()
        self.join(timeout=10)
        return self.samples


async def _burst(url: str, token: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        return await asyncio.gather(
            *(
                client.get(f"{url}/api/v1/orders/", headers={"Authorization": f"Token {token}"})
                for _ in range(count)
            )
        )


def test_a_burst_of_requests_never_holds_more_backends_than_the_pool_max(trader):
    # given a web process whose pool holds at most 3 connections
    web = WebProcess(asgi=True, DB_POOL="1", DB_POOL_MIN_SIZE="1", DB_POOL_MAX_SIZE="3")
    sampler = BackendSampler(web.application_name)
    try:
        sampler.start()
        # when 30 authenticated requests arrive at once, three times over
        responses = []
        for _ in range(3):
            responses += asyncio.run(_burst(web.url, trader.auth_token.key, 30))
    finally:
        web.stop()
        samples = sampler.stop()
    # then every request was answered, and the process never held more than 3 backends
    assert [r.status_code for r in responses if r.status_code != 200] == []
    assert len(responses) == 90
    assert max(samples) == 3, f"peak {max(samples)} backends in {len(samples)} samples"


def test_a_request_that_finds_the_pool_exhausted_gets_a_clean_503(trader, pg):
    # given a web process with a single pooled connection and a short wait for one
    web = WebProcess(
        asgi=True, DB_POOL="1", DB_POOL_MIN_SIZE="1", DB_POOL_MAX_SIZE="1", DB_POOL_TIMEOUT="0.5"
    )
    headers = {"Authorization": f"Token {trader.auth_token.key}"}
    # and that connection held by a request blocked on a table lock
    locker = psycopg.connect(worker_database_url())
    slow = ThreadPoolExecutor(max_workers=1)
    try:
        locker.execute("LOCK TABLE authtoken_token IN ACCESS EXCLUSIVE MODE")
        blocked = slow.submit(httpx.get, f"{web.url}/api/v1/orders/", headers=headers, timeout=30)
        wait_for(
            lambda: lock_waiters(pg, web.application_name) == 1,
            message="the first request to wait on the lock",
        )
        # when a second request arrives
        started = time.monotonic()
        refused = httpx.get(f"{web.url}/api/v1/orders/", headers=headers, timeout=30)
        waited = time.monotonic() - started
        # and the lock is released afterwards
        locker.rollback()
        first = blocked.result(timeout=30)
    finally:
        locker.close()
        slow.shutdown(wait=False)
        web.stop()
    # then the second is refused once the pool timeout has passed, with 503 in the API's error
    # shape, and the first one succeeds once its query can run
    assert refused.status_code == 503, refused.text
    assert refused.json() == {
        "error": {
            "code": "service_busy",
            "message": "the service is busy; retry shortly",
            "order_id": None,
        }
    }
    assert refused.headers["Retry-After"] == "1"
    assert 0.5 <= waited < 5
    assert first.status_code == 200
