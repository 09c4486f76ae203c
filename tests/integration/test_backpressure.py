"""Backpressure: while ORDERS_INTAKE_MAX_BACKLOG accepted orders wait for a worker, new orders
are refused with 503 service_busy and Retry-After, and nothing is stored; repeats are still
answered, and the intake opens again as soon as the workers catch up."""

from decimal import Decimal

import pytest

from orders import services
from orders.exceptions import IntakeBusy
from orders.models import Account, Order
from orders.validation import OrderTerms
from tests.helpers import eur_usd_market, submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_intake(settings, instruments):
    settings.ORDERS_INTAKE_MAX_BACKLOG = 3
    settings.ORDERS_INTAKE_BACKLOG_CHECK_SECONDS = 0
    settings.RISK_ORDERS_PER_MINUTE = 10**6
    services._backlog_seen = (float("-inf"), 0)
    eur_usd_market()


def test_a_full_queue_refuses_new_orders_and_stores_nothing(api, small_intake, caplog):
    caplog.set_level("INFO")
    first = post(api, "q-0").json()
    assert [post(api, f"q-{n}").status_code for n in (1, 2)] == [201, 201]
    response = post(api, "q-3")
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    error = response.json()["error"]
    assert (error["code"], error["order_id"]) == ("service_busy", None)
    assert "3 orders are waiting" in error["message"]
    assert Order.objects.count() == 3
    # a repeat is still answered: it adds no work
    again = post(api, "q-0")
    assert (again.status_code, again.json()["id"]) == (200, first["id"])
    # and a batch request is refused whole, before any body is read
    refused = api.post(
        "/api/v1/orders/batch/",
        {"orders": [{**first_body(), "client_order_id": f"q-{n}"} for n in (0, 4, 5)]},
        format="json",
    )
    assert (refused.status_code, refused["Retry-After"]) == (503, "1")
    assert refused.json()["error"]["code"] == "service_busy"
    assert Order.objects.count() == 3
    # shedding load is not a server error: logged once each at INFO, never by django.request
    assert not [r for r in caplog.records if r.name == "django.request"]
    assert [r.levelname for r in caplog.records if r.getMessage().startswith("load shed")] == [
        "INFO",
        "INFO",
    ]


def test_a_batch_given_to_the_service_answers_repeats_and_refuses_the_rest(trader, small_intake):
    account = Account.objects.get(code="ACC-1")
    stored = [
        services.order_submit(account=account, terms=terms(f"s-{n}"), actor="test").order
        for n in range(3)
    ]
    answers = services.orders_submit_many(
        requests=[services.SubmitRequest(account, terms(f"s-{n}")) for n in (0, 3)],
        actor="test",
    )
    assert answers[0].order.pk == stored[0].pk and not answers[0].created
    assert isinstance(answers[1], IntakeBusy)
    assert Order.objects.count() == 3


def test_a_batch_admitted_at_the_door_is_not_refused_order_by_order(api, small_intake, monkeypatch):
    # The backlog fills between the batch view's check and the service's: the request was
    # admitted, so its orders are taken (the limit is passed by one batch), not refused one
    # by one inside a 200 answer after their bodies were read.
    checks = []
    door = services.intake_check

    def full_after_the_door():
        checks.append(1)
        if len(checks) > 1:
            raise IntakeBusy("full now", retry_after=1)
        door()

    monkeypatch.setattr(services, "intake_check", full_after_the_door)
    body = {"orders": [{**first_body(), "client_order_id": f"a-{n}"} for n in range(4)]}
    response = api.post("/api/v1/orders/batch/", body, format="json")
    assert response.status_code == 200
    assert [r["status"] for r in response.json()["results"]] == [201] * 4
    assert Order.objects.count() == 4 and len(checks) == 1
    # and a request refused at the door is refused whole
    assert api.post("/api/v1/orders/batch/", body, format="json").status_code == 503


def test_the_intake_opens_again_when_the_workers_catch_up(api, small_intake):
    ids = [submit(api, expect=(201,), client_order_id=f"c-{n}")["id"] for n in range(3)]
    submit(api, expect=(503,), client_order_id="c-3")
    services.order_submit_to_venue(order_id=ids[0])
    submit(api, expect=(201,), client_order_id="c-3")


def test_the_kill_switch_flatten_is_never_held_back(trader, small_intake):
    account = Account.objects.get(code="ACC-1")
    for n in range(3):
        services.order_submit(account=account, terms=terms(f"k-{n}"), actor="test")
    with pytest.raises(IntakeBusy):
        services.order_submit(account=account, terms=terms("k-3"), actor="test")
    try:
        services.order_submit(account=account, terms=terms("k-4"), actor="test", reduce_only=True)
    except IntakeBusy:  # pragma: no cover - the failure this test is about
        pytest.fail("a reduce-only order was held back by the intake's backpressure")
    except Exception:  # the risk gate may refuse it (no position to reduce): not backpressure
        pass


def post(api, client_order_id: str):
    return api.post(
        "/api/v1/orders/", {**first_body(), "client_order_id": client_order_id}, format="json"
    )


def first_body() -> dict:
    return {
        "account": "ACC-1",
        "symbol": "EUR_USD",
        "side": "buy",
        "type": "limit",
        "quantity": "1000",
        "limit_price": "1.00000",
    }


def terms(client_order_id: str) -> OrderTerms:
    return OrderTerms(
        symbol="EUR_USD",
        side="buy",
        type="limit",
        time_in_force="gtc",
        quantity=Decimal(1000),
        limit_price=Decimal("1.00000"),
        client_order_id=client_order_id,
    )


def test_the_count_reads_the_waiting_orders_only_and_one_thread_counts_at_a_time(
    settings, instruments
):
    """The count has no ORDER BY (the model's default, created_at, let a plan walk the whole
    table's index: its cost grew with the table, a quarter of PostgreSQL's busy time in the
    bench's third run) and names the status in its text (test_generic_plans), and while one
    thread counts, the process's others use the last count."""

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.ORDERS_INTAKE_MAX_BACKLOG = 5
    settings.ORDERS_INTAKE_BACKLOG_CHECK_SECONDS = 3600
    services._backlog_seen = (float("-inf"), 0)
    with CaptureQueriesContext(connection) as captured:
        services.intake_check()
    (sql,) = [q["sql"] for q in captured.captured_queries]
    assert "ORDER BY" not in sql.upper() and "'validated'" in sql

    assert not meanwhile_refused(seen=(float("-inf"), 4))  # the last count: 4 < 5


def meanwhile_refused(*, seen: tuple[float, int]) -> bool:
    """With `seen` as the last count, one thread counts (slowly) while another asks: answers
    whether the other was refused; asserts that only the first thread counted."""
    import threading
    from unittest import mock

    from django.db import connection

    from orders.exceptions import IntakeBusy

    services._backlog_seen = seen
    inside = threading.Event()
    release = threading.Event()
    counted: list[str] = []
    real_count = services._waiting_orders

    def slow_count(at_most):
        counted.append(threading.current_thread().name)
        inside.set()
        release.wait(5)
        return real_count(at_most)

    def count_in_a_thread():
        try:
            services.intake_check()
        finally:
            connection.close()  # the thread's own connection

    refused = False
    with mock.patch.object(services, "_waiting_orders", slow_count):
        counter = threading.Thread(target=count_in_a_thread, name="counter")
        counter.start()
        assert inside.wait(5)
        try:
            services.intake_check()  # another thread meanwhile: no query of its own
        except IntakeBusy:
            refused = True
        release.set()
        counter.join(5)
    assert counted == ["counter"]
    return refused


def test_while_one_thread_counts_the_others_refuse_on_a_recent_count_only(settings, instruments):
    """A count from before an idle spell (older than two intervals) says nothing of now: the
    other threads admit while one counts again, instead of refusing on it."""
    import time

    settings.ORDERS_INTAKE_MAX_BACKLOG = 5
    settings.ORDERS_INTAKE_BACKLOG_CHECK_SECONDS = 60
    now = time.monotonic()
    assert meanwhile_refused(seen=(now - 90, 10))  # one interval and a half: trusted
    assert not meanwhile_refused(seen=(now - 600, 10))  # ten: stale, admitted


def test_a_count_that_fails_stores_nothing_and_the_next_request_counts_again(api, small_intake):
    """The database away while the backlog is counted: that order is refused (503
    `service_unavailable`, to be sent again) and not stored; the count is taken again by the
    next request, which goes through."""
    from unittest import mock

    from django.db import OperationalError

    api.raise_request_exception = False
    with mock.patch.object(
        services, "_waiting_orders", side_effect=OperationalError("server closed")
    ):
        refused = post(api, "while-away")
    assert (refused.status_code, refused.json()["error"]["code"]) == (503, "service_unavailable")
    assert not Order.objects.filter(client_order_id="while-away").exists()
    assert post(api, "after").status_code == 201
    assert Order.objects.filter(client_order_id="after").count() == 1
