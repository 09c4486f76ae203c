"""The API when the database fails a request (unreachable, restarting, a transaction given
up): 503 `service_unavailable` with Retry-After, in the API's error shape, never a 500; and
sending the order again is safe (tradingsite/api_errors.py). An insert whose connection broke
as it committed is looked up: a stored order is answered as stored (services._stored_after_all)."""

import httpx
import pytest
from django.db import OperationalError

from orders import services
from orders.models import Account, Order
from risk.models import RiskLimit
from tests.helpers import assert_replays, order_body, submit
from tests.workers import WebProcess


def assert_service_unavailable(response) -> None:
    assert response.status_code == 503, response.content
    assert response.headers["Retry-After"] == "1"
    error = response.json()["error"]
    assert (error["code"], error["order_id"]) == ("service_unavailable", None)
    assert "client_order_id" in error["message"]


@pytest.mark.django_db
def test_a_database_failure_is_a_503_to_retry_and_the_retry_stores_the_order_once(api, monkeypatch):
    # given a database that drops the connection under the order
    def dropped(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("orders.services.order_submit", dropped)
    # when an order is sent
    body = order_body(client_order_id="db-down-1")
    # then the answer says to send it again
    assert_service_unavailable(api.post("/api/v1/orders/", body, format="json"))
    # and once the database answers, sending it again stores it, and again answers it
    monkeypatch.undo()
    first = submit(api, expect=(201,), client_order_id="db-down-1")
    again = submit(api, expect=(200,), client_order_id="db-down-1")
    assert first["id"] == again["id"]
    assert Order.objects.filter(client_order_id="db-down-1").count() == 1


def breaking_insert(*, at_call: int = 1, stored: bool = False):
    """The intake's insert, whose `at_call`-th run loses its connection as it commits: having
    stored its rows (`stored`) or not, and the client told only that the connection broke."""
    real = services.rows_insert
    calls: list[int] = []

    def insert(*groups, **kwargs):
        calls.append(1)
        if len(calls) != at_call:
            return real(*groups, **kwargs)
        if stored:
            real(*groups, **kwargs)
        raise OperationalError("consuming input failed: server closed the connection")

    return insert


@pytest.mark.django_db(transaction=True)
def test_an_order_stored_by_an_insert_whose_answer_was_lost_is_answered_as_stored(
    api, monkeypatch, queued
):
    # given an insert that stores the order, then loses the connection before its answer
    monkeypatch.setattr(services, "rows_insert", breaking_insert(stored=True))
    # when an order without a client order id is sent
    body = {k: v for k, v in order_body().items() if k != "client_order_id"}
    response = api.post("/api/v1/orders/", body, format="json")
    # then it is answered as stored (a 503 would have the client send it again: a second
    # order), and sent on to a worker once
    assert response.status_code == 201, response.content
    stored = Order.objects.get()
    assert (str(stored.id), stored.status) == (response.json()["id"], "validated")
    assert queued() == [str(stored.id)]
    assert_replays(stored)


@pytest.mark.django_db(transaction=True)
def test_an_order_the_failed_insert_did_not_store_is_a_503_and_not_counted(
    api, monkeypatch, settings, queued
):
    # given a limit of one order a minute, and an insert that fails without storing
    settings.RISK_ORDERS_PER_MINUTE = 1
    monkeypatch.setattr(services, "rows_insert", breaking_insert(stored=False))
    # then the order is refused, to be sent again, and nothing is stored or queued
    assert_service_unavailable(api.post("/api/v1/orders/", order_body(), format="json"))
    assert not Order.objects.exists()
    assert queued() == []
    # and its count was given back: sent again, it is the minute's one order
    monkeypatch.undo()
    submit(api, expect=(201,))


@pytest.mark.django_db(transaction=True)
def test_a_batch_stored_by_an_insert_whose_answer_was_lost_is_answered_as_stored(
    api, monkeypatch, queued
):
    monkeypatch.setattr(services, "rows_insert", breaking_insert(stored=True))
    body = {"orders": [order_body(client_order_id=f"lost-{n}") for n in range(3)]}
    response = api.post("/api/v1/orders/batch/", body, format="json")
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [result["status"] for result in results] == [201, 201, 201]
    ids = [result["order"]["id"] for result in results]
    assert sorted(str(pk) for pk in Order.objects.values_list("pk", flat=True)) == sorted(ids)
    assert sorted(queued()) == sorted(ids)


@pytest.mark.django_db(transaction=True)
def test_a_batch_the_failed_insert_did_not_store_is_a_503(api, monkeypatch, queued):
    monkeypatch.setattr(services, "rows_insert", breaking_insert(stored=False))
    body = {"orders": [order_body(client_order_id=f"lost-{n}") for n in range(3)]}
    assert_service_unavailable(api.post("/api/v1/orders/batch/", body, format="json"))
    assert not Order.objects.exists()
    assert queued() == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("failing", "statuses"),
    [(3, [201, 201, 201, 503]), (2, [201, 201, 503, 503])],
    ids=["the-last-group", "an-order-on-its-own"],
)
def test_a_batch_the_database_fails_midway_answers_what_it_stored(
    api, trader, monkeypatch, queued, failing, statuses
):
    # given a batch stored in three pieces: two orders, one that limits apply to (it takes
    # the one-order path, on another account), then one more
    other = Account.objects.create(code="ACC-2")
    other.users.add(trader)
    RiskLimit.objects.create(
        scope="account", target="ACC-2", rule="max_order_quantity", value=10**9
    )
    accounts = ["ACC-1", "ACC-1", "ACC-2", "ACC-1"]
    body = {"orders": [order_body(account=code, client_order_id=f"mid-{n}")
                       for n, code in enumerate(accounts)]}  # fmt: skip
    # when the database fails one of the pieces, storing none of it
    monkeypatch.setattr(services, "rows_insert", breaking_insert(at_call=failing))
    response = api.post("/api/v1/orders/batch/", body, format="json")
    # then the orders stored before are answered as stored, the rest with a 503 of their own
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [result["status"] for result in results] == statuses
    assert {r["error"]["code"] for r in results if r["status"] == 503} == {"service_unavailable"}
    answered = [r["order"]["id"] for r in results if r["status"] == 201]
    assert sorted(str(pk) for pk in Order.objects.values_list("pk", flat=True)) == sorted(answered)
    # and each stored order is sent on to a worker once, and none that was not
    assert sorted(queued()) == sorted(answered)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_web_process_whose_database_cannot_be_reached_answers_503(trader, instruments):
    web = WebProcess(DATABASE_URL="postgres://postgres@127.0.0.1:1/unreachable")
    headers = {"Authorization": f"Token {trader.auth_token.key}"}
    try:
        for path, body in (
            ("/api/v1/orders/", order_body(client_order_id="unreachable-1")),
            ("/api/v1/orders/batch/", {"orders": [order_body(client_order_id="unreachable-2")]}),
        ):
            response = httpx.post(f"{web.url}{path}", headers=headers, json=body, timeout=10)
            assert_service_unavailable(response)
        listed = httpx.get(f"{web.url}/api/v1/orders/", headers=headers, timeout=10)
        assert_service_unavailable(listed)
        assert httpx.get(f"{web.url}/readyz", timeout=10).status_code == 503
    finally:
        web.stop()
