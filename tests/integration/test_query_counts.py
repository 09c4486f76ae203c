"""Queries per order on the hot paths. A change that adds a query to submit or to applying a
fill fails here: raise the number only on purpose, with the reason in the commit."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from brokers.base import ExecutionReport, ReportKind
from brokers.registry import venue_for
from orders import services
from orders.models import Fill, Order, OutboxMessage
from tests.conftest import client_for, make_trader
from tests.helpers import LIMIT_ORDER, queued_order_ids, set_quote
from tradingsite import refdata

pytestmark = pytest.mark.django_db

D = Decimal
BODY = LIMIT_ORDER

# What each query is for, so a change to the numbers can be reasoned about. The token and its
# user, the account, the instrument, the rate-limit overrides, the trading state and the limits
# come from the reference-data cache (tradingsite/refdata.py) while its version stands.
# A repeated client_order_id is found by the unique key at the insert: no lookup before it.
# The connection's health check costs no round trip (tradingsite/postgres/base.py): no ping.
SUBMIT_QUERIES = {
    "reference-data version": 1,
    "insert order, events and outbox row (one statement, its own transaction)": 1,
}


@pytest.mark.postgres  # the insert is one statement on PostgreSQL, three on SQLite
@pytest.mark.django_db(transaction=True)  # as in production: no test transaction around it
def test_submit_queries(api, instruments, settings):
    # (the intake's backlog count runs at most every few seconds: not on the counted request)
    settings.ORDERS_INTAKE_BACKLOG_CHECK_SECONDS = 3600
    api.post("/api/v1/orders/", {**BODY, "client_order_id": "warm"}, format="json")
    with CaptureQueriesContext(connection) as captured:
        response = api.post(
            "/api/v1/orders/", {**BODY, "client_order_id": "counted"}, format="json"
        )
    assert response.status_code == 201
    sql = [q["sql"] for q in captured.captured_queries]
    assert len(sql) == sum(SUBMIT_QUERIES.values()), "\n".join(sql)
    order = Order.objects.get(client_order_id="counted")
    assert [e.type for e in order.events.order_by("seq")] == ["created", "validated"]
    assert OutboxMessage.objects.filter(kwargs__order_id=str(order.id)).count() == 1


# Redis round trips of a lone order's POST where the broker is a database of the cache's
# server (as `make run`, docker-compose and the bench set it up).
SUBMIT_REDIS_ROUND_TRIPS = {
    "the rate limit's script (risk/ratelimit.py)": 1,
    "the coalescing script, which also pushes the task's message (orders/outbox.py)": 1,
}


@pytest.mark.django_db(transaction=True)
def test_submit_redis_round_trips(api, instruments, settings, monkeypatch, broker):
    import redis

    from orders import outbox
    from tradingsite.celery import direct

    settings.ORDERS_INTAKE_BACKLOG_CHECK_SECONDS = 3600
    api.post("/api/v1/orders/", {**BODY, "client_order_id": "warm"}, format="json")
    cache_client, _ = outbox.cache.raw(outbox.SUBMIT_QUEUED)
    assert direct.broker_db(cache_client) is not None  # the broker shares the cache's server
    outbox.cache.delete(outbox.SUBMIT_QUEUED)  # no submit task queued: the order is due
    trips: list[str] = []
    command, pipeline = redis.client.Redis.execute_command, redis.client.Pipeline.execute

    def counted_command(self, *args, **options):
        trips.append(str(args[0]))
        return command(self, *args, **options)

    def counted_pipeline(self, *args, **options):
        trips.append("pipeline " + ",".join(str(c[0][0]) for c in self.command_stack))
        return pipeline(self, *args, **options)

    monkeypatch.setattr(redis.client.Redis, "execute_command", counted_command)
    monkeypatch.setattr(redis.client.Pipeline, "execute", counted_pipeline)
    response = api.post("/api/v1/orders/", {**BODY, "client_order_id": "counted"}, format="json")
    monkeypatch.undo()
    assert response.status_code == 201
    assert len(trips) == sum(SUBMIT_REDIS_ROUND_TRIPS.values()), trips
    try:
        # the message is on its queue, once
        assert queued_order_ids(broker).count(response.json()["id"]) == 1
    finally:
        broker.delete("orders")


@pytest.mark.postgres
def test_submit_queries_with_a_cold_cache(api, instruments, settings):
    """After a write to reference data, the first request reads each of them once again."""
    settings.ORDERS_INTAKE_BACKLOG_CHECK_SECONDS = 3600
    api.post("/api/v1/orders/", {**BODY, "client_order_id": "warm"}, format="json")
    refdata.clear()
    with CaptureQueriesContext(connection) as captured:
        response = api.post(
            "/api/v1/orders/", {**BODY, "client_order_id": "counted"}, format="json"
        )
    assert response.status_code == 201
    sql = [q["sql"] for q in captured.captured_queries]
    cold = {
        "token + user, account, instrument, rate-limit overrides, trading states, limits": 6,
        "savepoint + release (the test's transaction is around the insert)": 2,
    }
    assert len(sql) == sum(SUBMIT_QUERIES.values()) + sum(cold.values()), "\n".join(sql)


# A client polling its order: who reads which accounts comes from the reference-data cache.
DETAIL_QUERIES = {
    "reference-data version": 1,
    "the order with its instrument and account": 1,
    "its fills": 1,
    "its children": 1,
}


@pytest.mark.django_db(transaction=True)
def test_order_detail_queries(api, instruments):
    order_id = api.post("/api/v1/orders/", BODY, format="json").json()["id"]
    assert api.get(f"/api/v1/orders/{order_id}/").status_code == 200
    with CaptureQueriesContext(connection) as captured:
        response = api.get(f"/api/v1/orders/{order_id}/")
    assert response.status_code == 200 and response.json()["id"] == order_id
    sql = [q["sql"] for q in captured.captured_queries]
    assert len(sql) == sum(DETAIL_QUERIES.values()), "\n".join(sql)


def test_fill_application_queries(api, instruments, settings):
    settings.COMMISSIONS = {}
    venue_for("sim").set_quote(
        "EUR_USD", bid=D("1.08490"), ask=D("1.08500"), bid_size=D("1000000"), ask_size=D("1000000")
    )
    order_id = api.post("/api/v1/orders/", BODY, format="json").json()["id"]
    order = Order.objects.get(pk=order_id)
    services.order_submit_to_venue(order_id=order_id)
    fill = ExecutionReport(
        venue="sim",
        kind=ReportKind.FILL,
        client_order_id=str(order.id),
        venue_order_id="SIM-1",
        at=order.created_at,
        execution_id="X-1",
        quantity=D("400"),
        price=D("1.08000"),
        liquidity="maker",
    )
    with CaptureQueriesContext(connection) as captured:
        services.execution_reports_apply(reports=[fill])
    sql = [q["sql"] for q in captured.captured_queries]
    assert len(sql) == sum(FIRST_FILL_QUERIES.values()), "\n".join(sql)
    # and a second fill on the same position needs no position creation
    second = ExecutionReport(
        venue="sim",
        kind=ReportKind.FILL,
        client_order_id=str(order.id),
        venue_order_id="SIM-1",
        at=order.created_at,
        execution_id="X-2",
        quantity=D("600"),
        price=D("1.08000"),
        liquidity="maker",
    )
    with CaptureQueriesContext(connection) as captured:
        services.execution_reports_apply(reports=[second])
    sql = [q["sql"] for q in captured.captured_queries]
    assert len(sql) == sum(FILL_QUERIES.values()), "\n".join(sql)


FILL_QUERIES = {
    "savepoint + release (one transaction for all the reports given)": 2,
    "lock the order": 1,
    "execution id seen already?": 1,
    "lock the account": 1,
    "lock the positions": 1,
    # (tradingsite.bulk.RowWrites: data-modifying WITH queries, one round trip; elsewhere one
    # statement each)
    "update position, cash and realized P&L, order; insert fill and event": (
        1 if connection.vendor == "postgresql" else 5
    ),
}
# The first fill of a position also creates it (insert, skipping a racing creator's; lock again).
FIRST_FILL_QUERIES = {**FILL_QUERIES, "create the position": 2}


def test_one_apply_converts_once_per_pair_of_currencies(instruments, settings):
    """Fills of USD_JPY orders on three USD accounts in one apply: JPY -> USD is looked up
    once (the listed instruments: one reference-data version read; the pair's quote: one read),
    not once per account, and all three fills book the same rate."""
    settings.COMMISSIONS = {}
    set_quote(venue_for("sim"), bid="150.000", ask="150.010", symbol="USD_JPY")
    orders = []
    for n in range(3):
        api = client_for(make_trader(f"jpy{n}", f"JPY-{n}"))
        body = {**BODY, "account": f"JPY-{n}", "symbol": "USD_JPY", "limit_price": "149.000"}
        response = api.post("/api/v1/orders/", body, format="json")
        assert response.status_code == 201, response.content
        orders.append(Order.objects.get(pk=response.json()["id"]))
    for order in orders:
        services.order_submit_to_venue(order_id=order.pk)
    fills = [
        ExecutionReport(
            venue="sim",
            kind=ReportKind.FILL,
            client_order_id=str(order.id),
            venue_order_id=f"SIM-J{n}",
            at=order.created_at,
            execution_id=f"XJ-{n}",
            quantity=D("1000"),
            price=D("149.000"),
            liquidity="maker",
        )
        for n, order in enumerate(orders)
    ]
    refdata.clear()  # cold: the apply must read the version (once) and the instruments
    with CaptureQueriesContext(connection) as captured:
        services.execution_reports_apply(reports=fills)
    sql = [q["sql"] for q in captured.captured_queries]
    assert sum("refdata_version" in q for q in sql) == 1, "\n".join(sql)
    assert sum('FROM "orders_instrument"' in q for q in sql) == 1, "\n".join(sql)
    assert sum('FROM "brokers_simquote"' in q for q in sql) == 1, "\n".join(sql)
    rates = {fill.account_rate for fill in Fill.objects.filter(order__in=orders)}
    assert rates == {D("0.0066664445")}  # 1 / 150.005, the mid, to the field's 10 places
