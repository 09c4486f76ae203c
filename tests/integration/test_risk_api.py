"""The risk gate and the kill switch through the API and the services (no worker)."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import DatabaseError, transaction

from brokers.registry import venue_for
from orders import services as order_services
from orders.models import Order, OutboxMessage
from risk.models import RateLimitOverride, RiskEvent, RiskLimit, TradingState
from tests.conftest import client_for, make_trader

pytestmark = pytest.mark.django_db

D = Decimal
BODY = {
    "account": "ACC-1",
    "symbol": "EUR_USD",
    "side": "buy",
    "type": "limit",
    "quantity": "100000",
    "limit_price": "1.08500",
}


@pytest.fixture
def risk_officer(db):
    user = make_trader("rita")
    user.groups.add(Group.objects.get_or_create(name="risk")[0])
    return user


@pytest.fixture
def risk_api(risk_officer, instruments):
    return client_for(risk_officer)


@pytest.fixture
def quoted(instruments):
    venue = venue_for("sim")
    venue.set_quote(
        "EUR_USD", bid=D("1.08490"), ask=D("1.08500"), bid_size=D("1000000"), ask_size=D("1000000")
    )
    return venue


def submit(api, **overrides):
    return api.post("/api/v1/orders/", {**BODY, **overrides}, format="json")


def limit(rule, value, scope="account", target="ACC-1", **extra):
    return RiskLimit.objects.create(rule=rule, value=D(value), scope=scope, target=target, **extra)


def test_breaching_a_limit_is_422_and_the_order_is_stored_rejected(api, quoted):
    # given
    limit("max_order_notional", "100000")
    # when: 100000 x 1.085 = 108500 > 100000
    response = submit(api, client_order_id="big-1")
    # then
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "risk_rejected"
    assert error["reasons"] == [
        {
            "code": "max_order_notional",
            "message": error["reasons"][0]["message"],
            "limit": "100000",
            "actual": "108500",
            "scope": "account",
            "target": "ACC-1",
        }
    ]
    order = Order.objects.get(pk=error["order_id"])
    assert (order.status, order.remaining_quantity) == ("rejected", 0)
    assert order.reject_reason == error["reasons"][0]["message"]
    assert [e.type for e in order.events.order_by("seq")] == ["created", "risk_rejected"]
    assert OutboxMessage.objects.count() == 0
    event = RiskEvent.objects.get(kind="order_rejected")
    assert (event.order_id, event.account, event.actor) == (order.id, "ACC-1", "user:alice")
    # and the same request again gets the same answer, without a second order
    again = submit(api, client_order_id="big-1")
    assert again.status_code == 422
    assert again.json()["error"]["order_id"] == str(order.id)
    assert Order.objects.count() == 1


def test_at_the_limit_passes(api, quoted):
    limit("max_order_notional", "108500")
    assert submit(api).status_code == 201


def test_every_breached_rule_is_reported(api, quoted):
    limit("max_order_quantity", "50000")
    limit("max_order_notional", "1000", scope="global", target="")
    response = submit(api)
    codes = [reason["code"] for reason in response.json()["error"]["reasons"]]
    assert codes == ["max_order_quantity", "max_order_notional"]


def test_another_accounts_limit_does_not_apply(api, quoted, other_trader):
    limit("max_order_quantity", "1", target="ACC-2")
    assert submit(api).status_code == 201


def test_an_unreadable_snapshot_refuses_the_order(api, quoted, monkeypatch):
    limit("max_order_notional", "1000000")

    def broken(**kwargs):
        raise DatabaseError("connection lost")

    monkeypatch.setattr("risk.selectors.snapshot_for", broken)
    response = submit(api)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "risk_unavailable"
    assert Order.objects.count() == 0


def test_redis_down_refuses_the_order(api, quoted, monkeypatch):
    import redis

    def down(buckets, member=None):
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr("risk.services.admit", down)
    response = submit(api)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "risk_unavailable"
    assert Order.objects.count() == 0
    assert RiskEvent.objects.filter(kind="risk_unavailable").count() == 1


def test_modify_that_breaches_a_limit_changes_nothing(api, quoted):
    order_id = submit(api).json()["id"]
    limit("max_order_quantity", "100000")
    response = api.patch(f"/api/v1/orders/{order_id}/", {"quantity": "100001"}, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["reasons"][0]["code"] == "max_order_quantity"
    order = Order.objects.get(pk=order_id)
    assert order.quantity == D("100000")
    assert order.events.count() == 2
    assert (
        api.patch(f"/api/v1/orders/{order_id}/", {"quantity": "90000"}, format="json").status_code
        == 200
    )


def test_halt_refuses_orders_and_modifies_but_not_cancels(api, risk_api, quoted):
    order_id = submit(api).json()["id"]
    # when
    response = risk_api.post(
        "/api/v1/risk/halt/", {"scope": "global", "reason": "fat finger"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["state"]["mode"] == "halted"
    # then
    refused = submit(api, client_order_id="after-halt")
    assert refused.status_code == 423
    assert refused.json()["error"]["code"] == "trading_halted"
    assert "fat finger" in refused.json()["error"]["message"]
    assert not Order.objects.filter(client_order_id="after-halt").exists()
    assert (
        api.patch(f"/api/v1/orders/{order_id}/", {"quantity": "1000"}, format="json").status_code
        == 423
    )
    assert api.post(f"/api/v1/orders/{order_id}/cancel/").status_code == 202
    kinds = list(RiskEvent.objects.order_by("id").values_list("kind", flat=True))
    assert kinds == ["halt", "order_refused_halted", "order_refused_halted"]
    # and after resume orders pass again
    assert (
        risk_api.post(
            "/api/v1/risk/resume/", {"scope": "global", "reason": "checked"}, format="json"
        ).status_code
        == 200
    )
    assert submit(api, client_order_id="after-resume").status_code == 201
    assert RiskEvent.objects.filter(kind="resume", actor="user:rita").count() == 1


def test_halt_of_one_symbol_leaves_others_trading(api, risk_api, quoted):
    risk_api.post(
        "/api/v1/risk/halt/",
        {"scope": "symbol", "target": "EUR_USD", "reason": "bad feed"},
        format="json",
    )
    assert submit(api).status_code == 423
    assert submit(api, symbol="AAPL", limit_price="190.00", quantity="10").status_code == 201


def test_halt_with_cancel_cancels_the_scopes_open_orders(api, risk_api, quoted):
    mine = submit(api).json()["id"]
    response = risk_api.post(
        "/api/v1/risk/halt/",
        {
            "scope": "account",
            "target": "ACC-1",
            "reason": "limit breach",
            "cancel_open_orders": True,
        },
        format="json",
    )
    assert response.json()["cancelled"] == 1
    assert Order.objects.get(pk=mine).status == "cancelled"
    assert RiskEvent.objects.get(kind="cancel_open_orders").data["order_ids"] == [mine]


def test_flatten_closes_positions_with_reduce_only_orders_that_pass_the_halt(
    api, risk_officer, quoted
):
    from risk import services as risk_services

    # given a long position of 100000 EUR_USD
    order_id = submit(api, type="market", limit_price=None, time_in_force="ioc").json()["id"]
    order_services.order_submit_to_venue(order_id=order_id)
    assert Order.objects.get(pk=order_id).status == "filled"
    # when the account is halted and flattened
    result = risk_services.trading_halt(
        scope="account", target="ACC-1", reason="drawdown", flatten=True, actor="user:rita"
    )
    # then one reduce-only market sell was submitted, and the worker sends it despite the halt
    [flatten_id] = result.flatten_order_ids
    flatten = Order.objects.get(pk=flatten_id)
    assert (flatten.side, flatten.type, flatten.quantity, flatten.reduce_only) == (
        "sell",
        "market",
        D("100000"),
        True,
    )
    order_services.order_submit_to_venue(order_id=flatten_id)
    assert Order.objects.get(pk=flatten_id).status == "filled"
    from risk.selectors import account_positions

    assert account_positions(flatten.account) == {}


def test_worker_refuses_an_order_queued_before_the_halt(api, quoted):
    from brokers.models import SimOrder
    from risk import services as risk_services

    order_id = submit(api).json()["id"]
    risk_services.trading_halt(scope="global", reason="stop", actor="user:rita")
    # when the queued order reaches a worker
    order_services.order_submit_to_venue(order_id=order_id)
    # then it is rejected there, and the venue never saw it
    order = Order.objects.get(pk=order_id)
    assert order.status == "rejected"
    assert order.reject_reason.startswith("trading halted (global) before submission")
    assert not SimOrder.objects.exists()


def test_only_the_risk_role_halts_and_writes_limits(api):
    assert (
        api.post(
            "/api/v1/risk/halt/", {"scope": "global", "reason": "x"}, format="json"
        ).status_code
        == 403
    )
    assert (
        api.post(
            "/api/v1/risk/resume/", {"scope": "global", "reason": "x"}, format="json"
        ).status_code
        == 403
    )
    response = api.post(
        "/api/v1/risk/limits/",
        {"scope": "global", "rule": "max_order_quantity", "value": "5"},
        format="json",
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert not RiskLimit.objects.exists()
    assert TradingState.objects.get(scope="global").mode == "active"


def test_limits_crud_by_the_risk_role_is_audited(risk_api, api):
    created = risk_api.post(
        "/api/v1/risk/limits/",
        {"scope": "account", "target": "ACC-1", "rule": "max_order_notional", "value": "1000000"},
        format="json",
    )
    assert created.status_code == 201
    body = created.json()
    assert {k: body[k] for k in ("scope", "target", "rule", "value", "active")} == {
        "scope": "account",
        "target": "ACC-1",
        "rule": "max_order_notional",
        "value": "1000000",
        "active": True,
    }
    limit_id = body["id"]
    assert (
        risk_api.patch(
            f"/api/v1/risk/limits/{limit_id}/", {"value": "500000"}, format="json"
        ).json()["value"]
        == "500000"
    )
    # the trader reads the limits of their account
    assert [item["id"] for item in api.get("/api/v1/risk/limits/").json()["results"]] == [limit_id]
    assert risk_api.delete(f"/api/v1/risk/limits/{limit_id}/").status_code == 204
    assert list(RiskEvent.objects.order_by("id").values_list("kind", flat=True)) == [
        "limit_created",
        "limit_changed",
        "limit_deleted",
    ]


def test_limit_validation(risk_api):
    bad = risk_api.post(
        "/api/v1/risk/limits/",
        {"scope": "global", "target": "X", "rule": "max_order_quantity", "value": "5"},
        format="json",
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["fields"] == {"target": ["must be empty for scope global"]}
    assert (
        risk_api.post(
            "/api/v1/risk/limits/",
            {"scope": "account", "rule": "nope", "value": "5", "target": "A"},
            format="json",
        ).status_code
        == 400
    )


def test_traders_see_only_their_accounts_limits_and_events(api, other_trader, quoted):
    limit("max_order_quantity", "1", target="ACC-2")
    limit("max_order_quantity", "1")
    bob = client_for(other_trader)
    bob.post("/api/v1/orders/", {**BODY, "account": "ACC-2"}, format="json")
    assert [item["target"] for item in api.get("/api/v1/risk/limits/").json()["results"]] == [
        "ACC-1"
    ]
    assert api.get("/api/v1/risk/events/").json()["results"] == []
    assert [e["account"] for e in bob.get("/api/v1/risk/events/").json()["results"]] == ["ACC-2"]


def test_state_lists_every_scope(api, risk_api):
    risk_api.post(
        "/api/v1/risk/halt/",
        {
            "scope": "account",
            "target": "ACC-1",
            "mode": "reducing",
            "reason": "near the loss limit",
        },
        format="json",
    )
    body = api.get("/api/v1/risk/state/").json()
    assert {(s["scope"], s["target"], s["mode"]) for s in body["states"]} == {
        ("global", "", "active"),
        ("account", "ACC-1", "reducing"),
    }
    assert body["halted"] is False


def test_reducing_state_lets_only_reducing_orders_through(api, risk_api, quoted):
    risk_api.post(
        "/api/v1/risk/halt/",
        {"scope": "account", "target": "ACC-1", "mode": "reducing", "reason": "x"},
        format="json",
    )
    response = submit(api)
    assert response.status_code == 422
    assert [r["code"] for r in response.json()["error"]["reasons"]] == ["reduce_only"]


def test_rate_limit_per_trader_with_retry_after_and_cancels_free(api, trader, quoted):
    RateLimitOverride.objects.create(user=trader, orders_per_minute=3)
    ids = [submit(api, client_order_id=f"r-{n}").json()["id"] for n in range(3)]
    refused = submit(api, client_order_id="r-3")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert not Order.objects.filter(client_order_id="r-3").exists()
    for order_id in ids:
        assert api.post(f"/api/v1/orders/{order_id}/cancel/").status_code == 202
    # an idempotent repeat is not a new order and is not counted
    assert submit(api, client_order_id="r-0").status_code == 200
    assert RiskEvent.objects.filter(kind="rate_limited").count() == 1


def test_account_override_limits_every_trader_of_the_account(api, trader, quoted):
    from orders.models import Account

    colleague = make_trader("ann", "ACC-1")
    RateLimitOverride.objects.create(account=Account.objects.get(code="ACC-1"), orders_per_minute=2)
    assert submit(api, client_order_id="a").status_code == 201
    assert submit(client_for(colleague), client_order_id="b").status_code == 201
    assert submit(api, client_order_id="c").status_code == 429


def test_halt_and_resume_commands(api, quoted, capsys):
    call_command("halt", "--reason", "web is down", "--cancel-open-orders")
    assert "global: halted (web is down)" in capsys.readouterr().out
    assert submit(api).status_code == 423
    call_command("resume", "--reason", "back")
    assert submit(api).status_code == 201
    assert RiskEvent.objects.filter(actor__startswith="cli:").count() == 3


@pytest.mark.postgres
def test_risk_events_are_append_only(api, quoted):
    limit("max_order_quantity", "1")
    submit(api)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        RiskEvent.objects.update(reason="tampered")


def test_daily_loss_limit_after_a_loss_lets_only_reducing_orders_in(api, settings):
    from orders.books import account_cash_move
    from orders.models import Account

    settings.COMMISSIONS = {}
    account = Account.objects.get(code="ACC-1")
    account_cash_move(account=account, amount=D("100000"), reason="funding", actor="test")
    venue_for("sim").set_quote(
        "AAPL", bid=D("189.99"), ask=D("190.00"), bid_size=D("1000"), ask_size=D("1000")
    )
    bought = submit(
        api, symbol="AAPL", type="market", limit_price=None, quantity="100", time_in_force="ioc"
    ).json()["id"]
    order_services.order_submit_to_venue(order_id=bought)
    limit("max_daily_loss", "150")
    # when the position loses 200
    venue_for("sim").set_quote(
        "AAPL", bid=D("187.99"), ask=D("188.00"), bid_size=D("1000"), ask_size=D("1000")
    )
    refused = submit(
        api, client_order_id="more", symbol="AAPL", limit_price="187.00", quantity="10"
    )
    assert refused.status_code == 422
    [reason] = refused.json()["error"]["reasons"]
    assert (reason["code"], reason["actual"], reason["limit"]) == ("max_daily_loss", "200.5", "150")
    assert (
        submit(
            api,
            client_order_id="less",
            symbol="AAPL",
            side="sell",
            limit_price="188.00",
            quantity="50",
        ).status_code
        == 201
    )


def test_buying_power_refuses_an_order_that_needs_more_margin(api):
    from orders.books import account_cash_move
    from orders.models import Account

    account_cash_move(
        account=Account.objects.get(code="ACC-1"), amount=D("10000"), reason="funding", actor="test"
    )
    limit("buying_power", "1")
    # AAPL margin 50 %: 100 x 190 x 0.5 = 9,500 reserved by the working order leaves 500;
    # 6 more shares need 570
    assert submit(api, symbol="AAPL", limit_price="190.00", quantity="100").status_code == 201
    assert (
        submit(
            api, client_order_id="fits", symbol="AAPL", limit_price="190.00", quantity="5"
        ).status_code
        == 201
    )
    refused = submit(
        api, client_order_id="too-big", symbol="AAPL", limit_price="190.00", quantity="1"
    )
    assert refused.status_code == 422
    [reason] = refused.json()["error"]["reasons"]
    assert (reason["code"], reason["actual"], reason["limit"]) == ("buying_power", "95", "25")


def test_limits_changed_in_the_admin_are_audited(admin_client, instruments):
    response = admin_client.post(
        "/admin/risk/risklimit/add/",
        {
            "scope": "account",
            "target": "ACC-1",
            "rule": "max_order_quantity",
            "value": "5",
            "symbols": "[]",
            "active": "on",
            "note": "",
        },
    )
    assert response.status_code == 302, response.content[:500]
    limit = RiskLimit.objects.get()
    assert limit.updated_by == "admin:admin"
    admin_client.post(f"/admin/risk/risklimit/{limit.pk}/delete/", {"post": "yes"})
    assert not RiskLimit.objects.exists()
    events = list(RiskEvent.objects.order_by("id").values_list("kind", "actor", "account"))
    assert events == [
        ("limit_created", "admin:admin", "ACC-1"),
        ("limit_deleted", "admin:admin", "ACC-1"),
    ]


def test_a_repeat_during_a_halt_is_answered_with_its_order_and_is_no_refusal(api, quoted):
    first = submit(api, client_order_id="before-halt")
    assert first.status_code == 201
    call_command("halt", "--reason", "desk closed")
    # when the same order is sent again (a client retrying after a timeout)
    again = submit(api, client_order_id="before-halt")
    # then it gets its order, and the audit trail shows no refusal
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    assert not RiskEvent.objects.filter(kind="order_refused_halted").exists()
    # while a new order is refused, and that refusal is recorded
    assert submit(api, client_order_id="new").status_code == 423
    assert RiskEvent.objects.filter(kind="order_refused_halted").count() == 1


def test_a_repeat_is_not_counted_by_the_rate_limit(api, trader, quoted):
    RateLimitOverride.objects.create(user=trader, orders_per_minute=3)
    assert submit(api, client_order_id="r-0").status_code == 201
    # the repeats reach the insert (there is no lookup before it) and are uncounted there
    assert submit(api, client_order_id="r-0").status_code == 200
    assert submit(api, client_order_id="r-0").status_code == 200
    assert submit(api, client_order_id="r-1").status_code == 201
    assert submit(api, client_order_id="r-2").status_code == 201
    assert submit(api, client_order_id="r-3").status_code == 429


def test_an_order_refused_by_a_halt_is_not_counted_by_the_rate_limit(api, trader, quoted):
    """The rate limit counts before the halt check: the refusal (and a repeat answered during
    the halt) gives the count back."""
    RateLimitOverride.objects.create(user=trader, orders_per_minute=3)
    assert submit(api, client_order_id="a").status_code == 201
    call_command("halt", "--reason", "desk closed")
    assert submit(api, client_order_id="a").status_code == 200  # a repeat
    assert submit(api, client_order_id="b").status_code == 423  # refused
    call_command("resume", "--reason", "back")
    assert submit(api, client_order_id="c").status_code == 201
    assert submit(api, client_order_id="d").status_code == 201
    assert submit(api, client_order_id="e").status_code == 429  # a, c and d counted
    assert RiskEvent.objects.filter(kind="order_refused_halted").count() == 1
