"""Unit tests of the pre-trade risk checks: a pure function, no database, no Redis, no clock."""

from __future__ import annotations

import dataclasses
from decimal import Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from risk.checks import (
    BUYING_POWER,
    MAX_DAILY_LOSS,
    MAX_GROSS_EXPOSURE,
    MAX_NET_EXPOSURE,
    MAX_OPEN_ORDERS,
    MAX_ORDER_NOTIONAL,
    MAX_ORDER_QUANTITY,
    MAX_POSITION,
    PRICE_COLLAR_PCT,
    PRICE_COLLAR_TICKS,
    REDUCE_ONLY,
    SYMBOL_ALLOWED,
    SYMBOL_BLOCKED,
    Breach,
    Limit,
    ProposedOrder,
    Quote,
    Snapshot,
    check_order,
)

D = Decimal
TICK = D("0.00001")
JPY_TICK = D("0.001")
QUOTES = {
    "EUR_USD": Quote(D("0.99999"), D("1.00001")),  # mid 1.00000
    "GBP_USD": Quote(D("1.24999"), D("1.25001")),  # mid 1.25000
    "USD_JPY": Quote(D("149.999"), D("150.001")),  # mid 150.000
}
RATES = {"EUR_USD": D(1), "GBP_USD": D(1), "USD_JPY": D(1) / D(150)}
RULE_ORDER = [
    MAX_ORDER_QUANTITY,
    MAX_ORDER_NOTIONAL,
    MAX_POSITION,
    MAX_GROSS_EXPOSURE,
    MAX_NET_EXPOSURE,
    MAX_OPEN_ORDERS,
    PRICE_COLLAR_PCT,
    PRICE_COLLAR_TICKS,
    MAX_DAILY_LOSS,
    BUYING_POWER,
    SYMBOL_BLOCKED,
    SYMBOL_ALLOWED,
    REDUCE_ONLY,
]


def make_order(**overrides) -> ProposedOrder:
    values = {
        "account": "ACC-1",
        "symbol": "EUR_USD",
        "side": "buy",
        "type": "limit",
        "quantity": D("100000"),
        "tick_size": TICK,
        "limit_price": D("1.00000"),
    }
    values.update(overrides)
    return ProposedOrder(**values)


def make_snapshot(*limits: Limit, **overrides) -> Snapshot:
    values = {"limits": limits, "quotes": QUOTES, "to_account_currency": RATES}
    values.update(overrides)
    return Snapshot(**values)


def limit(rule: str, value: str, scope: str = "global", target: str = "", **more) -> Limit:
    return Limit(rule=rule, value=D(value), scope=scope, target=target, **more)


def codes(breaches: list[Breach]) -> list[str]:
    return [breach.code for breach in breaches]


def test_no_limits_no_breach():
    assert check_order(make_order(), make_snapshot()) == []


# max_order_quantity


def test_quantity_exactly_at_the_limit_passes_and_one_lot_over_fails():
    # given a limit of 100000 units
    snapshot = make_snapshot(limit(MAX_ORDER_QUANTITY, "100000"))
    # when / then: exactly 100000 passes, 100001 is refused with the numbers
    assert check_order(make_order(quantity=D("100000")), snapshot) == []
    assert check_order(make_order(quantity=D("100001")), snapshot) == [
        Breach(
            code=MAX_ORDER_QUANTITY,
            message="quantity 100001 > limit 100000",
            limit=D("100000"),
            actual=D("100001"),
            scope="global",
        )
    ]


# max_order_notional


def test_notional_exactly_at_the_limit_passes_and_one_tick_over_fails():
    snapshot = make_snapshot(limit(MAX_ORDER_NOTIONAL, "1000000"))
    at_limit = make_order(quantity=D("1000000"), limit_price=D("1.00000"))
    one_tick_over = make_order(quantity=D("1000000"), limit_price=D("1.00001"))

    assert check_order(at_limit, snapshot) == []
    [breach] = check_order(one_tick_over, snapshot)
    assert breach.message == "notional 1000010 > limit 1000000"
    assert (breach.code, breach.limit, breach.actual) == (
        MAX_ORDER_NOTIONAL,
        D("1000000"),
        D("1000010"),
    )
    assert breach.as_dict() == {
        "code": "max_order_notional",
        "message": "notional 1000010 > limit 1000000",
        "limit": "1000000",
        "actual": "1000010",
        "scope": "global",
        "target": "",
    }


def test_notional_message_reads_plainly():
    snapshot = make_snapshot(limit(MAX_ORDER_NOTIONAL, "1E+6"))
    [breach] = check_order(make_order(quantity=D("1000000"), limit_price=D("1.25000")), snapshot)
    assert breach.message == "notional 1250000 > limit 1000000"


def test_market_order_is_valued_at_the_ask_for_a_buy_and_the_bid_for_a_sell():
    # given a limit between the value at the bid (999990) and at the ask (1000010)
    snapshot = make_snapshot(limit(MAX_ORDER_NOTIONAL, "1000000"))
    market = {"type": "market", "limit_price": None, "quantity": D("1000000")}
    # then the buy is refused at the ask and the sell passes at the bid
    assert codes(check_order(make_order(side="buy", **market), snapshot)) == [MAX_ORDER_NOTIONAL]
    assert check_order(make_order(side="sell", **market), snapshot) == []


def test_stop_is_valued_at_its_stop_price_and_stop_limit_at_its_limit_price():
    snapshot = make_snapshot(limit(MAX_ORDER_NOTIONAL, "1000000"))
    quantity = D("1000000")
    stop_over = make_order(
        type="stop", limit_price=None, stop_price=D("1.00001"), quantity=quantity
    )
    stop_limit_at = make_order(
        type="stop_limit", stop_price=D("1.00001"), limit_price=D("1.00000"), quantity=quantity
    )

    assert codes(check_order(stop_over, snapshot)) == [MAX_ORDER_NOTIONAL]
    assert check_order(stop_limit_at, snapshot) == []


def test_usd_jpy_notional_is_converted_into_the_account_currency():
    # given a 10000 USD limit and USD_JPY converted at 1/150 (an inexact Decimal)
    snapshot = make_snapshot(limit(MAX_ORDER_NOTIONAL, "10000"))
    jpy = {"symbol": "USD_JPY", "tick_size": JPY_TICK, "quantity": D("10000")}
    # when 10000 are bought at 150.000 (1500000 JPY = 10000 USD) the limit is exactly met
    assert check_order(make_order(limit_price=D("150.000"), **jpy), snapshot) == []
    # and one tick higher it is exceeded by 10 JPY = 0.0666... USD
    [breach] = check_order(make_order(limit_price=D("150.001"), **jpy), snapshot)
    assert breach.message == "notional 10000.07 > limit 10000"
    assert breach.actual == D("10000.0666666667")


def test_market_order_without_a_quote_breaches_a_configured_notional_limit():
    market = make_order(type="market", limit_price=None)
    no_quotes = {"quotes": {}}

    assert check_order(
        market, make_snapshot(limit(MAX_ORDER_NOTIONAL, "1000000"), **no_quotes)
    ) == [
        Breach(
            code=MAX_ORDER_NOTIONAL,
            message="notional unknown: no quote for EUR_USD",
            limit=D("1000000"),
            actual=None,
            scope="global",
        )
    ]
    # without such a limit nothing is missing
    assert check_order(market, make_snapshot(limit(MAX_ORDER_QUANTITY, "1E+9"), **no_quotes)) == []


@pytest.mark.parametrize("rates", [{}, {"USD_JPY": D(0)}], ids=["missing", "zero"])
def test_no_conversion_rate_breaches_a_configured_notional_limit(rates):
    snapshot = make_snapshot(limit(MAX_ORDER_NOTIONAL, "1000000"), to_account_currency=rates)
    order = make_order(symbol="USD_JPY", tick_size=JPY_TICK, limit_price=D("150.000"))

    [breach] = check_order(order, snapshot)
    assert breach.message == "notional unknown: no conversion rate for USD_JPY"
    assert breach.actual is None


# max_position


def test_position_limit_counts_position_and_open_buys_at_the_boundary():
    # given a long position of 50000 and 30000 more working on the buy side
    snapshot = make_snapshot(
        limit(MAX_POSITION, "100000"),
        positions={"EUR_USD": D("50000")},
        open_buy={"EUR_USD": D("30000")},
        open_sell={"EUR_USD": D("999999")},  # the other side cannot add to a long
    )
    # then a buy of 20000 (worst case 100000) passes, 20001 does not
    assert check_order(make_order(quantity=D("20000")), snapshot) == []
    [breach] = check_order(make_order(quantity=D("20001")), snapshot)
    assert breach.message == "position 100001 > limit 100000 (EUR_USD)"
    assert (breach.limit, breach.actual) == (D("100000"), D("100001"))


def test_position_limit_counts_open_sells_for_a_sell():
    snapshot = make_snapshot(
        limit(MAX_POSITION, "100000"),
        positions={"EUR_USD": D("-50000")},
        open_sell={"EUR_USD": D("30000")},
    )
    assert check_order(make_order(side="sell", quantity=D("20000")), snapshot) == []
    [breach] = check_order(make_order(side="sell", quantity=D("20001")), snapshot)
    assert breach.message == "position 100001 > limit 100000 (EUR_USD)"


def test_order_that_reduces_a_position_above_the_limit_is_not_refused_by_it():
    # given a position of 150000 already above the limit of 100000
    snapshot = make_snapshot(limit(MAX_POSITION, "100000"), positions={"EUR_USD": D("150000")})
    # then a sell that shrinks it, even one that flips it to a smaller short, passes
    assert check_order(make_order(side="sell", quantity=D("10000")), snapshot) == []
    assert check_order(make_order(side="sell", quantity=D("290000")), snapshot) == []
    # and a sell that flips it to a larger short does not
    [breach] = check_order(make_order(side="sell", quantity=D("300001")), snapshot)
    assert breach.message == "position 150001 > limit 100000 (EUR_USD)"


def test_strategy_position_limit_measures_the_strategy_position():
    # given the account is flat in EUR_USD but a strategy holds 90000 of a 100000 budget
    snapshot = make_snapshot(
        limit(MAX_POSITION, "100000", "strategy", "S1"),
        positions={"EUR_USD": D("0")},
        strategy_positions={"EUR_USD": D("90000")},
    )
    # then that strategy may buy 10000 more but not 10001
    assert check_order(make_order(strategy_id="S1", quantity=D("10000")), snapshot) == []
    [breach] = check_order(make_order(strategy_id="S1", quantity=D("10001")), snapshot)
    assert breach.message == "strategy position 100001 > limit 100000 (EUR_USD)"
    assert (breach.scope, breach.target) == ("strategy", "S1")


def test_account_position_limit_still_checked_beside_a_tighter_strategy_limit():
    # given the strategy limit is the smaller number but the account is near its own limit
    snapshot = make_snapshot(
        limit(MAX_POSITION, "100000", "strategy", "S1"),
        limit(MAX_POSITION, "200000", "account", "ACC-1"),
        positions={"EUR_USD": D("195000")},
        strategy_positions={"EUR_USD": D("0")},
    )
    # when the strategy buys 10000 (strategy 10000, account 205000)
    [breach] = check_order(make_order(strategy_id="S1", quantity=D("10000")), snapshot)
    # then the account limit is the one breached
    assert (breach.message, breach.scope, breach.target) == (
        "position 205000 > limit 200000 (EUR_USD)",
        "account",
        "ACC-1",
    )


# max_gross_exposure and max_net_exposure

BOOK = {"EUR_USD": D("100000"), "GBP_USD": D("-100000")}  # +100000 and -125000 USD at mid


def test_gross_exposure_boundary_values_the_order_symbol_at_its_price():
    # given a book worth 100000 + 125000 gross, and a buy of 25000 EUR_USD
    snapshot = make_snapshot(limit(MAX_GROSS_EXPOSURE, "250000"), positions=BOOK)
    # then at 1.00000 the gross is exactly 250000
    assert check_order(make_order(quantity=D("25000"), limit_price=D("1.00000")), snapshot) == []
    # and one unit more, or one tick higher (125000 x 0.00001 = 1.25), exceeds it
    [unit_over] = check_order(make_order(quantity=D("25001")), snapshot)
    [tick_over] = check_order(make_order(quantity=D("25000"), limit_price=D("1.00001")), snapshot)
    assert unit_over.message == "gross exposure 250001 > limit 250000"
    assert tick_over.message == "gross exposure 250001.25 > limit 250000"
    assert tick_over.actual == D("250001.25")


def test_strategy_scoped_exposure_limit_is_measured_on_the_account_book():
    # given a strategy limit and a strategy that holds nothing itself
    snapshot = make_snapshot(
        limit(MAX_GROSS_EXPOSURE, "250000", "strategy", "S1"),
        positions=BOOK,
        strategy_positions={},
    )
    # then the account's book counts
    [breach] = check_order(make_order(strategy_id="S1", quantity=D("25001")), snapshot)
    assert (breach.message, breach.scope, breach.target) == (
        "gross exposure 250001 > limit 250000",
        "strategy",
        "S1",
    )


def test_gross_exposure_converts_each_symbol():
    # 1000000 USD_JPY at mid 150.000 is 150000000 JPY = 1000000 USD
    positions = {"USD_JPY": D("1000000")}
    snapshot = make_snapshot(limit(MAX_GROSS_EXPOSURE, "1100000"), positions=positions)
    assert check_order(make_order(quantity=D("100000")), snapshot) == []
    [breach] = check_order(make_order(quantity=D("100001")), snapshot)
    assert breach.message == "gross exposure 1100001 > limit 1100000"


def test_gross_exposure_without_a_price_for_a_held_symbol_fails_safe_naming_it():
    snapshot = make_snapshot(
        limit(MAX_GROSS_EXPOSURE, "1E+12"),
        positions={**BOOK, "USD_JPY": D("5")},
        quotes={"EUR_USD": QUOTES["EUR_USD"], "GBP_USD": QUOTES["GBP_USD"]},
        to_account_currency={"EUR_USD": D(1), "USD_JPY": RATES["USD_JPY"]},
    )
    [breach] = check_order(make_order(quantity=D("1")), snapshot)
    assert breach.message == (
        "gross exposure unknown: no conversion rate for GBP_USD, no quote for USD_JPY"
    )
    assert (breach.code, breach.limit, breach.actual) == (MAX_GROSS_EXPOSURE, D("1E+12"), None)
    # an order that cannot increase the gross exposure needs no price
    assert check_order(make_order(side="sell", quantity=D("1")), snapshot) == []


def test_gross_exposure_above_the_limit_does_not_refuse_a_reducing_order():
    snapshot = make_snapshot(limit(MAX_GROSS_EXPOSURE, "1000"), positions=BOOK)
    assert check_order(make_order(side="sell", quantity=D("1000")), snapshot) == []


def test_net_exposure_boundary_and_reducing_orders():
    # given a net exposure of |100000 - 125000| = 25000
    snapshot = make_snapshot(limit(MAX_NET_EXPOSURE, "25000"), positions=BOOK)
    # then buying 50000 EUR_USD (net +25000) passes and one more unit does not
    assert check_order(make_order(quantity=D("50000")), snapshot) == []
    [breach] = check_order(make_order(quantity=D("50001")), snapshot)
    assert breach.message == "net exposure 25001 > limit 25000"
    # and when the limit is already exceeded, an order that lowers the net exposure passes
    tight = make_snapshot(limit(MAX_NET_EXPOSURE, "10000"), positions=BOOK)
    assert check_order(make_order(quantity=D("25000")), tight) == []
    assert codes(check_order(make_order(side="sell", quantity=D("1")), tight)) == [MAX_NET_EXPOSURE]


def test_net_exposure_fails_safe_without_a_quote_for_a_market_order():
    snapshot = make_snapshot(
        limit(MAX_NET_EXPOSURE, "1E+12"),
        positions=BOOK,
        quotes={"GBP_USD": QUOTES["GBP_USD"]},
    )
    [breach] = check_order(make_order(type="market", limit_price=None), snapshot)
    assert breach.message == "net exposure unknown: no quote for EUR_USD"


# max_open_orders


def test_open_orders_boundary():
    assert (
        check_order(make_order(), make_snapshot(limit(MAX_OPEN_ORDERS, "10"), open_order_count=9))
        == []
    )
    [breach] = check_order(
        make_order(), make_snapshot(limit(MAX_OPEN_ORDERS, "10"), open_order_count=10)
    )
    assert (breach.message, breach.actual) == ("open orders 11 > limit 10", D(11))


# price collars


def test_price_collar_pct_message():
    snapshot = make_snapshot(
        limit(PRICE_COLLAR_PCT, "0.25"), quotes={"EUR_USD": Quote(D("1.08490"), D("1.08510"))}
    )
    [breach] = check_order(make_order(limit_price=D("1.09000")), snapshot)
    assert breach.message == "price 1.09000 is 0.46% from mid 1.08500 > limit 0.25%"
    assert breach.actual == D("0.4608294931")


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_price_collar_pct_boundary_on_both_sides_of_mid(side):
    # given mid 1.00000 and a 0.25% collar: 0.00250 away is the edge
    snapshot = make_snapshot(limit(PRICE_COLLAR_PCT, "0.25"))
    assert check_order(make_order(side=side, limit_price=D("1.00250")), snapshot) == []
    assert check_order(make_order(side=side, limit_price=D("0.99750")), snapshot) == []
    [above] = check_order(make_order(side=side, limit_price=D("1.00251")), snapshot)
    [below] = check_order(make_order(side=side, limit_price=D("0.99749")), snapshot)
    # then the message shows as many decimals as it takes to show the excess
    assert above.message == "price 1.00251 is 0.251% from mid 1.00000 > limit 0.25%"
    assert below.message == "price 0.99749 is 0.251% from mid 1.00000 > limit 0.25%"


def test_price_collar_checks_both_prices_of_a_stop_limit_and_reports_the_worse():
    snapshot = make_snapshot(limit(PRICE_COLLAR_PCT, "0.25"))
    order = make_order(type="stop_limit", stop_price=D("1.00300"), limit_price=D("1.00400"))
    [breach] = check_order(order, snapshot)
    assert breach.message == "limit price 1.00400 is 0.4% from mid 1.00000 > limit 0.25%"
    stop_worse = make_order(type="stop_limit", stop_price=D("1.00500"), limit_price=D("1.00100"))
    assert check_order(stop_worse, snapshot)[0].message.startswith("stop price 1.00500 is 0.5%")


def test_price_collar_without_a_quote_fails_safe_and_market_orders_are_not_collared():
    no_quote = make_snapshot(
        limit(PRICE_COLLAR_PCT, "0.25"), limit(PRICE_COLLAR_TICKS, "20"), quotes={}
    )
    assert [(b.code, b.message) for b in check_order(make_order(), no_quote)] == [
        (PRICE_COLLAR_PCT, "price collar unknown: no quote for EUR_USD"),
        (PRICE_COLLAR_TICKS, "price collar unknown: no quote for EUR_USD"),
    ]
    assert check_order(make_order(type="market", limit_price=None), no_quote) == []


def test_price_collar_ticks_boundary():
    snapshot = make_snapshot(limit(PRICE_COLLAR_TICKS, "20"))
    assert check_order(make_order(limit_price=D("1.00020")), snapshot) == []
    [breach] = check_order(make_order(limit_price=D("1.00021")), snapshot)
    assert breach.message == "price 1.00021 is 21 ticks from mid 1.00000 > limit 20 ticks"
    assert (breach.limit, breach.actual) == (D(20), D(21))


def test_price_collar_ticks_from_a_mid_between_ticks():
    # given a one-tick spread: the mid 1.000005 sits half a tick off the grid
    snapshot = make_snapshot(
        limit(PRICE_COLLAR_TICKS, "20"), quotes={"EUR_USD": Quote(D("1.00000"), D("1.00001"))}
    )
    [breach] = check_order(make_order(limit_price=D("1.00021")), snapshot)
    assert breach.message == "price 1.00021 is 20.5 ticks from mid 1.000005 > limit 20 ticks"


# symbol lists


def test_symbol_blocked_by_a_list_or_by_a_symbol_scoped_limit():
    blocked = Breach(code=SYMBOL_BLOCKED, message="symbol EUR_USD is blocked", scope="global")
    by_list = make_snapshot(limit(SYMBOL_BLOCKED, "1", symbols=frozenset({"EUR_USD", "GBP_USD"})))
    by_scope = make_snapshot(limit(SYMBOL_BLOCKED, "1", "symbol", "EUR_USD"))

    assert check_order(make_order(), by_list) == [blocked]
    assert check_order(make_order(), by_scope) == [
        Breach(
            code=SYMBOL_BLOCKED,
            message="symbol EUR_USD is blocked",
            scope="symbol",
            target="EUR_USD",
        )
    ]
    assert check_order(make_order(symbol="USD_JPY", tick_size=JPY_TICK), by_list) == []


def test_block_of_another_account_does_not_apply():
    snapshot = make_snapshot(
        limit(SYMBOL_BLOCKED, "1", "account", "ACC-2", symbols=frozenset({"EUR_USD"}))
    )
    assert check_order(make_order(account="ACC-1"), snapshot) == []
    assert codes(check_order(make_order(account="ACC-2"), snapshot)) == [SYMBOL_BLOCKED]


def test_symbol_allowed_lists_must_each_contain_the_symbol():
    snapshot = make_snapshot(
        limit(SYMBOL_ALLOWED, "1", symbols=frozenset({"EUR_USD", "GBP_USD"})),
        limit(SYMBOL_ALLOWED, "1", "account", "ACC-1", symbols=frozenset({"EUR_USD"})),
    )
    assert check_order(make_order(symbol="EUR_USD"), snapshot) == []
    assert check_order(make_order(symbol="GBP_USD"), snapshot) == [
        Breach(
            code=SYMBOL_ALLOWED,
            message="symbol GBP_USD is not in the allowed list",
            scope="account",
            target="ACC-1",
        )
    ]


# reduce_only


def test_reducing_state_lets_a_buy_shrink_a_short_including_open_buys():
    # given a short of 100000 with 30000 already working to buy it back
    snapshot = make_snapshot(
        reducing=True, positions={"EUR_USD": D("-100000")}, open_buy={"EUR_USD": D("30000")}
    )
    # then a buy of up to 70000 passes and one unit more does not
    assert check_order(make_order(quantity=D("70000")), snapshot) == []
    assert check_order(make_order(quantity=D("70001")), snapshot) == [
        Breach(
            code=REDUCE_ONLY,
            message=(
                "reduce only: buy 70001 + open buys 30000 = 100001 > limit 100000"
                " (position -100000 EUR_USD)"
            ),
            limit=D("100000"),
            actual=D("100001"),
        )
    ]


def test_reducing_state_lets_a_sell_shrink_a_long_including_open_sells():
    snapshot = make_snapshot(
        reducing=True, positions={"EUR_USD": D("100000")}, open_sell={"EUR_USD": D("30000")}
    )
    assert check_order(make_order(side="sell", quantity=D("70000")), snapshot) == []
    assert codes(check_order(make_order(side="sell", quantity=D("70001")), snapshot)) == [
        REDUCE_ONLY
    ]


@pytest.mark.parametrize(
    ("side", "position"), [("buy", "100000"), ("buy", "0"), ("sell", "-100000"), ("sell", "0")]
)
def test_reduce_only_refuses_an_order_that_cannot_reduce(side, position):
    snapshot = make_snapshot(reducing=True, positions={"EUR_USD": D(position)})
    [breach] = check_order(make_order(side=side, quantity=D("1")), snapshot)
    assert breach.message == f"reduce only: a {side} cannot reduce (position {position} EUR_USD)"
    assert (breach.limit, breach.actual) == (D(0), D(1))


def test_reduce_only_limit_applies_unless_its_value_is_zero():
    short = {"positions": {"EUR_USD": D("-100")}}
    switched_on = make_snapshot(limit(REDUCE_ONLY, "1", "account", "ACC-1"), **short)
    switched_off = make_snapshot(limit(REDUCE_ONLY, "0", "account", "ACC-1"), **short)

    [breach] = check_order(make_order(quantity=D("101")), switched_on)
    assert breach.message == "reduce only: buy 101 > limit 100 (position -100 EUR_USD)"
    assert (breach.scope, breach.target) == ("account", "ACC-1")
    assert check_order(make_order(quantity=D("100")), switched_on) == []
    assert check_order(make_order(quantity=D("101")), switched_off) == []


# which limit applies, and all of them at once


def test_the_tightest_applicable_limit_is_checked_and_reported():
    snapshot = make_snapshot(
        limit(MAX_ORDER_QUANTITY, "1000"),
        limit(MAX_ORDER_QUANTITY, "800", "symbol", "EUR_USD"),
        limit(MAX_ORDER_QUANTITY, "500", "account", "ACC-1"),
        limit(MAX_ORDER_QUANTITY, "600", "strategy", "S1"),
        limit(MAX_ORDER_QUANTITY, "1", "account", "ACC-2"),  # another account's
    )
    assert check_order(make_order(strategy_id="S1", quantity=D("500")), snapshot) == []
    [breach] = check_order(make_order(strategy_id="S1", quantity=D("501")), snapshot)
    assert (breach.message, breach.scope, breach.target) == (
        "quantity 501 > limit 500",
        "account",
        "ACC-1",
    )


@pytest.mark.parametrize(
    "other",
    [
        limit(MAX_ORDER_QUANTITY, "1", "account", "ACC-2"),
        limit(MAX_ORDER_QUANTITY, "1", "strategy", "S2"),
        limit(MAX_ORDER_QUANTITY, "1", "strategy", ""),  # an order without strategy
        limit(MAX_ORDER_QUANTITY, "1", "symbol", "GBP_USD"),
        limit(MAX_ORDER_QUANTITY, "1", "desk", "ACC-1"),  # not a scope
    ],
)
def test_limits_of_other_targets_do_not_apply(other):
    assert check_order(make_order(quantity=D("2")), make_snapshot(other)) == []


def test_strategy_limit_applies_to_that_strategy_only():
    snapshot = make_snapshot(limit(MAX_ORDER_QUANTITY, "1", "strategy", "S1"))
    assert codes(check_order(make_order(strategy_id="S1"), snapshot)) == [MAX_ORDER_QUANTITY]
    assert check_order(make_order(strategy_id=""), snapshot) == []


def test_every_breached_rule_is_reported_once_in_rule_order():
    # given an order that breaks every rule checked here, with two limits of some rules
    snapshot = make_snapshot(
        limit(REDUCE_ONLY, "1"),
        limit(SYMBOL_ALLOWED, "1", symbols=frozenset({"GBP_USD"})),
        limit(SYMBOL_BLOCKED, "1", symbols=frozenset({"EUR_USD"})),
        limit(PRICE_COLLAR_TICKS, "1"),
        limit(PRICE_COLLAR_PCT, "0.01"),
        limit(MAX_OPEN_ORDERS, "1"),
        limit(MAX_NET_EXPOSURE, "1"),
        limit(MAX_GROSS_EXPOSURE, "1"),
        limit(MAX_POSITION, "1"),
        limit(MAX_POSITION, "2", "account", "ACC-1"),
        limit(MAX_ORDER_NOTIONAL, "1"),
        limit(MAX_ORDER_QUANTITY, "1"),
        limit(MAX_ORDER_QUANTITY, "2", "symbol", "EUR_USD"),
        limit(MAX_DAILY_LOSS, "0"),
        limit(BUYING_POWER, "0"),
        open_order_count=5,
        daily_pnl=D("-1"),
        buying_power=D("0"),
        margin_rate=D("0.02"),
    )
    # when it is checked
    breaches = check_order(make_order(limit_price=D("1.01000")), snapshot)
    # then every breached rule comes once, in the order of the rule constants
    assert codes(breaches) == RULE_ORDER


def test_daily_loss_and_buying_power_fail_safe_without_the_books():
    snapshot = make_snapshot(limit(MAX_DAILY_LOSS, "0"), limit(BUYING_POWER, "0"))
    breaches = check_order(make_order(), snapshot)
    assert codes(breaches) == [MAX_DAILY_LOSS, BUYING_POWER]
    assert all(breach.actual is None for breach in breaches)


def test_result_does_not_depend_on_the_callers_decimal_context():
    snapshot = make_snapshot(limit(MAX_ORDER_NOTIONAL, "10000"))
    order = make_order(
        symbol="USD_JPY", tick_size=JPY_TICK, quantity=D("10000"), limit_price=D("150.001")
    )
    expected = check_order(order, snapshot)
    with localcontext() as context:
        context.prec = 6
        assert check_order(order, snapshot) == expected


@pytest.mark.parametrize("fields", [{"side": "hold"}, {"type": "iceberg"}])
def test_unknown_side_or_type_is_a_programming_error(fields):
    with pytest.raises(ValueError):
        check_order(make_order(**fields), make_snapshot())


# properties

SYMBOLS = ("EUR_USD", "GBP_USD", "USD_JPY")
TICKS = {"EUR_USD": TICK, "GBP_USD": TICK, "USD_JPY": JPY_TICK}
PLACES = D("1e-10")
VALUES = {
    MAX_ORDER_QUANTITY: st.integers(0, 250).map(D),
    MAX_ORDER_NOTIONAL: st.integers(0, 400).map(lambda hundreds: D(hundreds) * 100),
    MAX_POSITION: st.integers(0, 400).map(D),
    MAX_GROSS_EXPOSURE: st.integers(0, 1000).map(lambda hundreds: D(hundreds) * 100),
    MAX_NET_EXPOSURE: st.integers(0, 1000).map(lambda hundreds: D(hundreds) * 100),
    MAX_OPEN_ORDERS: st.integers(0, 10).map(D),
    PRICE_COLLAR_PCT: st.integers(0, 500).map(lambda hundredths: D(hundredths) / 100),
    PRICE_COLLAR_TICKS: st.integers(0, 100).map(D),
    SYMBOL_BLOCKED: st.just(D(1)),
    SYMBOL_ALLOWED: st.just(D(1)),
    REDUCE_ONLY: st.sampled_from([D(0), D(1)]),
}
# Strategies are built once: building them inside each draw costs more than the checks.
rules = st.sampled_from(tuple(VALUES))
limit_counts = st.integers(0, 6)
places = st.sampled_from(
    [("global", ""), ("account", "ACC-1"), ("account", "ACC-2"), ("strategy", "S1")]
    + [("strategy", "S2")]
    + [("symbol", symbol) for symbol in SYMBOLS]
)
symbol = st.sampled_from(SYMBOLS)
symbol_sets = st.frozensets(symbol)
units = st.integers(0, 300).map(D)
signed_units = st.integers(-300, 300).map(D)
spreads = st.integers(0, 4)
prices_near = {
    name: st.integers(-60, 60).map(lambda ticks, name=name: QUOTES[name].mid + ticks * TICKS[name])
    for name in SYMBOLS
}
order_types = st.sampled_from(["market", "limit", "stop", "stop_limit"])
accounts = st.sampled_from(["ACC-1", "ACC-1", "ACC-2"])
sides = st.sampled_from(["buy", "sell"])
strategy_ids = st.sampled_from(["", "S1", "S1", "S2"])
quantities = st.integers(1, 200).map(D)


@st.composite
def limit_sets(draw) -> tuple[Limit, ...]:
    # A few rules with several limits each: the tightest-of-several cases come up often.
    chosen = draw(st.lists(rules, min_size=1, max_size=3, unique=True))
    limits = []
    for _ in range(draw(limit_counts)):
        rule = chosen[draw(st.integers(0, len(chosen) - 1))]
        scope, target = draw(places)
        limits.append(Limit(rule, draw(VALUES[rule]), scope, target, draw(symbol_sets)))
    return tuple(limits)


# Mostly true: a missing quote or rate makes every rule that needs it fail safe, which would
# leave few passing orders to check the metrics of.
mostly = st.sampled_from([True] * 7 + [False])
seldom = st.sampled_from([False] * 7 + [True])
rates = st.sampled_from([D(1), D("0.5"), D("1.25"), D("0.008")])


@st.composite
def quotes(draw) -> dict[str, Quote]:
    book = {}
    for name in SYMBOLS:
        if draw(mostly):
            bid = draw(prices_near[name])
            book[name] = Quote(bid, bid + draw(spreads) * TICKS[name])
    return book


@st.composite
def per_symbol(draw, values: st.SearchStrategy[Decimal]) -> dict[str, Decimal]:
    return {name: draw(values) for name in SYMBOLS if draw(mostly)}


@st.composite
def orders(draw) -> ProposedOrder:
    name, order_type = draw(symbol), draw(order_types)
    return ProposedOrder(
        account=draw(accounts),
        symbol=name,
        side=draw(sides),
        type=order_type,
        quantity=draw(quantities),
        tick_size=TICKS[name],
        strategy_id=draw(strategy_ids),
        limit_price=draw(prices_near[name]) if order_type in ("limit", "stop_limit") else None,
        stop_price=draw(prices_near[name]) if order_type in ("stop", "stop_limit") else None,
    )


snapshots = st.builds(
    Snapshot,
    limits=limit_sets(),
    positions=per_symbol(signed_units),
    strategy_positions=per_symbol(signed_units),
    open_buy=per_symbol(units),
    open_sell=per_symbol(units),
    open_order_count=st.integers(0, 10),
    quotes=quotes(),
    to_account_currency=per_symbol(rates),
    reducing=seldom,
)


def applies(limit: Limit, order: ProposedOrder) -> bool:
    return (
        limit.scope == "global"
        or (limit.scope == "account" and limit.target == order.account)
        or (limit.scope == "strategy" and order.strategy_id and limit.target == order.strategy_id)
        or (limit.scope == "symbol" and limit.target == order.symbol)
    )


def valued(quantity: Decimal, symbol: str, snapshot: Snapshot, price: Decimal) -> Decimal:
    return quantity * price * snapshot.to_account_currency[symbol]


def reference_price(order: ProposedOrder, snapshot: Snapshot) -> Decimal:
    if order.type == "market":
        quote = snapshot.quotes[order.symbol]
        return quote.ask if order.side == "buy" else quote.bid
    return order.stop_price if order.type == "stop" else order.limit_price


def worst_cases(order: ProposedOrder, snapshot: Snapshot, positions) -> tuple[Decimal, Decimal]:
    position = positions.get(order.symbol, D(0))
    if order.side == "buy":
        before = position + snapshot.open_buy.get(order.symbol, D(0))
        return before, before + order.quantity
    before = position - snapshot.open_sell.get(order.symbol, D(0))
    return before, before - order.quantity


def book_values(order: ProposedOrder, snapshot: Snapshot, positions, worst: Decimal):
    """Signed values of the book with the order's symbol at `worst`, at the order's price."""
    values = [
        valued(quantity, symbol, snapshot, snapshot.quotes[symbol].mid)
        for symbol, quantity in positions.items()
        if symbol != order.symbol and quantity != 0
    ]
    values.append(valued(worst, order.symbol, snapshot, reference_price(order, snapshot)))
    return values


def assert_within(limit: Limit, order: ProposedOrder, snapshot: Snapshot) -> None:
    """The limit's metric, recomputed directly, is within it (or the order does not raise it)."""
    positions = snapshot.positions
    if limit.rule == MAX_POSITION and limit.scope == "strategy":
        positions = snapshot.strategy_positions
    before, after = worst_cases(order, snapshot, positions)
    mid = snapshot.quotes[order.symbol].mid if order.symbol in snapshot.quotes else None
    prices = [p for p in (order.limit_price, order.stop_price) if p is not None]
    if limit.rule == MAX_ORDER_QUANTITY:
        assert order.quantity <= limit.value
    elif limit.rule == MAX_ORDER_NOTIONAL:
        price = reference_price(order, snapshot)
        notional = abs(valued(order.quantity, order.symbol, snapshot, price))
        assert notional.quantize(PLACES) <= limit.value
    elif limit.rule == MAX_POSITION:
        assert abs(after) <= limit.value or abs(after) <= abs(before)
    elif limit.rule == MAX_GROSS_EXPOSURE:
        if abs(after) > abs(before):
            gross = sum(abs(v) for v in book_values(order, snapshot, positions, after))
            assert gross.quantize(PLACES) <= limit.value
    elif limit.rule == MAX_NET_EXPOSURE:
        net_after = abs(sum(book_values(order, snapshot, positions, after))).quantize(PLACES)
        net_before = abs(sum(book_values(order, snapshot, positions, before))).quantize(PLACES)
        assert net_after <= limit.value or net_after <= net_before
    elif limit.rule == MAX_OPEN_ORDERS:
        assert snapshot.open_order_count + 1 <= limit.value
    elif limit.rule == PRICE_COLLAR_PCT:
        for price in prices:
            assert (abs(price - mid) / mid * 100).quantize(PLACES) <= limit.value
    elif limit.rule == PRICE_COLLAR_TICKS:
        for price in prices:
            assert abs(price - mid) / order.tick_size <= limit.value
    elif limit.rule == SYMBOL_BLOCKED:
        assert order.symbol not in limit.symbols and limit.scope != "symbol"
    elif limit.rule == SYMBOL_ALLOWED:
        assert order.symbol in limit.symbols


@settings(max_examples=150, deadline=None)
@given(order=orders(), snapshot=snapshots)
def test_an_order_that_passes_a_rule_is_within_each_of_its_applicable_limits(order, snapshot):
    # when random orders are checked against random books and limits
    breaches = check_order(order, snapshot)
    reported = codes(breaches)
    # then every rule comes at most once, in rule order, and each reported number is over
    assert reported == [rule for rule in RULE_ORDER if rule in reported]
    for breach in breaches:
        assert breach.actual is None or breach.actual > breach.limit
    # and for each rule not reported (all of them when the order passes) the metric,
    # recomputed directly, is within every applicable limit of the rule, not only the tightest
    for limit in snapshot.limits:
        if applies(limit, order) and limit.rule not in reported:
            assert_within(limit, order, snapshot)
    reduce_only = snapshot.reducing or any(
        limit.rule == REDUCE_ONLY and limit.value != 0 and applies(limit, order)
        for limit in snapshot.limits
    )
    if reduce_only and REDUCE_ONLY not in reported:
        position = snapshot.positions.get(order.symbol, D(0))
        if order.side == "buy":
            assert position < 0
            assert order.quantity + snapshot.open_buy.get(order.symbol, D(0)) <= -position
        else:
            assert position > 0
            assert order.quantity + snapshot.open_sell.get(order.symbol, D(0)) <= position


@settings(max_examples=100, deadline=None)
@given(
    side=st.sampled_from(["buy", "sell"]),
    working=units,
    account_before=st.integers(1, 300).map(D),
    strategy_before=st.integers(1, 300).map(D),
    scopes=st.lists(
        st.sampled_from([("global", ""), ("account", "ACC-1"), ("strategy", "S1")]), min_size=1
    ),
    values=st.lists(st.integers(0, 400).map(D), min_size=1),
    data=st.data(),
)
def test_an_order_that_reduces_the_worst_case_position_never_breaches_max_position(
    side, working, account_before, strategy_before, scopes, values, data
):
    # given working orders on the order's side, and absolute worst cases before the order (for
    # the account and for the strategy) on the side the order moves away from
    sign = 1 if side == "buy" else -1
    position, strategy_position = (
        -sign * before - sign * working for before in (account_before, strategy_before)
    )
    largest = 2 * min(account_before, strategy_before) - 1
    quantity = data.draw(st.integers(1, int(largest)).map(D))
    snapshot = Snapshot(
        limits=tuple(
            Limit(MAX_POSITION, value, scope, target)
            for (scope, target), value in zip(scopes, values, strict=False)
        ),
        positions={"EUR_USD": position},
        strategy_positions={"EUR_USD": strategy_position},
        open_buy={"EUR_USD": working} if side == "buy" else {},
        open_sell={"EUR_USD": working} if side == "sell" else {},
    )
    # when an order that strictly reduces both absolute worst cases is checked
    order = make_order(side=side, quantity=quantity, strategy_id="S1")
    # then max_position never refuses it, however tight the limits
    assert MAX_POSITION not in codes(check_order(order, snapshot))


position_places = st.sampled_from(
    [("global", ""), ("account", "ACC-1"), ("strategy", "S1"), ("symbol", "EUR_USD")]
)


@settings(max_examples=150, deadline=None)
@given(
    side=sides,
    quantity=quantities,
    books=st.tuples(signed_units, signed_units, units, units),
    places_and_values=st.lists(st.tuples(position_places, st.integers(0, 400).map(D)), max_size=4),
)
def test_max_position_is_breached_exactly_when_an_applicable_limit_is_exceeded(
    side, quantity, books, places_and_values
):
    # given one symbol's account and strategy positions, working orders on both sides and
    # max_position limits of every kind
    position, strategy_position, open_buy, open_sell = books
    snapshot = Snapshot(
        limits=tuple(
            Limit(MAX_POSITION, value, scope, target)
            for (scope, target), value in places_and_values
        ),
        positions={"EUR_USD": position},
        strategy_positions={"EUR_USD": strategy_position},
        open_buy={"EUR_USD": open_buy},
        open_sell={"EUR_USD": open_sell},
    )
    order = make_order(side=side, quantity=quantity, strategy_id="S1")
    # when it is checked
    breached = MAX_POSITION in codes(check_order(order, snapshot))
    # then it is refused exactly when some limit's own worst case exceeds it and grows
    exceeded = False
    for (scope, _), value in places_and_values:
        held = strategy_position if scope == "strategy" else position
        before = held + open_buy if side == "buy" else held - open_sell
        after = before + quantity if side == "buy" else before - quantity
        exceeded = exceeded or (abs(after) > value and abs(after) > abs(before))
    assert breached == exceeded


@settings(max_examples=50, deadline=None)
@given(order=orders(), snapshot=snapshots, data=st.data())
def test_the_result_does_not_depend_on_the_order_of_the_limits(order, snapshot, data):
    shuffled = tuple(data.draw(st.permutations(snapshot.limits)))
    reordered = dataclasses.replace(snapshot, limits=shuffled)
    assert [b.as_dict() for b in check_order(order, reordered)] == [
        b.as_dict() for b in check_order(order, snapshot)
    ]


# --- the books: daily loss and buying power -------------------------------------------------

from risk import checks as _checks  # noqa: E402


def _books_order(side="buy", quantity="100", price="10.00"):
    return _checks.ProposedOrder(
        account="ACC-1",
        symbol="AAPL",
        side=side,
        type="limit",
        quantity=Decimal(quantity),
        tick_size=Decimal("0.01"),
        limit_price=Decimal(price),
    )


def _books_snapshot(rule, value, **fields):
    return _checks.Snapshot(
        limits=(_checks.Limit(rule=rule, value=Decimal(value), scope="account", target="ACC-1"),),
        to_account_currency={"AAPL": Decimal(1)},
        **fields,
    )


def test_daily_loss_exactly_at_the_limit_passes_one_cent_more_fails():
    at = _books_snapshot("max_daily_loss", "1000", daily_pnl=Decimal("-1000"))
    assert _checks.check_order(_books_order(), at) == []
    over = _books_snapshot("max_daily_loss", "1000", daily_pnl=Decimal("-1000.01"))
    [breach] = _checks.check_order(_books_order(), over)
    assert (breach.code, breach.actual, breach.limit) == (
        "max_daily_loss",
        Decimal("1000.01"),
        Decimal("1000"),
    )
    assert (
        breach.message
        == "daily loss 1000.01 > limit 1000: only orders that reduce the position pass"
    )


def test_daily_loss_lets_reducing_orders_through():
    over = _books_snapshot(
        "max_daily_loss", "1000", daily_pnl=Decimal("-5000"), positions={"AAPL": Decimal("100")}
    )
    assert _checks.check_order(_books_order(side="sell", quantity="100"), over) == []
    assert [b.code for b in _checks.check_order(_books_order(side="buy"), over)] == [
        "max_daily_loss"
    ]


def test_daily_loss_unknown_fails_safe():
    [breach] = _checks.check_order(_books_order(), _books_snapshot("max_daily_loss", "1000"))
    assert breach.code == "max_daily_loss" and breach.actual is None


def test_buying_power_boundary():
    # 100 x 10.00 x margin 0.5 = 500 of margin
    at = _books_snapshot(
        "buying_power",
        "1",
        buying_power=Decimal("600"),
        open_orders_margin=Decimal("100"),
        margin_rate=Decimal("0.5"),
    )
    assert _checks.check_order(_books_order(), at) == []
    over = _books_snapshot(
        "buying_power",
        "1",
        buying_power=Decimal("599.99"),
        open_orders_margin=Decimal("100"),
        margin_rate=Decimal("0.5"),
    )
    [breach] = _checks.check_order(_books_order(), over)
    assert (breach.code, breach.actual, breach.limit) == (
        "buying_power",
        Decimal("500"),
        Decimal("499.99"),
    )


def test_buying_power_counts_only_the_increase_and_a_share():
    # short 20: buying 100 ends long 80, 60 more than before (margin 60 x 10 x 0.5 = 300)
    snapshot = _books_snapshot(
        "buying_power",
        "0.5",
        buying_power=Decimal("600"),
        margin_rate=Decimal("0.5"),
        positions={"AAPL": Decimal("-20")},
    )
    assert _checks.check_order(_books_order(), snapshot) == []
    tighter = _books_snapshot(
        "buying_power",
        "0.49",
        buying_power=Decimal("600"),
        margin_rate=Decimal("0.5"),
        positions={"AAPL": Decimal("-20")},
    )
    assert [b.code for b in _checks.check_order(_books_order(), tighter)] == ["buying_power"]
