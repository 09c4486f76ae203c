"""`order_body`, `fill_body` and `event_body` (the fast representations) write exactly what
the declared fields of OrderOutputSerializer, FillOutputSerializer and EventOutputSerializer
describe, for orders, fills and events in every shape the API answers with."""

from datetime import UTC, datetime, timedelta
from datetime import timezone as timezone_offset
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from rest_framework import serializers

from orders import services
from orders.api.serializers import (
    EventOutputSerializer,
    FillOutputSerializer,
    OrderDetailOutputSerializer,
    OrderOutputSerializer,
    _time,
    event_body,
    fill_body,
    order_body,
)
from orders.models import Account, Fill, Order, OrderEvent
from orders.validation import OrderTerms
from tests.helpers import eur_usd_market

pytestmark = pytest.mark.django_db

D = Decimal


def by_declared_fields(order: Order) -> dict:
    """DRF's own field-by-field representation, the contract `order_body` must match."""
    return serializers.ModelSerializer.to_representation(OrderOutputSerializer(), order)


def fill_by_declared_fields(fill: Fill) -> dict:
    return serializers.ModelSerializer.to_representation(FillOutputSerializer(), fill)


def new_order(account, **terms) -> Order:
    defaults = {"side": "buy", "type": "limit", "time_in_force": "gtc", "quantity": D("1000")}
    result = services.order_submit(
        account=account, terms=OrderTerms(**{**defaults, **terms}), actor="test"
    )
    return Order.objects.select_related("instrument", "account").get(pk=result.order.pk)


def test_every_shape_of_order_is_written_as_the_declared_fields_write_it(trader, instruments):
    eur_usd_market()
    account = Account.objects.get(code="ACC-1")
    resting = new_order(account, symbol="EUR_USD", limit_price=D("1.0001"), metadata={"a": [1]})
    dated = new_order(
        account,
        symbol="USD_JPY",
        type="stop_limit",
        time_in_force="gtd",
        limit_price=D("140.5"),
        stop_price=D("141"),
        expire_at=timezone.now() + timedelta(days=2),
        strategy_id="s1",
        signal_id="sig",
        client_order_id="mine-1",
    )
    filled = new_order(account, symbol="EUR_USD", type="market", quantity=D("0.5") * 2)
    services.order_submit_to_venue(order_id=filled.pk)
    filled.refresh_from_db()
    child = new_order(account, symbol="BTC_USD", quantity=D("0.0001"), limit_price=D("60000.5"))
    Order.objects.filter(pk=child.pk).update(parent=resting)
    services.order_park_for_review(order_id=child.pk, reason="a person looks at it")
    child.refresh_from_db()
    assert child.needs_review
    orders = [resting, dated, filled, child]
    assert filled.average_fill_price is not None and filled.venue_order_id
    for order in orders:
        assert order_body(order) == by_declared_fields(order), order.client_order_id
    # and the detail body adds the fills and children to the same fields
    detail = OrderDetailOutputSerializer(filled).data
    assert {k: v for k, v in detail.items() if k not in ("fills", "children")} == order_body(filled)
    assert len(detail["fills"]) == 1 and detail["children"] == []
    fills = list(Fill.objects.select_related("instrument", "account").filter(order=filled))
    assert detail["fills"] == [fill_by_declared_fields(fill) for fill in fills]
    assert fill_body(fills[0]) == fill_by_declared_fields(fills[0])
    events = list(OrderEvent.objects.filter(order__in=orders).order_by("order", "seq"))
    assert {event.type for event in events} >= {"created", "validated", "fill", "parked"}
    for event in events:
        declared = serializers.ModelSerializer.to_representation(EventOutputSerializer(), event)
        assert event_body(event) == declared, event.type
    parent = OrderDetailOutputSerializer(resting).data
    assert parent["children"] == [by_declared_fields(child)] and parent["fills"] == []


def test_a_fill_with_a_commission_is_written_as_the_declared_fields_write_it(
    trader, instruments, settings
):
    settings.COMMISSIONS = {"sim": {"fx": {"per_unit": "0", "bps": "2", "minimum": "0.5"}}}
    eur_usd_market()
    account = Account.objects.get(code="ACC-1")
    filled = new_order(account, symbol="EUR_USD", type="market", quantity=D("1000"))
    services.order_submit_to_venue(order_id=filled.pk)
    fills = list(Fill.objects.select_related("instrument", "account").filter(order=filled))
    assert fills and all(fill.commission > 0 for fill in fills)
    for fill in fills:
        assert fill_body(fill) == fill_by_declared_fields(fill)


@pytest.mark.parametrize(
    "value",
    [
        None,
        datetime(2026, 12, 5, 21, 30, 5, 123456, tzinfo=UTC),
        datetime(2026, 12, 5, 21, 30, 5, tzinfo=UTC),  # no microseconds
        datetime(2026, 12, 5, 23, 30, 5, 10, tzinfo=timezone_offset(timedelta(hours=2))),
        datetime(2026, 12, 5, 21, 30, 5, 10, tzinfo=ZoneInfo("UTC")),
        datetime(2026, 12, 5, 16, 30, 5, 10, tzinfo=ZoneInfo("America/New_York")),
    ],
)
def test_a_time_is_written_as_the_datetime_field_writes_it(value):
    # the UTC values the database answers take a shorter path; others the field's own
    assert _time(value) == serializers.DateTimeField().to_representation(value)
