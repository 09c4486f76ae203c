"""Pure checks of an order's terms against its instrument, type and time in force.

`SUBMIT_CHECKS` is the sequence every new order passes before it is stored; later stages
(pre-trade risk) are further steps after these. Each check raises OrderValidationError naming
the field and the rule; none touches the database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any

from .exceptions import OrderValidationError


@dataclass(frozen=True)
class InstrumentRules:
    symbol: str
    lot_size: Decimal
    min_quantity: Decimal
    tick_size: Decimal
    is_active: bool = True


@dataclass(frozen=True)
class OrderTerms:
    """What a client asks for, after the shape check and before anything is stored."""

    symbol: str
    side: str
    type: str
    time_in_force: str
    quantity: Decimal
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    expire_at: datetime | None = None
    client_order_id: str | None = None
    venue: str | None = None
    strategy_id: str = ""
    signal_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


NEEDS_LIMIT = {"limit", "stop_limit"}
NEEDS_STOP = {"stop", "stop_limit"}


def _fmt(value: Decimal) -> str:
    return format(value.normalize(), "f")


def is_multiple(value: Decimal, step: Decimal) -> bool:
    return value % step == 0


def check_instrument(terms: OrderTerms, rules: InstrumentRules, now: datetime) -> None:
    if not rules.is_active:
        raise OrderValidationError(
            "instrument_inactive", "symbol", f"{rules.symbol} is not open for trading"
        )


def check_quantity(terms: OrderTerms, rules: InstrumentRules, now: datetime) -> None:
    quantity = terms.quantity
    if not quantity.is_finite() or quantity <= 0:
        raise OrderValidationError("invalid_quantity", "quantity", "must be greater than 0")
    if not is_multiple(quantity, rules.lot_size):
        raise OrderValidationError(
            "invalid_lot",
            "quantity",
            f"not a multiple of lot size {_fmt(rules.lot_size)}",
            f"quantity {_fmt(quantity)} is not a multiple of lot size {_fmt(rules.lot_size)}",
        )
    if quantity < rules.min_quantity:
        raise OrderValidationError(
            "below_minimum",
            "quantity",
            f"below the minimum {_fmt(rules.min_quantity)}",
            f"quantity {_fmt(quantity)} is below the minimum {_fmt(rules.min_quantity)}",
        )


def check_prices(terms: OrderTerms, rules: InstrumentRules, now: datetime) -> None:
    for name, needed_by in (("limit_price", NEEDS_LIMIT), ("stop_price", NEEDS_STOP)):
        price: Decimal | None = getattr(terms, name)
        if terms.type in needed_by and price is None:
            raise OrderValidationError(
                "missing_price",
                name,
                f"required for {terms.type} orders",
                f"{name} is required for {terms.type} orders",
            )
        if terms.type not in needed_by and price is not None:
            raise OrderValidationError(
                "unexpected_field",
                name,
                f"not allowed for {terms.type} orders",
                f"{name} is not allowed for {terms.type} orders",
            )
        if price is None:
            continue
        if not price.is_finite() or price <= 0:
            raise OrderValidationError("invalid_price", name, "must be greater than 0")
        if not is_multiple(price, rules.tick_size):
            raise OrderValidationError(
                "invalid_tick",
                name,
                f"not a multiple of tick {_fmt(rules.tick_size)}",
                f"{name} {_fmt(price)} is not a multiple of tick {_fmt(rules.tick_size)}",
            )


def check_time_in_force(terms: OrderTerms, rules: InstrumentRules, now: datetime) -> None:
    if terms.time_in_force == "gtd":
        if terms.expire_at is None:
            raise OrderValidationError(
                "missing_expire_at",
                "expire_at",
                "required for gtd orders",
                "expire_at is required for gtd orders",
            )
        if terms.expire_at.tzinfo is None:
            raise OrderValidationError(
                "invalid_expire_at", "expire_at", "must carry a time zone (use UTC, Z)"
            )
        if terms.expire_at <= now:
            raise OrderValidationError(
                "invalid_expire_at",
                "expire_at",
                "must be in the future",
                "expire_at must be in the future",
            )
    elif terms.expire_at is not None:
        raise OrderValidationError(
            "unexpected_field",
            "expire_at",
            "only gtd orders take expire_at",
            f"expire_at is not allowed for time_in_force {terms.time_in_force}",
        )


CheckFn = Callable[[OrderTerms, InstrumentRules, datetime], None]

SUBMIT_CHECKS: tuple[CheckFn, ...] = (
    check_instrument,
    check_quantity,
    check_prices,
    check_time_in_force,
)


def validate_terms(terms: OrderTerms, rules: InstrumentRules, now: datetime) -> None:
    for check in SUBMIT_CHECKS:
        check(terms, rules, now)


def day_expiry(now: datetime, cutoff: str) -> datetime:
    """The next daily cut-off (UTC "HH:MM") strictly after `now`: when a DAY order expires."""
    hour, minute = (int(part) for part in cutoff.split(":"))
    candidate = datetime.combine(now.date(), time(hour, minute), tzinfo=now.tzinfo)
    if candidate <= now:
        candidate += timedelta(days=1)
    return candidate
