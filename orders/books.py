"""The books: positions, cash and realized P&L, moved by fills in the fill's transaction.

`fill_book` runs inside `services._fill_apply`, with the order row locked. Lock order, the
same everywhere (a rebuild takes it too): the account row, then the positions it moves
(account-level, and the strategy's when the order has one) in primary-key order. Under the
account lock each fill gets the account's next booking sequence, so fills of one account are
booked one at a time, in an order a rebuild can replay exactly (average cost depends on it).
`books_rebuild` replays every fill through the same code and must arrive at the same books
(tests prove it, concurrent bookings included).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, Sum
from django.db.models.functions import Greatest
from django.utils import timezone

from brokers.marketdata import conversion_rate

from .lock_objects import account_for_update, positions_for_update
from .models import Account, CashMovement, Fill, Order, Position
from .pnl import CommissionSchedule, PositionState, apply_fill, signed

logger = logging.getLogger(__name__)

QUANTUM = Decimal("1e-10")


def _q(value: Decimal) -> Decimal:
    return value.quantize(QUANTUM)


def commission_schedule(venue: str, asset_class: str) -> CommissionSchedule:
    raw = settings.COMMISSIONS.get(venue, {}).get(asset_class)
    if not raw:
        return CommissionSchedule()
    return CommissionSchedule(
        per_unit=Decimal(raw.get("per_unit", "0")),
        bps=Decimal(raw.get("bps", "0")),
        minimum=Decimal(raw.get("minimum", "0")),
        currency=raw.get("currency", ""),
    )


def fill_commission(
    order: Order, *, venue: str, quantity: Decimal, price: Decimal
) -> tuple[Decimal, str]:
    schedule = commission_schedule(venue, order.instrument.asset_class)
    amount = _q(schedule.commission(quantity=quantity, price=price))
    return amount, schedule.currency or order.instrument.quote_currency


def account_rate(instrument_quote_currency: str, account: Account) -> Decimal:
    """Quote currency -> account currency now. A fill is booked even without a quote for the
    conversion pair: the pair's reference price stands in, and the fill keeps the rate used."""
    rate = conversion_rate(instrument_quote_currency, account.currency)
    if rate is not None:
        return _q(rate)
    from .models import Instrument

    for pair, invert in (
        (f"{instrument_quote_currency}_{account.currency}", False),
        (f"{account.currency}_{instrument_quote_currency}", True),
    ):
        reference = (
            Instrument.objects.filter(symbol=pair).values_list("reference_price", flat=True).first()
        )
        if reference:
            logger.warning("no quote for %s: booking at its reference price", pair)
            return _q(Decimal(1) / reference if invert else reference)
    logger.error(
        "no conversion from %s to %s: booking at 1", instrument_quote_currency, account.currency
    )
    return Decimal(1)


def _positions_for_update(order: Order) -> list[Position]:
    """The positions a fill of this order moves, locked; created on the first fill."""
    keys = [""] + ([order.strategy_id] if order.strategy_id else [])
    lock = {
        "account_id": order.account_id,
        "instrument_id": order.instrument_id,
        "strategy_ids": keys,
    }
    positions = positions_for_update(**lock)
    if len(positions) == len(keys):
        return positions
    for strategy_id in keys:
        Position.objects.get_or_create(
            account_id=order.account_id,
            instrument_id=order.instrument_id,
            strategy_id=strategy_id,
            defaults={"commission_currency": order.instrument.quote_currency},
        )
    return positions_for_update(**lock)


@dataclass(frozen=True)
class Booking:
    realized: Decimal  # quote currency, account-level position
    cash_delta: Decimal  # account currency
    realized_account: Decimal  # account currency


def fill_book(fill: Fill, order: Order, *, booked_seq: int | None = None) -> Booking:
    """Move the positions, cash and realized P&L for one fill (with its commission and
    account_rate set), and set the fill's realized P&L and booking sequence: the account's next
    one, or `booked_seq` (a rebuild). The caller saves the fill."""
    now = timezone.now()
    realized = Decimal(0)
    account = account_for_update(order.account_id)
    if booked_seq is None:
        booked_seq = account.fills_booked + 1
    for position in _positions_for_update(order):
        effect = apply_fill(
            PositionState(position.quantity, position.average_price, position.realized_pnl),
            side=fill.side,
            quantity=fill.quantity,
            price=fill.price,
        )
        opened = effect.position.quantity != 0 and (
            position.quantity == 0 or (position.quantity > 0) != (effect.position.quantity > 0)
        )
        if opened:  # a new position, or the new side of a reversal
            position.opened_at = fill.executed_at
        elif effect.position.quantity == 0:
            position.opened_at = None
        position.quantity = effect.position.quantity
        position.average_price = _q(effect.position.average_price)
        position.realized_pnl = _q(effect.position.realized_pnl)
        position.commission += fill.commission
        position.commission_currency = fill.commission_currency
        position.updated_at = now
        position.save(
            update_fields=[
                "quantity",
                "average_price",
                "realized_pnl",
                "commission",
                "commission_currency",
                "opened_at",
                "updated_at",
            ]
        )
        if position.strategy_id == "":
            realized = _q(effect.realized)
    booking = booking_of(fill, realized)
    fill.realized_pnl, fill.booked_seq = realized, booked_seq
    Account.objects.filter(pk=order.account_id).update(
        cash=F("cash") + booking.cash_delta,
        realized_pnl=F("realized_pnl") + booking.realized_account,
        fills_booked=Greatest(F("fills_booked"), booked_seq),
    )
    return booking


def booking_of(fill: Fill, realized: Decimal) -> Booking:
    """What a fill does to cash: the notional leaves (buy) or arrives (sell), the commission
    leaves; both in the account currency at the fill's booked rate."""
    rate = fill.account_rate
    commission_rate = (
        rate
        if fill.commission_currency == fill.instrument.quote_currency
        else (Decimal(1) if fill.commission_currency == fill.account.currency else rate)
    )
    cash_delta = _q(
        -signed(fill.side, fill.quantity) * fill.price * rate - fill.commission * commission_rate
    )
    return Booking(realized=realized, cash_delta=cash_delta, realized_account=_q(realized * rate))


def account_cash_move(
    *, account: Account, amount: Decimal, reason: str, actor: str
) -> CashMovement:
    """A deposit (amount > 0) or withdrawal (< 0) in the account currency."""
    with transaction.atomic():
        movement = CashMovement.objects.create(
            account=account, amount=amount, reason=reason, actor=actor
        )
        Account.objects.filter(pk=account.pk).update(cash=F("cash") + amount)
    return movement


def books_rebuild(*, accounts: list[Account] | None = None) -> int:
    """Rebuild positions, cash and realized P&L from cash movements and fills alone, in the
    order the fills were booked. Answers the number of fills replayed."""
    targets = accounts if accounts is not None else list(Account.objects.all())
    replayed = 0
    with transaction.atomic():
        locked = Account.objects.select_for_update().filter(pk__in=[a.pk for a in targets])
        for account in locked.order_by("pk"):
            Position.objects.filter(account=account).delete()
            deposits = CashMovement.objects.filter(account=account).aggregate(total=Sum("amount"))[
                "total"
            ] or Decimal(0)
            Account.objects.filter(pk=account.pk).update(cash=deposits, realized_pnl=Decimal(0))
            fills = (
                Fill.objects.filter(account=account)
                .select_related("order", "order__instrument", "instrument", "account")
                .order_by("booked_seq", "created_at", "id")
            )
            for fill in fills:
                fill_book(fill, fill.order, booked_seq=fill.booked_seq)
                fill.save(update_fields=["realized_pnl"])
                replayed += 1
    return replayed
