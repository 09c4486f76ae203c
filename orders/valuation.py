"""Marking the books to market: positions and accounts as a desk reads them.

- Valuation uses the mid of the latest quote (bid and ask would value a flat book at a loss
  of half the spread per position; the mid is what the desk's risk sees).
- Amounts in the account currency use the latest quote of the conversion pair.
- Buying power = equity - margin in use, margin = |market value| x the asset class's rate
  (settings.MARGIN_RATES).
- Realized P&L today: the realized P&L of fills executed since the last daily cut-off
  (settings.ACCOUNT_SNAPSHOT_CUTOFF_UTC). Daily P&L (realized + unrealized): equity now minus
  equity at the last cut-off's snapshot, less cash moved in or out since; before an account's
  first snapshot, equity minus everything ever deposited.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.utils import timezone

from brokers.base import Quote
from brokers.marketdata import conversion_rate, last_quotes
from tradingsite.bulk import rows_select
from tradingsite.db import db_decimal

from .models import Account, AccountSnapshot, CashMovement, Fill, Order, Position
from .states import OPEN_LITERALS
from .validation import day_expiry

ZERO = Decimal(0)
QUANTUM = Decimal("1e-10")


def last_cutoff(now: datetime | None = None) -> datetime:
    """The most recent daily cut-off at or before `now`."""
    now = now or timezone.now()
    return day_expiry(now, settings.ACCOUNT_SNAPSHOT_CUTOFF_UTC) - timedelta(days=1)


@dataclass(frozen=True)
class PositionValue:
    position: Position
    market_price: Decimal | None  # the mid, quote currency
    unrealized_pnl: Decimal | None  # quote currency
    market_value: Decimal | None  # quote currency
    rate: Decimal | None  # quote currency -> account currency

    @property
    def market_value_account(self) -> Decimal | None:
        if self.market_value is None or self.rate is None:
            return None
        return self.market_value * self.rate


def positions_valued(
    positions: Iterable[Position], *, quotes: dict[str, Quote] | None = None
) -> list[PositionValue]:
    rows = list(positions)
    cache = quotes if quotes is not None else {}
    missing = {p.instrument.symbol for p in rows if p.quantity != 0} - set(cache)
    cache.update(last_quotes(missing))
    values = []
    for position in rows:
        symbol = position.instrument.symbol
        quote = cache.get(symbol)
        rate = conversion_rate(
            position.instrument.quote_currency, position.account.currency, quotes=cache
        )
        if position.quantity == 0:
            values.append(PositionValue(position, quote.mid if quote else None, ZERO, ZERO, rate))
            continue
        if quote is None:
            values.append(PositionValue(position, None, None, None, rate))
            continue
        mid = quote.mid
        values.append(
            PositionValue(
                position=position,
                market_price=mid,
                unrealized_pnl=((mid - position.average_price) * position.quantity).quantize(
                    QUANTUM
                ),
                market_value=(mid * position.quantity).quantize(QUANTUM),
                rate=rate,
            )
        )
    return values


@dataclass(frozen=True)
class AccountValue:
    account: Account
    cash: Decimal
    equity: Decimal
    buying_power: Decimal
    margin_used: Decimal
    gross_exposure: Decimal
    net_exposure: Decimal
    unrealized_pnl: Decimal
    realized_pnl_today: Decimal
    daily_pnl: Decimal
    open_orders: int
    complete: bool  # False when a position could not be marked (no quote or no rate)


# What valuing an account reads besides its positions, in one statement sent as text (the
# ORM's query compiler cost more CPU than these reads; the risk gate runs this on every order
# of an account with a daily-loss or buying-power limit): cash and realized P&L now, the
# realized P&L of fills since the cut-off, the equity of the last snapshot taken by `now`,
# and the cash moved since that snapshot (or ever, before the first one).
_BOOK_SQL = f"""
SELECT a.cash, a.realized_pnl,
  (SELECT SUM(f.realized_pnl * f.account_rate) FROM {Fill._meta.db_table} f
    WHERE f.account_id = a.id AND f.executed_at >= %s),
  b.equity,
  (SELECT SUM(m.amount) FROM {CashMovement._meta.db_table} m
    WHERE m.account_id = a.id AND (b.taken_at IS NULL OR m.at > b.taken_at))
FROM {Account._meta.db_table} a
LEFT JOIN {AccountSnapshot._meta.db_table} b ON b.id = (
  SELECT s.id FROM {AccountSnapshot._meta.db_table} s
  WHERE s.account_id = a.id AND s.taken_at <= %s ORDER BY s.trading_day DESC LIMIT 1)
WHERE a.id = %s
"""
# Open orders counted with the statuses as literals (states.OPEN_LITERALS): the planner then
# proves the partial index's condition (order_open_account_created).
_OPEN_COUNT_SQL = (
    f"SELECT COUNT(*) FROM {Order._meta.db_table} o"
    f" WHERE o.account_id = %s AND o.status IN ({OPEN_LITERALS})"
)


@dataclass(frozen=True)
class AccountBook:
    """An account's books at a moment, besides its positions (`account_book`)."""

    cash: Decimal
    realized_pnl: Decimal
    realized_today: Decimal  # account currency, fills since the last cut-off
    base_equity: Decimal | None  # the last snapshot's equity; None before the first one
    moved: Decimal  # cash moved in or out since that snapshot (or ever)


def account_book(account: Account, *, now: datetime) -> AccountBook:
    """One read; also refreshes `account.cash` and `account.realized_pnl`."""
    field = Fill._meta.get_field("executed_at")
    params = [
        field.get_db_prep_value(last_cutoff(now), connection),
        field.get_db_prep_value(now, connection),
        account.pk,
    ]
    with connection.cursor() as cursor:
        cursor.execute(_BOOK_SQL, params)
        row = cursor.fetchone()
    if row is None:  # as refresh_from_db answers an account gone meanwhile
        raise Account.DoesNotExist(f"account {account.pk} does not exist")
    cash, realized, today, equity, moved = row
    account.cash, account.realized_pnl = db_decimal(cash), db_decimal(realized)
    return AccountBook(
        cash=account.cash,
        realized_pnl=account.realized_pnl,
        realized_today=db_decimal(today) or ZERO,
        base_equity=db_decimal(equity),
        moved=db_decimal(moved) or ZERO,
    )


def positions_held(account: Account, *, strategy_id: str = "") -> list[Position]:
    """The account's non-flat positions (or one strategy's), with their instruments and
    account."""
    rows = rows_select(
        Position,
        {"account": account.pk, "strategy_id": strategy_id},
        related=("instrument", "account"),
    )
    return [position for position in rows if position.quantity != 0]


def open_orders_count(account: Account) -> int:
    with connection.cursor() as cursor:
        cursor.execute(_OPEN_COUNT_SQL, [account.pk])
        return cursor.fetchone()[0]


def account_value(
    account: Account, *, now: datetime | None = None, quotes: dict[str, Quote] | None = None
) -> AccountValue:
    now = now or timezone.now()
    book = account_book(account, now=now)
    return account_value_of(
        account,
        book,
        positions_held(account),
        open_orders=open_orders_count(account),
        quotes=quotes,
    )


def account_value_of(
    account: Account,
    book: AccountBook,
    positions: Iterable[Position],
    *,
    open_orders: int,
    quotes: dict[str, Quote] | None = None,
) -> AccountValue:
    """`account_value` from what was read already (the risk snapshot reads it along with
    what its rules need)."""
    gross = net = unrealized = margin = ZERO
    complete = True
    for value in positions_valued(positions, quotes=quotes):
        market_value = value.market_value_account
        if market_value is None or value.unrealized_pnl is None or value.rate is None:
            complete = False
            continue
        gross += abs(market_value)
        net += market_value
        unrealized += value.unrealized_pnl * value.rate
        rate = Decimal(settings.MARGIN_RATES.get(value.position.instrument.asset_class, "1"))
        margin += abs(market_value) * rate
    equity = book.cash + net
    base = ZERO if book.base_equity is None else book.base_equity
    daily = equity - base - book.moved
    return AccountValue(
        account=account,
        cash=book.cash,
        equity=equity.quantize(QUANTUM),
        buying_power=(equity - margin).quantize(QUANTUM),
        margin_used=margin.quantize(QUANTUM),
        gross_exposure=gross.quantize(QUANTUM),
        net_exposure=net.quantize(QUANTUM),
        unrealized_pnl=unrealized.quantize(QUANTUM),
        realized_pnl_today=book.realized_today.quantize(QUANTUM),
        daily_pnl=daily.quantize(QUANTUM),
        open_orders=open_orders,
        complete=complete,
    )


def account_snapshots_take(*, now: datetime | None = None) -> int:
    """The snapshot of every account for the trading day that ended at the last cut-off, if
    not taken yet (beat runs this every minute, so a missed minute only delays it)."""
    now = now or timezone.now()
    trading_day = last_cutoff(now).date()
    taken = 0
    for account in Account.objects.filter(is_active=True):
        if AccountSnapshot.objects.filter(account=account, trading_day=trading_day).exists():
            continue
        value = account_value(account, now=now)
        _, created = AccountSnapshot.objects.get_or_create(
            account=account,
            trading_day=trading_day,
            defaults={
                "cash": value.cash,
                "equity": value.equity,
                "realized_pnl": account.realized_pnl,
                "gross_exposure": value.gross_exposure,
                "net_exposure": value.net_exposure,
                "taken_at": now,
            },
        )
        taken += int(created)
    return taken
