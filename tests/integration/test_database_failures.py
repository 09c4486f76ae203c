"""The API when the database fails a request (unreachable, restarting, a transaction given
up): 503 `service_unavailable` with Retry-After, in the API's error shape, never a 500; and
sending the order again is safe (tradingsite/api_errors.py)."""

import httpx
import pytest
from django.db import OperationalError

from orders.models import Order
from tests.helpers import order_body, submit
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
