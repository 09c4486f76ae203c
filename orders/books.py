"""The books: positions, cash and realized P&L, moved by fills in the fill's transaction.

A `Ledger` books the fills of one transaction (`services.execution_reports_apply`), with the
orders already locked. Lock order, the same everywhere (a rebuild takes it too): the orders,
then the account rows, then the positions the fills move (account-level, and the strategy's
when the order has one), each in primary-key order. Under the
account lock each fill gets the account's next booking sequence, so fills of one account are
booked one at a time, in an order a rebuild can replay exactly (average cost depends on it).
`books_rebuild` replays every fill through the same code and must arrive at the same books
(tests prove it, concurrent bookings included).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from brokers.marketdata import conversion_rate
from tradingsite.bulk import RowWrites, rows_select

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


@dataclass(frozen=True)
class Booking:
    realized: Decimal  # quote currency, account-level position
    cash_delta: Decimal  # account currency
    realized_account: Decimal  # account currency


def _position_keys(order: Order) -> list[tuple[int, int, str]]:
    """The positions a fill of this order moves: the account's, and its strategy's if any."""
    strategies = [""] + ([order.strategy_id] if order.strategy_id else [])
    return [(order.account_id, order.instrument_id, strategy) for strategy in strategies]


class Ledger:
    """The bookings of one transaction. It takes the locks once, in the lock order (the
    accounts, then every position the orders' fills can move, both in primary-key order;
    missing positions are created first), moves the rows in memory fill by fill, and writes
    each touched row once at `flush`. A batch of fills costs a handful of statements, a lone
    fill the same as ever."""

    def __init__(self, orders: Iterable[Order]) -> None:
        orders = list(orders)
        self._accounts = {
            account.pk: account for account in _accounts_locked({o.account_id for o in orders})
        }
        self._positions = self._lock_positions(orders)
        self._booked = {pk: account.fills_booked for pk, account in self._accounts.items()}
        self._cash: dict[int, Decimal] = {}
        self._realized: dict[int, Decimal] = {}
        self._touched: dict[int, Position] = {}

    @staticmethod
    def _lock_positions(orders: list[Order]) -> dict[tuple[int, int, str], Position]:
        keys = {key: order for order in orders for key in _position_keys(order)}
        if not keys:
            return {}

        def locked() -> dict[tuple[int, int, str], Position]:
            rows = _positions_locked(list(keys))
            return {(p.account_id, p.instrument_id, p.strategy_id): p for p in rows}

        positions = locked()
        missing = [key for key in keys if key not in positions]
        if not missing:
            return positions
        Position.objects.bulk_create(
            [
                Position(
                    account_id=account_id,
                    instrument_id=instrument_id,
                    strategy_id=strategy_id,
                    commission_currency=keys[
                        (account_id, instrument_id, strategy_id)
                    ].instrument.quote_currency,
                )
                for account_id, instrument_id, strategy_id in missing
            ],
            ignore_conflicts=True,  # a concurrent first fill created it: lock theirs
        )
        return locked()

    def book(self, fill: Fill, order: Order, *, booked_seq: int | None = None) -> Booking:
        """Move the positions, cash and realized P&L for one fill (with its commission and
        account_rate set), and set the fill's realized P&L and booking sequence: the account's
        next one, or `booked_seq` (a rebuild). The caller saves the fill."""
        now = timezone.now()
        realized = Decimal(0)
        if booked_seq is None:
            booked_seq = self._booked[order.account_id] + 1
        self._booked[order.account_id] = max(self._booked[order.account_id], booked_seq)
        for key in sorted(_position_keys(order), key=lambda k: self._positions[k].pk):
            position = self._positions[key]
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
            self._touched[position.pk] = position
            if position.strategy_id == "":
                realized = _q(effect.realized)
        booking = booking_of(fill, realized)
        fill.realized_pnl, fill.booked_seq = realized, booked_seq
        account_id = order.account_id
        self._cash[account_id] = self._cash.get(account_id, Decimal(0)) + booking.cash_delta
        self._realized[account_id] = (
            self._realized.get(account_id, Decimal(0)) + booking.realized_account
        )
        return booking

    def flush(self, writes: RowWrites | None = None) -> None:
        """Write the moved rows, or add them to `writes` (the caller's other writes)."""
        together = writes if writes is not None else RowWrites()
        if self._touched:
            together.update(
                list(self._touched.values()),
                [
                    "quantity",
                    "average_price",
                    "realized_pnl",
                    "commission",
                    "commission_currency",
                    "opened_at",
                    "updated_at",
                ],
            )
        # The account rows are locked (read under the lock in __init__): their new values can
        # be written as values, all accounts in one statement.
        moved = []
        for account_id, cash_delta in self._cash.items():
            account = self._accounts[account_id]
            account.cash += cash_delta
            account.realized_pnl += self._realized[account_id]
            account.fills_booked = max(account.fills_booked, self._booked[account_id])
            moved.append(account)
        together.update(moved, ["cash", "realized_pnl", "fills_booked"])
        if writes is None:
            together.flush()
        self._touched, self._cash, self._realized = {}, {}, {}


# The ledger's locks run for every fill: on PostgreSQL their SELECTs are built once
# (tradingsite.bulk.rows_select), not by the ORM's query compiler.


def _accounts_locked(ids: set[int]) -> list[Account]:
    return rows_select(  # type: ignore[return-value]
        Account, {"id": sorted(ids)}, order_by=("id",), lock=True
    )


def _positions_locked(keys: list[tuple[int, int, str]]) -> list[Position]:
    return rows_select(  # type: ignore[return-value]
        Position,
        {("account", "instrument", "strategy_id"): keys},
        order_by=("id",),
        lock=True,
    )


def fill_book(fill: Fill, order: Order, *, booked_seq: int | None = None) -> Booking:
    """Book one fill in its own ledger (see `Ledger.book`)."""
    ledger = Ledger([order])
    booking = ledger.book(fill, order, booked_seq=booked_seq)
    ledger.flush()
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
