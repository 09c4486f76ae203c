"""Shapes of the HTTP contract (API.md). Decimals travel as strings; times as ISO 8601 UTC."""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal
from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import ISO_8601, serializers
from rest_framework.settings import api_settings

from tradingsite.fastinput import FastValidation

from .. import selectors
from ..models import Fill, Order, OrderEvent, OrderType, Side, TimeInForce

ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,64}$"


def format_quantity(value: Decimal | None) -> str | None:
    if value is None:
        return None
    return format(value.normalize(), "f")


def format_price(value: Decimal | None, places: int) -> str | None:
    """A price with at least the instrument's tick places ("1.08500"), more if it has them
    (an average price)."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    whole, _, fraction = text.partition(".")
    if len(fraction) < places:
        fraction = fraction.ljust(places, "0")
    return f"{whole}.{fraction}" if fraction else whole


@extend_schema_field(OpenApiTypes.DECIMAL)
class QuantityField(serializers.Field):
    def to_representation(self, value: Decimal) -> str | None:
        return format_quantity(value)


@extend_schema_field(OpenApiTypes.DECIMAL)
class PriceField(serializers.Field):
    """Needs `instrument` on the object (or its parent order)."""

    def get_attribute(self, instance: Any) -> Any:
        self._places = _instrument_of(instance).price_places
        return super().get_attribute(instance)

    def to_representation(self, value: Decimal) -> str | None:
        return format_price(value, self._places)


def _instrument_of(instance: Any) -> Any:
    return instance.instrument


DECIMAL_INPUT = {"max_digits": 28, "decimal_places": 10, "coerce_to_string": True}


class OrderInputSerializer(FastValidation, serializers.Serializer):
    account = serializers.CharField(required=False, max_length=32)
    client_order_id = serializers.RegexField(
        ID_PATTERN,
        required=False,
        allow_null=True,
        error_messages={"invalid": "use 1-64 letters, digits or . _ : -"},
    )
    symbol = serializers.CharField(max_length=32)
    side = serializers.ChoiceField(choices=Side.choices)
    type = serializers.ChoiceField(choices=OrderType.choices)
    quantity = serializers.DecimalField(**DECIMAL_INPUT)
    limit_price = serializers.DecimalField(**DECIMAL_INPUT, required=False, allow_null=True)
    stop_price = serializers.DecimalField(**DECIMAL_INPUT, required=False, allow_null=True)
    time_in_force = serializers.ChoiceField(choices=TimeInForce.choices, default=TimeInForce.GTC)
    expire_at = serializers.DateTimeField(required=False, allow_null=True)
    venue = serializers.CharField(required=False, allow_null=True, max_length=32)
    strategy_id = serializers.CharField(required=False, allow_blank=True, max_length=64, default="")
    signal_id = serializers.CharField(required=False, allow_blank=True, max_length=64, default="")
    metadata = serializers.DictField(required=False, default=dict)
    # Part of the contract, served by later features: refused clearly until then.
    trail_amount = serializers.JSONField(required=False, allow_null=True)
    trail_percent = serializers.JSONField(required=False, allow_null=True)
    display_quantity = serializers.JSONField(required=False, allow_null=True)
    take_profit = serializers.JSONField(required=False, allow_null=True)
    stop_loss = serializers.JSONField(required=False, allow_null=True)
    algorithm = serializers.JSONField(required=False, allow_null=True)

    NOT_YET = (
        "trail_amount",
        "trail_percent",
        "display_quantity",
        "take_profit",
        "stop_loss",
        "algorithm",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unsupported = {
            name: ["not supported by this server yet"]
            for name in self.NOT_YET
            if attrs.get(name) is not None
        }
        if unsupported:
            raise serializers.ValidationError(unsupported)
        return attrs


class OrderModifyInputSerializer(serializers.Serializer):
    quantity = serializers.DecimalField(**DECIMAL_INPUT, required=False)
    limit_price = serializers.DecimalField(**DECIMAL_INPUT, required=False)
    stop_price = serializers.DecimalField(**DECIMAL_INPUT, required=False)
    expire_at = serializers.DateTimeField(required=False)


class CancelAllInputSerializer(serializers.Serializer):
    account = serializers.CharField(required=False, max_length=32)
    symbol = serializers.CharField(required=False, max_length=32)
    strategy_id = serializers.CharField(required=False, max_length=64)


class BatchInputSerializer(serializers.Serializer):
    orders = serializers.ListField(child=serializers.JSONField(), min_length=1, max_length=1000)


class OrderOutputSerializer(serializers.ModelSerializer):
    account = serializers.CharField(source="account.code")
    symbol = serializers.CharField(source="instrument.symbol")
    quantity = QuantityField()
    limit_price = PriceField()
    stop_price = PriceField()
    filled_quantity = QuantityField()
    remaining_quantity = QuantityField()
    average_fill_price = PriceField()
    commission = QuantityField()
    venue_order_id = serializers.SerializerMethodField()
    parent_id = serializers.UUIDField(allow_null=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "client_order_id",
            "account",
            "symbol",
            "side",
            "type",
            "time_in_force",
            "quantity",
            "limit_price",
            "stop_price",
            "expire_at",
            "status",
            "filled_quantity",
            "remaining_quantity",
            "average_fill_price",
            "commission",
            "venue",
            "venue_order_id",
            "parent_id",
            "reject_reason",
            "strategy_id",
            "signal_id",
            "metadata",
            "needs_review",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_venue_order_id(self, order: Order) -> str | None:
        return order.venue_order_id or None

    def to_representation(self, instance: Order) -> dict[str, Any]:
        # The declared fields are the contract (and the schema); `order_body` writes the same
        # body without building them per order (a test holds the two equal).
        return order_body(instance)


_TIME = serializers.DateTimeField()


def _time(value: Any) -> str | None:
    """As DateTimeField writes it. A UTC value (what the database answers) on a project whose
    time zone is UTC (nothing here activates another) and whose API writes ISO 8601 is
    written directly, its offset as "Z": the field's own path looks the current time zone up
    and converts to it first (a third of a list page's serializing, 2026-12-05)."""
    if value is None:
        return None
    if (
        value.tzinfo is UTC
        and settings.TIME_ZONE == "UTC"
        and api_settings.DATETIME_FORMAT == ISO_8601
    ):
        return value.isoformat()[: -len("+00:00")] + "Z"
    return _TIME.to_representation(value)


def order_body(order: Order) -> dict[str, Any]:
    """An order as OrderOutputSerializer's declared fields describe it, built directly: the
    order path answers every submission with one, and DRF's field machinery costs more than
    the database work of a submission on this machine kind (docs/performance-history.md)."""
    places = order.instrument.price_places
    return {
        "id": str(order.id),
        "client_order_id": order.client_order_id,
        "account": order.account.code,
        "symbol": order.instrument.symbol,
        "side": order.side,
        "type": order.type,
        "time_in_force": order.time_in_force,
        "quantity": format_quantity(order.quantity),
        "limit_price": format_price(order.limit_price, places),
        "stop_price": format_price(order.stop_price, places),
        "expire_at": _time(order.expire_at),
        "status": order.status,
        "filled_quantity": format_quantity(order.filled_quantity),
        "remaining_quantity": format_quantity(order.remaining_quantity),
        "average_fill_price": format_price(order.average_fill_price, places),
        "commission": format_quantity(order.commission),
        "venue": order.venue,
        "venue_order_id": order.venue_order_id or None,
        "parent_id": str(order.parent_id) if order.parent_id is not None else None,
        "reject_reason": order.reject_reason,
        "strategy_id": order.strategy_id,
        "signal_id": order.signal_id,
        "metadata": order.metadata,
        "needs_review": order.needs_review,
        "created_at": _time(order.created_at),
        "updated_at": _time(order.updated_at),
    }


class FillOutputSerializer(serializers.ModelSerializer):
    order_id = serializers.UUIDField()
    symbol = serializers.CharField(source="instrument.symbol")
    account = serializers.CharField(source="account.code")
    quantity = QuantityField()
    price = PriceField()
    commission = QuantityField()

    class Meta:
        model = Fill
        fields = [
            "id",
            "order_id",
            "account",
            "symbol",
            "side",
            "quantity",
            "price",
            "commission",
            "commission_currency",
            "liquidity",
            "venue",
            "venue_execution_id",
            "executed_at",
        ]
        read_only_fields = fields

    def to_representation(self, instance: Fill) -> dict[str, Any]:
        # As OrderOutputSerializer: the declared fields are the contract, `fill_body` writes
        # the same body directly (a test holds the two equal).
        return fill_body(instance)


def fill_body(fill: Fill) -> dict[str, Any]:
    """A fill as FillOutputSerializer's declared fields describe it, built directly."""
    return {
        "id": str(fill.id),
        "order_id": str(fill.order_id),
        "account": fill.account.code,
        "symbol": fill.instrument.symbol,
        "side": fill.side,
        "quantity": format_quantity(fill.quantity),
        "price": format_price(fill.price, fill.instrument.price_places),
        "commission": format_quantity(fill.commission),
        "commission_currency": fill.commission_currency,
        "liquidity": fill.liquidity,
        "venue": fill.venue,
        "venue_execution_id": fill.venue_execution_id,
        "executed_at": _time(fill.executed_at),
    }


class OrderDetailOutputSerializer(OrderOutputSerializer):
    fills = serializers.SerializerMethodField()
    children = serializers.SerializerMethodField()

    class Meta(OrderOutputSerializer.Meta):
        fields = [*OrderOutputSerializer.Meta.fields, "fills", "children"]
        read_only_fields = fields

    def to_representation(self, instance: Order) -> dict[str, Any]:
        return {
            **order_body(instance),
            "fills": self.get_fills(instance),
            "children": self.get_children(instance),
        }

    @extend_schema_field(FillOutputSerializer(many=True))
    def get_fills(self, order: Order) -> list[dict[str, Any]]:
        return [fill_body(fill) for fill in selectors.order_fills(order)]

    @extend_schema_field(OrderOutputSerializer(many=True))
    def get_children(self, order: Order) -> list[dict[str, Any]]:
        return [order_body(child) for child in selectors.order_children(order)]


class EventOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = OrderEvent
        fields = ["seq", "type", "at", "actor", "correlation_id", "data"]
        read_only_fields = fields

    def to_representation(self, instance: OrderEvent) -> dict[str, Any]:
        # As OrderOutputSerializer: `event_body` writes what the declared fields describe
        # (a test holds the two equal), without building them on every request.
        return event_body(instance)


def event_body(event: OrderEvent) -> dict[str, Any]:
    """An audit event as EventOutputSerializer's declared fields describe it."""
    return {
        "seq": event.seq,
        "type": event.type,
        "at": _time(event.at),
        "actor": event.actor,
        "correlation_id": event.correlation_id,
        "data": event.data,
    }
