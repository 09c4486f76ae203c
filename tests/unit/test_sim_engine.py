"""Unit tests of the simulated venue's pure matching engine (no Django, no database)."""

from __future__ import annotations

import dataclasses
import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brokers.base import Quote
from brokers.sim.engine import (
    Execution,
    Liquidity,
    MatchResult,
    WalkSpec,
    WorkingOrder,
    book_match,
    first_quote,
    match,
    next_quote,
)

D = Decimal
TICK = D("0.00001")
LOT = D("1")

EURUSD = WalkSpec(
    symbol="EURUSD",
    tick=TICK,
    lot=LOT,
    start_mid=D("1.08500"),
    spread_ticks=2,
    max_step_ticks=3,
    size=D("1000000"),
)
BTCUSD = WalkSpec(
    symbol="BTCUSD",
    tick=D("0.01"),
    lot=D("0.0001"),
    start_mid=D("65000.00"),
    spread_ticks=5,
    max_step_ticks=200,
    size=D("2.5"),
)


def make_quote(
    bid: str = "1.10000",
    ask: str = "1.10010",
    bid_size: str = "5",
    ask_size: str = "5",
    seq: int = 1,
) -> Quote:
    return Quote(
        symbol="EURUSD", bid=D(bid), ask=D(ask), bid_size=D(bid_size), ask_size=D(ask_size), seq=seq
    )


def make_order(
    side: str = "buy",
    type: str = "market",
    time_in_force: str = "gtc",
    quantity: str = "5",
    limit_price: str | None = None,
    stop_price: str | None = None,
) -> WorkingOrder:
    return WorkingOrder(
        side=side,
        type=type,
        time_in_force=time_in_force,
        quantity=D(quantity),
        limit_price=None if limit_price is None else D(limit_price),
        stop_price=None if stop_price is None else D(stop_price),
    )


def run(
    order: WorkingOrder,
    quote: Quote,
    *,
    on_arrival: bool = True,
    liquidity: Liquidity | None = None,
    lot: Decimal = LOT,
    slippage_ticks: int = 0,
) -> MatchResult:
    return match(
        order,
        quote,
        liquidity if liquidity is not None else Liquidity.from_quote(quote),
        tick=TICK,
        lot=lot,
        slippage_ticks=slippage_ticks,
        on_arrival=on_arrival,
    )


def walk(spec: WalkSpec, seed: int, count: int) -> list[Quote]:
    quotes = [first_quote(spec, seed)]
    while len(quotes) < count:
        quotes.append(next_quote(spec, seed, quotes[-1]))
    return quotes


def is_multiple(value: Decimal, grid: Decimal) -> bool:
    return value % grid == 0


# ---------------------------------------------------------------------------------------------
# Quote walk
# ---------------------------------------------------------------------------------------------


def test_first_quote_snaps_mid_to_tick_and_centres_the_spread():
    # given a start mid off the tick grid
    spec = dataclasses.replace(EURUSD, start_mid=D("1.085004"))
    # when the first quote is made
    quote = first_quote(spec, seed=7)
    # then the mid is on the grid and the spread straddles it
    assert quote.seq == 0
    assert quote.symbol == "EURUSD"
    assert quote.at is None
    assert quote.bid == D("1.08499")
    assert quote.ask == D("1.08501")
    assert quote.mid == D("1.08500")
    assert quote.bid.as_tuple().exponent == -5
    assert quote.ask.as_tuple().exponent == -5


def test_first_quote_with_odd_spread_puts_floor_half_below_the_mid():
    spec = dataclasses.replace(EURUSD, spread_ticks=3)

    quote = first_quote(spec, seed=7)

    assert quote.bid == D("1.08499")
    assert quote.ask == D("1.08502")


def test_next_quote_steps_by_the_rng_of_seed_symbol_and_seq():
    # given the first quote
    previous = first_quote(EURUSD, seed=42)
    # when the next one is made
    quote = next_quote(EURUSD, 42, previous)
    # then its step is the first draw of Random("42:EURUSD:1")
    step = random.Random("42:EURUSD:1").randint(-3, 3)
    assert quote.seq == 1
    assert quote.bid == previous.bid + step * TICK
    assert quote.ask == quote.bid + 2 * TICK


def test_next_quote_depends_only_on_the_previous_quote():
    # given quote 499 as another process would load it (a fresh object, time stamped)
    quotes = walk(EURUSD, 3, 501)
    stored = dataclasses.replace(quotes[499], at=None)
    reloaded = Quote(
        symbol=stored.symbol,
        bid=D(str(stored.bid)),
        ask=D(str(stored.ask)),
        bid_size=D(str(stored.bid_size)),
        ask_size=D(str(stored.ask_size)),
        seq=stored.seq,
    )
    # when quote 500 is computed from it
    # then it is the same as the one computed in sequence
    assert next_quote(EURUSD, 3, reloaded) == quotes[500]


def test_same_seed_gives_identical_sequence_of_1000_quotes():
    assert walk(EURUSD, 11, 1000) == walk(EURUSD, 11, 1000)


def test_different_seed_gives_different_sequence():
    assert walk(EURUSD, 11, 1000) != walk(EURUSD, 12, 1000)


def test_different_symbols_with_same_seed_walk_differently():
    other = dataclasses.replace(EURUSD, symbol="GBPUSD")
    a = [(q.bid, q.ask, q.bid_size, q.ask_size) for q in walk(EURUSD, 5, 200)]
    b = [(q.bid, q.ask, q.bid_size, q.ask_size) for q in walk(other, 5, 200)]
    assert a != b


@pytest.mark.parametrize("spec", [EURUSD, BTCUSD], ids=["fx", "crypto"])
def test_walk_stays_on_the_grids(spec: WalkSpec):
    quotes = walk(spec, 2024, 1000)
    exponent = spec.tick.as_tuple().exponent
    for previous, quote in zip(quotes, quotes[1:], strict=False):
        assert quote.seq == previous.seq + 1
        assert abs(quote.bid - previous.bid) <= spec.max_step_ticks * spec.tick
    for quote in quotes:
        assert quote.bid > 0
        assert quote.bid < quote.ask
        assert quote.ask - quote.bid == spec.spread_ticks * spec.tick
        assert is_multiple(quote.bid, spec.tick) and is_multiple(quote.ask, spec.tick)
        assert quote.bid.as_tuple().exponent == exponent
        assert quote.ask.as_tuple().exponent == exponent
        for size in (quote.bid_size, quote.ask_size):
            assert is_multiple(size, spec.lot)
            assert spec.size / 2 <= size <= spec.size * 3 / 2


def test_walk_sizes_vary():
    quotes = walk(BTCUSD, 1, 100)
    assert len({q.bid_size for q in quotes}) > 10
    assert D("1.2500") <= min(q.bid_size for q in quotes)
    assert max(q.ask_size for q in quotes) <= D("3.7500")


def test_walk_size_of_one_lot_is_always_one_lot():
    spec = dataclasses.replace(EURUSD, size=D("1"))
    assert {q.bid_size for q in walk(spec, 1, 50)} == {D("1")}


def test_walk_reflects_steps_that_would_take_the_bid_to_zero():
    # given a walk starting one tick above zero with steps far bigger than the price
    spec = WalkSpec(
        symbol="PENNY",
        tick=D("1"),
        lot=D("1"),
        start_mid=D("1"),
        spread_ticks=1,
        max_step_ticks=5,
        size=D("10"),
    )
    # when it walks
    quotes = walk(spec, 9, 1000)
    # then the bid never reaches zero
    assert quotes[0].bid == D("1")
    assert min(q.bid for q in quotes) == D("1")
    assert all(q.ask == q.bid + 1 for q in quotes)


def test_walk_reflects_a_downward_step_from_the_floor_upward():
    # given a quote one tick above zero and a seed whose next step is downward
    spec = WalkSpec(
        symbol="PENNY",
        tick=D("1"),
        lot=D("1"),
        start_mid=D("1"),
        spread_ticks=1,
        max_step_ticks=5,
        size=D("10"),
    )
    seed = next(s for s in range(100) if random.Random(f"{s}:PENNY:1").randint(-5, 5) < -1)
    step = random.Random(f"{seed}:PENNY:1").randint(-5, 5)
    # when the walk steps
    quote = next_quote(spec, seed, first_quote(spec, seed))
    # then the step is taken upward instead
    assert quote.bid == D(1 - step)


@pytest.mark.parametrize(
    "changes",
    [
        {"tick": 0.00001},
        {"tick": D("0")},
        {"lot": D("-1")},
        {"spread_ticks": 0},
        {"max_step_ticks": -1},
        {"size": D("0.5")},
    ],
)
def test_walk_spec_refuses_impossible_specs(changes: dict):
    with pytest.raises(ValueError):
        dataclasses.replace(EURUSD, **changes)


def test_next_quote_refuses_quote_of_another_symbol():
    with pytest.raises(ValueError):
        next_quote(EURUSD, 1, dataclasses.replace(first_quote(EURUSD, 1), symbol="GBPUSD"))


# ---------------------------------------------------------------------------------------------
# Market orders
# ---------------------------------------------------------------------------------------------


def test_market_buy_takes_the_ask():
    # given a market buy and a quote with 5 offered
    order = make_order(side="buy", quantity="3")
    liquidity = Liquidity(bid_size=D("5"), ask_size=D("5"))
    # when it arrives
    result = run(order, make_quote(), liquidity=liquidity)
    # then it fills at the ask as taker and consumes the offer
    assert result == MatchResult(
        executions=(Execution(quantity=D("3"), price=D("1.10010"), liquidity="taker"),),
        triggered_now=False,
        cancelled_reason="",
    )
    assert order.filled_quantity == D("3")
    assert order.remaining == D("0")
    assert order.status == "filled"
    assert liquidity == Liquidity(bid_size=D("5"), ask_size=D("2"))


def test_market_sell_hits_the_bid():
    order = make_order(side="sell", quantity="4")
    liquidity = Liquidity(bid_size=D("5"), ask_size=D("5"))

    result = run(order, make_quote(), liquidity=liquidity)

    assert result.executions == (Execution(D("4"), D("1.10000"), "taker"),)
    assert order.status == "filled"
    assert liquidity == Liquidity(bid_size=D("1"), ask_size=D("5"))


def test_market_buy_slippage_worsens_price_by_ticks():
    result = run(make_order(side="buy"), make_quote(), slippage_ticks=2)
    assert result.executions[0].price == D("1.10012")


def test_market_sell_slippage_worsens_price_by_ticks():
    result = run(make_order(side="sell"), make_quote(), slippage_ticks=2)
    assert result.executions[0].price == D("1.09998")


def test_market_sell_slippage_never_takes_price_to_zero():
    quote = make_quote(bid="0.00002", ask="0.00004")
    result = run(make_order(side="sell"), quote, slippage_ticks=5)
    assert result.executions[0].price == D("0.00001")


def test_market_order_bigger_than_quote_fills_partially_and_keeps_working():
    # given a gtc market buy of 8 against 5 offered
    order = make_order(side="buy", quantity="8")
    # when it arrives
    first = run(order, make_quote(ask_size="5"))
    # then 5 fill and 3 keep working
    assert first.executions == (Execution(D("5"), D("1.10010"), "taker"),)
    assert order.filled_quantity == D("5")
    assert order.remaining == D("3")
    assert order.status == "working"
    # when the next quote comes, the resting remainder fills at its touch as taker
    second = run(order, make_quote(ask="1.10020", ask_size="9", seq=2), on_arrival=False)
    assert second.executions == (Execution(D("3"), D("1.10020"), "taker"),)
    assert order.filled_quantity == D("8")
    assert order.status == "filled"


def test_quantity_rounds_down_to_the_lot():
    # given a lot of 0.0001 and a displayed size off that grid
    order = make_order(side="buy", quantity="1.5000")
    liquidity = Liquidity(bid_size=D("1"), ask_size=D("0.12345"))
    # when the order matches
    result = run(order, make_quote(), liquidity=liquidity, lot=D("0.0001"))
    # then only whole lots fill
    assert result.executions == (Execution(D("0.1234"), D("1.10010"), "taker"),)
    assert order.filled_quantity == D("0.1234")
    assert liquidity.ask_size == D("0.00005")


def test_no_execution_when_less_than_a_lot_is_displayed():
    order = make_order(side="buy", quantity="5")
    liquidity = Liquidity(bid_size=D("5"), ask_size=D("0.5"))

    result = run(order, make_quote(), liquidity=liquidity)

    assert result == MatchResult(executions=(), triggered_now=False, cancelled_reason="")
    assert order.filled_quantity == D("0")
    assert order.status == "working"
    assert liquidity == Liquidity(bid_size=D("5"), ask_size=D("0.5"))


# ---------------------------------------------------------------------------------------------
# Limit orders
# ---------------------------------------------------------------------------------------------


def test_arriving_buy_limit_exactly_at_the_ask_fills_at_the_ask():
    order = make_order(side="buy", type="limit", limit_price="1.10010")

    result = run(order, make_quote())

    assert result.executions == (Execution(D("5"), D("1.10010"), "taker"),)
    assert order.status == "filled"


def test_arriving_buy_limit_one_tick_below_the_ask_rests():
    order = make_order(side="buy", type="limit", limit_price="1.10009")
    liquidity = Liquidity(bid_size=D("5"), ask_size=D("5"))

    result = run(order, make_quote(), liquidity=liquidity)

    assert result == MatchResult(executions=(), triggered_now=False, cancelled_reason="")
    assert order.filled_quantity == D("0")
    assert order.status == "working"
    assert liquidity == Liquidity(bid_size=D("5"), ask_size=D("5"))


def test_arriving_sell_limit_exactly_at_the_bid_fills_at_the_bid():
    order = make_order(side="sell", type="limit", limit_price="1.10000")

    result = run(order, make_quote())

    assert result.executions == (Execution(D("5"), D("1.10000"), "taker"),)


def test_arriving_sell_limit_one_tick_above_the_bid_rests():
    order = make_order(side="sell", type="limit", limit_price="1.10001")

    result = run(order, make_quote())

    assert result.executions == ()
    assert order.status == "working"


def test_arriving_buy_limit_through_the_ask_gets_the_ask_not_its_limit():
    result = run(make_order(side="buy", type="limit", limit_price="1.10050"), make_quote())
    assert result.executions[0].price == D("1.10010")


def test_arriving_limit_slippage_is_capped_at_the_limit():
    # given limits one tick through the touch and three ticks of slippage
    buy = make_order(side="buy", type="limit", limit_price="1.10011")
    sell = make_order(side="sell", type="limit", limit_price="1.09999")
    # when they arrive
    bought = run(buy, make_quote(), slippage_ticks=3)
    sold = run(sell, make_quote(), slippage_ticks=3)
    # then slippage stops at the limit
    assert bought.executions == (Execution(D("5"), D("1.10011"), "taker"),)
    assert sold.executions == (Execution(D("5"), D("1.09999"), "taker"),)


def test_arriving_limit_slippage_within_the_limit_applies_in_full():
    buy = make_order(side="buy", type="limit", limit_price="1.10020")
    result = run(buy, make_quote(), slippage_ticks=3)
    assert result.executions[0].price == D("1.10013")


def test_resting_buy_limit_crossed_fills_at_its_limit_as_maker():
    # given a buy limit resting at 1.10020
    order = make_order(side="buy", type="limit", limit_price="1.10020")
    # when a quote arrives whose ask is below it
    result = run(order, make_quote(), on_arrival=False, slippage_ticks=3)
    # then it fills at its own price, as maker, without slippage
    assert result.executions == (Execution(D("5"), D("1.10020"), "maker"),)
    assert order.status == "filled"


def test_resting_sell_limit_crossed_fills_at_its_limit_as_maker():
    order = make_order(side="sell", type="limit", limit_price="1.09990")

    result = run(order, make_quote(), on_arrival=False)

    assert result.executions == (Execution(D("5"), D("1.09990"), "maker"),)


def test_resting_limit_exactly_at_the_touch_fills_one_tick_away_does_not():
    at_touch = make_order(side="sell", type="limit", limit_price="1.10000")
    one_tick_away = make_order(side="sell", type="limit", limit_price="1.10001")

    assert run(at_touch, make_quote(), on_arrival=False).executions == (
        Execution(D("5"), D("1.10000"), "maker"),
    )
    assert run(one_tick_away, make_quote(), on_arrival=False).executions == ()


def test_resting_limit_partially_fills_by_quote_size():
    order = make_order(side="buy", type="limit", quantity="12", limit_price="1.10010")

    first = run(order, make_quote(ask_size="5"), on_arrival=False)
    second = run(order, make_quote(ask_size="5", seq=2), on_arrival=False)
    third = run(order, make_quote(ask_size="5", seq=3), on_arrival=False)

    assert [r.executions[0].quantity for r in (first, second, third)] == [D("5"), D("5"), D("2")]
    assert order.filled_quantity == D("12")
    assert order.status == "filled"


# ---------------------------------------------------------------------------------------------
# IOC and FOK
# ---------------------------------------------------------------------------------------------


def test_ioc_fills_what_it_can_and_cancels_the_remainder():
    order = make_order(side="buy", time_in_force="ioc", quantity="8")

    result = run(order, make_quote(ask_size="5"))

    assert result == MatchResult(
        executions=(Execution(D("5"), D("1.10010"), "taker"),),
        triggered_now=False,
        cancelled_reason="ioc_remainder",
    )
    assert order.filled_quantity == D("5")
    assert order.status == "cancelled"


def test_ioc_fully_filled_is_filled_without_reason():
    order = make_order(side="sell", time_in_force="ioc", quantity="5")

    result = run(order, make_quote(bid_size="5"))

    assert result.cancelled_reason == ""
    assert order.status == "filled"


def test_ioc_limit_not_marketable_is_cancelled_unfilled():
    order = make_order(side="buy", type="limit", time_in_force="ioc", limit_price="1.10000")

    result = run(order, make_quote())

    assert result == MatchResult(
        executions=(), triggered_now=False, cancelled_reason="ioc_remainder"
    )
    assert order.filled_quantity == D("0")
    assert order.status == "cancelled"


def test_ioc_untriggered_stop_is_cancelled():
    order = make_order(side="buy", type="stop", time_in_force="ioc", stop_price="1.20000")

    result = run(order, make_quote())

    assert result == MatchResult(
        executions=(), triggered_now=False, cancelled_reason="ioc_remainder"
    )
    assert order.status == "cancelled"
    assert order.triggered is False


def test_fok_that_cannot_fill_whole_quantity_fills_nothing():
    # given a FOK buy of 8 against 5 offered
    order = make_order(side="buy", time_in_force="fok", quantity="8")
    liquidity = Liquidity(bid_size=D("5"), ask_size=D("5"))
    # when it arrives
    result = run(order, make_quote(), liquidity=liquidity)
    # then nothing fills, it is cancelled, and the offer is untouched
    assert result == MatchResult(
        executions=(), triggered_now=False, cancelled_reason="fok_not_fillable"
    )
    assert order.filled_quantity == D("0")
    assert order.status == "cancelled"
    assert liquidity == Liquidity(bid_size=D("5"), ask_size=D("5"))


def test_fok_that_can_fill_whole_quantity_fills_in_one_execution():
    order = make_order(side="buy", time_in_force="fok", quantity="5")
    liquidity = Liquidity(bid_size=D("5"), ask_size=D("5"))

    result = run(order, make_quote(), liquidity=liquidity)

    assert result == MatchResult(
        executions=(Execution(D("5"), D("1.10010"), "taker"),),
        triggered_now=False,
        cancelled_reason="",
    )
    assert order.status == "filled"
    assert liquidity.ask_size == D("0")


def test_fok_limit_not_marketable_is_cancelled():
    order = make_order(
        side="sell", type="limit", time_in_force="fok", quantity="1", limit_price="1.10001"
    )

    result = run(order, make_quote())

    assert result.cancelled_reason == "fok_not_fillable"
    assert result.executions == ()
    assert order.status == "cancelled"


def test_fok_short_of_a_whole_lot_is_not_fillable():
    order = make_order(side="buy", time_in_force="fok", quantity="5")
    liquidity = Liquidity(bid_size=D("5"), ask_size=D("4.9"))

    result = run(order, make_quote(), liquidity=liquidity)

    assert result.cancelled_reason == "fok_not_fillable"
    assert liquidity.ask_size == D("4.9")


# ---------------------------------------------------------------------------------------------
# Stops
# ---------------------------------------------------------------------------------------------


def test_buy_stop_triggers_when_ask_reaches_stop_and_fills_as_market():
    order = make_order(side="buy", type="stop", stop_price="1.10010")

    result = run(order, make_quote())

    assert result == MatchResult(
        executions=(Execution(D("5"), D("1.10010"), "taker"),),
        triggered_now=True,
        cancelled_reason="",
    )
    assert order.triggered is True
    assert order.status == "filled"


def test_buy_stop_one_tick_above_the_ask_does_not_trigger():
    order = make_order(side="buy", type="stop", stop_price="1.10011")

    result = run(order, make_quote())

    assert result == MatchResult(executions=(), triggered_now=False, cancelled_reason="")
    assert order.triggered is False
    assert order.status == "working"


def test_sell_stop_triggers_when_bid_reaches_stop_and_fills_as_market():
    order = make_order(side="sell", type="stop", stop_price="1.10000")

    result = run(order, make_quote(), slippage_ticks=1)

    assert result.triggered_now is True
    assert result.executions == (Execution(D("5"), D("1.09999"), "taker"),)


def test_sell_stop_one_tick_below_the_bid_does_not_trigger():
    order = make_order(side="sell", type="stop", stop_price="1.09999")

    result = run(order, make_quote())

    assert result.triggered_now is False
    assert result.executions == ()
    assert order.triggered is False


def test_resting_stop_triggers_on_a_later_quote_then_reports_trigger_once():
    # given a buy stop above the market
    order = make_order(side="buy", type="stop", quantity="8", stop_price="1.10050")
    assert run(order, make_quote()).triggered_now is False
    # when the ask reaches it with only 5 offered
    hit = run(order, make_quote("1.10045", "1.10055", seq=2), on_arrival=False)
    # then it triggers and fills what is offered at the ask
    assert hit.triggered_now is True
    assert hit.executions == (Execution(D("5"), D("1.10055"), "taker"),)
    # and on the next quote it keeps filling as a market order, the trigger not repeated
    rest = run(order, make_quote("1.10000", "1.10010", seq=3), on_arrival=False)
    assert rest.triggered_now is False
    assert rest.executions == (Execution(D("3"), D("1.10010"), "taker"),)
    assert order.status == "filled"


def test_stop_limit_triggered_but_not_marketable_rests_then_fills_as_maker():
    # given a buy stop_limit: stop 1.10005, limit 1.10008
    order = make_order(side="buy", type="stop_limit", stop_price="1.10005", limit_price="1.10008")
    # when the ask jumps through both (ask 1.10010)
    arrival = run(order, make_quote())
    # then it is triggered but does not fill
    assert arrival == MatchResult(executions=(), triggered_now=True, cancelled_reason="")
    assert order.triggered is True
    assert order.status == "working"
    # when a later quote's ask comes back under the limit
    later = run(order, make_quote("1.09997", "1.10007", seq=2), on_arrival=False)
    # then it fills at its limit as a resting limit order
    assert later == MatchResult(
        executions=(Execution(D("5"), D("1.10008"), "maker"),),
        triggered_now=False,
        cancelled_reason="",
    )


def test_untriggered_stop_limit_never_fills_even_if_limit_is_crossed():
    # a sell stop_limit: stop 1.09950 below the bid, limit 1.09900 far through it
    order = make_order(side="sell", type="stop_limit", stop_price="1.09950", limit_price="1.09900")

    result = run(order, make_quote(), on_arrival=False)

    assert result.executions == ()
    assert order.triggered is False


def test_stop_limit_triggering_on_a_resting_call_enters_as_taker():
    # given a sell stop_limit resting untriggered
    order = make_order(side="sell", type="stop_limit", stop_price="1.10000", limit_price="1.09990")
    assert run(order, make_quote("1.10010", "1.10020")).executions == ()
    # when the bid falls to the stop
    result = run(order, make_quote(seq=2), on_arrival=False)
    # then its limit order enters the book now and takes the bid, not its worse limit
    assert result == MatchResult(
        executions=(Execution(D("5"), D("1.10000"), "taker"),),
        triggered_now=True,
        cancelled_reason="",
    )


# ---------------------------------------------------------------------------------------------
# Status, validation, book
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["filled", "cancelled"])
def test_order_not_working_is_left_alone(status: str):
    order = make_order()
    order.status = status
    liquidity = Liquidity(bid_size=D("5"), ask_size=D("5"))

    result = run(order, make_quote(), liquidity=liquidity)

    assert result == MatchResult(executions=(), triggered_now=False, cancelled_reason="")
    assert order.filled_quantity == D("0")
    assert liquidity == Liquidity(bid_size=D("5"), ask_size=D("5"))


def test_result_sums_its_executions():
    result = run(make_order(quantity="3"), make_quote())
    assert result.filled_quantity == D("3")
    assert MatchResult().filled_quantity == D("0")


@pytest.mark.parametrize(
    "order",
    [
        make_order(type="limit"),
        make_order(type="stop"),
        make_order(type="stop_limit", stop_price="1.1"),
        make_order(side="long"),
        make_order(type="trailing"),
        make_order(time_in_force="gtx"),
        make_order(quantity="0"),
    ],
)
def test_match_refuses_orders_it_cannot_interpret(order: WorkingOrder):
    liquidity = Liquidity(bid_size=D("5"), ask_size=D("5"))
    with pytest.raises(ValueError):
        run(order, make_quote(), liquidity=liquidity)
    assert order.filled_quantity == D("0")
    assert liquidity == Liquidity(bid_size=D("5"), ask_size=D("5"))


def test_match_refuses_negative_slippage():
    with pytest.raises(ValueError):
        run(make_order(), make_quote(), slippage_ticks=-1)


def test_book_match_shares_the_quote_size_in_time_priority():
    # given two resting buy limits of 4 and one sell limit, against 5 offered and 5 bid
    first = make_order(side="buy", type="limit", quantity="4", limit_price="1.10010")
    second = make_order(side="buy", type="limit", quantity="4", limit_price="1.10020")
    seller = make_order(side="sell", type="limit", quantity="3", limit_price="1.10000")
    # when the quote is matched against the book
    results = book_match([first, second, seller], make_quote(), tick=TICK, lot=LOT)
    # then the first buyer gets 4, the second what is left, and the seller its own side
    assert [r.executions for r in results] == [
        (Execution(D("4"), D("1.10010"), "maker"),),
        (Execution(D("1"), D("1.10020"), "maker"),),
        (Execution(D("3"), D("1.10000"), "maker"),),
    ]
    assert second.remaining == D("3")
    assert second.status == "working"


def test_book_match_priority_follows_the_given_order():
    first = make_order(side="buy", type="limit", quantity="4", limit_price="1.10010")
    second = make_order(side="buy", type="limit", quantity="4", limit_price="1.10020")

    results = book_match([second, first], make_quote(), tick=TICK, lot=LOT)

    assert [r.filled_quantity for r in results] == [D("4"), D("1")]


def test_book_match_skips_orders_that_do_not_cross_and_finished_orders():
    away = make_order(side="buy", type="limit", quantity="4", limit_price="1.10000")
    done = make_order(side="buy", quantity="4")
    done.status = "filled"
    crossing = make_order(side="buy", type="limit", quantity="5", limit_price="1.10010")

    results = book_match([away, done, crossing], make_quote(), tick=TICK, lot=LOT)

    assert [r.filled_quantity for r in results] == [D("0"), D("0"), D("5")]


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

LOTS = [D("1"), D("0.0001"), D("0.01")]


@st.composite
def quotes(draw: st.DrawFn, lot: Decimal) -> Quote:
    bid_ticks = draw(st.integers(min_value=1, max_value=60))
    spread = draw(st.integers(min_value=1, max_value=4))
    return Quote(
        symbol="EURUSD",
        bid=D("1.09970") + bid_ticks * TICK,
        ask=D("1.09970") + (bid_ticks + spread) * TICK,
        bid_size=draw(st.integers(min_value=0, max_value=60)) * lot,
        ask_size=draw(st.integers(min_value=0, max_value=60)) * lot,
        seq=0,
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[WorkingOrder, list[Quote], Decimal, int]:
    lot = draw(st.sampled_from(LOTS))
    order_type = draw(st.sampled_from(["market", "limit", "stop", "stop_limit"]))
    price = st.integers(min_value=0, max_value=80).map(lambda t: D("1.09960") + t * TICK)
    order = WorkingOrder(
        side=draw(st.sampled_from(["buy", "sell"])),
        type=order_type,
        time_in_force=draw(st.sampled_from(["gtc", "day", "gtd", "ioc", "fok"])),
        quantity=draw(st.integers(min_value=1, max_value=150)) * lot,
        limit_price=draw(price) if order_type in ("limit", "stop_limit") else None,
        stop_price=draw(price) if order_type in ("stop", "stop_limit") else None,
    )
    path = draw(st.lists(quotes(lot), min_size=1, max_size=8))
    slippage = draw(st.integers(min_value=0, max_value=3))
    return order, path, lot, slippage


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_property_fills_respect_quantity_lot_limit_and_liquidity(scenario):
    order, path, lot, slippage = scenario
    executions: list[Execution] = []
    for index, quote in enumerate(path):
        liquidity = Liquidity.from_quote(quote)
        result = match(
            order,
            quote,
            liquidity,
            tick=TICK,
            lot=lot,
            slippage_ticks=slippage,
            on_arrival=index == 0,
        )
        executions.extend(result.executions)
        assert len(result.executions) <= 1
        assert liquidity.bid_size >= 0 and liquidity.ask_size >= 0
        assert quote.bid_size - liquidity.bid_size + quote.ask_size - liquidity.ask_size == (
            result.filled_quantity
        )
        if order.time_in_force in ("ioc", "fok"):
            assert order.status != "working"
        if result.cancelled_reason:
            assert order.status == "cancelled"

    assert order.filled_quantity <= order.quantity
    assert order.filled_quantity == sum((e.quantity for e in executions), D(0))
    assert (order.status == "filled") == (order.remaining == 0)
    for execution in executions:
        assert execution.quantity > 0
        assert is_multiple(execution.quantity, lot)
        assert execution.price > 0
        assert execution.liquidity in ("taker", "maker")
        if order.limit_price is not None:
            if order.side == "buy":
                assert execution.price <= order.limit_price
            else:
                assert execution.price >= order.limit_price
    if order.time_in_force == "fok":
        assert executions == [] or [e.quantity for e in executions] == [order.quantity]
    if order.type in ("stop", "stop_limit") and executions:
        assert order.triggered


@settings(max_examples=100, deadline=None)
@given(
    lot=st.sampled_from(LOTS),
    sizes=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=6),
    sides=st.lists(st.sampled_from(["buy", "sell"]), min_size=6, max_size=6),
    bid_size=st.integers(min_value=0, max_value=60),
    ask_size=st.integers(min_value=0, max_value=60),
)
def test_property_book_never_fills_more_than_the_quote_shows(lot, sizes, sides, bid_size, ask_size):
    quote = make_quote(bid_size=str(bid_size * lot), ask_size=str(ask_size * lot))
    orders = [
        make_order(side=side, type="limit", quantity=str(size * lot), limit_price=limit)
        for size, side in zip(sizes, sides, strict=False)
        for limit in ["1.10010" if side == "buy" else "1.10000"]
    ]

    results = book_match(orders, quote, tick=TICK, lot=lot)

    bought = sum(
        (r.filled_quantity for r, o in zip(results, orders, strict=True) if o.side == "buy"), D(0)
    )
    sold = sum(
        (r.filled_quantity for r, o in zip(results, orders, strict=True) if o.side == "sell"), D(0)
    )
    assert bought <= quote.ask_size
    assert sold <= quote.bid_size
    for order in orders:
        assert 0 <= order.filled_quantity <= order.quantity


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    tick=st.sampled_from([D("0.00001"), D("0.01"), D("0.25"), D("1")]),
    lot=st.sampled_from(LOTS),
    start_ticks=st.integers(min_value=1, max_value=500),
    spread_ticks=st.integers(min_value=1, max_value=7),
    max_step_ticks=st.integers(min_value=0, max_value=50),
    size_lots=st.integers(min_value=1, max_value=1000),
)
def test_property_walk_quotes_stay_on_grids_and_positive(
    seed, tick, lot, start_ticks, spread_ticks, max_step_ticks, size_lots
):
    spec = WalkSpec(
        symbol="SYM",
        tick=tick,
        lot=lot,
        start_mid=start_ticks * tick,
        spread_ticks=spread_ticks,
        max_step_ticks=max_step_ticks,
        size=size_lots * lot,
    )
    quotes_ = walk(spec, seed, 60)
    assert quotes_ == walk(spec, seed, 60)
    for quote in quotes_:
        assert 0 < quote.bid < quote.ask
        assert quote.ask - quote.bid == spread_ticks * tick
        assert is_multiple(quote.bid, tick) and is_multiple(quote.ask, tick)
        for size in (quote.bid_size, quote.ask_size):
            assert size >= lot
            assert is_multiple(size, lot)
            assert spec.size / 2 <= size <= spec.size * 3 / 2
