"""The kill switch and the rate limiter on real processes: a worker that finds orders queued
before a halt, and two web processes sharing one trader's order rate."""

from decimal import Decimal

import httpx
import pytest

from brokers.models import SimOrder
from brokers.registry import venue_for
from orders.models import Order
from risk import services as risk_services
from risk.models import RateLimitOverride
from tests.workers import WebProcess, Worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

D = Decimal


@pytest.fixture
def quoted(instruments):
    venue_for("sim").set_quote(
        "EUR_USD",
        bid=D("1.08490"),
        ask=D("1.08500"),
        bid_size=D("100000000"),
        ask_size=D("100000000"),
    )


def test_halt_reaches_orders_already_queued(api, quoted):
    # given orders accepted and queued while no worker runs
    ids = []
    for n in range(5):
        response = api.post(
            "/api/v1/orders/",
            {
                "account": "ACC-1",
                "client_order_id": f"q-{n}",
                "symbol": "EUR_USD",
                "side": "buy",
                "type": "market",
                "quantity": "1000",
            },
            format="json",
        )
        assert response.status_code == 201
        ids.append(response.json()["id"])
    # when trading is halted before any worker picks them up
    risk_services.trading_halt(scope="global", reason="runaway strategy", actor="user:rita")
    worker = Worker()
    try:
        # then every one is refused by the worker, and none reaches the venue
        wait_for(
            lambda: Order.objects.filter(pk__in=ids, status="rejected").count() == 5,
            message="the queued orders to be refused",
        )
    finally:
        worker.stop()
    assert SimOrder.objects.count() == 0
    assert all(
        o.reject_reason.startswith("trading halted (global)")
        for o in Order.objects.filter(pk__in=ids)
    )


def test_rate_limit_holds_across_two_web_processes(trader, quoted):
    # given one trader limited to 10 orders a minute, and two web processes
    RateLimitOverride.objects.create(user=trader, orders_per_minute=10)
    webs = [WebProcess(), WebProcess()]
    headers = {"Authorization": f"Token {trader.auth_token.key}"}
    try:
        # when 16 orders arrive, alternating between the processes
        statuses = []
        for n in range(16):
            web = webs[n % 2]
            response = httpx.post(
                f"{web.url}/api/v1/orders/",
                headers=headers,
                timeout=10,
                json={
                    "client_order_id": f"x-{n}",
                    "symbol": "EUR_USD",
                    "side": "buy",
                    "type": "limit",
                    "quantity": "1000",
                    "limit_price": "1.08000",
                },
            )
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["Retry-After"]) >= 1
    finally:
        for web in webs:
            web.stop()
    # then exactly 10 were accepted in all, and both processes refused the rest
    assert statuses == [201] * 10 + [429] * 6
    assert Order.objects.count() == 10


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("asgi", "bound"),
    [
        # the production server: gunicorn, 1 worker x 2 threads, a persistent connection each
        (False, 2),
        # ASGI runs each request in a thread of its own; persistent connections per thread
        # would leave one open connection per request: the pool's maximum bounds them
        (True, 4),
    ],
    ids=["wsgi", "asgi"],
)
def test_a_web_process_under_load_does_not_pile_up_database_connections(
    trader, quoted, asgi, bound
):
    from django.db import connection

    def backends_of(web: WebProcess) -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = %s",
                [web.application_name],
            )
            return cursor.fetchone()[0]

    web = WebProcess(asgi=asgi, DB_POOL_MAX_SIZE="4")
    headers = {"Authorization": f"Token {trader.auth_token.key}"}
    try:
        for _ in range(40):
            assert (
                httpx.get(f"{web.url}/api/v1/orders/", headers=headers, timeout=10).status_code
                == 200
            )
        held = backends_of(web)
    finally:
        web.stop()
    assert 1 <= held <= bound  # however many requests it served
