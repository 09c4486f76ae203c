"""An order's state as a plain dict, and the same dict rebuilt from its events alone.

Every event stores the fields it changed (`data["changes"]`); replaying them in `seq` order
must give exactly `order_state(order)`. Tests assert that for every path they take.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from .models import Order, OrderEvent

# The order's fields that events carry. Identity fields come with the first event; the rest
# change over the order's life.
REPLAYED_FIELDS: tuple[str, ...] = (
    "client_order_id",
    "account",
    "symbol",
    "side",
    "type",
    "time_in_force",
    "venue",
    "reduce_only",
    "quantity",
    "limit_price",
    "stop_price",
    "expire_at",
    "status",
    "filled_quantity",
    "remaining_quantity",
    "average_fill_price",
    "commission",
    "venue_order_id",
    "reject_reason",
    "needs_review",
)


def encode(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def order_state(order: Order) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in REPLAYED_FIELDS:
        if name == "account":
            values[name] = order.account.code
        elif name == "symbol":
            values[name] = order.instrument.symbol
        else:
            values[name] = getattr(order, name)
    return {name: encode(value) for name, value in values.items()}


def replay(events: Iterable[OrderEvent]) -> dict[str, Any]:
    state: dict[str, Any] = {}
    expected_seq = 1
    for event in sorted(events, key=lambda e: e.seq):
        if event.seq != expected_seq:
            raise ValueError(f"event sequence has a gap: expected {expected_seq}, got {event.seq}")
        state.update(event.data.get("changes", {}))
        expected_seq += 1
    return state
