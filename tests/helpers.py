"""Helpers shared by the integration tests: plain functions, not fixtures.

pytest does not rewrite the assertions of this module: their messages carry the details."""

from __future__ import annotations

from decimal import Decimal

from brokers.base import OrderTicket
from brokers.registry import venue_for
from brokers.sim.config import walk_spec_for
from orders.models import Account, Order
from orders.replay import order_state, replay
from orders.services import order_submit, order_submit_to_venue
from orders.validation import OrderTerms
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


def wide_eur_usd_book(venue) -> Decimal:
    """EUR_USD quoted 100 ticks wide from its current bid (1,000,000 a side): answers a buy
    limit 50 ticks above the bid, which rests."""
    tick = walk_spec_for("EUR_USD").tick
    bid = venue.quotes(["EUR_USD"])["EUR_USD"].bid
    size = Decimal("1000000")
    venue.set_quote("EUR_USD", bid=bid, ask=bid + 100 * tick, bid_size=size, ask_size=size)
    return bid + 50 * tick


def venue_ticket(client_order_id: str, symbol: str = "EUR_USD", **terms) -> OrderTicket:
    """A ticket as the venue receives it (orders.services.order_ticket builds ours): a market
    IOC buy of 100 on ACC-1 unless `terms` say otherwise; quantities and prices may be given as
    strings."""
    fields = {
        "side": "buy",
        "type": "market",
        "time_in_force": "ioc",
        "quantity": Decimal("100"),
        "account": "ACC-1",
        **terms,
    }
    fields["quantity"] = Decimal(fields["quantity"])
    for name in ("limit_price", "stop_price"):
        if fields.get(name) is not None:
            fields[name] = Decimal(fields[name])
    return OrderTicket(client_order_id=client_order_id, symbol=symbol, **fields)


def buy_limit_terms(limit: Decimal, client_order_id: str = "") -> OrderTerms:
    """A GTC buy limit of 1,000 EUR_USD at `limit`."""
    return OrderTerms(
        symbol="EUR_USD",
        side="buy",
        type="limit",
        time_in_force="gtc",
        quantity=Decimal("1000"),
        limit_price=limit,
        client_order_id=client_order_id,
    )


def resting_buy(client_order_id: str, limit: Decimal) -> Order:
    """Our GTC buy limit of 1,000 EUR_USD at `limit` on ACC-1, stored and sent to the sim
    venue (services, no worker)."""
    order = order_submit(
        account=Account.objects.get(code="ACC-1"),
        terms=buy_limit_terms(limit, client_order_id),
        actor="user:alice",
    ).order
    order_submit_to_venue(order_id=order.pk)
    order.refresh_from_db()
    return order


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


def queued_kwargs(broker, queue: str = "orders") -> list[dict]:
    """The keyword arguments of each task message on the broker's `queue` (kombu's Redis
    envelope: the body is base64 JSON [args, kwargs, embed])."""
    import base64
    import json

    bodies = (
        json.loads(base64.b64decode(json.loads(m)["body"])) for m in broker.lrange(queue, 0, -1)
    )
    return [kwargs for _, kwargs, _ in bodies]


def queued_order_ids(broker, queue: str = "orders") -> list[str]:
    """The `order_id` argument of each task message on the broker's `queue`."""
    return [kwargs.get("order_id") for kwargs in queued_kwargs(broker, queue)]


def queued_submissions(broker) -> list[str]:
    """Every order id the queued submit tasks name, one task's or a batch's, as often as
    named."""
    return [
        order_id
        for kwargs in queued_kwargs(broker)
        for order_id in kwargs.get("order_ids", [kwargs.get("order_id")])
    ]
