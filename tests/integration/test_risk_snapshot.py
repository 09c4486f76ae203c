"""The risk snapshot and the account's value, read in a few statements sent as text: every
figure of a book with long and short positions in two quote currencies, working orders priced
and unpriced, reduce-only orders, fills on both sides of the cut-off and cash moved on both
sides of the last snapshot."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from brokers.registry import venue_for
from orders import services
from orders.lock_objects import order_for_update
from orders.models import Account, AccountSnapshot, CashMovement, Fill, Position
from orders.validation import OrderTerms
from orders.valuation import account_value, last_cutoff
from risk import checks
from risk.selectors import snapshot_for
from tradingsite import refdata

pytestmark = pytest.mark.django_db

D = Decimal
EVERY_RULE = [
    checks.MAX_ORDER_QUANTITY,
    checks.MAX_ORDER_NOTIONAL,
    checks.MAX_POSITION,
    checks.MAX_OPEN_ORDERS,
    checks.PRICE_COLLAR_PCT,
    checks.MAX_GROSS_EXPOSURE,
    checks.MAX_DAILY_LOSS,
    checks.BUYING_POWER,
]


def every_rule() -> list[checks.Limit]:
    return [
        checks.Limit(rule=rule, value=D(1), scope="account", target="ACC-1") for rule in EVERY_RULE
    ]


def eur_usd_snapshot(account, instruments, limits, strategy_id=""):
    """The snapshot of an order for EUR_USD on the sim venue, not under a reducing state."""
    return snapshot_for(
        account=account,
        instrument=instruments["EUR_USD"],
        strategy_id=strategy_id,
        venue="sim",
        limits=limits,
        reducing=False,
    )


def _order(account, symbol, n, *, side, quantity, status, reduce_only=False, **terms):
    """An order stored by order_submit, then taken to `status` with its event."""
    order = services.order_submit(
        account=account,
        terms=OrderTerms(
            symbol=symbol,
            side=side,
            type=terms.pop("type", "limit"),
            time_in_force="gtc",
            quantity=D(quantity),
            client_order_id=f"book-{n}",
            **terms,
        ),
        actor="user:test",
        reduce_only=reduce_only,
    ).order
    path = {"submitted": ["pending_submit", "submitted"], "acknowledged": ["pending_submit",
            "acknowledged"], "cancelled": ["cancelled"]}.get(status, [])  # fmt: skip
    for step in path:
        with transaction.atomic():
            services._order_change(
                order_for_update(order.id), event_type=step, actor="test", status=step
            )
    return order


@pytest.fixture
def book(trader, instruments):
    """ACC-1 (USD): long 100,000 EUR_USD at 1.08, short 10,000 USD_JPY at 151, flat AAPL;
    four working orders; 40,000 deposited before the last snapshot (equity 40,000) and
    10,000 after; realized today 25 USD and 300 JPY, 1,000 USD before the cut-off."""
    venue = venue_for("sim")
    for symbol, bid, ask in (
        ("EUR_USD", "1.08490", "1.08510"),
        ("USD_JPY", "149.990", "150.010"),
        ("AAPL", "189.99", "190.01"),
    ):
        venue.set_quote(symbol, bid=D(bid), ask=D(ask), bid_size=D(10**6), ask_size=D(10**6))
    account = Account.objects.get(code="ACC-1")
    now = timezone.now()
    cutoff = last_cutoff(now)
    CashMovement.objects.create(
        account=account,
        amount=D(40000),
        reason="funding",
        actor="t",
        at=cutoff - timedelta(hours=1),
    )
    AccountSnapshot.objects.create(
        account=account,
        trading_day=cutoff.date(),
        cash=D(40000),
        equity=D(40000),
        realized_pnl=D(0),
        taken_at=cutoff,
    )
    CashMovement.objects.create(
        account=account, amount=D(10000), reason="more", actor="t", at=now - timedelta(minutes=1)
    )
    account.cash = D(50000)
    account.save(update_fields=["cash"])
    eur, jpy, aapl = instruments["EUR_USD"], instruments["USD_JPY"], instruments["AAPL"]
    for instrument, strategy, quantity, price in (
        (eur, "", "100000", "1.08000"),
        (jpy, "", "-10000", "151.000"),
        (aapl, "", "0", "0"),
        (eur, "s1", "5000", "1.08000"),
    ):
        Position.objects.create(
            account=account,
            instrument=instrument,
            strategy_id=strategy,
            quantity=D(quantity),
            average_price=D(price),
        )
    _order(
        account,
        "EUR_USD",
        1,
        side="buy",
        quantity="20000",
        status="acknowledged",
        limit_price=D("1.07000"),
    )
    _order(account, "EUR_USD", 2, side="sell", quantity="5000", status="validated", type="market")
    _order(
        account,
        "AAPL",
        3,
        side="buy",
        quantity="10",
        status="submitted",
        type="stop",
        stop_price=D("195.00"),
    )
    _order(
        account,
        "EUR_USD",
        4,
        side="sell",
        quantity="10000",
        status="acknowledged",
        limit_price=D("1.09000"),
        reduce_only=True,
    )
    done = _order(account, "EUR_USD", 5, side="buy", quantity="999", status="cancelled",
                  limit_price=D("1.08000"))  # fmt: skip
    for n, (pnl, rate, at) in enumerate(
        (
            ("25", "1", now),
            ("300", "0.0066666666", now),
            ("1000", "1", cutoff - timedelta(minutes=5)),
        )
    ):
        Fill.objects.create(
            order=done,
            account=account,
            instrument=eur,
            side="buy",
            quantity=D(1),
            price=D("1.08"),
            liquidity="taker",
            venue="sim",
            venue_execution_id=f"x{n}",
            realized_pnl=D(pnl),
            account_rate=D(rate),
            executed_at=at,
        )
    return account


def test_the_account_value_reads_every_figure_of_the_book(book):
    value = account_value(book)
    # EUR_USD: 100,000 x 1.085 = 108,500 USD; USD_JPY: -10,000 x 150 JPY / 150 = -10,000 USD
    assert value.cash == D(50000)
    assert value.net_exposure == D(98500)
    assert value.gross_exposure == D(118500)
    assert value.equity == D(148500)
    assert value.margin_used == D(2370)  # fx 2 %
    assert value.buying_power == D(146130)
    # unrealized: 500 USD + 10,000 JPY (66.67 USD)
    assert value.unrealized_pnl == D("566.6666666667")
    assert value.realized_pnl_today == D("26.99999998")  # 25 + 300 x 0.0066666666
    # equity less the snapshot's 40,000 and the 10,000 deposited after it
    assert value.daily_pnl == D(98500)
    assert value.open_orders == 4
    assert value.complete


def test_before_the_first_snapshot_daily_pnl_counts_every_deposit(book):
    AccountSnapshot.objects.filter(account=book).delete()
    assert account_value(book).daily_pnl == D(148500 - 50000)


def test_the_snapshot_with_every_rule_has_every_figure(book, instruments):
    snapshot = eur_usd_snapshot(book, instruments, every_rule())
    assert snapshot.positions == {"EUR_USD": D(100000), "USD_JPY": D(-10000)}
    assert snapshot.open_buy == {"EUR_USD": D(20000), "AAPL": D(10)}
    assert snapshot.open_sell == {"EUR_USD": D(15000)}  # the reduce-only order counts here
    assert snapshot.open_order_count == 4
    assert set(snapshot.quotes) == {"EUR_USD", "USD_JPY"}
    assert snapshot.quotes["USD_JPY"].mid == D(150)
    assert snapshot.to_account_currency == {"EUR_USD": D(1), "USD_JPY": D(1) / D(150)}
    assert snapshot.daily_pnl == D(98500)
    assert snapshot.buying_power == D(146130)
    # not the reduce-only order: EUR_USD 20,000 x 1.07 + 5,000 at the mid 1.085, at 2 %;
    # AAPL 10 x 195 at 50 %
    assert snapshot.open_orders_margin == D("536.5") + D(975)
    assert snapshot.margin_rate == D("0.02")


def test_a_strategy_position_limit_reads_the_strategys_position(book, instruments):
    limits = [checks.Limit(rule=checks.MAX_POSITION, value=D(1), scope="strategy", target="s1")]
    snapshot = eur_usd_snapshot(book, instruments, limits, strategy_id="s1")
    assert snapshot.positions == {"EUR_USD": D(100000)}  # the order's symbol only
    assert snapshot.strategy_positions == {"EUR_USD": D(5000)}


def test_the_snapshot_with_every_rule_takes_five_statements_at_most(
    book, instruments, django_assert_max_num_queries
):
    limits = every_rule()
    eur_usd_snapshot(book, instruments, limits)  # reference data read and cached
    # as in a request: the reference data's version once; then open orders, positions,
    # quotes and the books
    with django_assert_max_num_queries(5), refdata.scope():
        eur_usd_snapshot(book, instruments, limits)


def _limits(*rules):
    return [checks.Limit(rule=rule, value=D(1), scope="account", target="ACC-1") for rule in rules]


def _open_order_reads(statements):
    """The snapshot's reads of the open orders: the sums (of every instrument, or of one) and
    the count."""
    return [
        "sums of one instrument" if "o.instrument_id = " in sql else "sums" if "SUM(" in sql
        else "count"
        for sql in (query["sql"] for query in statements)
        if "FROM orders_order" in sql
    ]  # fmt: skip


def test_the_position_rules_read_the_open_orders_of_the_orders_symbol_only(book, instruments):
    # given a book with open orders in EUR_USD and AAPL, and an order for EUR_USD under the
    # position rules (a position limit, an exposure limit)
    for rules in ((checks.MAX_POSITION,), (checks.MAX_GROSS_EXPOSURE, checks.REDUCE_ONLY)):
        eur_usd_snapshot(book, instruments, _limits(*rules))  # reference data cached
        # when its snapshot is read
        with CaptureQueriesContext(connection) as reads:
            snapshot = eur_usd_snapshot(book, instruments, _limits(*rules))
        # then EUR_USD's open orders are summed, and AAPL's are not read
        assert _open_order_reads(reads.captured_queries) == ["sums of one instrument"]
        assert snapshot.open_buy == {"EUR_USD": D(20000)}
        assert snapshot.open_sell == {"EUR_USD": D(15000)}  # with the reduce-only order


def test_the_open_order_limit_reads_the_count_only(book, instruments):
    # given the open-order limit alone, then with a position limit
    for rules, reads_wanted in (
        ((checks.MAX_OPEN_ORDERS,), ["count"]),
        ((checks.MAX_OPEN_ORDERS, checks.MAX_POSITION), ["sums of one instrument", "count"]),
    ):
        eur_usd_snapshot(book, instruments, _limits(*rules))
        # when an order's snapshot is read
        with CaptureQueriesContext(connection) as reads:
            snapshot = eur_usd_snapshot(book, instruments, _limits(*rules))
        # then the account's four open orders are counted, whatever their symbol
        assert _open_order_reads(reads.captured_queries) == reads_wanted
        assert snapshot.open_order_count == 4


def test_the_books_read_every_symbols_open_orders_once(book, instruments):
    # given every rule: the buying power values the margin every symbol's open orders reserve
    eur_usd_snapshot(book, instruments, every_rule())
    with CaptureQueriesContext(connection) as reads:
        snapshot = eur_usd_snapshot(book, instruments, every_rule())
    # then one read sums them all, and the count comes from it
    assert _open_order_reads(reads.captured_queries) == ["sums"]
    assert snapshot.open_order_count == 4
    assert snapshot.open_buy == {"EUR_USD": D(20000), "AAPL": D(10)}


def test_an_account_without_limits_reads_nothing(book, instruments, django_assert_num_queries):
    with django_assert_num_queries(0):
        eur_usd_snapshot(book, instruments, [])


def test_an_account_gone_meanwhile_is_not_found(trader):
    gone = Account.objects.create(code="GONE-1")
    Account.objects.filter(pk=gone.pk).delete()
    with pytest.raises(Account.DoesNotExist):
        account_value(gone)


def test_an_instrument_listed_after_the_cache_was_read_is_read_from_its_row(book, instruments):
    # given a request whose reference data (the instruments) was read already
    from orders.models import Instrument, Order
    from risk.selectors import working_orders

    with refdata.scope():
        assert {g.symbol for g in working_orders(book)} == {"EUR_USD", "AAPL"}
        # when an instrument is listed meanwhile (by SQL: nothing tells this process) and the
        # account has an open order in it
        eur = instruments["EUR_USD"]
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO orders_instrument (symbol, asset_class, base_currency,"
                " quote_currency, lot_size, min_quantity, tick_size, reference_price, is_active)"
                " VALUES ('NEW_USD', 'fx', 'NEW', 'USD', 1, 1, 0.0001, 1, true)"
            )
        new = Instrument.objects.get(symbol="NEW_USD")
        like = Order.objects.filter(account=book, instrument=eur, status="acknowledged").first()
        like.pk, like.client_order_id, like.instrument_id = uuid.uuid4(), "new-1", new.pk
        Order.objects.bulk_create([like])
        # then its open orders are named from its row
        working = {g.symbol: g for g in working_orders(book)}
    assert working["NEW_USD"].quote_currency == "USD" and working["NEW_USD"].count == 1
    # (the copy has no events of its own: the suite's replay check would refuse it)
    Order.objects.filter(pk=like.pk).delete()
