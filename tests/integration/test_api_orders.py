"""The HTTP contract of API.md, in process (no worker: nothing leaves the database)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from orders.models import Account, Order, OrderEvent, OutboxMessage
from orders.replay import order_state, replay
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

LIMIT_BODY = {
    "account": "ACC-1",
    "client_order_id": "strat7-000123",
    "symbol": "EUR_USD",
    "side": "buy",
    "type": "limit",
    "quantity": "100000",
    "limit_price": "1.08500",
    "time_in_force": "gtc",
}


def submit(api, **overrides):
    return api.post("/api/v1/orders/", {**LIMIT_BODY, **overrides}, format="json")


def assert_replays(order):
    order = Order.objects.select_related("instrument", "account").get(pk=order.pk)
    assert replay(order.events.all()) == order_state(order)


def test_submit_stores_the_order_its_events_and_its_outbox_row(api):
    # when
    response = submit(api)
    # then
    assert response.status_code == 201
    body = response.json()
    assert {
        k: body[k]
        for k in (
            "client_order_id",
            "account",
            "symbol",
            "side",
            "type",
            "time_in_force",
            "quantity",
            "limit_price",
            "stop_price",
            "status",
            "filled_quantity",
            "remaining_quantity",
            "average_fill_price",
            "commission",
            "venue",
            "venue_order_id",
            "parent_id",
            "reject_reason",
        )
    } == {
        "client_order_id": "strat7-000123",
        "account": "ACC-1",
        "symbol": "EUR_USD",
        "side": "buy",
        "type": "limit",
        "time_in_force": "gtc",
        "quantity": "100000",
        "limit_price": "1.08500",
        "stop_price": None,
        "status": "validated",
        "filled_quantity": "0",
        "remaining_quantity": "100000",
        "average_fill_price": None,
        "commission": "0",
        "venue": "sim",
        "venue_order_id": None,
        "parent_id": None,
        "reject_reason": None,
    }
    order = Order.objects.get(pk=body["id"])
    assert order.quantity == Decimal("100000")
    assert [e.type for e in order.events.order_by("seq")] == ["created", "validated"]
    assert (
        OutboxMessage.objects.filter(task="orders.submit", kwargs__order_id=str(order.id)).count()
        == 1
    )
    assert_replays(order)


def test_the_task_is_published_only_after_commit(
    api, django_capture_on_commit_callbacks, monkeypatch
):
    published = []
    monkeypatch.setattr("orders.outbox.publish_submission", published.append)
    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        submit(api)
        # then nothing went out before the commit
        assert published == []
    for callback in callbacks:
        callback()
    assert [m.task for m in published] == ["orders.submit"]


def test_idempotent_repeat_answers_the_same_order_with_200(api):
    first = submit(api)
    second = submit(api)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert Order.objects.count() == 1
    assert OrderEvent.objects.count() == 2


def _one_order_written_once(order_id):
    assert Order.objects.count() == 1
    assert OrderEvent.objects.filter(order_id=order_id).count() == 2
    assert OutboxMessage.objects.filter(kwargs__order_id=order_id).count() == 1
    assert OutboxMessage.objects.count() == 1


@pytest.mark.django_db(transaction=True)  # the insert is its own transaction, as in production
def test_a_repeat_meets_the_unique_key_is_answered_with_the_first_and_writes_nothing(api):
    """No lookup precedes the insert: a repeat (or a racing twin) is found by the unique key."""
    first = submit(api).json()
    second = submit(api)
    assert (second.status_code, second.json()["id"]) == (200, first["id"])
    _one_order_written_once(first["id"])


def test_a_repeat_inside_a_transaction_leaves_it_usable(api):
    """The same inside a caller's transaction (the test's): the insert's savepoint is rolled
    back alone, and the first order is read in the same transaction."""
    first = submit(api).json()
    second = submit(api)
    assert (second.status_code, second.json()["id"]) == (200, first["id"])
    _one_order_written_once(first["id"])


def test_same_client_order_id_with_another_body_is_409(api):
    first = submit(api)
    response = submit(api, quantity="200000")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "duplicate_client_order_id"
    assert error["order_id"] == first.json()["id"]
    assert Order.objects.count() == 1


def test_client_order_id_is_generated_when_absent(api):
    body = {**LIMIT_BODY}
    del body["client_order_id"]
    response = api.post("/api/v1/orders/", body, format="json")
    assert response.status_code == 201
    assert len(response.json()["client_order_id"]) == 32


def test_account_may_be_omitted_when_the_user_has_one(api):
    body = {**LIMIT_BODY}
    del body["account"]
    assert api.post("/api/v1/orders/", body, format="json").json()["account"] == "ACC-1"


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"limit_price": "1.085051"}, "invalid_tick", "limit_price"),
        ({"quantity": "100.5"}, "invalid_lot", "quantity"),
        ({"symbol": "XXX_YYY"}, "unknown_symbol", "symbol"),
        ({"limit_price": None}, "missing_price", "limit_price"),
        ({"type": "market"}, "unexpected_field", "limit_price"),
        ({"time_in_force": "gtd"}, "missing_expire_at", "expire_at"),
        ({"quantity": "0"}, "invalid_quantity", "quantity"),
        ({"quantity": "abc"}, "validation_error", "quantity"),
        ({"side": "hold"}, "validation_error", "side"),
        ({"type": "trailing_stop"}, "validation_error", "type"),
        ({"take_profit": {"limit_price": "1.09"}}, "validation_error", "take_profit"),
        ({"client_order_id": "has space"}, "validation_error", "client_order_id"),
        ({"quantity": "1e400"}, "validation_error", "quantity"),
        ({"metadata": [1, 2]}, "validation_error", "metadata"),
    ],
)
def test_bad_input_is_400_naming_field_and_rule_and_stores_nothing(api, overrides, code, field):
    response = submit(api, **overrides)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert field in error["fields"]
    assert error["order_id"] is None
    assert Order.objects.count() == 0
    assert OutboxMessage.objects.count() == 0


@pytest.mark.parametrize("body", [b"[1,2]", b'"text"', b"{not json", b"null", b"123"])
def test_any_body_gets_a_4xx_in_the_error_shape(api, body):
    response = api.post("/api/v1/orders/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"validation_error", "malformed_json"}


def test_unauthenticated_is_401_in_the_error_shape(instruments):
    from rest_framework.test import APIClient

    response = APIClient().get("/api/v1/orders/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token nope")
    assert bad.get("/api/v1/orders/").json()["error"]["code"] == "authentication_failed"


def test_another_traders_order_is_404_everywhere(api, other_trader):
    order_id = submit(api).json()["id"]
    bob = client_for(other_trader)
    for response in (
        bob.get(f"/api/v1/orders/{order_id}/"),
        bob.get(f"/api/v1/orders/{order_id}/events/"),
        bob.post(f"/api/v1/orders/{order_id}/cancel/"),
        bob.patch(f"/api/v1/orders/{order_id}/", {"quantity": "5"}, format="json"),
        bob.get("/api/v1/orders/by-client-id/strat7-000123/"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert bob.get("/api/v1/orders/").json()["results"] == []
    assert Order.objects.get(pk=order_id).status == "validated"


def test_submitting_for_an_account_not_granted_is_404(api, other_trader):
    response = submit(api, account="ACC-2")
    assert response.status_code == 404
    assert Order.objects.count() == 0


def test_compliance_reads_every_account_but_cannot_trade_them(api, db):
    from django.contrib.auth.models import Group

    from tests.conftest import make_trader

    order_id = submit(api).json()["id"]
    officer = make_trader("carol")
    officer.groups.add(Group.objects.create(name="compliance"))
    carol = client_for(officer)
    assert carol.get(f"/api/v1/orders/{order_id}/").status_code == 200
    assert carol.post(f"/api/v1/orders/{order_id}/cancel/").status_code == 404


def test_compliance_finds_an_order_by_client_id_in_any_account(api, db):
    """Every account's orders, including an account created after the first lookup."""
    from django.contrib.auth.models import Group

    from tests.conftest import make_trader

    order_id = submit(api).json()["id"]
    officer = make_trader("carol")
    officer.groups.add(Group.objects.create(name="compliance"))
    carol = client_for(officer)
    by_id = "/api/v1/orders/by-client-id/strat7-000123/"
    assert carol.get(by_id).json()["id"] == order_id
    assert carol.get("/api/v1/orders/by-client-id/nope/").status_code == 404
    # the same client id on a new account of another trader: now ambiguous without ?account=
    other = client_for(make_trader("dave", "ACC-9"))
    assert submit(other, account="ACC-9").status_code == 201
    assert carol.get(by_id).json()["error"]["code"] == "account_required"
    assert carol.get(f"{by_id}?account=ACC-1").json()["id"] == order_id


def test_reading_follows_group_and_account_grants_as_they_change(api, other_trader):
    """Who reads which account is cached (tradingsite/refdata.py): a grant or a group
    membership given or taken away counts from the next request."""
    from django.contrib.auth.models import Group

    order_id = submit(api).json()["id"]
    bob = client_for(other_trader)
    detail = f"/api/v1/orders/{order_id}/"
    assert bob.get(detail).status_code == 404
    compliance = Group.objects.create(name="compliance")
    other_trader.groups.add(compliance)
    assert bob.get(detail).status_code == 200
    assert bob.get(f"{detail}events/").status_code == 200
    other_trader.groups.remove(compliance)
    assert bob.get(detail).status_code == 404
    account = Account.objects.get(code="ACC-1")
    account.users.add(other_trader)
    assert bob.get(detail).json()["id"] == order_id
    account.users.remove(other_trader)
    assert bob.get(detail).status_code == 404
    assert bob.get(f"{detail}events/").status_code == 404


def test_detail_has_fills_and_children(api):
    order_id = submit(api).json()["id"]
    body = api.get(f"/api/v1/orders/{order_id}/").json()
    assert body["fills"] == [] and body["children"] == []


def test_by_client_id(api):
    order_id = submit(api).json()["id"]
    assert api.get("/api/v1/orders/by-client-id/strat7-000123/").json()["id"] == order_id
    assert (
        api.get("/api/v1/orders/by-client-id/strat7-000123/?account=ACC-1").json()["id"] == order_id
    )
    assert api.get("/api/v1/orders/by-client-id/nope/").status_code == 404


def test_list_is_newest_first_with_cursor_pages_and_filters(api):
    ids = [
        submit(api, client_order_id=f"c-{n}", side="buy" if n % 2 else "sell").json()["id"]
        for n in range(7)
    ]
    submit(api, client_order_id="other", symbol="AAPL", limit_price="190.00", quantity="10")
    page = api.get("/api/v1/orders/?symbol=EUR_USD&page_size=3").json()
    assert [o["id"] for o in page["results"]] == ids[::-1][:3]
    second = api.get(page["next"]).json()
    assert [o["id"] for o in second["results"]] == ids[::-1][3:6]
    third = api.get(second["next"]).json()
    assert [o["id"] for o in third["results"]] == ids[::-1][6:]
    assert third["next"] is None
    assert len(api.get("/api/v1/orders/?side=buy&symbol=EUR_USD").json()["results"]) == 3
    assert len(api.get("/api/v1/orders/?status=validated&status=filled").json()["results"]) == 8
    assert api.get("/api/v1/orders/?open=false").json()["results"] == []
    assert len(api.get("/api/v1/orders/?open=true&account=ACC-1").json()["results"]) == 8
    future = (timezone.now() + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert api.get("/api/v1/orders/", {"created_after": future}).json()["results"] == []
    assert api.get("/api/v1/orders/?status=bogus").status_code == 400


def test_page_size_is_capped_at_500(api):
    submit(api)
    assert api.get("/api/v1/orders/?page_size=100000").status_code == 200


def test_cancel_before_submission_is_immediate(api):
    order_id = submit(api).json()["id"]
    response = api.post(f"/api/v1/orders/{order_id}/cancel/")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    order = Order.objects.get(pk=order_id)
    assert order.remaining_quantity == 0
    assert_replays(order)


def test_cancel_of_a_cancelled_order_is_409_and_changes_nothing(api):
    order_id = submit(api).json()["id"]
    api.post(f"/api/v1/orders/{order_id}/cancel/")
    events_before = OrderEvent.objects.filter(order_id=order_id).count()
    response = api.post(f"/api/v1/orders/{order_id}/cancel/")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_transition"
    assert OrderEvent.objects.filter(order_id=order_id).count() == events_before


def test_modify_before_submission_applies_at_once(api):
    order_id = submit(api).json()["id"]
    response = api.patch(
        f"/api/v1/orders/{order_id}/",
        {"quantity": "50000", "limit_price": "1.08400"},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["quantity"], body["remaining_quantity"], body["limit_price"]) == (
        "50000",
        "50000",
        "1.08400",
    )
    order = Order.objects.get(pk=order_id)
    assert order.events.order_by("-seq").first().type == "modified"
    assert_replays(order)


def test_modify_is_validated_like_a_submission(api):
    order_id = submit(api).json()["id"]
    response = api.patch(f"/api/v1/orders/{order_id}/", {"limit_price": "1.085001"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_tick"
    assert api.patch(f"/api/v1/orders/{order_id}/", {}, format="json").status_code == 400
    assert Order.objects.get(pk=order_id).limit_price == Decimal("1.08500")


def test_events_are_the_audit_trail_oldest_first(api):
    order_id = submit(api).json()["id"]
    api.post(f"/api/v1/orders/{order_id}/cancel/")
    events = api.get(f"/api/v1/orders/{order_id}/events/").json()["results"]
    assert [(e["seq"], e["type"], e["actor"]) for e in events] == [
        (1, "created", "user:alice"),
        (2, "validated", "user:alice"),
        (3, "cancelled", "user:alice"),
    ]
    assert events[0]["correlation_id"]


def test_correlation_id_comes_from_x_request_id(api):
    response = api.post("/api/v1/orders/", LIMIT_BODY, format="json", HTTP_X_REQUEST_ID="req-42")
    assert response["X-Request-ID"] == "req-42"
    assert set(OrderEvent.objects.values_list("correlation_id", flat=True)) == {"req-42"}


def test_batch_answers_one_result_per_order_in_order(api):
    orders = [
        {**LIMIT_BODY, "client_order_id": "b-1"},
        {**LIMIT_BODY, "client_order_id": "b-2", "limit_price": "1.0850001"},
        {**LIMIT_BODY, "client_order_id": "b-1"},
        "not an object",
    ]
    response = api.post("/api/v1/orders/batch/", {"orders": orders}, format="json")
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 400, 200, 400]
    assert results[0]["order"]["client_order_id"] == "b-1"
    assert results[1]["error"]["code"] == "invalid_tick"
    assert results[2]["order"]["id"] == results[0]["order"]["id"]
    assert Order.objects.count() == 1


def test_batch_over_1000_is_refused_whole(api):
    response = api.post("/api/v1/orders/batch/", {"orders": [LIMIT_BODY] * 1001}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["orders"]
    assert Order.objects.count() == 0


def test_cancel_all_by_symbol(api):
    eur = submit(api, client_order_id="e1").json()["id"]
    aapl = submit(
        api, client_order_id="a1", symbol="AAPL", limit_price="190.00", quantity="10"
    ).json()["id"]
    response = api.post("/api/v1/orders/cancel-all/", {"symbol": "EUR_USD"}, format="json")
    assert response.status_code == 202
    assert response.json()["count"] == 1
    assert Order.objects.get(pk=eur).status == "cancelled"
    assert Order.objects.get(pk=aapl).status == "validated"


def test_fills_list_is_empty_and_filterable(api):
    assert api.get("/api/v1/fills/?symbol=EUR_USD").json() == {
        "next": None,
        "previous": None,
        "results": [],
    }


def test_health_schema_and_docs(api):
    from rest_framework.test import APIClient

    anonymous = APIClient()
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    assert api.get("/api/v1/schema/").status_code == 200
    assert api.get("/api/v1/docs/").status_code == 200


def test_unknown_api_path_is_404_json(api):
    response = api.get("/api/v1/nothing-here/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_openapi_schema_is_valid_and_lists_every_endpoint(tmp_path):
    from django.core.management import call_command

    target = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = target.read_text()
    for path in (
        "/api/v1/orders/:",
        "/api/v1/orders/batch/:",
        "/api/v1/orders/{order_id}/:",
        "/api/v1/orders/{order_id}/cancel/:",
        "/api/v1/orders/cancel-all/:",
        "/api/v1/orders/{order_id}/events/:",
        "/api/v1/orders/by-client-id/{client_order_id}/:",
        "/api/v1/fills/:",
    ):
        assert f"  {path}" in schema
