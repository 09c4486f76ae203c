"""The books through the real booking path: orders stored by order_submit, then the venue's
ACK and FILL reports applied by execution_reports_apply (or the simulated venue filling them),
and the positions, cash, realized P&L and commissions read back from the database.

Every account starts with a deposit of 1,000,000 USD. Commissions follow COMMISSIONS below:
equity 0.01 a share with a 1.00 minimum per fill, FX 0.2 bps of notional."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

import hypothesis
import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from brokers.base import ExecutionReport, ReportKind
from brokers.registry import venue_for
from orders import actors, services
from orders.books import account_cash_move, books_rebuild
from orders.lock_objects import order_for_update
from orders.models import Account, Fill, Order, OrderEvent, Position
from orders.pnl import PositionState, apply_fill, signed, unrealized_pnl
from orders.validation import OrderTerms

D = Decimal
DEPOSIT = D(1_000_000)
QUANTUM = D("1e-10")  # the books keep 10 decimal places

COMMISSIONS = {
    "sim": {
        "equity": {"per_unit": "0.01", "minimum": "1"},
        "fx": {"bps": "0.2"},
    }
}

pytestmark = pytest.mark.django_db

_codes = itertools.count(1)


# --- helpers --------------------------------------------------------------------------------


def funded_account(code: str | None = None) -> Account:
    """A new USD account with DEPOSIT in cash."""
    account = Account.objects.create(code=code or f"BOOKS-{next(_codes)}")
    account_cash_move(account=account, amount=DEPOSIT, reason="initial deposit", actor="test")
    account.refresh_from_db()
    return account


def working_order(
    account: Account, symbol: str, side: str, quantity, *, strategy_id: str = ""
) -> Order:
    """A market order stored by order_submit and taken to pending_submit, as a worker does
    before it talks to the venue."""
    order = services.order_submit(
        account=account,
        terms=OrderTerms(
            symbol=symbol,
            side=side,
            type="market",
            time_in_force="gtc",
            quantity=D(quantity),
            strategy_id=strategy_id,
        ),
        actor="user:test",
    ).order
    with transaction.atomic():
        services._order_change(
            order_for_update(order.id),
            event_type="pending_submit",
            actor=actors.WORKER,
            status="pending_submit",
        )
    return order


def execute(order: Order, *executions: tuple) -> None:
    """Apply the venue's answer to the order (`venue_answer`)."""
    services.execution_reports_apply(reports=venue_answer(order, *executions))


def venue_answer(order: Order, *executions: tuple) -> list[ExecutionReport]:
    """The venue's answer to the order: an ACK, then one FILL per (quantity, price)."""
    now = timezone.now()
    venue_order_id = f"V-{order.id.hex}"
    reports = [
        ExecutionReport(
            venue="sim",
            kind=ReportKind.ACK,
            client_order_id=str(order.id),
            venue_order_id=venue_order_id,
            at=now,
        )
    ]
    for number, (quantity, price) in enumerate(executions, start=1):
        reports.append(
            ExecutionReport(
                venue="sim",
                kind=ReportKind.FILL,
                client_order_id=str(order.id),
                venue_order_id=venue_order_id,
                at=now,
                execution_id=f"{venue_order_id}-{number}",
                quantity=D(quantity),
                price=D(price),
                liquidity="taker",
            )
        )
    return reports


def trade(
    account: Account, symbol: str, side: str, quantity, price, *, strategy_id: str = ""
) -> Fill:
    """One order filled completely at one price; answers its fill."""
    order = working_order(account, symbol, side, quantity, strategy_id=strategy_id)
    execute(order, (quantity, price))
    return Fill.objects.get(order=order)


def position(account: Account, symbol: str, strategy_id: str = "") -> Position:
    return Position.objects.get(account=account, instrument__symbol=symbol, strategy_id=strategy_id)


def quote(symbol: str, *, mid: str, half_spread: str) -> None:
    """Quote `symbol` on the simulated venue around `mid` (the conversion and valuation mid)."""
    venue_for("sim").set_quote(
        symbol,
        bid=D(mid) - D(half_spread),
        ask=D(mid) + D(half_spread),
        bid_size=D(10_000_000),
        ask_size=D(10_000_000),
    )


@dataclass(frozen=True)
class Books:
    positions: list[tuple]
    cash: Decimal
    realized_pnl: Decimal
    fills: list[tuple]


def books_of(account: Account) -> Books:
    """Everything the books hold for the account, except row ids and update times."""
    account = Account.objects.get(pk=account.pk)
    return Books(
        positions=list(
            Position.objects.filter(account=account)
            .order_by("instrument__symbol", "strategy_id")
            .values_list(
                "instrument__symbol",
                "strategy_id",
                "quantity",
                "average_price",
                "realized_pnl",
                "commission",
                "commission_currency",
                "opened_at",
            )
        ),
        cash=account.cash,
        realized_pnl=account.realized_pnl,
        fills=list(
            Fill.objects.filter(account=account)
            .order_by("id")
            .values_list("id", "realized_pnl", "account_rate", "commission")
        ),
    )


def booking_order(account: Account) -> list[Fill]:
    """The account's fills in the order the books took them: each fill's event is written
    while its position rows are locked, so event ids follow the locks."""
    fill_ids = [
        UUID(event.data["fill_id"])
        for event in OrderEvent.objects.filter(order__account=account, type="fill").order_by("id")
    ]
    fills = Fill.objects.select_related("order", "instrument").in_bulk(fill_ids)
    return [fills[fill_id] for fill_id in fill_ids]


def _q(value: Decimal) -> Decimal:
    return value.quantize(QUANTUM)


def expected_positions(fills) -> dict[tuple[str, str], PositionState]:
    """orders.pnl applied to `fills` in the order given, per account-level (strategy "") and
    strategy position, keeping 10 decimal places between fills as the books' columns do."""
    states: dict[tuple[str, str], PositionState] = {}
    for fill in fills:
        keys = [""] + ([fill.order.strategy_id] if fill.order.strategy_id else [])
        for strategy_id in keys:
            key = (fill.instrument.symbol, strategy_id)
            after = apply_fill(
                states.get(key, PositionState()),
                side=fill.side,
                quantity=fill.quantity,
                price=fill.price,
            ).position
            states[key] = PositionState(
                after.quantity, _q(after.average_price), _q(after.realized_pnl)
            )
    return states


def positions_by_key(account: Account) -> dict[tuple[str, str], PositionState]:
    return {
        (p.instrument.symbol, p.strategy_id): PositionState(
            p.quantity, p.average_price, p.realized_pnl
        )
        for p in Position.objects.filter(account=account).select_related("instrument")
    }


@pytest.fixture
def commissions(settings):
    settings.COMMISSIONS = COMMISSIONS


@pytest.fixture
def account(instruments, commissions) -> Account:
    return funded_account("BOOKS-1")


# --- worked examples ------------------------------------------------------------------------


def test_a_deposit_moves_cash_only():
    account = funded_account()
    assert (account.cash, account.realized_pnl) == (DEPOSIT, D(0))
    assert not Position.objects.filter(account=account).exists()


def test_buy_add_partial_sell_reverse_and_sell_to_flat(account):
    # given the account's fills on AAPL, one order each:
    # (side, quantity, price) -> (position quantity, average price, realized by the fill,
    #                             cumulative realized, commission, position commission, cash)
    steps = [
        # opens long 100 @ 190; 100 x 0.01 = 1.00; cash 1,000,000 - 19,000 - 1
        (("buy", "100", "190"), ("100", "190", "0", "0", "1", "1", "980999")),
        # adds 50 @ 196: (19,000 + 9,800) / 150 = 192; 0.50 -> the 1.00 minimum
        (("buy", "50", "196"), ("150", "192", "0", "0", "1", "2", "971198")),
        # sells 60 @ 200: (200 - 192) x 60 = 480 realized, the rest keeps 192
        (("sell", "60", "200"), ("90", "192", "480", "480", "1", "3", "983197")),
        # sells 150 @ 195: closes 90 at (195 - 192) = 270, opens short 60 @ 195; 1.50
        (("sell", "150", "195"), ("-60", "195", "270", "750", "1.5", "4.5", "1012445.5")),
        # buys 60 @ 190: a short bought back 5 lower, 300 realized; flat
        (("buy", "60", "190"), ("0", "0", "300", "1050", "1", "5.5", "1001044.5")),
    ]
    for (side, quantity, price), expected in steps:
        # when the venue fills the order
        fill = trade(account, "AAPL", side, quantity, price)
        # then the position, the fill and the account moved by exactly this much
        row = position(account, "AAPL")
        account.refresh_from_db()
        (
            expected_quantity,
            expected_average,
            expected_realized,
            expected_cumulative,
            expected_commission,
            expected_position_commission,
            expected_cash,
        ) = map(D, expected)
        assert (row.quantity, row.average_price, row.realized_pnl) == (
            expected_quantity,
            expected_average,
            expected_cumulative,
        ), (side, quantity, price)
        assert (fill.realized_pnl, fill.commission, fill.commission_currency) == (
            expected_realized,
            expected_commission,
            "USD",
        )
        assert fill.account_rate == D(1)
        assert (row.commission, row.commission_currency) == (expected_position_commission, "USD")
        assert (account.cash, account.realized_pnl) == (expected_cash, expected_cumulative)
    # and the round trip made its net cash, 1,050, less 5.50 of commissions
    assert account.cash - DEPOSIT == D(1050) - D("5.5")
    # and an order without a strategy moved the account-level position only
    assert list(Position.objects.filter(account=account).values_list("strategy_id", flat=True)) == [
        ""
    ]


def test_the_position_opens_when_the_first_fill_is_executed(account):
    fill = trade(account, "AAPL", "buy", "10", "190")
    assert position(account, "AAPL").opened_at == fill.executed_at


def test_each_partial_fill_is_booked_as_it_arrives_with_its_own_minimum(account):
    # given an order for 100 AAPL
    order = working_order(account, "AAPL", "buy", "100")
    # when the venue fills it in two executions, 40 @ 190 and 60 @ 191
    execute(order, ("40", "190"), ("60", "191"))
    # then the position averages both: (7,600 + 11,460) / 100
    row = position(account, "AAPL")
    assert (row.quantity, row.average_price) == (D(100), D("190.6"))
    # and each execution paid the minimum, 0.40 and 0.60 -> 1.00 each
    assert sorted(Fill.objects.filter(order=order).values_list("commission", flat=True)) == [
        D(1),
        D(1),
    ]
    order.refresh_from_db()
    assert (order.status, order.commission, order.average_fill_price) == (
        "filled",
        D(2),
        D("190.6"),
    )
    account.refresh_from_db()
    assert account.cash == DEPOSIT - D(19060) - D(2)


def test_a_repeated_fill_report_moves_nothing(account):
    # given a filled order
    order = working_order(account, "AAPL", "buy", "100")
    execute(order, ("100", "190"))
    before = books_of(account)
    # when the venue sends the same reports again
    execute(order, ("100", "190"))
    # then the books are as they were
    assert books_of(account) == before
    assert Fill.objects.filter(order=order).count() == 1


def test_strategies_each_keep_their_own_position_and_the_account_nets_them(account):
    # given s1 buys 100 @ 190, s2 sells 40 @ 195, s1 sells 30 @ 200, on one account
    trade(account, "AAPL", "buy", "100", "190", strategy_id="s1")
    trade(account, "AAPL", "sell", "40", "195", strategy_id="s2")
    trade(account, "AAPL", "sell", "30", "200", strategy_id="s1")
    # then each strategy's row is its own fills alone
    s1, s2 = position(account, "AAPL", "s1"), position(account, "AAPL", "s2")
    assert (s1.quantity, s1.average_price, s1.realized_pnl) == (D(70), D(190), D(300))
    assert (s2.quantity, s2.average_price, s2.realized_pnl) == (D(-40), D(195), D(0))
    # and the account-level row holds the sum of the strategies' quantities
    total = position(account, "AAPL")
    assert total.quantity == s1.quantity + s2.quantity == D(30)
    # netted at the account, s2's sale closed part of s1's long: (195 - 190) x 40 realized,
    # then (200 - 190) x 30; realized P&L is not additive across strategies
    assert (total.average_price, total.realized_pnl) == (D(190), D(500))
    account.refresh_from_db()
    assert account.realized_pnl == D(500)
    assert (s1.commission, s2.commission, total.commission) == (D(2), D(1), D(3))


def test_an_order_without_a_strategy_moves_only_the_account_level_position(account):
    trade(account, "AAPL", "buy", "100", "190", strategy_id="s1")
    trade(account, "AAPL", "sell", "100", "191")
    assert position(account, "AAPL", "s1").quantity == D(100)
    assert position(account, "AAPL").quantity == D(0)
    assert position(account, "AAPL").realized_pnl == D(100)


def test_eur_usd_pnl_is_in_usd(account):
    # given 100,000 EUR_USD bought at 1.08500 and sold at 1.08750
    buy = trade(account, "EUR_USD", "buy", "100000", "1.08500")
    sell = trade(account, "EUR_USD", "sell", "100000", "1.08750")
    # then 0.0025 x 100,000 = 250 USD was realized, at a rate of 1 (USD is the quote)
    row = position(account, "EUR_USD")
    assert (row.quantity, row.average_price, row.realized_pnl) == (D(0), D(0), D(250))
    assert (buy.account_rate, sell.account_rate) == (D(1), D(1))
    # and 0.2 bps of each notional was paid: 108,500 -> 2.17, 108,750 -> 2.175
    assert (buy.commission, sell.commission) == (D("2.17"), D("2.175"))
    assert (row.commission, row.commission_currency) == (D("4.345"), "USD")
    account.refresh_from_db()
    assert account.realized_pnl == D(250)
    assert account.cash == DEPOSIT + D(250) - D("4.345")


def test_usd_jpy_pnl_is_in_jpy_and_converted_to_usd_at_the_mid_when_booked(account):
    # given USD_JPY quoted around 150.000, 100,000 bought at 150.000
    quote("USD_JPY", mid="150.000", half_spread="0.010")
    buy = trade(account, "USD_JPY", "buy", "100000", "150.000")
    # then the fill keeps one JPY in USD, 1 / 150, to 10 places
    assert buy.account_rate == D("0.0066666667")
    # and the commission, 0.2 bps of 15,000,000 JPY, is 300 JPY
    assert (buy.commission, buy.commission_currency) == (D(300), "JPY")
    account.refresh_from_db()
    # 15,000,300 JPY left at 0.0066666667: 100,002.00050001 USD
    assert account.cash == DEPOSIT - D("100002.00050001")
    # when USD_JPY moves to 160.000 and the 100,000 are sold there
    quote("USD_JPY", mid="160.000", half_spread="0.010")
    sell = trade(account, "USD_JPY", "sell", "100000", "160.000")
    # then the position realized 10 JPY x 100,000 = 1,000,000 JPY
    row = position(account, "USD_JPY")
    assert (row.quantity, row.average_price, row.realized_pnl) == (D(0), D(0), D(1_000_000))
    assert sell.realized_pnl == D(1_000_000)
    assert (row.commission, row.commission_currency) == (D(620), "JPY")
    # and the account booked it in USD at 1 / 160 = 0.00625: 6,250 USD
    assert sell.account_rate == D("0.00625")
    account.refresh_from_db()
    assert account.realized_pnl == D(6250)
    # 16,000,000 JPY in, 320 JPY of commission out, at 0.00625: 99,998 USD
    assert account.cash == DEPOSIT - D("100002.00050001") + D(99998)


def test_fills_from_the_simulated_venue_are_booked(account):
    # given AAPL quoted 189.99 / 190.01 on the simulated venue
    quote("AAPL", mid="190.00", half_spread="0.01")
    # when a market buy of 100 and then a market sell of 100 are sent to it
    for side in ("buy", "sell"):
        order = services.order_submit(
            account=account,
            terms=OrderTerms(
                symbol="AAPL", side=side, type="market", time_in_force="gtc", quantity=D(100)
            ),
            actor="user:test",
        ).order
        services.order_submit_to_venue(order_id=order.id)
        assert Order.objects.get(pk=order.id).status == "filled"
    # then the buy paid the ask and the sell got the bid: the spread, 2.00, is lost
    assert sorted(Fill.objects.filter(account=account).values_list("side", "price")) == [
        ("buy", D("190.01")),
        ("sell", D("189.99")),
    ]
    row = position(account, "AAPL")
    assert (row.quantity, row.realized_pnl, row.commission) == (D(0), D(-2), D(2))
    account.refresh_from_db()
    assert (account.cash, account.realized_pnl) == (DEPOSIT - D(4), D(-2))


def test_rebuilding_the_books_from_fills_gives_the_live_books(account):
    # given a history across instruments and strategies
    quote("USD_JPY", mid="150.000", half_spread="0.010")
    trade(account, "AAPL", "buy", "100", "190", strategy_id="s1")
    trade(account, "AAPL", "buy", "50", "196.37")
    trade(account, "AAPL", "sell", "170", "195.01", strategy_id="s2")
    trade(account, "EUR_USD", "sell", "250000", "1.08512")
    trade(account, "EUR_USD", "buy", "100000", "1.08333", strategy_id="s1")
    trade(account, "USD_JPY", "buy", "30000", "150.123")
    quote("USD_JPY", mid="151.500", half_spread="0.010")
    trade(account, "USD_JPY", "sell", "10000", "151.487", strategy_id="s2")
    live = books_of(account)
    # when the books are rebuilt from the deposits and fills alone
    replayed = books_rebuild(accounts=[account])
    # then they are exactly the live books
    assert replayed == 7
    assert books_of(account) == live


# --- properties -----------------------------------------------------------------------------

PRICE_GRIDS = {
    # symbol: (largest quantity, lowest and highest price in ticks, tick)
    "AAPL": (500, 10_000, 30_000, D("0.01")),
    "EUR_USD": (200_000, 100_000, 120_000, D("0.00001")),
    "USD_JPY": (200_000, 140_000, 160_000, D("0.001")),
}


def prices(symbol: str):
    _, low, high, tick = PRICE_GRIDS[symbol]
    return st.integers(min_value=low, max_value=high).map(lambda n: n * tick)


def fills_of(symbol: str):
    largest = PRICE_GRIDS[symbol][0]
    return st.tuples(
        st.just(symbol),
        st.sampled_from(["buy", "sell"]),
        st.integers(min_value=1, max_value=largest).map(D),
        prices(symbol),
        st.sampled_from(["", "s1", "s2"]),
    )


FILL_SEQUENCES = st.lists(
    st.sampled_from(sorted(PRICE_GRIDS)).flatmap(fills_of), min_size=1, max_size=12
)
MARKS = st.fixed_dictionaries({symbol: prices(symbol) for symbol in PRICE_GRIDS})


# Exact to 10 decimal places needs PostgreSQL's numeric: SQLite keeps decimals as 8-byte floats
# (about 15 significant digits), and a cash balance of 999,796.9363087266 has 16.
@pytest.mark.postgres
@hypothesis.settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fills=FILL_SEQUENCES, marks=MARKS)
def test_for_any_fills_the_books_add_up_and_rebuild_exactly(instruments, commissions, fills, marks):
    # given a new account, USD_JPY quoted at its mark (one conversion rate for the example)
    account = funded_account()
    quote("USD_JPY", mid=str(marks["USD_JPY"]), half_spread="0.010")
    # when the fills are booked one after another
    for symbol, side, quantity, price, strategy_id in fills:
        trade(account, symbol, side, quantity, price, strategy_id=strategy_id)
    account.refresh_from_db()
    booked = booking_order(account)
    rate = {fill.instrument.symbol: fill.account_rate for fill in booked}
    # then each position's quantity is the signed sum of its fills
    positions = positions_by_key(account)
    for (symbol, strategy_id), state in positions.items():
        assert state.quantity == sum(
            (
                signed(side, quantity)
                for s, side, quantity, _, strategy in fills
                if s == symbol and strategy_id in ("", strategy)
            ),
            D(0),
        )
    # and each position is exactly orders.pnl applied to its fills in booking order
    assert positions == expected_positions(booked)
    # and cash and realized P&L are the fills' own amounts, converted at their booked rates
    assert account.cash == DEPOSIT + sum(
        (_q(-signed(f.side, f.quantity) * f.price * f.account_rate - f.commission * f.account_rate))
        for f in booked
    )
    assert account.realized_pnl == sum(_q(f.realized_pnl * f.account_rate) for f in booked)
    # and realized + unrealized - commissions is the change in equity (cash + market value)
    totals = {
        symbol: state for (symbol, strategy_id), state in positions.items() if not strategy_id
    }
    unrealized = sum(
        (unrealized_pnl(state, marks[symbol]) * rate[symbol] for symbol, state in totals.items()),
        D(0),
    )
    commissions_paid = sum((f.commission * f.account_rate for f in booked), D(0))
    market_value = sum(
        (state.quantity * marks[symbol] * rate[symbol] for symbol, state in totals.items()), D(0)
    )
    change_in_equity = account.cash + market_value - DEPOSIT
    # average prices and converted amounts are kept to 10 places: off by at most 1e-10 per
    # unit held after each fill, and 1e-10 per amount booked
    tolerance = QUANTUM * (len(booked) + 1) * (sum((f.quantity for f in booked), D(0)) + 3)
    assert abs(account.realized_pnl + unrealized - commissions_paid - change_in_equity) <= tolerance
    # and the books rebuilt from the fills are exactly the live ones
    live = books_of(account)
    assert books_rebuild(accounts=[account]) == len(fills)
    assert books_of(account) == live
