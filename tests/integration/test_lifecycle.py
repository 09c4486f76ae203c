"""Order life-cycle paths that need no worker: the services called directly, in one
transaction per test (nothing is published)."""

from decimal import Decimal

import pytest

from brokers.models import SimOrder
from brokers.registry import venue_for
from orders.models import Order
from tests.helpers import eur_usd_market, submit

pytestmark = pytest.mark.django_db

D = Decimal


def test_day_order_not_yet_sent_expires_locally(api, instruments):
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    from orders import services
    from orders.validation import day_expiry

    body = submit(api, type="limit", limit_price="1.08000", time_in_force="day")
    order = Order.objects.get(pk=body["id"])
    assert order.expire_at == day_expiry(order.created_at, settings.ORDERS_DAY_CUTOFF_UTC)
    assert services.orders_expire(now=order.expire_at + timedelta(seconds=1)) == 1
    order.refresh_from_db()
    assert (order.status, order.remaining_quantity) == ("expired", 0)
    assert services.orders_expire(now=timezone.now() + timedelta(days=2)) == 0


def test_cancel_while_the_submission_is_in_flight_waits_for_the_venue(api, instruments):
    """A cancel that reaches the venue before the order does must not declare the order
    absent while its submission can still land."""
    from orders import services
    from orders.services import SubmitInFlight

    eur_usd_market()
    order_id = submit(api, type="limit", limit_price="1.08000")["id"]
    # given the order is pending_submit (a worker is talking to the venue)
    from django.db import transaction

    with transaction.atomic():
        from orders.lock_objects import order_for_update

        order = order_for_update(order_id)
        services._order_change(
            order, event_type="pending_submit", actor="worker", status="pending_submit"
        )
    services.order_cancel(order_id=order_id, actor="user:alice")
    # when the cancel runs before the venue has the order
    with pytest.raises(SubmitInFlight):
        services.order_cancel_at_venue(order_id=order_id)
    assert Order.objects.get(pk=order_id).status == "pending_cancel"
    # then once the submission lands, the cancel reaches it at the venue
    from orders.services import order_ticket

    reports = venue_for("sim").submit(
        order_ticket(Order.objects.select_related("instrument", "account").get(pk=order_id))
    )
    services.execution_reports_apply(reports=reports)
    services.order_cancel_at_venue(order_id=order_id)
    order = Order.objects.get(pk=order_id)
    assert order.status == "cancelled"
    assert SimOrder.objects.get(client_order_id=order_id).status == "cancelled"


def test_the_simulated_market_is_deterministic_for_a_seed(instruments):
    from brokers.models import SimQuote
    from brokers.sim.venue import SimulatedVenue

    def run(seed):
        SimQuote.objects.all().delete()
        venue = SimulatedVenue(config={"SEED": seed})
        for _ in range(25):
            venue.step_market(["EUR_USD", "BTC_USD"])
        return sorted(
            SimQuote.objects.values_list("symbol", "seq", "bid", "ask", "bid_size", "ask_size")
        )

    first = run(11)
    assert first == run(11)
    assert first != run(12)
    assert [row[1] for row in first] == [25, 25]


def test_a_quote_step_reads_exactly_the_orders_it_can_act_on(instruments):
    """The SQL pre-filter of resting orders agrees with the matching engine: every order the
    engine would fill or trigger is read, and nothing else (besides expiries)."""
    from itertools import product

    from brokers.base import Quote
    from brokers.sim import engine
    from brokers.sim.venue import _may_act_on

    bid, ask = D("1.08490"), D("1.08500")
    prices = [D("1.08480"), D("1.08490"), D("1.08495"), D("1.08500"), D("1.08510")]
    n = 0
    for side, order_type, price, triggered in product(
        ["buy", "sell"], ["market", "limit", "stop", "stop_limit"], prices, [False, True]
    ):
        if order_type in ("market", "limit") and triggered:
            continue
        n += 1
        SimOrder.objects.create(
            client_order_id=f"f-{n}",
            symbol="EUR_USD",
            side=side,
            type=order_type,
            time_in_force="gtc",
            quantity=D("1000"),
            triggered=triggered,
            limit_price=price if order_type in ("limit", "stop_limit") else None,
            stop_price=price if order_type in ("stop", "stop_limit") else None,
        )
    selected = set(
        SimOrder.objects.filter(_may_act_on(bid=bid, ask=ask, now=timezone_now())).values_list(
            "client_order_id", flat=True
        )
    )
    quote = Quote(
        symbol="EUR_USD", bid=bid, ask=ask, bid_size=D("1000000"), ask_size=D("1000000"), seq=1
    )
    acted = set()
    for order in SimOrder.objects.all():
        working = engine.WorkingOrder(
            side=order.side,
            type=order.type,
            time_in_force="gtc",
            quantity=order.quantity,
            limit_price=order.limit_price,
            stop_price=order.stop_price,
            triggered=order.triggered,
        )
        result = engine.match(
            working,
            quote,
            engine.Liquidity(bid_size=D("1000000"), ask_size=D("1000000")),
            tick=D("0.00001"),
            lot=D("1"),
            on_arrival=False,
        )
        if result.executions or result.triggered_now:
            acted.add(order.client_order_id)
    assert acted <= selected
    # triggered stops are always read (they are market orders now); nothing else is extra
    extra = {
        cid
        for cid in selected - acted
        if not SimOrder.objects.filter(client_order_id=cid, type="stop", triggered=True).exists()
    }
    assert extra == set()


def timezone_now():
    from django.utils import timezone

    return timezone.now()
