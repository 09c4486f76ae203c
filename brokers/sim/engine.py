"""The simulated venue's matching engine: pure functions over Decimals, no Django, no I/O.

Quotes
------
Each symbol's top of book is a deterministic random walk on an integer tick grid
(`first_quote`, `next_quote`). Quote n (its `seq`) depends only on the previous quote and
`random.Random(f"{seed}:{symbol}:{n}")`, so the whole state to persist is the last quote, and
two processes that compute quote n from the same quote n-1 get the same answer. The RNG only
picks integers (a step in ticks, sizes in lots); every price and quantity is a Decimal.

- mid(0) = start_mid rounded to the nearest tick; mid(n) = mid(n-1) + step, with step an
  integer in [-max_step_ticks, +max_step_ticks].
- bid = mid - floor(spread_ticks / 2) ticks, ask = bid + spread_ticks ticks, both quantized to
  the tick's exponent. A step that would take the bid to zero or below is reflected (taken in
  the other direction); should that still not do (a first quote whose start_mid is below the
  half spread), the bid is held at one tick.
- bid_size and ask_size are drawn independently, each a whole number of lots in
  [size/2, size*3/2], and never less than one lot.

Matching (`match`, one order against one quote)
------------------------------------------------
- An order whose status is not "working" is left alone (empty result).
- Stops: a buy stop / stop_limit triggers when ask >= stop_price, a sell one when
  bid <= stop_price; it can trigger on arrival. Once triggered, a `stop` is a market order and
  a `stop_limit` a limit order at limit_price. An untriggered stop never fills.
- Market (and triggered stop): a buy takes the ask, a sell hits the bid, worsened by
  `slippage_ticks` ticks (buy: ask + s*tick; sell: bid - s*tick, but never <= 0: a sell whose
  slipped price would be <= 0 fills at one tick, or at the bid if that is lower). Taker.
- Limit (and triggered stop_limit) arriving (on_arrival=True): marketable when a buy's
  ask <= limit or a sell's bid >= limit; it fills at the touch with slippage, never worse than
  the limit price. Taker.
- A resting limit (on_arrival=False) that the quote crosses (buy: ask <= limit, sell:
  bid >= limit) fills at its own limit price as maker. A resting market order (a gtc/day
  remainder) or triggered stop fills at the touch with slippage as taker.
- A stop_limit that triggers during a call is a limit order entering the book at that moment,
  so it is matched as arriving (taker at the touch, capped at its limit) even on a resting
  call; once it has rested after triggering it is matched as a resting limit.
- Quantity: min(remaining, displayed size on the side it takes) rounded DOWN to a multiple of
  lot (buys take `ask_size`, sells take `bid_size`); the shared `Liquidity` is decremented by
  what filled. At most one execution per call, never of zero quantity, never beyond the order's
  quantity. Quantities are expected on the lot grid (the adapter rejects others); an off-grid
  remainder below one lot never fills.
- IOC: fills what it can, the remainder is cancelled ("ioc_remainder"); fully filled means
  "filled" with no reason. An IOC stop that has not triggered is cancelled at once.
- FOK: fills its whole remaining quantity in one execution, or nothing and is cancelled
  ("fok_not_fillable"), price and size both counting.
- IOC and FOK are resolved by the first call that sees them (normally the arrival call): they
  never rest, whatever `on_arrival` says.
- gtc / day / gtd: the remainder keeps working until filled. Expiry (day, gtd) is a matter of
  time and is the caller's job, not the engine's.

`book_match` runs `match` over resting orders in time priority against one quote, every order
drawing on the same `Liquidity`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from brokers.base import Quote

BUY = "buy"
SELL = "sell"
SIDES = frozenset({BUY, SELL})

MARKET = "market"
LIMIT = "limit"
STOP = "stop"
STOP_LIMIT = "stop_limit"
ORDER_TYPES = frozenset({MARKET, LIMIT, STOP, STOP_LIMIT})

TIMES_IN_FORCE = frozenset({"gtc", "day", "gtd", "ioc", "fok"})

WORKING = "working"
FILLED = "filled"
CANCELLED = "cancelled"

TAKER = "taker"
MAKER = "maker"

IOC_REMAINDER = "ioc_remainder"
FOK_NOT_FILLABLE = "fok_not_fillable"

ZERO = Decimal(0)


# ---------------------------------------------------------------------------------------------
# Quote random walk
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WalkSpec:
    """How one symbol's quotes wander. Raises ValueError on a spec that cannot make quotes."""

    symbol: str
    tick: Decimal
    lot: Decimal
    start_mid: Decimal
    spread_ticks: int
    max_step_ticks: int
    size: Decimal

    def __post_init__(self) -> None:
        for name in ("tick", "lot", "start_mid", "size"):
            value = getattr(self, name)
            if not isinstance(value, Decimal):
                raise ValueError(f"{name} must be a Decimal, not {type(value).__name__}")
            if not value.is_finite() or value <= 0:
                raise ValueError(f"{name} must be positive")
        if self.spread_ticks < 1:
            raise ValueError("spread_ticks must be at least 1")
        if self.max_step_ticks < 0:
            raise ValueError("max_step_ticks must not be negative")
        if self.size < self.lot:
            raise ValueError("size must be at least one lot")


def first_quote(spec: WalkSpec, seed: int) -> Quote:
    """Quote seq 0: the mid is start_mid snapped to the nearest tick."""
    mid_ticks = int((spec.start_mid / spec.tick).to_integral_value(rounding=ROUND_HALF_EVEN))
    rng = _rng(spec, seed, 0)
    rng.randint(-spec.max_step_ticks, spec.max_step_ticks)  # same draw order as every later quote
    return _quote(spec, rng, seq=0, bid_ticks=max(mid_ticks - spec.spread_ticks // 2, 1))


def next_quote(spec: WalkSpec, seed: int, previous: Quote) -> Quote:
    """The quote after `previous` (seq + 1), from `previous` and the seed alone."""
    if previous.symbol != spec.symbol:
        raise ValueError(f"quote for {previous.symbol!r} given to the walk of {spec.symbol!r}")
    seq = previous.seq + 1
    rng = _rng(spec, seed, seq)
    step = rng.randint(-spec.max_step_ticks, spec.max_step_ticks)
    # The bid carries the mid: mid = bid + floor(spread / 2) ticks, so stepping the bid by
    # `step` ticks steps the mid by the same amount.
    bid_ticks = int((previous.bid / spec.tick).to_integral_value(rounding=ROUND_HALF_EVEN))
    stepped = bid_ticks + step
    if stepped <= 0:
        stepped = bid_ticks - step
    return _quote(spec, rng, seq=seq, bid_ticks=max(stepped, 1))


def _rng(spec: WalkSpec, seed: int, seq: int) -> random.Random:
    # A str seed is hashed with SHA-512 by `random`, so it is stable across processes and
    # unaffected by PYTHONHASHSEED.
    return random.Random(f"{seed}:{spec.symbol}:{seq}")


def _quote(spec: WalkSpec, rng: random.Random, *, seq: int, bid_ticks: int) -> Quote:
    exponent = spec.tick.as_tuple().exponent
    quantum = Decimal(1).scaleb(exponent)
    bid = (bid_ticks * spec.tick).quantize(quantum)
    ask = ((bid_ticks + spec.spread_ticks) * spec.tick).quantize(quantum)
    return Quote(
        symbol=spec.symbol,
        bid=bid,
        ask=ask,
        bid_size=_draw_size(spec, rng),
        ask_size=_draw_size(spec, rng),
        seq=seq,
    )


def _draw_size(spec: WalkSpec, rng: random.Random) -> Decimal:
    lowest = max(int((spec.size / 2 / spec.lot).to_integral_value(rounding=ROUND_CEILING)), 1)
    highest = int((spec.size * 3 / 2 / spec.lot).to_integral_value(rounding=ROUND_FLOOR))
    return rng.randint(lowest, max(highest, lowest)) * spec.lot


# ---------------------------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Execution:
    quantity: Decimal
    price: Decimal
    liquidity: str  # taker | maker


@dataclass
class WorkingOrder:
    """An order as the engine sees it; `match` updates it in place."""

    side: str  # buy | sell
    type: str  # market | limit | stop | stop_limit
    time_in_force: str  # gtc | day | gtd | ioc | fok
    quantity: Decimal
    filled_quantity: Decimal = ZERO
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    triggered: bool = False  # a stop / stop_limit whose stop has been touched
    status: str = WORKING  # working | filled | cancelled

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity


@dataclass
class Liquidity:
    """What is left of one quote's displayed size, shared by every order matched against it."""

    bid_size: Decimal  # available to sellers
    ask_size: Decimal  # available to buyers

    @classmethod
    def from_quote(cls, quote: Quote) -> Liquidity:
        return cls(bid_size=quote.bid_size, ask_size=quote.ask_size)


@dataclass(frozen=True)
class MatchResult:
    executions: tuple[Execution, ...] = ()
    triggered_now: bool = False  # the stop was touched during this call
    cancelled_reason: str = ""  # "" | ioc_remainder | fok_not_fillable

    @property
    def filled_quantity(self) -> Decimal:
        return sum((execution.quantity for execution in self.executions), ZERO)


def match(
    order: WorkingOrder,
    quote: Quote,
    liquidity: Liquidity,
    *,
    tick: Decimal,
    lot: Decimal,
    slippage_ticks: int = 0,
    on_arrival: bool,
) -> MatchResult:
    """Match one order against one quote (see the module docstring for the rules).

    Updates `order` (filled_quantity, triggered, status) and `liquidity` in place and answers
    what happened. Raises ValueError on an order the engine cannot interpret (unknown side, type
    or time in force, a missing limit or stop price, a non-positive quantity) or a negative
    slippage; neither `order` nor `liquidity` is touched then.
    """
    _check(order, tick=tick, lot=lot, slippage_ticks=slippage_ticks)
    if order.status != WORKING:
        return MatchResult()

    triggered_now = False
    if order.type in (STOP, STOP_LIMIT) and not order.triggered:
        assert order.stop_price is not None
        touched = (
            quote.ask >= order.stop_price if order.side == BUY else quote.bid <= order.stop_price
        )
        if touched:
            order.triggered = True
            triggered_now = True

    fill = _price_and_liquidity(
        order,
        quote,
        tick=tick,
        slippage=slippage_ticks * tick,
        is_arriving=on_arrival or triggered_now,
    )
    available = liquidity.ask_size if order.side == BUY else liquidity.bid_size
    quantity = _floor_to_lot(min(order.remaining, available), lot) if fill else ZERO

    if order.time_in_force == "fok" and quantity != order.remaining:
        order.status = CANCELLED
        return MatchResult(triggered_now=triggered_now, cancelled_reason=FOK_NOT_FILLABLE)

    executions: tuple[Execution, ...] = ()
    if fill is not None and quantity > 0:
        price, liquidity_kind = fill
        order.filled_quantity += quantity
        if order.side == BUY:
            liquidity.ask_size -= quantity
        else:
            liquidity.bid_size -= quantity
        executions = (Execution(quantity=quantity, price=price, liquidity=liquidity_kind),)

    cancelled_reason = ""
    if order.remaining <= 0:
        order.status = FILLED
    elif order.time_in_force == "ioc":
        order.status = CANCELLED
        cancelled_reason = IOC_REMAINDER
    return MatchResult(
        executions=executions, triggered_now=triggered_now, cancelled_reason=cancelled_reason
    )


def book_match(
    orders: Sequence[WorkingOrder],
    quote: Quote,
    *,
    tick: Decimal,
    lot: Decimal,
    slippage_ticks: int = 0,
) -> list[MatchResult]:
    """Match resting orders against one quote in the given (time priority) order, all drawing
    on one `Liquidity` built from the quote's sizes. Answers one result per order, in order."""
    liquidity = Liquidity.from_quote(quote)
    return [
        match(
            order,
            quote,
            liquidity,
            tick=tick,
            lot=lot,
            slippage_ticks=slippage_ticks,
            on_arrival=False,
        )
        for order in orders
    ]


def _check(order: WorkingOrder, *, tick: Decimal, lot: Decimal, slippage_ticks: int) -> None:
    if tick <= 0 or lot <= 0:
        raise ValueError("tick and lot must be positive")
    if slippage_ticks < 0:
        raise ValueError("slippage_ticks must not be negative")
    if order.side not in SIDES:
        raise ValueError(f"unknown side {order.side!r}")
    if order.type not in ORDER_TYPES:
        raise ValueError(f"unknown order type {order.type!r}")
    if order.time_in_force not in TIMES_IN_FORCE:
        raise ValueError(f"unknown time in force {order.time_in_force!r}")
    if order.quantity <= 0:
        raise ValueError("quantity must be positive")
    if order.type in (LIMIT, STOP_LIMIT) and order.limit_price is None:
        raise ValueError(f"a {order.type} order needs a limit_price")
    if order.type in (STOP, STOP_LIMIT) and order.stop_price is None:
        raise ValueError(f"a {order.type} order needs a stop_price")


def _price_and_liquidity(
    order: WorkingOrder, quote: Quote, *, tick: Decimal, slippage: Decimal, is_arriving: bool
) -> tuple[Decimal, str] | None:
    """The price and liquidity kind this order would fill at against `quote`, or None when it
    cannot fill now (an untriggered stop, a limit the quote does not cross, an empty side)."""
    if order.type in (STOP, STOP_LIMIT) and not order.triggered:
        return None
    touch = quote.ask if order.side == BUY else quote.bid
    if touch <= 0:
        return None
    if order.side == BUY:
        slipped = touch + slippage
    else:
        slipped = touch - slippage
        if slipped <= 0:
            slipped = min(touch, tick)
    if order.type in (MARKET, STOP):
        return slipped, TAKER

    limit = order.limit_price
    assert limit is not None
    is_crossed = touch <= limit if order.side == BUY else touch >= limit
    if not is_crossed:
        return None
    if not is_arriving:
        return limit, MAKER
    capped = min(slipped, limit) if order.side == BUY else max(slipped, limit)
    return capped, TAKER


def _floor_to_lot(quantity: Decimal, lot: Decimal) -> Decimal:
    if quantity <= 0:
        return ZERO
    return (quantity // lot) * lot
