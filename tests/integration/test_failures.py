"""Failure paths on real services: a worker SIGKILLed with orders in flight, a venue that
times out after accepting, a venue that rejects or drops the connection, a broker that cannot
be reached at commit, a Redis restarted with the orders' tasks in it, a web process killed
under batches, the database gone for two seconds under orders. After each: every
accepted order ends exactly once at the venue, no order is lost, and each order's events
replay to its stored state."""

import threading
import time

import httpx
import psutil
import pytest
from django.core.management import call_command
from django.db.models import Count

from brokers.models import SimOrder, SimReport
from orders import outbox, services
from orders.models import Fill, Order, OutboxMessage
from tests.helpers import assert_replays, eur_usd_market, order_body, order_when, submit
from tests.workers import Beat, RedisServer, WebProcess, Worker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


@pytest.fixture
def market(instruments):
    return eur_usd_market(size="100000000")


@pytest.fixture
def worker(trader):
    """A worker of its own for the test, stopped however the test ends."""
    started = Worker()
    yield started
    started.stop()


@pytest.fixture
def web(trader):
    """A web process on the test database, no rate limit in the way, stopped however the test
    ends."""
    started = WebProcess(RISK_ORDERS_PER_MINUTE="1000000")
    yield started
    started.stop()


def submit_many(api, count, **body):
    """`count` new market buys of 1,000 EUR_USD (client order ids crash-0, crash-1, ...)."""
    return [
        submit(api, expect=(201,), client_order_id=f"crash-{n}", quantity="1000", **body)["id"]
        for n in range(count)
    ]


def wait_all_filled(
    ids, *, timeout, interval, sweep_older_than=None, message="every order to fill"
):
    """Until every order of `ids` is filled; with `sweep_older_than`, the stuck-order sweep
    (beat's job) runs before each look."""

    def all_filled():
        if sweep_older_than is not None:
            services.orders_sweep_stuck(older_than=sweep_older_than)
        return not Order.objects.filter(pk__in=ids).exclude(status="filled").exists()

    wait_for(all_filled, timeout=timeout, interval=interval, message=message)


def assert_each_order_exactly_once_at_the_venue(ids):
    orders = Order.objects.select_related("instrument", "account").filter(pk__in=ids)
    assert sorted(str(o.id) for o in orders) == sorted(ids)
    for order in orders:
        assert order.status == "filled", (order.id, order.status)
        assert order.filled_quantity == order.quantity
        assert_replays(order)
    at_venue = SimOrder.objects.filter(client_order_id__in=ids)
    assert at_venue.count() == len(ids)
    assert all(o.status == "filled" for o in at_venue)
    fills_per_venue_order = (
        SimReport.objects.filter(order__in=at_venue, kind="fill")
        .values("order")
        .annotate(n=Count("id"))
    )
    assert sorted(row["n"] for row in fills_per_venue_order) == [1] * len(ids)
    assert Fill.objects.filter(order_id__in=ids).count() == len(ids)


def test_worker_killed_mid_flight_loses_and_duplicates_nothing(api, market):
    # given a slow venue and a worker busy with a burst of orders
    slow = Worker(extra_env={"SIM_LATENCY_MS": "400"})
    try:
        ids = submit_many(api, 12)
        wait_for(
            lambda: Order.objects.filter(pk__in=ids, status="pending_submit").exists(),
            message="an order in flight",
        )
        # when the whole worker dies at once
        slow.kill()
    finally:
        slow.stop()
    unfinished = Order.objects.filter(pk__in=ids).exclude(status="filled").count()
    assert unfinished > 0, "the kill came too late to test anything"
    # then a new worker and the sweeper (beat's job, run here by the test) finish everything
    fresh = Worker()
    try:
        wait_all_filled(ids, timeout=60, interval=0.5, sweep_older_than=0.5)
    finally:
        fresh.stop()
    assert_each_order_exactly_once_at_the_venue(ids)


def test_worker_killed_mid_batch_loses_and_duplicates_nothing(api, market, settings, monkeypatch):
    # given a slow venue (0.4 s per call, before it places anything) and a worker given three
    # batched tasks of 50 orders (one claim, one venue call, one application each; the intake
    # runs in this process: its batch size is set here, 200 in production)
    settings.RISK_ORDERS_PER_MINUTE = 10_000
    monkeypatch.setattr(services, "SUBMIT_BATCH_SIZE", 50)
    # One child: the batches go one after another, so once one is filled and the next is
    # pending_submit, the next is inside its 0.4 s at the venue when the kill comes. (With
    # two children two batches could finish together, and the moment both states show could
    # end before the kill.)
    slow = Worker(concurrency=1, extra_env={"SIM_LATENCY_MS": "400"})
    try:
        response = api.post(
            "/api/v1/orders/batch/",
            {
                "orders": [
                    {
                        "account": "ACC-1",
                        "client_order_id": f"batch-crash-{n}",
                        "symbol": "EUR_USD",
                        "side": "buy",
                        "type": "market",
                        "quantity": "1000",
                    }
                    for n in range(150)
                ]
            },
            format="json",
        )
        ids = [result["order"]["id"] for result in response.json()["results"]]
        orders = Order.objects.filter(pk__in=ids)
        # when the whole worker dies while a batch is claimed and at the venue, after another
        # batch was sent
        wait_for(
            lambda: (
                orders.filter(status="filled").exists()
                and orders.filter(status="pending_submit").exists()
            ),
            message="one batch sent and the next one under way",
            interval=0.02,
        )
        slow.kill()
    finally:
        slow.stop()
    assert orders.filter(status="pending_submit").exists()
    assert orders.exclude(status="filled").count() > 0
    # then a new worker and the sweeper finish every order, each exactly once at the venue
    fresh = Worker()
    try:
        wait_all_filled(ids, timeout=90, interval=0.5, sweep_older_than=0.5)
    finally:
        fresh.stop()
    assert_each_order_exactly_once_at_the_venue(ids)


def test_venue_timeout_after_accepting_never_places_twice(api, market):
    worker = Worker(extra_env={"SIM_TIMEOUT_RATE": "1"})
    try:
        ids = submit_many(api, 3)
        wait_all_filled(ids, timeout=40, interval=0.2, message="the retries to find the orders")
    finally:
        worker.stop()
    assert_each_order_exactly_once_at_the_venue(ids)


def test_venue_rejection_stores_the_reason(api, market):
    worker = Worker(extra_env={"SIM_REJECT_RATE": "1"})
    try:
        [order_id] = submit_many(api, 1)
        order = order_when(order_id, "rejected")
    finally:
        worker.stop()
    assert order.reject_reason == "rejected by the simulated venue"
    assert order.remaining_quantity == 0
    assert not order.fills.exists()
    detail = api.get(f"/api/v1/orders/{order_id}/").json()
    assert (detail["status"], detail["reject_reason"]) == (
        "rejected",
        "rejected by the simulated venue",
    )


def test_dropped_connections_are_retried_until_the_order_is_placed(api, market):
    worker = Worker(extra_env={"SIM_DISCONNECT_RATE": "0.5", "SIM_SEED": "7"})
    try:
        ids = submit_many(api, 4)
        wait_all_filled(ids, timeout=90, interval=0.5, sweep_older_than=2)
    finally:
        worker.stop()
    assert_each_order_exactly_once_at_the_venue(ids)


def test_broker_down_at_commit_the_relay_publishes_later(api, market, monkeypatch):
    # given a broker (a Redis server of its own) that cannot be reached when the order commits
    from kombu.exceptions import OperationalError

    from tradingsite.celery import direct

    def unreachable(*args, **kwargs):
        raise OperationalError("Error 111 connecting to redis: Connection refused")

    monkeypatch.setattr(direct, "broker_db", lambda client: None)
    monkeypatch.setattr(outbox, "_send", unreachable)
    [order_id] = submit_many(api, 1)
    # then the order is stored and its work waits in the outbox
    assert Order.objects.get(pk=order_id).status == "validated"
    assert OutboxMessage.objects.filter(published_at__isnull=True).count() == 1
    # when the broker is back and the relay runs
    monkeypatch.undo()
    time.sleep(1.1)
    assert outbox.relay() == 1
    worker = Worker()
    try:
        order_when(order_id, "filled")
    finally:
        worker.stop()
    assert OutboxMessage.objects.filter(published_at__isnull=True).count() == 0
    assert_replays(Order.objects.select_related("instrument", "account").get(pk=order_id))


def test_a_redis_restart_loses_no_accepted_order(trader, market, tmp_path):
    # given the whole system on a Redis of its own, kept in memory only (as this project's
    # Redis runs): the web, beat on the schedule `make run` writes, and, for now, no worker
    call_command("setup_periodic_tasks", verbosity=0)
    server = RedisServer(tmp_path)
    redis_env = {"REDIS_URL": server.url(0)}
    broker = server.client(1)  # the broker's database, next to REDIS_URL's
    headers = {"Authorization": f"Token {trader.auth_token.key}"}
    running = [web := WebProcess(**redis_env), Beat(extra_env=redis_env)]
    # (each order's events replay to its state: checked for every order when the test ends)

    def body(n: int, tag: str) -> dict:
        return order_body(client_order_id=f"{tag}-{n}", quantity="1000")

    def post(n: int, tag: str) -> httpx.Response:
        return httpx.post(
            f"{web.url}/api/v1/orders/", headers=headers, json=body(n, tag), timeout=10
        )

    try:
        # and orders accepted, one by one and in a batch, whose tasks wait in the broker
        singles = [post(n, "before").json()["id"] for n in range(5)]
        answer = httpx.post(
            f"{web.url}/api/v1/orders/batch/",
            headers=headers,
            json={"orders": [body(n, "batch") for n in range(40)]},
            timeout=30,
        ).json()
        batch = [result["order"]["id"] for result in answer["results"]]
        accepted = singles + batch
        assert len(batch) == 40
        assert Order.objects.filter(pk__in=accepted, status="validated").count() == 45
        assert broker.llen("orders") > 0
        # when Redis goes away: an order sent meanwhile is refused and stored nowhere
        server.stop()
        refused = post(0, "down")
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "risk_unavailable"
        assert not Order.objects.filter(client_order_id="down-0").exists()
        # and comes back empty: every task that waited in it is gone
        server.start()
        assert broker.llen("orders") == 0
        # then a worker started on it fills every accepted order, with nothing but the sweep
        # beat runs to find them (no new order comes to take them along)
        running.append(Worker(extra_env={**redis_env, "ORDERS_STUCK_AFTER_SECONDS": "1"}))
        wait_all_filled(accepted, timeout=60, interval=0.5)
        # and the web takes orders again, on the connections the restart cut
        after = [post(n, "after") for n in range(3)]
        assert [r.status_code for r in after] == [201] * 3, [r.text for r in after]
        accepted += [r.json()["id"] for r in after]
        wait_all_filled(accepted, timeout=30, interval=0.2)
    finally:
        for process in running:
            process.stop()
        server.stop()
    assert_each_order_exactly_once_at_the_venue(accepted)
    assert not Order.objects.filter(client_order_id="down-0").exists()


def test_a_web_process_killed_under_batches_loses_and_duplicates_nothing(
    trader, market, worker, web
):
    # given a worker, and a client sending 8 batches of 100 orders back to back to a web process,
    # sending a batch again when its answer does not come (as any client must)
    headers = {"Authorization": f"Token {trader.auth_token.key}"}
    batches = [
        [order_body(client_order_id=f"webkill-{b}-{n}", quantity="1000") for n in range(100)]
        for b in range(8)
    ]
    answers: dict[int, list[dict]] = {}
    failed_sends: list[str] = []

    def client() -> None:
        with httpx.Client(base_url=web.url, headers=headers, timeout=30) as http:
            for b, orders in enumerate(batches):
                while b not in answers:
                    try:
                        response = http.post("/api/v1/orders/batch/", json={"orders": orders})
                    except httpx.HTTPError as error:
                        failed_sends.append(f"batch {b}: {error!r}")
                        time.sleep(0.1)
                        continue
                    if response.status_code == 200:
                        answers[b] = response.json()["results"]
                    else:  # shed at the door (503): nothing stored, send again
                        time.sleep(0.1)

    sending = threading.Thread(target=client, daemon=True)
    stored = Order.objects.filter(client_order_id__startswith="webkill-")
    sending.start()
    # when the process serving them is killed (SIGKILL) after a batch commits, while it
    # answers it or takes the next, and gunicorn's master starts another; then that one too,
    # further on (one of the two kills could fall between two requests)
    for stored_before_kill in (200, 500):
        wait_for(
            lambda n=stored_before_kill: stored.count() >= n,
            timeout=60,
            interval=0.002,
            message=f"{stored_before_kill} orders stored",
        )
        [serving] = psutil.Process(web.process.pid).children()
        serving.kill()
    sending.join(timeout=90)
    assert not sending.is_alive(), "the client did not get every batch answered"
    # then some send failed, yet every order was answered and stored once
    assert failed_sends, "both kills came between two requests: they tested nothing"
    ids = {}
    for b, results in answers.items():
        for n, result in enumerate(results):
            assert result["status"] in (200, 201), result
            ids[f"webkill-{b}-{n}"] = result["order"]["id"]
    assert len(ids) == 800 and len(set(ids.values())) == 800
    assert stored.count() == 800
    # and each is filled once at the venue (the sweep, beat's job, run here by the test, finds
    # an order whose after-commit publish died with the process)
    wait_all_filled(list(ids.values()), timeout=90, interval=0.5, sweep_older_than=1)
    assert_each_order_exactly_once_at_the_venue(list(ids.values()))


def admin_connection():
    """A connection to the server's `postgres` database, as the tests' user, in autocommit:
    for what cannot be done from inside the test database."""
    import psycopg
    from django.db import connection

    db = connection.settings_dict
    return psycopg.connect(
        host=db.get("HOST") or "127.0.0.1",
        port=db.get("PORT") or 5432,
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
    )


@pytest.mark.postgres
def test_a_database_outage_under_orders_loses_and_duplicates_nothing(trader, market, worker, web):
    # given a worker and a web process on the test database, and a client sending orders one
    # by one with client order ids, sending one again (same id) while its answer is a 503 or
    # no answer at all, as the API asks
    from django.db import connection

    headers = {"Authorization": f"Token {trader.auth_token.key}"}
    answers: dict[str, dict] = {}
    refused: list[int] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=web.url, headers=headers, timeout=30) as http:
            n = 0
            while not stop.is_set() or n < 40:
                coid = f"outage-{n}"
                body = order_body(client_order_id=coid, quantity="1000")
                try:
                    response = http.post("/api/v1/orders/", json=body)
                except httpx.HTTPError:
                    time.sleep(0.05)
                    continue
                if response.status_code == 503:
                    refused.append(n)
                    time.sleep(0.05)
                    continue
                assert response.status_code in (200, 201), response.text
                answers[coid] = response.json()
                n += 1

    database = connection.settings_dict["NAME"]
    sending = threading.Thread(target=client, daemon=True)
    stored = Order.objects.filter(client_order_id__startswith="outage-")
    connection.ensure_connection()
    spared = connection.connection.info.backend_pid  # this test's own
    with admin_connection() as admin:
        try:
            sending.start()
            wait_for(lambda: stored.count() >= 10, interval=0.01, message="orders before")
            # when the database goes away for two seconds, as in a restart: every connection
            # to it ended (the web's, the worker's), none taken meanwhile
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            ended = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> %s",
                [database, spared],
            ).fetchone()[0]
            time.sleep(2)
        finally:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
            stop.set()
    sending.join(timeout=60)
    assert not sending.is_alive(), "the client did not get its orders answered"
    # then orders sent meanwhile were refused with 503, and every order was answered once
    assert ended > 0 and refused, (ended, refused)
    ids = [answers[f"outage-{n}"]["id"] for n in range(len(answers))]
    assert len(set(ids)) == len(ids) == stored.count()
    # and each is filled once at the venue (the sweep, beat's job, run here by the test, finds
    # what the worker could not finish while the database was away)
    wait_all_filled(ids, timeout=90, interval=0.5, sweep_older_than=1)
    assert_each_order_exactly_once_at_the_venue(ids)
