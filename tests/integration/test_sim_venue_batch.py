"""The simulated venue's batch submit: `submit_many` answers what one `submit` per ticket would
have answered, in a constant number of queries per batch, with the faults drawn per batch
(disconnect, timeout) or per order (reject, dropped fill report)."""

from __future__ import annotations

import threading
from decimal import Decimal

import hypothesis
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from brokers.base import ExecutionReport, OrderTicket, ReportKind, VenueTransientError
from brokers.models import SimOrder, SimPosition, SimQuote, SimReport
from brokers.sim.venue import SimulatedVenue
from tests.helpers import venue_ticket

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def venue(instruments, settings) -> SimulatedVenue:
    return SimulatedVenue(name="sim", config=settings.SIM_VENUE)


def faulty(settings, **faults: float) -> SimulatedVenue:
    return SimulatedVenue(name="sim", config={**settings.SIM_VENUE, **faults})


def market(venue: SimulatedVenue, *, eur_usd_size: str = "1000", aapl_size: str = "300") -> None:
    """EUR_USD 1.08490 / 1.08500 and AAPL 189.99 / 190.00, thin on purpose so that orders of
    one symbol compete for its size."""
    venue.set_quote(
        "EUR_USD",
        bid=D("1.08490"),
        ask=D("1.08500"),
        bid_size=D(eur_usd_size),
        ask_size=D(eur_usd_size),
    )
    venue.set_quote(
        "AAPL", bid=D("189.99"), ask=D("190.00"), bid_size=D(aapl_size), ask_size=D(aapl_size)
    )


# Every kind of arrival: market IOC, a limit that rests, a limit that crosses, a FOK that
# cannot fill, a partial fill against what is left, stops triggered and not, a GTC market
# remainder that keeps working, an IOC on an empty side; two symbols.
SCENARIO = [
    venue_ticket("e-1", quantity="400"),
    venue_ticket("e-2", type="limit", time_in_force="gtc", quantity="500", limit_price="1.08000"),
    venue_ticket("e-3", type="limit", time_in_force="gtc", quantity="500", limit_price="1.08600"),
    venue_ticket("a-1", "AAPL", side="sell", time_in_force="gtc", quantity="500"),
    venue_ticket("e-4", time_in_force="fok", quantity="200"),
    venue_ticket("e-5", type="limit", quantity="300", limit_price="1.08500"),
    venue_ticket("e-6", side="sell", type="stop", time_in_force="gtc", stop_price="1.08495"),
    venue_ticket("e-7", type="stop", time_in_force="gtc", stop_price="1.09000"),
    venue_ticket("a-2", "AAPL", side="sell", quantity="10"),
    venue_ticket(
        "a-3",
        "AAPL",
        type="stop_limit",
        time_in_force="gtc",
        quantity="50",
        stop_price="190.00",
        limit_price="190.05",
    ),
]


def summary(report: ExecutionReport) -> tuple:
    """What a report says, without what differs between two runs (primary keys, times)."""
    return (
        report.client_order_id,
        report.kind,
        report.quantity,
        report.price,
        report.liquidity,
        report.reason,
    )


def outcome(reports: list[ExecutionReport]) -> tuple:
    """The answer, each order's state at the venue and what is left of each quote."""
    orders = {order.client_order_id: order for order in SimOrder.objects.all()}
    for report in reports:
        order = orders[report.client_order_id]
        assert report.venue_order_id == f"SIM-{order.pk}"
        expected_execution_id = f"SIM-{order.pk}-1" if report.kind == ReportKind.FILL else ""
        assert report.execution_id == expected_execution_id
        assert report.cursor > 0
    return (
        [summary(report) for report in reports],
        {
            client_order_id: (order.status, order.filled_quantity, order.triggered)
            for client_order_id, order in orders.items()
        },
        {
            row.symbol: (row.bid_available, row.ask_available)
            for row in SimQuote.objects.order_by("symbol")
        },
    )


def one_by_one(venue: SimulatedVenue, tickets: list[OrderTicket]) -> list[ExecutionReport]:
    return [report for each in tickets for report in venue.submit(each)]


def clear_venue() -> None:
    SimPosition.objects.all().delete()
    SimReport.objects.all().delete()
    SimOrder.objects.all().delete()
    SimQuote.objects.all().delete()


# --- what a batch answers ---------------------------------------------------------------------


def test_a_batch_answers_each_ticket_as_its_own_submit_would(venue):
    # given a thin market in two symbols
    market(venue)
    # when every kind of arrival is sent in one batch
    answered = list(venue.submit_many(SCENARIO))
    batch = outcome(answered)
    # then each order was matched in ticket order, orders of a symbol sharing its size
    ACK, FILL, CANCELLED = ReportKind.ACK, ReportKind.FILL, ReportKind.CANCELLED
    assert batch[0] == [
        ("e-1", ACK, None, None, "", ""),
        ("e-1", FILL, D("400"), D("1.08500"), "taker", ""),
        ("e-2", ACK, None, None, "", ""),
        ("e-3", ACK, None, None, "", ""),
        ("e-3", FILL, D("500"), D("1.08500"), "taker", ""),
        ("a-1", ACK, None, None, "", ""),
        ("a-1", FILL, D("300"), D("189.99"), "taker", ""),
        ("e-4", ACK, None, None, "", ""),
        ("e-4", CANCELLED, None, None, "", "fok_not_fillable"),
        ("e-5", ACK, None, None, "", ""),
        ("e-5", FILL, D("100"), D("1.08500"), "taker", ""),
        ("e-5", CANCELLED, None, None, "", "ioc_remainder"),
        ("e-6", ACK, None, None, "", ""),
        ("e-6", FILL, D("100"), D("1.08490"), "taker", ""),
        ("e-7", ACK, None, None, "", ""),
        ("a-2", ACK, None, None, "", ""),
        ("a-2", CANCELLED, None, None, "", "ioc_remainder"),
        ("a-3", ACK, None, None, "", ""),
        ("a-3", FILL, D("50"), D("190.00"), "taker", ""),
    ]
    assert batch[1] == {
        "e-1": ("filled", D("400"), False),
        "e-2": ("working", D("0"), False),
        "e-3": ("filled", D("500"), False),
        "a-1": ("working", D("300"), False),
        "e-4": ("cancelled", D("0"), False),
        "e-5": ("cancelled", D("100"), False),
        "e-6": ("filled", D("100"), True),
        "e-7": ("working", D("0"), False),
        "a-2": ("cancelled", D("0"), False),
        "a-3": ("filled", D("50"), True),
    }
    assert batch[2] == {"AAPL": (D("0"), D("250")), "EUR_USD": (D("900"), D("0"))}
    # and the report stream holds the same reports, in the order answered
    assert venue.reports_since(0) == answered

    # when the same tickets go one by one to an identical venue
    clear_venue()
    market(venue)
    sequential = outcome(one_by_one(venue, SCENARIO))
    # then the answers, the orders and the quotes are the same
    assert sequential == batch


ORDER_TERMS = st.one_of(
    st.fixed_dictionaries({"type": st.just("market")}),
    st.fixed_dictionaries(
        {"type": st.just("limit"), "limit_price": st.sampled_from(["-2", "-1", "0", "1", "2"])}
    ),
    st.fixed_dictionaries(
        {"type": st.just("stop"), "stop_price": st.sampled_from(["-1", "0", "1"])}
    ),
)
TICKET_TERMS = st.tuples(
    st.sampled_from(["EUR_USD", "AAPL"]),
    st.sampled_from(["buy", "sell"]),
    st.sampled_from(["ioc", "fok", "gtc"]),
    st.integers(min_value=1, max_value=400),
    ORDER_TERMS,
)
TICK = {"EUR_USD": D("0.00001"), "AAPL": D("0.01")}


def generated_ticket(number: int, terms: tuple) -> OrderTicket:
    """A ticket whose prices are given in ticks from the touch it would take."""
    symbol, side, time_in_force, quantity, order = terms
    touch = {
        "EUR_USD": {"buy": "1.08500", "sell": "1.08490"},
        "AAPL": {"buy": "190.00", "sell": "189.99"},
    }
    prices = {
        name: D(touch[symbol][side]) + D(order[name]) * TICK[symbol]
        for name in ("limit_price", "stop_price")
        if name in order
    }
    return venue_ticket(
        f"t-{number}",
        symbol,
        side=side,
        type=order["type"],
        time_in_force=time_in_force,
        quantity=quantity,
        **prices,
    )


@hypothesis.settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(terms=st.lists(TICKET_TERMS, min_size=1, max_size=8))
def test_for_any_tickets_a_batch_is_the_same_as_one_submit_each(venue, terms):
    tickets = [generated_ticket(number, each) for number, each in enumerate(terms)]
    # given a thin market, when the tickets go in one batch
    clear_venue()
    market(venue)
    batch = outcome(list(venue.submit_many(tickets)))
    # and, on an identical venue, one by one
    clear_venue()
    market(venue)
    sequential = outcome(one_by_one(venue, tickets))
    # then the answers, the orders and the quotes are the same
    assert batch == sequential


def test_a_known_or_repeated_client_order_id_answers_the_first_order(venue):
    # given an order already at the venue
    market(venue, eur_usd_size="1000000")
    first = list(venue.submit(venue_ticket("known", quantity="1000")))
    # when a batch carries it again (other terms), and a new order twice
    answered = venue.submit_many(
        [
            venue_ticket("known", quantity="5000"),
            venue_ticket("new", type="limit", time_in_force="gtc", limit_price="1.08000"),
            venue_ticket("new", quantity="7000"),
        ]
    )
    # then each client order id is one order, answered with its first reports
    assert SimOrder.objects.count() == 2
    new = SimOrder.objects.get(client_order_id="new")
    assert (new.type, new.quantity, new.status) == ("limit", D("100"), "working")
    reports_of_new = [report for report in answered if report.client_order_id == "new"]
    assert [report.kind for report in reports_of_new] == [ReportKind.ACK, ReportKind.ACK]
    assert reports_of_new[0] == reports_of_new[1]
    assert list(answered) == first + reports_of_new
    assert SimOrder.objects.get(client_order_id="known").filled_quantity == D("1000")


def test_an_unknown_symbol_rejects_its_ticket_only(venue):
    # given a market
    market(venue)
    # when a batch carries a symbol the venue does not trade between two good tickets
    answered = venue.submit_many(
        [
            venue_ticket("good-1"),
            venue_ticket("bad", symbol="NOPE_USD"),
            venue_ticket("good-2", "AAPL"),
        ]
    )
    # then that ticket alone is rejected, with no order at the venue, and the others placed
    [rejected] = [report for report in answered if report.client_order_id == "bad"]
    assert (rejected.venue, rejected.kind, rejected.venue_order_id, rejected.reason) == (
        "sim",
        ReportKind.REJECTED,
        "",
        "unknown symbol NOPE_USD",
    )
    assert rejected.at.utcoffset().total_seconds() == 0
    assert [report.client_order_id for report in answered] == [
        "good-1",
        "good-1",
        "bad",
        "good-2",
        "good-2",
    ]
    assert set(SimOrder.objects.values_list("client_order_id", flat=True)) == {"good-1", "good-2"}
    assert not SimQuote.objects.filter(symbol="NOPE_USD").exists()


def test_terms_the_venue_cannot_read_reject_their_ticket_only(venue):
    # given a market
    market(venue)
    # when a batch carries a limit order without its price between two good tickets
    answered = venue.submit_many(
        [venue_ticket("good-1"), venue_ticket("bad", type="limit"), venue_ticket("good-2", "AAPL")]
    )
    # then that ticket alone is rejected, with no order at the venue, and the others placed
    assert [(report.client_order_id, report.kind) for report in answered] == [
        ("good-1", ReportKind.ACK),
        ("good-1", ReportKind.FILL),
        ("bad", ReportKind.REJECTED),
        ("good-2", ReportKind.ACK),
        ("good-2", ReportKind.FILL),
    ]
    assert answered[2].reason == "a limit order needs a limit_price"
    assert set(SimOrder.objects.values_list("client_order_id", flat=True)) == {"good-1", "good-2"}


def test_an_empty_batch_answers_nothing(venue):
    assert venue.submit_many([]) == []


# --- faults ---------------------------------------------------------------------------------


def test_a_dropped_connection_fails_the_batch_and_writes_nothing(venue, settings):
    # given a market and a venue whose every connection drops
    market(venue)
    quotes_before = list(SimQuote.objects.order_by("symbol").values())
    down = faulty(settings, DISCONNECT_RATE=1)
    # when a batch is sent
    with pytest.raises(VenueTransientError):
        down.submit_many(SCENARIO)
    # then nothing was written
    assert not SimOrder.objects.exists()
    assert not SimReport.objects.exists()
    assert list(SimQuote.objects.order_by("symbol").values()) == quotes_before


def test_a_lost_answer_fails_the_batch_but_the_orders_are_placed(venue, settings):
    # given a venue that accepts every batch and then loses the answer
    market(venue)
    lossy = faulty(settings, TIMEOUT_RATE=1)
    # when a batch is sent
    with pytest.raises(VenueTransientError):
        lossy.submit_many([venue_ticket("t-1"), venue_ticket("t-2", "AAPL", quantity="50")])
    # then asking for each order finds it placed and filled
    for client_order_id, quantity in (("t-1", D("100")), ("t-2", D("50"))):
        state = venue.order_status(client_order_id=client_order_id)
        assert (state.status, state.filled_quantity) == ("filled", quantity)
        assert [report.kind for report in state.reports] == [ReportKind.ACK, ReportKind.FILL]


def test_a_venue_rejecting_everything_rejects_every_ticket(venue, settings):
    # given a venue that rejects every order
    market(venue)
    quotes_before = list(SimQuote.objects.order_by("symbol").values())
    refusing = faulty(settings, REJECT_RATE=1)
    # when a batch is sent
    answered = refusing.submit_many(SCENARIO)
    # then every ticket is answered with one REJECTED report, and no size was taken
    assert [(report.client_order_id, report.kind) for report in answered] == [
        (each.client_order_id, ReportKind.REJECTED) for each in SCENARIO
    ]
    assert {report.reason for report in answered} == {"rejected by the simulated venue"}
    assert set(SimOrder.objects.values_list("status", flat=True)) == {"rejected"}
    assert list(SimQuote.objects.order_by("symbol").values()) == quotes_before


def test_a_dropped_fill_report_is_left_out_of_the_answer_but_known_to_the_venue(venue, settings):
    # given a venue that drops every fill report
    market(venue)
    silent = faulty(settings, DROP_FILL_REPORT_RATE=1)
    # when a batch of market orders fills
    answered = silent.submit_many([venue_ticket("t-1"), venue_ticket("t-2", "AAPL", quantity="50")])
    # then the answer and the report stream carry only the ACKs
    assert [(report.client_order_id, report.kind) for report in answered] == [
        ("t-1", ReportKind.ACK),
        ("t-2", ReportKind.ACK),
    ]
    assert venue.reports_since(0) == list(answered)
    # and the venue itself knows each fill
    for client_order_id in ("t-1", "t-2"):
        state = venue.order_status(client_order_id=client_order_id)
        assert state.status == "filled"
        assert [report.kind for report in state.reports] == [ReportKind.ACK, ReportKind.FILL]


def test_with_one_seed_a_batch_draws_its_rejections_and_dropped_fills_as_submit_does(
    instruments, settings
):
    # given two venues of one seed that reject about half the orders and drop about half the
    # fill reports
    rates = {"SEED": 7, "REJECT_RATE": 0.5, "DROP_FILL_REPORT_RATE": 0.5}
    tickets = [venue_ticket(f"t-{number}", quantity="10") for number in range(12)]
    # when one takes the tickets in a batch and the other one by one, on identical markets
    market(faulty(settings, **rates), eur_usd_size="1000000")
    batch = outcome(list(faulty(settings, **rates).submit_many(tickets)))
    batch_suppressed = sorted(SimReport.objects.values_list("order__client_order_id", "suppressed"))
    clear_venue()
    market(faulty(settings, **rates), eur_usd_size="1000000")
    sequential = outcome(one_by_one(faulty(settings, **rates), tickets))
    # then the same orders are rejected and the same fill reports dropped
    assert sequential == batch
    assert (
        sorted(SimReport.objects.values_list("order__client_order_id", "suppressed"))
        == batch_suppressed
    )
    statuses = [status for status, _, _ in batch[1].values()]
    assert 0 < statuses.count("rejected") < len(tickets)
    assert 0 < sum(suppressed for _, suppressed in batch_suppressed)


# --- cost -----------------------------------------------------------------------------------


def batch_of(size: int, prefix: str) -> list[OrderTicket]:
    """`size` small orders over EUR_USD and AAPL: market orders that fill, limits that rest."""
    tickets = []
    for number in range(size):
        symbol = "EUR_USD" if number % 2 == 0 else "AAPL"
        if number % 3 == 0:
            price = "1.08000" if symbol == "EUR_USD" else "180.00"
            terms = {"type": "limit", "time_in_force": "gtc", "limit_price": price}
        else:
            terms = {}
        tickets.append(venue_ticket(f"{prefix}-{number}", symbol, quantity="1", **terms))
    return tickets


def queries_of(venue: SimulatedVenue, tickets: list[OrderTicket]) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        answered = venue.submit_many(tickets)
    assert {report.client_order_id for report in answered} == {
        each.client_order_id for each in tickets
    }
    return [query["sql"] for query in captured.captured_queries]


# What each query of a batch is for, so that a change to the number can be reasoned about.
BATCH_QUERIES = {
    "savepoint + release (the batch's transaction)": 2,
    "lock the quote row, per symbol (2 symbols)": 2,
    "orders known already": 1,
    "insert the new orders": 1,
    "insert their reports": 1,
    "update the quote rows whose size was taken, and move the positions (one statement)": 1,
    # (the new orders answer with the reports just written: nothing is read back)
}
# Where a write cannot carry another as a WITH query (SQLite), the positions move alone.
POSITIONS_ALONE = 1


def test_a_batch_costs_the_same_queries_for_2_or_50_orders(venue):
    # given a deep market (walk specs cached by the quotes)
    market(venue, eur_usd_size="1000000", aapl_size="100000")
    # when batches of 1, 2 and 50 orders are sent
    one = queries_of(venue, batch_of(1, "one"))
    two = queries_of(venue, batch_of(2, "two"))
    fifty = queries_of(venue, batch_of(50, "fifty"))
    # then 50 orders cost what 2 cost, and 1 (one symbol, a limit: nothing to update) less
    expected = sum(BATCH_QUERIES.values())
    if connection.vendor != "postgresql":
        expected += POSITIONS_ALONE
    assert len(two) == expected, "\n".join(two)
    assert len(fifty) == len(two), "\n".join(fifty)
    assert len(one) <= len(two), "\n".join(one)


# --- concurrent deliveries (PostgreSQL: the row locks are what is under test) ------------------


def race(*calls) -> list:
    """Run each call in its own thread with its own connection, released together; answers
    what each returned, in order. Fails on anything a call raised."""
    start = threading.Barrier(len(calls))
    answers: list = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index, call):
        try:
            start.wait(timeout=30)
            answers[index] = call()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=(index, call), daemon=True)
        for index, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert errors == []
    return answers


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_deliveries_of_one_order_at_once_make_one_order(instruments, settings):
    # given a market, and one ticket delivered twice at the same moment (a retry racing)
    market(SimulatedVenue(name="sim", config=settings.SIM_VENUE))
    delivered = venue_ticket("raced", quantity="400")
    first, second = (SimulatedVenue(name="sim", config=settings.SIM_VENUE) for _ in range(2))
    # when both submit at once
    answers = race(lambda: first.submit(delivered), lambda: second.submit(delivered))
    # then the venue holds one order, and both answers are its reports
    order = SimOrder.objects.get()
    assert (order.status, order.filled_quantity) == ("filled", D("400"))
    assert answers[0] == answers[1]
    assert [(report.kind, report.venue_order_id) for report in answers[0]] == [
        (ReportKind.ACK, order.venue_order_id),
        (ReportKind.FILL, order.venue_order_id),
    ]
    assert answers[0][1].execution_id == f"{order.venue_order_id}-1"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_deliveries_of_one_batch_at_once_make_each_order_once(instruments, settings):
    # given a market, and one batch over two symbols delivered twice at the same moment,
    # the second with its tickets in the other order
    market(SimulatedVenue(name="sim", config=settings.SIM_VENUE))
    tickets = [
        venue_ticket("b-1", quantity="400"),
        venue_ticket("b-2", "AAPL", side="sell", quantity="50"),
    ]
    first, second = (SimulatedVenue(name="sim", config=settings.SIM_VENUE) for _ in range(2))
    # when both submit at once
    answers = race(
        lambda: list(first.submit_many(tickets)),
        lambda: list(second.submit_many(tickets[::-1])),
    )
    # then each order is placed once, and both answers carry its reports
    assert SimOrder.objects.count() == 2
    assert answers[0] == answers[1][2:] + answers[1][:2]
    assert [report.kind for report in answers[0]] == [ReportKind.ACK, ReportKind.FILL] * 2
