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
from django.db.models import F, Sum
from django.utils import timezone

from brokers.base import Quote
from brokers.marketdata import conversion_rate, last_quotes

from .models import Account, AccountSnapshot, CashMovement, Fill, Order, Position
from .states import OPEN
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


def account_value(
    account: Account, *, now: datetime | None = None, quotes: dict[str, Quote] | None = None
) -> AccountValue:
    now = now or timezone.now()
    account.refresh_from_db(fields=["cash", "realized_pnl"])
    positions = Position.objects.filter(account=account, strategy_id="").exclude(quantity=0)
    positions = positions.select_related("instrument", "account")
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
    equity = account.cash + net
    cutoff = last_cutoff(now)
    realized_today = (
        Fill.objects.filter(account=account, executed_at__gte=cutoff).aggregate(
            total=Sum(F("realized_pnl") * F("account_rate"))
        )["total"]
        or ZERO
    )
    base = (
        AccountSnapshot.objects.filter(account=account, taken_at__lte=now)
        .order_by("-trading_day")
        .first()
    )
    moved = CashMovement.objects.filter(account=account)
    if base is not None:
        moved = moved.filter(at__gt=base.taken_at)
        daily = equity - base.equity - (moved.aggregate(t=Sum("amount"))["t"] or ZERO)
    else:
        daily = equity - (moved.aggregate(t=Sum("amount"))["t"] or ZERO)
    return AccountValue(
        account=account,
        cash=account.cash,
        equity=equity.quantize(QUANTUM),
        buying_power=(equity - margin).quantize(QUANTUM),
        margin_used=margin.quantize(QUANTUM),
        gross_exposure=gross.quantize(QUANTUM),
        net_exposure=net.quantize(QUANTUM),
        unrealized_pnl=unrealized.quantize(QUANTUM),
        realized_pnl_today=realized_today.quantize(QUANTUM),
        daily_pnl=daily.quantize(QUANTUM),
        open_orders=Order.objects.filter(account=account, status__in=list(OPEN)).count(),
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
