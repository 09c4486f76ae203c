"""End to end on real services: the API in process, a real Celery worker process consuming
the real Redis queues, the simulated venue sharing the test database."""

from decimal import Decimal

import pytest

from brokers.models import SimOrder, SimReport
from orders.models import Fill, Order
from tests.helpers import (
    assert_replays,
    eur_usd_market,
    order_body,
    order_when,
    set_quote,
    submit,
)
from tests.workers import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

D = Decimal


@pytest.fixture
def market(instruments):
    """EUR_USD quoted 1.08490 / 1.08500, 100,000 on each side."""
    return eur_usd_market()


def event_types(order):
    return [e.type for e in order.events.order_by("seq")]


def test_market_order_fills_at_the_touch(api, market, celery_worker):
    # when
    order = order_when(submit(api)["id"], "filled")
    # then
    assert (order.filled_quantity, order.remaining_quantity, order.average_fill_price) == (
        D("100000"),
        D("0"),
        D("1.08500"),
    )
    fill = order.fills.get()
    assert (fill.quantity, fill.price, fill.liquidity) == (D("100000"), D("1.08500"), "taker")
    assert event_types(order) == ["created", "validated", "pending_submit", "acknowledged", "fill"]
    assert [e.actor for e in order.events.order_by("seq")][2:] == [
        "worker",
        "venue:sim",
        "venue:sim",
    ]
    assert SimOrder.objects.filter(client_order_id=str(order.id)).count() == 1
    assert_replays(order)


def test_market_order_larger_than_the_quote_fills_over_two_quotes(api, market, celery_worker):
    order = order_when(submit(api, quantity="150000")["id"], "partially_filled")
    assert order.filled_quantity == D("100000")
    # when the next quote arrives and the venue is polled
    set_quote(market, bid="1.08495", ask="1.08505")
    from tradingsite.celery import app

    app.send_task("orders.poll_venues")
    order = order_when(order.id, "filled")
    # then the rest filled at the new ask, and the average is exact
    assert [f.price for f in order.fills.order_by("executed_at")] == [D("1.08500"), D("1.08505")]
    assert order.average_fill_price == D("1.0850166667")
    assert_replays(order)


def test_limit_rests_then_cancel_cancels_it_at_the_venue(api, market, celery_worker):
    order = order_when(submit(api, type="limit", limit_price="1.08000")["id"], "acknowledged")
    assert order.venue_order_id.startswith("SIM-")
    # when
    response = api.post(f"/api/v1/orders/{order.id}/cancel/")
    # then
    assert response.status_code == 202
    assert response.json()["status"] == "pending_cancel"
    order = order_when(order.id, "cancelled")
    assert order.remaining_quantity == 0 and order.filled_quantity == 0
    assert SimOrder.objects.get(client_order_id=str(order.id)).status == "cancelled"
    assert event_types(order)[-2:] == ["pending_cancel", "cancelled"]
    assert_replays(order)


def test_resting_limit_fills_at_its_price_when_the_market_comes_to_it(api, market, celery_worker):
    order = order_when(submit(api, type="limit", limit_price="1.08000")["id"], "acknowledged")
    set_quote(market, bid="1.07980", ask="1.07990", size="500000")
    from tradingsite.celery import app

    app.send_task("orders.poll_venues")
    order = order_when(order.id, "filled")
    fill = order.fills.get()
    assert (fill.price, fill.liquidity) == (D("1.08000"), "maker")
    assert_replays(order)


def test_ioc_fills_what_it_can_and_cancels_the_rest(api, market, celery_worker):
    order = order_when(submit(api, quantity="150000", time_in_force="ioc")["id"], "cancelled")
    assert (order.filled_quantity, order.remaining_quantity) == (D("100000"), D("0"))
    assert event_types(order)[-2:] == ["fill", "cancelled"]
    assert_replays(order)


def test_ioc_limit_away_from_the_market_cancels_with_no_fill(api, market, celery_worker):
    order = order_when(
        submit(api, type="limit", limit_price="1.08000", time_in_force="ioc")["id"], "cancelled"
    )
    assert order.filled_quantity == 0
    assert not order.fills.exists()


def test_fok_larger_than_the_quote_kills_with_no_fill(api, market, celery_worker):
    order = order_when(submit(api, quantity="150000", time_in_force="fok")["id"], "cancelled")
    assert order.filled_quantity == 0
    assert not Fill.objects.filter(order=order).exists()
    assert_replays(order)


def test_fok_within_the_quote_fills_whole(api, market, celery_worker):
    order = order_when(submit(api, quantity="60000", time_in_force="fok")["id"], "filled")
    assert order.fills.count() == 1
    assert order.filled_quantity == D("60000")


def test_modify_a_resting_order_at_the_venue(api, market, celery_worker):
    order = order_when(submit(api, type="limit", limit_price="1.08000")["id"], "acknowledged")
    # when
    response = api.patch(
        f"/api/v1/orders/{order.id}/",
        {"limit_price": "1.08100", "quantity": "80000"},
        format="json",
    )
    # then
    assert response.status_code == 202

    def modified():
        current = Order.objects.get(pk=order.id)
        return current if current.limit_price == D("1.08100") else None

    current = wait_for(modified, message="the venue to replace the order")
    assert (current.quantity, current.remaining_quantity) == (D("80000"), D("80000"))
    sim = SimOrder.objects.get(client_order_id=str(order.id))
    assert (sim.limit_price, sim.quantity) == (D("1.08100"), D("80000"))
    assert event_types(current)[-2:] == ["modify_requested", "modified"]
    # and a modify that crosses the market fills at once
    api.patch(f"/api/v1/orders/{order.id}/", {"limit_price": "1.08600"}, format="json")
    filled = order_when(order.id, "filled")
    assert filled.fills.get().price == D("1.08500")
    assert_replays(filled)


def test_idempotent_repeat_after_the_fill_answers_the_filled_order(api, market, celery_worker):
    first = submit(api, client_order_id="same-1")
    order_when(first["id"], "filled")
    again = api.post("/api/v1/orders/", order_body(client_order_id="same-1"), format="json")
    assert again.status_code == 200
    assert again.json()["status"] == "filled"
    different = api.post(
        "/api/v1/orders/",
        {
            "account": "ACC-1",
            "client_order_id": "same-1",
            "symbol": "EUR_USD",
            "side": "sell",
            "type": "market",
            "quantity": "100000",
        },
        format="json",
    )
    assert different.status_code == 409
    assert Order.objects.count() == 1
    assert SimOrder.objects.count() == 1


def test_cancel_of_a_filled_order_is_409_and_sends_nothing(api, market, celery_worker):
    order = order_when(submit(api)["id"], "filled")
    reports_before = SimReport.objects.count()
    events_before = order.events.count()
    response = api.post(f"/api/v1/orders/{order.id}/cancel/")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_transition"
    assert order.events.count() == events_before
    assert SimReport.objects.count() == reports_before


def test_gtd_order_at_the_venue_expires_through_a_cancel(api, market, celery_worker):
    from datetime import timedelta

    from django.utils import timezone

    from orders import services

    expire_at = (timezone.now() + timedelta(minutes=5)).isoformat()
    order = order_when(
        submit(api, type="limit", limit_price="1.08000", time_in_force="gtd", expire_at=expire_at)[
            "id"
        ],
        "acknowledged",
    )
    # when beat's expiry sweep runs after the expiry time
    assert services.orders_expire(now=timezone.now() + timedelta(minutes=6)) == 1
    # then the venue cancels it and it ends expired, not cancelled
    order = order_when(order.id, "expired")
    assert SimOrder.objects.get(client_order_id=str(order.id)).status == "cancelled"
    assert event_types(order)[-2:] == ["pending_cancel", "expired"]


def test_stop_order_triggers_when_the_market_reaches_it(api, market, celery_worker):
    from tradingsite.celery import app

    order = order_when(
        submit(api, type="stop", stop_price="1.08600", quantity="50000")["id"], "acknowledged"
    )
    set_quote(market, bid="1.08590", ask="1.08600")
    app.send_task("orders.poll_venues")
    order = order_when(order.id, "filled")
    assert order.fills.get().price == D("1.08600")


def test_stop_limit_triggers_then_rests_as_a_limit(api, market, celery_worker):
    from tradingsite.celery import app

    order = order_when(
        submit(
            api, type="stop_limit", stop_price="1.08600", limit_price="1.08610", quantity="50000"
        )["id"],
        "acknowledged",
    )
    # the stop is touched but the market gaps above the limit: triggered, not filled
    set_quote(market, bid="1.08620", ask="1.08630")
    assert SimOrder.objects.get(client_order_id=str(order.id)).triggered
    # the market comes back through the limit: it fills at its limit, as maker
    set_quote(market, bid="1.08590", ask="1.08605")
    app.send_task("orders.poll_venues")
    order = order_when(order.id, "filled")
    assert (order.fills.get().price, order.fills.get().liquidity) == (D("1.08610"), "maker")
