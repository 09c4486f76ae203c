"""Shared fixtures. `make test` (python -m tests) picks the services and sets
FILLMORE_TEST_BACKEND to `postgres` or `sqlite`; PostgreSQL-only tests carry the `postgres`
marker and are skipped, with the reason, only on the SQLite fallback (never in CI)."""

from __future__ import annotations

import os
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

BACKEND = os.environ.get("FILLMORE_TEST_BACKEND", "")


def pytest_collection_modifyitems(config, items):
    from django.conf import settings

    if settings.IS_POSTGRES:
        return
    if os.environ.get("CI", "").lower() == "true":
        raise pytest.UsageError("CI=true but the tests run on SQLite: PostgreSQL is required")
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL; CI always runs these)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing():
    """Full-strength hashing costs seconds per user; the tests do not test the hasher."""
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session", autouse=True)
def _clean_redis():
    """Start from empty test Redis databases: no stale broker messages from an earlier run."""
    import redis
    from django.conf import settings

    from tradingsite.redis_urls import redis_db, with_db

    base = redis_db(settings.REDIS_URL)
    for db in (base, base + 1):
        client = redis.Redis.from_url(with_db(settings.REDIS_URL, db))
        try:
            client.flushdb()
        finally:
            client.close()


@pytest.fixture(autouse=True)
def _fresh_redis_state():
    """Each test starts with empty order-rate windows (user ids can repeat across tests) and
    no submit task said to be queued (outbox.SUBMIT_QUEUED: an earlier test's submission would
    have the next test's first one coalesced behind a task that never comes)."""
    _clear_redis_state()
    yield
    _clear_redis_state()


def _clear_redis_state() -> None:
    import redis
    from django.conf import settings

    from orders.outbox import SUBMIT_QUEUED

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        keys = list(client.scan_iter(match="ratelimit:*", count=1000))
        keys += list(client.scan_iter(match=f"*{SUBMIT_QUEUED}", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def broker():
    """A client of the test broker's Redis database (the cache's database + 1)."""
    import redis
    from django.conf import settings

    from tradingsite.redis_urls import redis_db, with_db

    client = redis.Redis.from_url(with_db(settings.REDIS_URL, redis_db(settings.REDIS_URL) + 1))
    yield client
    client.close()


@pytest.fixture
def queued(broker):
    """The order ids submit tasks queued during the test name (no worker takes them here;
    the queue may hold earlier tests' messages)."""
    from tests.helpers import queued_submissions

    before = len(queued_submissions(broker))

    def since() -> list[str]:
        now = queued_submissions(broker)
        return now[: len(now) - before]  # kombu pushes on the left

    return since


INSTRUMENTS = [
    # symbol, asset class, base, quote, lot, min, tick, reference
    ("EUR_USD", "fx", "EUR", "USD", "1", "1", "0.00001", "1.08500"),
    ("GBP_USD", "fx", "GBP", "USD", "1", "1", "0.00001", "1.27000"),
    ("USD_JPY", "fx", "USD", "JPY", "1", "1", "0.001", "150.000"),
    ("AAPL", "equity", "AAPL", "USD", "1", "1", "0.01", "190.00"),
    ("MSFT", "equity", "MSFT", "USD", "1", "1", "0.01", "420.00"),
    ("BTC_USD", "crypto", "BTC", "USD", "0.0001", "0.0001", "0.01", "65000.00"),
]


@pytest.fixture
def instruments(db):
    from brokers.sim import config
    from orders.models import Instrument

    config.clear_cache()
    created = {}
    for symbol, asset_class, base, quote, lot, minimum, tick, reference in INSTRUMENTS:
        created[symbol] = Instrument.objects.create(
            symbol=symbol,
            asset_class=asset_class,
            base_currency=base,
            quote_currency=quote,
            lot_size=Decimal(lot),
            min_quantity=Decimal(minimum),
            tick_size=Decimal(tick),
            reference_price=Decimal(reference),
        )
    yield created
    config.clear_cache()


def make_trader(username: str, *accounts: str):
    from orders.models import Account

    user = get_user_model().objects.create_user(username=username, password="x-" + username)
    for code in accounts:
        account, _ = Account.objects.get_or_create(code=code)
        account.users.add(user)
    Token.objects.create(user=user)
    return user


@pytest.fixture
def trader(db):
    return make_trader("alice", "ACC-1")


@pytest.fixture
def other_trader(db):
    return make_trader("bob", "ACC-2")


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {user.auth_token.key}")
    return client


@pytest.fixture
def api(trader, instruments) -> APIClient:
    return client_for(trader)


@pytest.fixture(scope="module")
def celery_worker(django_db_setup, django_db_blocker):
    """A real worker consuming the real queues on the test database, for one module (fault
    injection modules start workers of their own, so two never share a queue)."""
    from tests.workers import Worker

    with django_db_blocker.unblock():
        worker = Worker()
    yield worker
    worker.stop()


@pytest.fixture(autouse=True)
def _every_order_replays_from_its_events(request):
    """After every test that touched the database: each order's events, replayed, give
    exactly its stored state, and each event's type is one of states.EventType (the admin's
    type filter offers those). So every path the tests take is proven replayable."""
    yield
    marker = request.node.get_closest_marker("django_db")
    uses_db = marker is not None or {"db", "transactional_db"} & set(request.fixturenames)
    if not uses_db:
        return
    from django.db import connection, transaction

    from orders.models import Order
    from orders.replay import order_state, replay
    from orders.states import EventType

    # One snapshot for the orders and their events: a live worker may commit between the two
    # reads. (Inside a test's own transaction the snapshot is that transaction's.)
    with transaction.atomic():
        if connection.vendor == "postgresql" and len(connection.atomic_blocks) == 1:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        orders = Order.objects.select_related("instrument", "account").prefetch_related("events")
        for order in orders:
            assert replay(order.events.all()) == order_state(order), (
                f"order {order.id} does not replay"
            )
            unlisted = {event.type for event in order.events.all()} - set(EventType.values)
            assert not unlisted, (
                f"order {order.id} has events of types not in EventType: {unlisted}"
            )
