"""orders.pnl: average-cost position arithmetic and commission schedules. Pure, no database.

Worked examples with exact numbers, then properties over random fill sequences: the quantity
is the signed sum of the fills, P&L is the change in cash plus market value, and the realized
P&L of fills that end flat does not depend on the order they came in."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orders.pnl import CommissionSchedule, PositionState, apply_fill, signed, unrealized_pnl

D = Decimal


def run(fills, start: PositionState | None = None) -> list:
    """Each fill's effect, applying (side, quantity, price) in order from `start` (flat)."""
    position = start or PositionState()
    effects = []
    for side, quantity, price in fills:
        effect = apply_fill(position, side=side, quantity=D(quantity), price=D(price))
        effects.append(effect)
        position = effect.position
    return effects


# --- worked examples ------------------------------------------------------------------------


def test_buy_add_partial_sell_reverse_and_cover_to_flat():
    # given a sequence: buy 100 @ 10, add 50 @ 13, sell 60 @ 15, sell 150 @ 12, buy 60 @ 10
    fills = [
        ("buy", "100", "10"),
        ("buy", "50", "13"),
        ("sell", "60", "15"),
        ("sell", "150", "12"),
        ("buy", "60", "10"),
    ]
    # when each is applied in turn
    effects = run(fills)
    # then, fill by fill: (quantity, average price, realized by the fill, cumulative, closed)
    assert [
        (
            e.position.quantity,
            e.position.average_price,
            e.realized,
            e.position.realized_pnl,
            e.closed_quantity,
        )
        for e in effects
    ] == [
        (D(100), D(10), D(0), D(0), D(0)),  # opened long at the fill price
        (D(150), D(11), D(0), D(0), D(0)),  # (100 x 10 + 50 x 13) / 150
        (D(90), D(11), D(240), D(240), D(60)),  # (15 - 11) x 60; the rest keeps its cost
        (D(-60), D(12), D(90), D(330), D(90)),  # closes 90 at (12 - 11), opens short 60 @ 12
        (D(0), D(0), D(120), D(450), D(60)),  # covers 60 at (12 - 10); flat has no average
    ]
    # and the total realized is the net cash of the round trip: -1000 -650 +900 +1800 -600
    assert effects[-1].position.realized_pnl == D(450)


def test_a_short_opened_first_then_added_to_covered_and_reversed():
    effects = run(
        [
            ("sell", "100", "20"),
            ("sell", "100", "22"),
            ("buy", "50", "19"),
            ("buy", "250", "18"),
        ]
    )
    assert [(e.position.quantity, e.position.average_price, e.realized) for e in effects] == [
        (D(-100), D(20), D(0)),
        (D(-200), D(21), D(0)),
        (D(-150), D(21), D(100)),  # a short gains when bought back lower: (21 - 19) x 50
        (D(100), D(18), D(450)),  # (21 - 18) x 150 closed, then long 100 @ 18
    ]
    assert effects[-1].position.realized_pnl == D(550)


def test_a_fill_that_exactly_closes_leaves_the_position_flat_with_no_average():
    effects = run([("buy", "100", "10"), ("sell", "100", "9.5")])
    assert effects[-1].position == PositionState(D(0), D(0), D(-50))
    assert effects[-1].closed_quantity == D(100)


def test_unrealized_pnl_is_mark_minus_average_times_signed_quantity():
    assert unrealized_pnl(PositionState(D(90), D(11), D(240)), D(12.5)) == D("135.0")
    assert unrealized_pnl(PositionState(D(-60), D(12), D(0)), D(10)) == D(120)
    assert unrealized_pnl(PositionState(D(-60), D(12), D(0)), D(13)) == D(-60)
    assert unrealized_pnl(PositionState(), D(13)) == D(0)


def test_averages_of_fractional_quantities_are_exact_decimals():
    # 0.5 BTC @ 64000.10 then 0.25 BTC @ 64100.40: (32000.05 + 16025.10) / 0.75
    effects = run([("buy", "0.5", "64000.10"), ("buy", "0.25", "64100.40")])
    assert effects[-1].position.average_price == D("64033.53333333333333333333333")
    assert effects[-1].position.quantity == D("0.75")


@pytest.mark.parametrize(
    ("quantity", "price"), [("0", "10"), ("-1", "10"), ("1", "0"), ("1", "-10")]
)
def test_a_fill_without_positive_quantity_and_price_is_refused(quantity, price):
    position = PositionState(D(10), D(5), D(1))
    with pytest.raises(ValueError, match="positive"):
        apply_fill(position, side="buy", quantity=D(quantity), price=D(price))


def test_signed_quantity():
    assert signed("buy", D(5)) == D(5)
    assert signed("sell", D(5)) == D(-5)


# --- commissions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "quantity", "price", "expected"),
    [
        # equity, 0.005 a share with a 1.00 minimum: 100 shares would be 0.50
        (CommissionSchedule(per_unit=D("0.005"), minimum=D(1)), "100", "190", D(1)),
        (CommissionSchedule(per_unit=D("0.005"), minimum=D(1)), "1000", "190", D("5.000")),
        # FX, 0.2 bps of notional: 100,000 EUR_USD at 1.085 is 108,500 of notional
        (CommissionSchedule(bps=D("0.2")), "100000", "1.08500", D("2.17")),
        # USD_JPY: in the quote currency, 100,000 at 150 is 15,000,000 JPY of notional
        (CommissionSchedule(bps=D("0.2")), "100000", "150.000", D(300)),
        # crypto, 10 bps: 0.5 BTC at 65,000
        (CommissionSchedule(bps=D(10)), "0.5", "65000", D("32.5")),
        # per unit and bps together, above the minimum: 1.00 + 0.50
        (
            CommissionSchedule(per_unit=D("0.01"), bps=D(1), minimum=D(1)),
            "100",
            "50",
            D("1.5"),
        ),
        # the minimum applies to the total, not to each part: 0.30 + 0.24999 -> 1
        (
            CommissionSchedule(per_unit=D("0.01"), bps=D(1), minimum=D(1)),
            "30",
            "83.33",
            D(1),
        ),
    ],
)
def test_commission_of_a_schedule(schedule, quantity, price, expected):
    assert schedule.commission(quantity=D(quantity), price=D(price)) == expected


def test_a_schedule_without_rates_charges_nothing_even_with_a_minimum():
    assert CommissionSchedule().commission(quantity=D(100), price=D(10)) == D(0)
    assert CommissionSchedule(minimum=D(1)).commission(quantity=D(100), price=D(10)) == D(0)


# --- properties -----------------------------------------------------------------------------

SIDES = st.sampled_from(["buy", "sell"])
# Quantities on a 0.01 grid, prices on a 0.0001 grid: what lots and ticks produce.
QUANTITIES = st.integers(min_value=1, max_value=100_000).map(lambda n: D(n) / 100)
PRICES = st.integers(min_value=1, max_value=2_000_000).map(lambda n: D(n) / 10_000)
FILLS = st.lists(st.tuples(SIDES, QUANTITIES, PRICES), min_size=1, max_size=40)


def final(fills) -> PositionState:
    position = PositionState()
    for side, quantity, price in fills:
        position = apply_fill(position, side=side, quantity=quantity, price=price).position
    return position


def notional(fills) -> Decimal:
    return sum((quantity * price for _, quantity, price in fills), D(0))


@settings(max_examples=300)
@given(fills=FILLS)
def test_quantity_is_the_signed_sum_of_the_fills(fills):
    position = final(fills)
    assert position.quantity == sum((signed(side, q) for side, q, _ in fills), D(0))
    # flat has no average; open, the average is one of the prices paid or a blend of them
    if position.quantity == 0:
        assert position.average_price == 0
    else:
        prices = [price for _, _, price in fills]
        assert min(prices) <= position.average_price <= max(prices)


@settings(max_examples=300)
@given(fills=FILLS, mark=PRICES)
def test_realized_plus_unrealized_is_the_change_in_cash_plus_market_value(fills, mark):
    position = final(fills)
    cash = sum((-signed(side, quantity) * price for side, quantity, price in fills), D(0))
    pnl = position.realized_pnl + unrealized_pnl(position, mark)
    # average prices are divided, so exact only up to the last of 28 significant digits
    tolerance = D("1e-12") * (notional(fills) + abs(position.quantity) * mark)
    assert abs(pnl - (cash + position.quantity * mark)) <= tolerance


@st.composite
def round_trips(draw):
    """Fills that end flat (the last one closes what is left), and a reordering of them."""
    fills = draw(FILLS)
    rest = sum((signed(side, q) for side, q, _ in fills), D(0))
    if rest != 0:
        fills.append(("sell" if rest > 0 else "buy", abs(rest), draw(PRICES)))
    return fills, draw(st.permutations(fills))


@settings(max_examples=300)
@given(trip=round_trips())
def test_realized_pnl_to_flat_does_not_depend_on_the_order_of_the_fills(trip):
    """Average cost allocates P&L between fills by their order, but once flat the total
    realized is the net cash of the fills, however the position was built and unwound."""
    fills, reordered = trip
    first, second = final(fills), final(reordered)
    assert first.quantity == second.quantity == 0
    cash = sum((-signed(side, quantity) * price for side, quantity, price in fills), D(0))
    tolerance = D("1e-12") * notional(fills)
    assert abs(first.realized_pnl - cash) <= tolerance
    assert abs(second.realized_pnl - cash) <= tolerance
