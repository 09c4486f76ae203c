"""Pre-trade risk: a pure function over a snapshot.

`check_order(order, snapshot)` returns every breached rule, each with a stable code and the
numbers involved; an empty list means the order passes. Nothing here reads the database,
Redis or a clock: the caller builds the snapshot (risk.selectors) and refuses the order when it
cannot (fail safe).

Which limits apply
    A limit applies to an order when its scope is `global`; `account` and its target is the
    order's account; `strategy` and its target is the order's (non-empty) strategy_id;
    `symbol` and its target is the order's symbol. Every other limit is ignored.

The tightest limit
    For each numeric rule only the applicable limit with the smallest value is checked, and its
    scope and target go into the Breach; ties go to the broader scope (global, account,
    strategy, symbol), then to the target. Exception: max_position measures the strategy's
    position for a strategy-scoped limit and the account's for the others, so the tightest
    limit of each kind is checked; if both are breached the smaller limit is reported.

Reference price, notional, worst case
    The reference price is the limit price of a limit or stop_limit order, the stop price of a
    stop order, and for a market order the quote's ask (buy) or bid (sell). notional =
    |quantity x reference price x to_account_currency[symbol]|. The worst-case position of
    the order's symbol counts the working orders on the order's side that could still fill:
    before = position + open_buy (buy) or position - open_sell (sell); after = before +
    quantity (buy) or before - quantity (sell). A strategy-scoped max_position takes the
    position from `strategy_positions` (and still the account's open orders: conservative);
    every other rule, exposures included, measures the account.

Rules, reported in this order, at most one Breach each
    max_order_quantity   quantity > value.
    max_order_notional   notional > value.
    max_position         |after| > value and |after| > |before|: an order that does not
                         increase the absolute worst-case position is never refused by it.
    max_gross_exposure   sum over symbols of |position| x mid x rate, the order's symbol
                         counted at its worst case priced at the reference price; breached
                         when > value and the order increases it (|after| > |before|: no price
                         is needed to see that an order does not).
    max_net_exposure     |sum of signed position x price x rate|, likewise; breached when
                         > value and greater than the same sum with `before`.
    max_open_orders      open_order_count + 1 > value.
    price_collar_pct     for each limit and stop price the order carries:
                         |price - mid| / mid x 100 > value; the worst price is reported.
    price_collar_ticks   |price - mid| / tick_size > value, likewise.
    symbol_blocked       an applicable symbol_blocked limit lists the symbol in `symbols`, or
                         is scoped to the symbol itself; its value is not used.
    symbol_allowed       an applicable symbol_allowed limit does not list the symbol (with
                         several lists the symbol must be in each); its value is not used.
    reduce_only          when snapshot.reducing, or an applicable reduce_only limit has a
                         value other than 0: a buy passes only if position < 0 and quantity +
                         open_buy <= |position|, a sell only if position > 0 and quantity +
                         open_sell <= position (the account's position).

Fail safe
    A configured rule that needs a number the snapshot lacks is breached, with a message that
    says what is missing and `actual` None: no quote for a market order's notional or for a
    collar's mid (or a mid <= 0), no conversion rate (missing or <= 0), no tick size, a held
    symbol of an exposure limit without a quote or rate (each such symbol is named), a limit
    or stop order without its price. Without such a limit nothing is missing: no breach.

Numbers
    Decimal only, computed with 50 significant digits whatever the caller's context. Amounts,
    percentages and tick distances are rounded half-even to 10 decimal places (the precision of
    a stored limit value) before they are compared, so the rounding in a rate such as 1/150
    cannot breach a limit by 1e-25; Breach.actual is that rounded number and Breach.limit the
    limit's value. Messages print quantities and limits plainly (no exponent, no trailing
    zeros), prices as given, and amounts and percentages to 2 decimals, or to as many more as
    it takes to show that they exceed the limit: "notional 1250000 > limit 1000000",
    "position 150000 > limit 100000 (EUR_USD)",
    "price 1.09000 is 0.46% from mid 1.08500 > limit 0.25%".

The books
    max_daily_loss       the account's daily P&L (realized + unrealized, account currency)
                         is below -value: only orders that do not increase the absolute
                         worst-case position pass.
    buying_power         for an order that increases the absolute worst-case position: the
                         margin of the increase (|after| - |before|, at the reference price,
                         converted, x the asset class's margin rate) > buying power x value -
                         the margin reserved by working orders. The value is the share of
                         buying power that may be used (1: all of it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal, localcontext

# Rule codes (API.md): also the `code` of a rejection reason.
MAX_ORDER_QUANTITY = "max_order_quantity"
MAX_ORDER_NOTIONAL = "max_order_notional"
MAX_POSITION = "max_position"
MAX_GROSS_EXPOSURE = "max_gross_exposure"
MAX_NET_EXPOSURE = "max_net_exposure"
MAX_OPEN_ORDERS = "max_open_orders"
PRICE_COLLAR_PCT = "price_collar_pct"
PRICE_COLLAR_TICKS = "price_collar_ticks"
MAX_DAILY_LOSS = "max_daily_loss"
BUYING_POWER = "buying_power"
SYMBOL_BLOCKED = "symbol_blocked"
SYMBOL_ALLOWED = "symbol_allowed"
REDUCE_ONLY = "reduce_only"

SCOPES = ("global", "account", "strategy", "symbol")


@dataclass(frozen=True)
class Limit:
    rule: str
    value: Decimal
    scope: str = "global"  # global | account | strategy | symbol
    target: str = ""  # "" for global; the account code, strategy id or symbol otherwise
    symbols: frozenset[str] = frozenset()  # symbol_blocked / symbol_allowed lists


@dataclass(frozen=True)
class Quote:
    bid: Decimal
    ask: Decimal

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2


@dataclass(frozen=True)
class ProposedOrder:
    account: str
    symbol: str
    side: str  # buy | sell
    type: str  # market | limit | stop | stop_limit
    quantity: Decimal
    tick_size: Decimal
    strategy_id: str = ""
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None


@dataclass(frozen=True)
class Snapshot:
    """What the checks may know. Positions are signed quantities; open_buy/open_sell are the
    remaining quantities of the account's working orders per symbol (they could still fill);
    `to_account_currency[symbol]` converts one unit of the symbol's quote currency into the
    account currency (1 for a USD-quoted symbol in a USD account)."""

    limits: tuple[Limit, ...] = ()
    positions: Mapping[str, Decimal] = field(default_factory=dict)
    strategy_positions: Mapping[str, Decimal] = field(default_factory=dict)  # this order's strategy
    open_buy: Mapping[str, Decimal] = field(default_factory=dict)
    open_sell: Mapping[str, Decimal] = field(default_factory=dict)
    open_order_count: int = 0
    quotes: Mapping[str, Quote] = field(default_factory=dict)
    to_account_currency: Mapping[str, Decimal] = field(default_factory=dict)
    reducing: bool = False  # a trading state `reducing` applies to this order
    # The books (account currency): today's P&L (realized + unrealized), buying power (equity
    # minus margin in use), the margin already reserved by working orders, and the margin
    # rate of the order's asset class. None: not known (a configured rule then fails safe).
    daily_pnl: Decimal | None = None
    buying_power: Decimal | None = None
    open_orders_margin: Decimal = Decimal(0)
    margin_rate: Decimal | None = None


@dataclass(frozen=True)
class Breach:
    code: str
    message: str
    limit: Decimal | None = None
    actual: Decimal | None = None
    scope: str = ""
    target: str = ""

    def as_dict(self) -> dict[str, str | None]:
        return {
            "code": self.code,
            "message": self.message,
            "limit": _plain(self.limit) if self.limit is not None else None,
            "actual": _plain(self.actual) if self.actual is not None else None,
            "scope": self.scope,
            "target": self.target,
        }


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


ZERO = Decimal(0)
HUNDRED = Decimal(100)
# Limits are stored with 10 decimal places; computed metrics are compared at that precision.
METRIC_QUANTUM = Decimal("1e-10")
# Every computation runs in this context, whatever the caller's: the result is a function of the
# arguments alone.
_CONTEXT = Context(prec=50, rounding=ROUND_HALF_EVEN)

SIDES = ("buy", "sell")
ORDER_TYPES = ("market", "limit", "stop", "stop_limit")
_STRATEGY = "strategy"


def check_order(order: ProposedOrder, snapshot: Snapshot) -> list[Breach]:
    """Every rule the order would breach, in the order of the rule constants, at most one
    Breach per rule; [] when it passes. Pure: the result depends on the arguments alone.

    Raises ValueError for a side or type this module does not know (the order's terms are
    validated before risk is checked, so that is a programming error, not a rejection)."""
    if order.side not in SIDES:
        raise ValueError(f"unknown side {order.side!r}")
    if order.type not in ORDER_TYPES:
        raise ValueError(f"unknown order type {order.type!r}")
    with localcontext(_CONTEXT):
        by_rule: dict[str, list[Limit]] = {}
        for limit in sorted(
            (limit for limit in snapshot.limits if _applies(limit, order)), key=_tightness
        ):
            by_rule.setdefault(limit.rule, []).append(limit)

        def tightest(rule: str) -> Limit | None:
            limits = by_rule.get(rule)
            return limits[0] if limits else None

        found = [
            _check_quantity(order, tightest(MAX_ORDER_QUANTITY)),
            _check_notional(order, snapshot, tightest(MAX_ORDER_NOTIONAL)),
            _check_position(order, snapshot, by_rule.get(MAX_POSITION, [])),
            _check_gross_exposure(order, snapshot, tightest(MAX_GROSS_EXPOSURE)),
            _check_net_exposure(order, snapshot, tightest(MAX_NET_EXPOSURE)),
            _check_open_orders(snapshot, tightest(MAX_OPEN_ORDERS)),
            _check_collar_pct(order, snapshot, tightest(PRICE_COLLAR_PCT)),
            _check_collar_ticks(order, snapshot, tightest(PRICE_COLLAR_TICKS)),
            _check_daily_loss(order, snapshot, tightest(MAX_DAILY_LOSS)),
            _check_buying_power(order, snapshot, tightest(BUYING_POWER)),
            _check_blocked(order, by_rule.get(SYMBOL_BLOCKED, [])),
            _check_allowed(order, by_rule.get(SYMBOL_ALLOWED, [])),
            _check_reduce_only(order, snapshot, by_rule.get(REDUCE_ONLY, [])),
        ]
    return [breach for breach in found if breach is not None]


# Which limits, which numbers


def _applies(limit: Limit, order: ProposedOrder) -> bool:
    if limit.scope == "global":
        return True
    if limit.scope == "account":
        return limit.target == order.account
    if limit.scope == _STRATEGY:
        return order.strategy_id != "" and limit.target == order.strategy_id
    if limit.scope == "symbol":
        return limit.target == order.symbol
    return False


def _scope_rank(scope: str) -> int:
    return SCOPES.index(scope) if scope in SCOPES else len(SCOPES)


def _tightness(limit: Limit) -> tuple[Decimal, int, str, tuple[str, ...]]:
    # Total over distinct limits, so the result does not depend on the order of snapshot.limits.
    return (limit.value, _scope_rank(limit.scope), limit.target, tuple(sorted(limit.symbols)))


def _by_position_source(
    limits: Sequence[Limit], snapshot: Snapshot
) -> Iterator[tuple[Limit, Mapping[str, Decimal], str]]:
    """The tightest account-wide limit with the account's positions, and the tightest
    strategy-scoped one with the strategy's (limits are sorted tightest first)."""
    account_limit = next((limit for limit in limits if limit.scope != _STRATEGY), None)
    strategy_limit = next((limit for limit in limits if limit.scope == _STRATEGY), None)
    if account_limit is not None:
        yield account_limit, snapshot.positions, ""
    if strategy_limit is not None:
        yield strategy_limit, snapshot.strategy_positions, "strategy "


def _reference_price(order: ProposedOrder, snapshot: Snapshot) -> tuple[Decimal | None, str]:
    """The price the order is valued at, or None and what is missing."""
    if order.type in ("limit", "stop_limit"):
        return order.limit_price, "" if order.limit_price is not None else "no limit price"
    if order.type == "stop":
        return order.stop_price, "" if order.stop_price is not None else "no stop price"
    quote = snapshot.quotes.get(order.symbol)
    if quote is None:
        return None, f"no quote for {order.symbol}"
    return (quote.ask if order.side == "buy" else quote.bid), ""


def _rate(snapshot: Snapshot, symbol: str) -> Decimal | None:
    rate = snapshot.to_account_currency.get(symbol)
    return rate if rate is not None and rate > 0 else None


def _worst_cases(
    order: ProposedOrder, snapshot: Snapshot, positions: Mapping[str, Decimal]
) -> tuple[Decimal, Decimal]:
    """Signed worst-case position of the order's symbol (before, after) the order."""
    position = positions.get(order.symbol, ZERO)
    if order.side == "buy":
        before = position + snapshot.open_buy.get(order.symbol, ZERO)
        return before, before + order.quantity
    before = position - snapshot.open_sell.get(order.symbol, ZERO)
    return before, before - order.quantity


def _metric(value: Decimal) -> Decimal:
    return value.quantize(METRIC_QUANTUM)


def _shown(actual: Decimal, limit: Decimal) -> str:
    """`actual` to 2 decimals, or to as many more as it takes to show that it exceeds `limit`."""
    for places in range(2, 11):
        rounded = actual.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
        if rounded > limit:
            return _plain(rounded)
    return _plain(actual)


def _unknown(rule: str, what: str, missing: Sequence[str], limit: Limit) -> Breach:
    return Breach(
        code=rule,
        message=f"{what} unknown: {', '.join(missing)}",
        limit=limit.value,
        scope=limit.scope,
        target=limit.target,
    )


def _over(rule: str, message: str, actual: Decimal, limit: Limit) -> Breach:
    return Breach(
        code=rule,
        message=message,
        limit=limit.value,
        actual=actual,
        scope=limit.scope,
        target=limit.target,
    )


# The rules, in the order they are reported


def _check_quantity(order: ProposedOrder, limit: Limit | None) -> Breach | None:
    if limit is None or order.quantity <= limit.value:
        return None
    message = f"quantity {_plain(order.quantity)} > limit {_plain(limit.value)}"
    return _over(MAX_ORDER_QUANTITY, message, order.quantity, limit)


def _check_notional(order: ProposedOrder, snapshot: Snapshot, limit: Limit | None) -> Breach | None:
    if limit is None:
        return None
    price, price_missing = _reference_price(order, snapshot)
    rate = _rate(snapshot, order.symbol)
    missing = [price_missing] if price_missing else []
    if rate is None:
        missing.append(f"no conversion rate for {order.symbol}")
    if price is None or rate is None:
        return _unknown(MAX_ORDER_NOTIONAL, "notional", missing, limit)
    notional = _metric(abs(order.quantity * price * rate))
    if notional <= limit.value:
        return None
    message = f"notional {_shown(notional, limit.value)} > limit {_plain(limit.value)}"
    return _over(MAX_ORDER_NOTIONAL, message, notional, limit)


def _check_position(
    order: ProposedOrder, snapshot: Snapshot, limits: Sequence[Limit]
) -> Breach | None:
    breached: list[tuple[Limit, str, Decimal]] = []
    for limit, positions, kind in _by_position_source(limits, snapshot):
        before, after = _worst_cases(order, snapshot, positions)
        if abs(after) > limit.value and abs(after) > abs(before):
            breached.append((limit, kind, abs(after)))
    if not breached:
        return None
    limit, kind, actual = min(breached, key=lambda found: _tightness(found[0]))
    message = f"{kind}position {_plain(actual)} > limit {_plain(limit.value)} ({order.symbol})"
    return _over(MAX_POSITION, message, actual, limit)


@dataclass(frozen=True)
class _Exposure:
    """The account's valued book: what is missing, the sums over the symbols other than the
    order's, and the order symbol's value per unit of worst-case position."""

    missing: tuple[str, ...]
    gross_others: Decimal = ZERO
    net_others: Decimal = ZERO
    unit_value: Decimal = ZERO


def _exposure(order: ProposedOrder, snapshot: Snapshot) -> _Exposure:
    missing: list[str] = []
    gross_others = net_others = ZERO
    for symbol in sorted(snapshot.positions):
        quantity = snapshot.positions[symbol]
        if symbol == order.symbol or quantity == 0:
            continue
        quote, rate = snapshot.quotes.get(symbol), _rate(snapshot, symbol)
        if quote is None:
            missing.append(f"no quote for {symbol}")
        if rate is None:
            missing.append(f"no conversion rate for {symbol}")
        if quote is not None and rate is not None:
            value = quantity * quote.mid * rate
            gross_others += abs(value)
            net_others += value
    price, price_missing = _reference_price(order, snapshot)
    rate = _rate(snapshot, order.symbol)
    if price_missing:
        missing.append(price_missing)
    if rate is None:
        missing.append(f"no conversion rate for {order.symbol}")
    if missing or price is None or rate is None:
        return _Exposure(missing=tuple(missing))
    return _Exposure(
        missing=(), gross_others=gross_others, net_others=net_others, unit_value=price * rate
    )


def _check_gross_exposure(
    order: ProposedOrder, snapshot: Snapshot, limit: Limit | None
) -> Breach | None:
    if limit is None:
        return None
    before, after = _worst_cases(order, snapshot, snapshot.positions)
    if abs(after) <= abs(before):
        return None  # prices are positive: this order cannot increase the gross exposure
    exposure = _exposure(order, snapshot)
    if exposure.missing:
        return _unknown(MAX_GROSS_EXPOSURE, "gross exposure", exposure.missing, limit)
    gross = _metric(exposure.gross_others + abs(after * exposure.unit_value))
    if gross <= limit.value:
        return None
    message = f"gross exposure {_shown(gross, limit.value)} > limit {_plain(limit.value)}"
    return _over(MAX_GROSS_EXPOSURE, message, gross, limit)


def _check_net_exposure(
    order: ProposedOrder, snapshot: Snapshot, limit: Limit | None
) -> Breach | None:
    if limit is None:
        return None
    before, after = _worst_cases(order, snapshot, snapshot.positions)
    exposure = _exposure(order, snapshot)
    if exposure.missing:
        return _unknown(MAX_NET_EXPOSURE, "net exposure", exposure.missing, limit)
    net_before = _metric(abs(exposure.net_others + before * exposure.unit_value))
    net_after = _metric(abs(exposure.net_others + after * exposure.unit_value))
    if net_after <= limit.value or net_after <= net_before:
        return None
    message = f"net exposure {_shown(net_after, limit.value)} > limit {_plain(limit.value)}"
    return _over(MAX_NET_EXPOSURE, message, net_after, limit)


def _check_open_orders(snapshot: Snapshot, limit: Limit | None) -> Breach | None:
    count = Decimal(snapshot.open_order_count + 1)
    if limit is None or count <= limit.value:
        return None
    message = f"open orders {_plain(count)} > limit {_plain(limit.value)}"
    return _over(MAX_OPEN_ORDERS, message, count, limit)


def _collared_prices(order: ProposedOrder) -> list[tuple[str, Decimal]]:
    prices = [
        (name, price)
        for name, price in (("limit price", order.limit_price), ("stop price", order.stop_price))
        if price is not None
    ]
    if len(prices) == 1:
        return [("price", prices[0][1])]
    return prices


def _check_collar_pct(
    order: ProposedOrder, snapshot: Snapshot, limit: Limit | None
) -> Breach | None:
    prices = _collared_prices(order)
    if limit is None or not prices:
        return None
    quote = snapshot.quotes.get(order.symbol)
    if quote is None or quote.mid <= 0:
        problem = "no quote" if quote is None else "no positive mid"
        return _unknown(PRICE_COLLAR_PCT, "price collar", [f"{problem} for {order.symbol}"], limit)
    mid = quote.mid
    distances = [(_metric(abs(price - mid) / mid * HUNDRED), name, price) for name, price in prices]
    pct, name, price = max(distances, key=lambda distance: distance[0])
    if pct <= limit.value:
        return None
    message = (
        f"{name} {price:f} is {_shown(pct, limit.value)}% from mid {mid:f}"
        f" > limit {_plain(limit.value)}%"
    )
    return _over(PRICE_COLLAR_PCT, message, pct, limit)


def _check_collar_ticks(
    order: ProposedOrder, snapshot: Snapshot, limit: Limit | None
) -> Breach | None:
    prices = _collared_prices(order)
    if limit is None or not prices:
        return None
    quote = snapshot.quotes.get(order.symbol)
    missing = [] if quote is not None else [f"no quote for {order.symbol}"]
    if order.tick_size <= 0:
        missing.append(f"no tick size for {order.symbol}")
    if quote is None or missing:
        return _unknown(PRICE_COLLAR_TICKS, "price collar", missing, limit)
    mid = quote.mid
    distances = [
        (_metric(abs(price - mid) / order.tick_size), name, price) for name, price in prices
    ]
    ticks, name, price = max(distances, key=lambda distance: distance[0])
    if ticks <= limit.value:
        return None
    message = (
        f"{name} {price:f} is {_shown(ticks, limit.value)} ticks from mid {mid:f}"
        f" > limit {_plain(limit.value)} ticks"
    )
    return _over(PRICE_COLLAR_TICKS, message, ticks, limit)


def _check_blocked(order: ProposedOrder, limits: Sequence[Limit]) -> Breach | None:
    for limit in limits:
        # An applicable symbol-scoped limit targets the order's symbol.
        if order.symbol in limit.symbols or limit.scope == "symbol":
            return Breach(
                code=SYMBOL_BLOCKED,
                message=f"symbol {order.symbol} is blocked",
                scope=limit.scope,
                target=limit.target,
            )
    return None


def _check_allowed(order: ProposedOrder, limits: Sequence[Limit]) -> Breach | None:
    for limit in limits:
        if order.symbol not in limit.symbols:
            return Breach(
                code=SYMBOL_ALLOWED,
                message=f"symbol {order.symbol} is not in the allowed list",
                scope=limit.scope,
                target=limit.target,
            )
    return None


def _check_reduce_only(
    order: ProposedOrder, snapshot: Snapshot, limits: Sequence[Limit]
) -> Breach | None:
    limit = next((limit for limit in limits if limit.value != 0), None)
    if limit is None and not snapshot.reducing:
        return None
    scope, target = (limit.scope, limit.target) if limit is not None else ("", "")
    position = snapshot.positions.get(order.symbol, ZERO)
    if order.side == "buy":
        working, reducible = snapshot.open_buy.get(order.symbol, ZERO), -position
    else:
        working, reducible = snapshot.open_sell.get(order.symbol, ZERO), position
    total = order.quantity + working
    if reducible > 0 and total <= reducible:
        return None
    where = f"(position {_plain(position)} {order.symbol})"
    if reducible <= 0:
        message = f"reduce only: a {order.side} cannot reduce {where}"
    elif working:
        message = (
            f"reduce only: {order.side} {_plain(order.quantity)} + open {order.side}s"
            f" {_plain(working)} = {_plain(total)} > limit {_plain(reducible)} {where}"
        )
    else:
        message = f"reduce only: {order.side} {_plain(total)} > limit {_plain(reducible)} {where}"
    return Breach(
        code=REDUCE_ONLY,
        message=message,
        limit=max(reducible, ZERO),
        actual=total,
        scope=scope,
        target=target,
    )


def _increases(order: ProposedOrder, snapshot: Snapshot) -> tuple[bool, Decimal]:
    """Whether the order increases the account's absolute worst-case position, and by how much."""
    before, after = _worst_cases(order, snapshot, snapshot.positions)
    return abs(after) > abs(before), abs(after) - abs(before)


def _check_daily_loss(
    order: ProposedOrder, snapshot: Snapshot, limit: Limit | None
) -> Breach | None:
    if limit is None or not _increases(order, snapshot)[0]:
        return None
    if snapshot.daily_pnl is None:
        return _unknown(MAX_DAILY_LOSS, "daily P&L", ["the account could not be valued"], limit)
    loss = _metric(-snapshot.daily_pnl)
    if loss <= limit.value:
        return None
    message = (
        f"daily loss {_shown(loss, limit.value)} > limit {_plain(limit.value)}: "
        "only orders that reduce the position pass"
    )
    return _over(MAX_DAILY_LOSS, message, loss, limit)


def _check_buying_power(
    order: ProposedOrder, snapshot: Snapshot, limit: Limit | None
) -> Breach | None:
    increases, increase = _increases(order, snapshot)
    if limit is None or not increases:
        return None
    price, price_missing = _reference_price(order, snapshot)
    rate = _rate(snapshot, order.symbol)
    missing = [
        m
        for m in (
            price_missing,
            "" if rate is not None else f"no conversion rate for {order.symbol}",
            "" if snapshot.buying_power is not None else "no buying power",
            "" if snapshot.margin_rate is not None else f"no margin rate for {order.symbol}",
        )
        if m
    ]
    if (
        missing
        or price is None
        or rate is None
        or snapshot.buying_power is None
        or snapshot.margin_rate is None
    ):
        return _unknown(BUYING_POWER, "margin", missing, limit)
    required = _metric(increase * price * rate * snapshot.margin_rate)
    available = _metric(snapshot.buying_power * limit.value - snapshot.open_orders_margin)
    if required <= available:
        return None
    message = f"margin {_shown(required, available)} > buying power available {_plain(available)}"
    return Breach(
        code=BUYING_POWER,
        message=message,
        limit=available,
        actual=required,
        scope=limit.scope,
        target=limit.target,
    )
