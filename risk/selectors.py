"""Reads of the risk app: the limits and trading state that apply to an order, and the
snapshot the pure checks run on."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from brokers.base import Quote as VenueQuote
from brokers.marketdata import conversion_rate
from brokers.registry import venue_for
from orders.models import Account, Instrument, Order, Position
from orders.states import OPEN
from tradingsite import refdata

from . import checks
from .models import RateLimitOverride, RiskEvent, RiskLimit, Scope, TradingMode, TradingState
from .ratelimit import Bucket

# Rules that need positions, open orders or prices: the snapshot reads them only when one of
# these is configured for the order, so an account without such limits pays nothing.
NEEDS_BOOKS = {checks.MAX_DAILY_LOSS, checks.BUYING_POWER}
NEEDS_POSITIONS = {
    checks.MAX_POSITION,
    checks.MAX_GROSS_EXPOSURE,
    checks.MAX_NET_EXPOSURE,
    checks.REDUCE_ONLY,
} | NEEDS_BOOKS
NEEDS_ALL_POSITIONS = {checks.MAX_GROSS_EXPOSURE, checks.MAX_NET_EXPOSURE}
NEEDS_QUOTE = {
    checks.MAX_ORDER_NOTIONAL,
    checks.PRICE_COLLAR_PCT,
    checks.PRICE_COLLAR_TICKS,
    checks.MAX_GROSS_EXPOSURE,
    checks.MAX_NET_EXPOSURE,
    checks.BUYING_POWER,
}

MODE_RANK = {TradingMode.ACTIVE: 0, TradingMode.REDUCING: 1, TradingMode.HALTED: 2}


def limits_for(*, account: str, strategy_id: str, symbol: str) -> list[checks.Limit]:
    """The active limits that apply to an order, in the table's order (rule, scope, target);
    from the reference-data cache (tradingsite/refdata.py)."""
    index = refdata.cached(("risk_limits",), _active_limits_by_scope)
    wanted = [(Scope.GLOBAL, None), (Scope.ACCOUNT, account), (Scope.SYMBOL, symbol)]
    if strategy_id:
        wanted.append((Scope.STRATEGY, strategy_id))
    found = sorted(entry for key in wanted for entry in index.get(key, ()))
    return [limit for _, limit in found]


def _active_limits_by_scope() -> dict[tuple[str, str | None], list[tuple[int, checks.Limit]]]:
    """(scope, target) -> [(position in the table's order, limit)]; global limits under
    (global, None) whatever their target."""
    index: dict[tuple[str, str | None], list[tuple[int, checks.Limit]]] = {}
    for position, row in enumerate(RiskLimit.objects.filter(active=True)):
        key = (row.scope, None if row.scope == Scope.GLOBAL else row.target)
        limit = checks.Limit(
            rule=row.rule,
            value=row.value,
            scope=row.scope,
            target=row.target,
            symbols=frozenset(row.symbols or ()),
        )
        index.setdefault(key, []).append((position, limit))
    return index


def trading_state_for(*, account: str, strategy_id: str, symbol: str) -> TradingState | None:
    """The strictest non-active state that applies (halted before reducing), or None."""
    return trading_state_among(
        trading_states_restricting(), account=account, strategy_id=strategy_id, symbol=symbol
    )


def trading_states_restricting() -> list[TradingState]:
    """Every non-active trading state (an order, or a batch of them, looks its own up in memory
    with `trading_state_among`), from the reference-data cache: shared, read them only. The
    table holds a row per scope touched: small."""
    return refdata.cached(
        ("trading_states",), lambda: list(TradingState.objects.exclude(mode=TradingMode.ACTIVE))
    )


def trading_state_among(
    states: Iterable[TradingState], *, account: str, strategy_id: str, symbol: str
) -> TradingState | None:
    """`trading_state_for`, answered from states read already."""
    return strictest_state(
        state
        for state in states
        if applies(state, account=account, strategy_id=strategy_id, symbol=symbol)
    )


def applies(row: TradingState | RiskLimit, *, account: str, strategy_id: str, symbol: str) -> bool:
    """Does a trading state or limit row apply to an order?"""
    if row.scope == Scope.GLOBAL:
        return True
    if row.scope == Scope.STRATEGY:
        return bool(strategy_id) and row.target == strategy_id
    return row.target == {Scope.ACCOUNT: account, Scope.SYMBOL: symbol}.get(row.scope)


def strictest_state(states: Iterable[TradingState]) -> TradingState | None:
    strictest = None
    for state in states:
        if strictest is None or MODE_RANK[state.mode] > MODE_RANK[strictest.mode]:
            strictest = state
    return strictest


def account_positions(
    account: Account, *, symbols: Iterable[str] | None = None, strategy_id: str | None = None
) -> dict[str, Decimal]:
    """Signed quantity per symbol from the books (the account's, or one strategy's)."""
    rows = Position.objects.filter(account=account, strategy_id=strategy_id or "").exclude(
        quantity=0
    )
    if symbols is not None:
        rows = rows.filter(instrument__symbol__in=list(symbols))
    return dict(rows.values_list("instrument__symbol", "quantity"))


def open_order_totals(account: Account) -> tuple[dict[str, Decimal], dict[str, Decimal], int]:
    buys: dict[str, Decimal] = {}
    sells: dict[str, Decimal] = {}
    count = 0
    rows = (
        Order.objects.filter(account=account, status__in=list(OPEN))
        .values("instrument__symbol", "side")
        .annotate(remaining=Sum("remaining_quantity"), n=Count("id"))
    )
    for row in rows:
        target = buys if row["side"] == "buy" else sells
        target[row["instrument__symbol"]] = row["remaining"]
        count += row["n"]
    return buys, sells, count


def _venue_quote(quote: checks.Quote) -> VenueQuote:
    return VenueQuote(
        symbol="", bid=quote.bid, ask=quote.ask, bid_size=Decimal(0), ask_size=Decimal(0), seq=0
    )


def _quotes(venue: str, symbols: list[str]) -> dict[str, checks.Quote]:
    if not symbols:
        return {}
    found = venue_for(venue).quotes(symbols)
    return {symbol: checks.Quote(bid=q.bid, ask=q.ask) for symbol, q in found.items()}


def snapshot_for(
    *,
    account: Account,
    instrument: Instrument,
    strategy_id: str,
    venue: str,
    limits: list[checks.Limit],
    reducing: bool,
) -> checks.Snapshot:
    """Everything the checks need for this order, and nothing they do not."""
    rules = {limit.rule for limit in limits}
    if reducing:
        rules.add(checks.REDUCE_ONLY)
    symbol = instrument.symbol
    positions: dict[str, Decimal] = {}
    strategy_positions: dict[str, Decimal] = {}
    buys: dict[str, Decimal] = {}
    sells: dict[str, Decimal] = {}
    count = 0
    if rules & NEEDS_POSITIONS:
        positions = account_positions(
            account, symbols=None if rules & NEEDS_ALL_POSITIONS else [symbol]
        )
        buys, sells, count = open_order_totals(account)
        if strategy_id and any(
            lim.rule == checks.MAX_POSITION and lim.scope == Scope.STRATEGY for lim in limits
        ):
            strategy_positions = account_positions(
                account, symbols=[symbol], strategy_id=strategy_id
            )
    elif checks.MAX_OPEN_ORDERS in rules:
        count = Order.objects.filter(account=account, status__in=list(OPEN)).count()
    quotes: dict[str, checks.Quote] = {}
    conversions: dict[str, Decimal] = {}
    if rules & NEEDS_QUOTE:
        symbols = {symbol}
        if rules & NEEDS_ALL_POSITIONS:
            symbols |= set(positions)
        quotes = _quotes(venue, sorted(symbols))
        instruments = {i.symbol: i for i in Instrument.objects.filter(symbol__in=symbols)}
        shared = {name: _venue_quote(q) for name, q in quotes.items()}
        for name, held in instruments.items():
            rate = conversion_rate(
                held.quote_currency, account.currency, quotes=shared, venue=venue
            )
            if rate is not None:
                conversions[name] = rate
    books: dict[str, Any] = {}
    if rules & NEEDS_BOOKS:
        books = _books(account, instrument, quotes)
    return checks.Snapshot(
        **books,
        limits=tuple(limits),
        positions=positions,
        strategy_positions=strategy_positions,
        open_buy=buys,
        open_sell=sells,
        open_order_count=count,
        quotes=quotes,
        to_account_currency=conversions,
        reducing=reducing,
    )


def _books(
    account: Account, instrument: Instrument, quotes: dict[str, checks.Quote]
) -> dict[str, Any]:
    """Daily P&L, buying power and the margin working orders reserve, in the account
    currency (orders.valuation). Open orders are valued at their limit or stop price, market
    orders at the mid."""
    from orders.valuation import account_value

    value = account_value(account)
    margin_rates = {k: Decimal(v) for k, v in settings.MARGIN_RATES.items()}
    reserved = Decimal(0)
    # One aggregate per symbol, not one row per working order: priced orders at their limit
    # (or stop) price, market orders at the mid.
    rows = (
        Order.objects.filter(account=account, status__in=list(OPEN), reduce_only=False)
        .values("instrument__symbol", "instrument__quote_currency", "instrument__asset_class")
        .annotate(
            priced=Sum(F("remaining_quantity") * Coalesce("limit_price", "stop_price")),
            unpriced=Sum(
                "remaining_quantity", filter=Q(limit_price__isnull=True, stop_price__isnull=True)
            ),
        )
    )
    shared = {name: _venue_quote(q) for name, q in quotes.items()}
    for row in rows:
        symbol = row["instrument__symbol"]
        working = row["priced"] or Decimal(0)
        if row["unpriced"]:
            quote = shared.get(symbol) or _quotes(settings.MARKET_DATA_VENUE, [symbol]).get(symbol)
            if quote is not None:
                working += row["unpriced"] * quote.mid
        rate = conversion_rate(row["instrument__quote_currency"], account.currency, quotes=shared)
        if rate is None:
            continue
        reserved += working * rate * margin_rates.get(row["instrument__asset_class"], Decimal(1))
    return {
        "daily_pnl": value.daily_pnl if value.complete else None,
        "buying_power": value.buying_power if value.complete else None,
        "open_orders_margin": reserved,
        "margin_rate": margin_rates.get(instrument.asset_class),
    }


def rate_buckets(*, user: Any, account: Account) -> list[Bucket]:
    """Per trader (default or the user's override), plus the account's own when it has one."""
    overrides = refdata.cached(
        ("rate_overrides", user.pk, account.pk),
        lambda: {
            (row.user_id, row.account_id): row.orders_per_minute
            for row in RateLimitOverride.objects.filter(Q(user_id=user.pk) | Q(account=account))
        },
    )
    per_user = overrides.get((user.pk, None), settings.RISK_ORDERS_PER_MINUTE)
    buckets = [Bucket(key=f"ratelimit:user:{user.pk}", per_minute=per_user)]
    if (None, account.pk) in overrides:
        buckets.append(
            Bucket(key=f"ratelimit:account:{account.pk}", per_minute=overrides[(None, account.pk)])
        )
    return buckets


def risk_events_visible_to(user: Any) -> QuerySet[RiskEvent]:
    from orders.selectors import accounts_readable_by, user_reads_all_accounts

    events = RiskEvent.objects.all()
    if user_reads_all_accounts(user):
        return events
    codes = list(accounts_readable_by(user).values_list("code", flat=True))
    return events.filter(account__in=codes)


def limits_visible_to(user: Any) -> QuerySet[RiskLimit]:
    """Risk and compliance see every limit; a trader the global, strategy and symbol limits
    and those of the accounts granted to them."""
    from orders.selectors import accounts_readable_by, user_reads_all_accounts

    limits = RiskLimit.objects.all()
    if user_reads_all_accounts(user):
        return limits
    codes = list(accounts_readable_by(user).values_list("code", flat=True))
    return limits.filter(~Q(scope=Scope.ACCOUNT) | Q(target__in=codes))
