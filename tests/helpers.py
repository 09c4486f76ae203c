"""Helpers shared by the integration tests: plain functions, not fixtures.

pytest does not rewrite the assertions of this module: their messages carry the details."""

from __future__ import annotations

from decimal import Decimal

from brokers.registry import venue_for
from orders.models import Order
from orders.replay import order_state, replay
from tests.workers import wait_for

# A market buy of 100,000 EUR_USD, good till cancelled, on the trader's account.
ORDER = {
    "account": "ACC-1",
    "symbol": "EUR_USD",
    "side": "buy",
    "type": "market",
    "quantity": "100000",
    "time_in_force": "gtc",
}


# A limit buy of 1,000 EUR_USD at 1.08000, good till cancelled: it rests below the market.
LIMIT_ORDER = {
    "account": "ACC-1",
    "symbol": "EUR_USD",
    "side": "buy",
    "type": "limit",
    "quantity": "1000",
    "limit_price": "1.08000",
}


def order_body(**fields) -> dict:
    """ORDER with `fields` in place of its own."""
    return {**ORDER, **fields}


def submit(api, *, expect=(200, 201), **fields) -> dict:
    """POST order_body(**fields) to the orders API; the answer's status must be in `expect`."""
    response = api.post("/api/v1/orders/", order_body(**fields), format="json")
    assert response.status_code in expect, (response.status_code, response.content)
    return response.json()


def set_quote(venue, *, bid: str, ask: str, size: str = "100000", symbol: str = "EUR_USD"):
    """Quote `symbol` at `bid` / `ask` on the venue, `size` on each side."""
    D = Decimal
    venue.set_quote(symbol, bid=D(bid), ask=D(ask), bid_size=D(size), ask_size=D(size))
    return venue


def eur_usd_market(size: str = "100000"):
    """The simulated venue, EUR_USD quoted 1.08490 / 1.08500 with `size` on each side."""
    return set_quote(venue_for("sim"), bid="1.08490", ask="1.08500", size=size)


def order_when(order_id, *statuses: str, timeout: float = 20) -> Order:
    """The order, once its status is one of `statuses` (AssertionError after `timeout` s)."""

    def reached():
        order = Order.objects.select_related("instrument", "account").get(pk=order_id)
        return order if order.status in statuses else None

    return wait_for(reached, timeout=timeout, message=f"order {order_id} to be {statuses}")


def assert_replays(order) -> None:
    """The order's events, replayed, give exactly its stored state."""
    replayed, stored = replay(order.events.all()), order_state(order)
    assert replayed == stored, f"order {order.id} does not replay: {replayed} != {stored}"


def queued_order_ids(broker, queue: str = "orders") -> list[str]:
    """The `order_id` argument of each task message on the broker's `queue` (kombu's Redis
    envelope: the body is base64 JSON [args, kwargs, embed])."""
    import base64
    import json

    bodies = (
        json.loads(base64.b64decode(json.loads(m)["body"])) for m in broker.lrange(queue, 0, -1)
    )
    return [kwargs.get("order_id") for _, kwargs, _ in bodies]
