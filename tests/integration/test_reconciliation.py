"""Reconciliation with the venue (issue 4): a fill the venue never reported is found and
healed through the normal path, an order the venue forgot is parked, a position difference
that no fill explains is flagged and left alone; the API shows runs and the breaks a reader
may see; a starting worker reconciles at once.

The drift comes from the simulated venue itself: a worker started with
SIM_DROP_FILL_REPORT_RATE=1 places orders whose fill reports the venue never sends."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from brokers.base import ReportKind
from brokers.models import SimOrder, SimReport
from brokers.sim.venue import SimulatedVenue
from orders import reconcile, services, tasks
from orders.lock_objects import order_for_update
from orders.models import (
    Account,
    Fill,
    Order,
    OrderEvent,
    Position,
    ReconciliationBreak,
    ReconciliationRun,
)
from orders.reconcile import venue_reconcile
from orders.validation import OrderTerms
from tests.conftest import client_for, make_trader
from tests.helpers import (
    assert_replays,
    buy_limit_terms,
    eur_usd_market,
    order_when,
    submit,
    venue_ticket,
)
from tests.workers import Worker, wait_for

D = Decimal


@pytest.fixture(scope="module")
def drop_worker(django_db_setup, django_db_blocker):
    """A real worker whose simulated venue drops every fill report. It reconciles when it
    starts; the fixture waits for that pass so it cannot race the tests."""
    with django_db_blocker.unblock():
        worker = Worker(extra_env={"SIM_DROP_FILL_REPORT_RATE": "1"})
        worker.startup_run = wait_for(
            lambda: (
                ReconciliationRun.objects.filter(trigger="startup")
                .exclude(status="running")
                .first()
            ),
            message="the start-up reconciliation",
        )
    yield worker
    worker.stop()


@pytest.fixture
def market(instruments):
    """EUR_USD quoted 1.08490 / 1.08500, 100,000 on each side."""
    return eur_usd_market()


def reconcile_now() -> ReconciliationRun:
    return venue_reconcile(venue_name="sim", trigger="manual", settle_seconds=0)


def account_position(code: str = "ACC-1", symbol: str = "EUR_USD") -> Position:
    return Position.objects.get(account__code=code, instrument__symbol=symbol, strategy_id="")


def order_acknowledged_without_its_fill(api) -> tuple[Order, SimOrder]:
    """A market buy the venue filled and never told us about."""
    order = order_when(submit(api)["id"], "acknowledged")
    at_venue = SimOrder.objects.get(client_order_id=str(order.id))
    assert at_venue.status == "filled"
    assert not order.fills.exists()
    return order, at_venue


# --- the venue's drift --------------------------------------------------------------------


@pytest.mark.django_db
def test_a_dropped_fill_report_is_known_to_the_venue_only(instruments, settings):
    # given a venue that drops every fill report
    venue = SimulatedVenue(config={**settings.SIM_VENUE, "DROP_FILL_REPORT_RATE": 1})
    size = D("1000000")
    venue.set_quote("EUR_USD", bid=D("1.08490"), ask=D("1.08500"), bid_size=size, ask_size=size)
    ticket = venue_ticket("c-1", time_in_force="gtc", quantity="1000")
    # when an order fills
    answered = venue.submit(ticket)
    # then the answer and the report stream only carry the ACK
    assert [report.kind for report in answered] == [ReportKind.ACK]
    assert [report.kind for report in venue.reports_since(0)] == [ReportKind.ACK]
    # and the venue itself knows the fill, in the order's status and in its positions
    state = venue.order_status(client_order_id="c-1")
    assert (state.status, state.filled_quantity) == ("filled", D("1000"))
    assert [report.kind for report in state.reports] == [ReportKind.ACK, ReportKind.FILL]
    assert SimReport.objects.get(kind="fill").suppressed is True
    assert venue.positions_for_account("ACC-1") == {"EUR_USD": D("1000")}
    assert venue.positions(account="ACC-1") == {"EUR_USD": D("1000")}
    assert venue.positions(account="ACC-2") == {}
    assert venue.positions() == {"EUR_USD": D("1000")}


# --- healing a missed fill ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_missed_fill_is_found_and_healed_through_the_normal_path(api, market, drop_worker):
    # given a market order the venue filled without telling us, which polling cannot see
    order, at_venue = order_acknowledged_without_its_fill(api)
    services.venue_poll(venue_name="sim")
    order.refresh_from_db()
    assert order.status == "acknowledged"
    # when
    run = reconcile_now()
    # then the fill is booked once, through the same path as any fill
    order.refresh_from_db()
    execution_id = f"{at_venue.venue_order_id}-1"
    assert (order.status, order.filled_quantity, order.remaining_quantity) == (
        "filled",
        D("100000"),
        D("0"),
    )
    fill = order.fills.get()
    assert (fill.quantity, fill.price, fill.venue_execution_id) == (
        D("100000"),
        D("1.08500"),
        execution_id,
    )
    position = account_position()
    assert (position.quantity, position.average_price) == (D("100000"), D("1.08500"))
    # notional 108,500 USD and 0.2 bps commission (2.17 USD) leave the cash
    assert Account.objects.get(code="ACC-1").cash == D("-108502.17")
    fill_event = order.events.get(type="fill")
    assert (fill_event.actor, fill_event.correlation_id) == ("venue:sim", f"reconcile:{run.pk}")
    assert [e.type for e in order.events.order_by("seq")][-2:] == ["acknowledged", "fill"]
    assert_replays(order)
    # and the run says what it found and that it healed it
    found = run.breaks.get()
    assert (found.kind, found.severity, found.healed) == ("missed_fill", "warning", True)
    assert (found.account, found.symbol, found.order_id) == ("ACC-1", "EUR_USD", order.id)
    assert (found.expected, found.actual) == ("filled 0", "filled 100000 at the venue")
    assert found.detail["execution_ids"] == [execution_id]
    assert found.detail["fill_ids"] == [str(fill.id)]
    assert found.detail["status_after"] == "filled"
    assert run.status == "breaks"
    assert run.finished_at is not None
    assert run.summary == {
        "orders_matched": 0,
        "orders_checked": 1,
        "orders_in_motion": 0,
        "orders_unchecked": 0,
        "orders_rechecked": 0,
        "submits_in_flight": 0,
        "awaiting_review": 0,
        "accounts_checked": 1,
        "positions_compared": 1,
        "breaks": {"missed_fill": 1},
        "healed": 1,
        "unhealed": 0,
    }
    # and a second pass finds nothing new
    events = order.events.count()
    again = reconcile_now()
    assert again.status == "ok"
    assert not again.breaks.exists()
    assert again.summary["breaks"] == {}
    assert order.fills.count() == 1
    assert order.events.count() == events


# --- the venue's list of working orders -----------------------------------------------------


def resting_buys(trader, count: int) -> list[Order]:
    """`count` GTC buy limits of 1,000 EUR_USD at 1.08000, below the market: sent to the
    venue, where they rest (acknowledged)."""
    account = trader.trading_accounts.get()
    requests = [
        services.SubmitRequest(account, buy_limit_terms(D("1.08000"), f"rest-{n}"))
        for n in range(count)
    ]
    answers = services.orders_submit_many(
        requests=requests, user=trader, actor="user:alice", admitted=True
    )
    ids = [str(answer.order.pk) for answer in answers]
    services.orders_submit_to_venue_many(order_ids=ids)
    orders = list(Order.objects.filter(pk__in=ids))
    assert {order.status for order in orders} == {"acknowledged"}
    return orders


class AskedAbout:
    """The simulated venue, counting the orders reconciliation asks about one by one."""

    def __init__(self, venue: SimulatedVenue) -> None:
        self.venue = venue
        self.asked: list[str] = []
        self.listings = 0

    def working_orders(self):
        self.listings += 1
        return self.venue.working_orders()

    def __getattr__(self, name: str):
        return getattr(self.venue, name)

    def order_status(self, **ids):
        self.asked.append(ids.get("client_order_id", ""))
        return self.venue.order_status(**ids)


@pytest.fixture
def asked(settings, monkeypatch) -> AskedAbout:
    """The venue reconciliation talks to, counting the orders it asks about one by one."""
    settings.RISK_ORDERS_PER_MINUTE = 1000  # for resting_buys
    venue = AskedAbout(SimulatedVenue(config=settings.SIM_VENUE))
    monkeypatch.setattr(reconcile, "venue_for", lambda name: venue)
    return venue


@pytest.mark.django_db
def test_orders_the_venue_lists_as_we_have_them_are_not_asked_about_one_by_one(
    trader, market, asked
):
    # given 30 orders resting at the venue as we have them
    resting_buys(trader, 30)
    # when
    run = reconcile_now()
    # then one list of the venue's working orders, asked once for the pass, answers for all
    assert (asked.asked, asked.listings) == ([], 1)
    assert (run.status, run.summary["orders_matched"], run.summary["orders_checked"]) == (
        "ok",
        30,
        0,
    )


@pytest.mark.django_db
def test_a_resting_order_partly_filled_without_a_report_is_asked_about_and_healed(
    trader, market, settings, asked
):
    # given resting orders, and a venue that fills one in part and drops the fill's report
    orders = resting_buys(trader, 3)
    dropping = SimulatedVenue(config={**settings.SIM_VENUE, "DROP_FILL_REPORT_RATE": 1})
    size = D("1000000")
    dropping.set_quote(
        "EUR_USD", bid=D("1.07990"), ask=D("1.08000"), bid_size=size, ask_size=D("400")
    )
    partly = SimOrder.objects.get(status="working", filled_quantity=D("400"))
    assert SimOrder.objects.filter(status="working", filled_quantity=0).count() == 2
    services.venue_poll(venue_name="sim")
    assert {order.status for order in Order.objects.filter(pk__in=[o.pk for o in orders])} == {
        "acknowledged"
    }
    # when
    run = reconcile_now()
    # then only that order is asked about, and its fill is booked once
    assert asked.asked == [partly.client_order_id]
    assert (run.summary["orders_matched"], run.summary["orders_checked"]) == (2, 1)
    found = run.breaks.get()
    assert (found.kind, found.healed, found.expected, found.actual) == (
        "missed_fill",
        True,
        "filled 0",
        "filled 400 at the venue",
    )
    order = Order.objects.get(pk=partly.client_order_id)
    assert (order.status, order.filled_quantity) == ("partially_filled", D("400"))
    assert_replays(order)
    # and the next pass finds the three as the venue lists them
    again = reconcile_now()
    assert (again.status, again.summary["orders_matched"], len(asked.asked)) == ("ok", 3, 1)


@pytest.mark.django_db
def test_a_venue_that_cannot_list_its_orders_is_asked_about_each(trader, market, asked):
    resting_buys(trader, 4)

    def cannot_list():
        raise NotImplementedError

    asked.working_orders = cannot_list
    run = reconcile_now()
    assert len(asked.asked) == 4
    assert (run.status, run.summary["orders_matched"], run.summary["orders_checked"]) == (
        "ok",
        0,
        4,
    )


# --- lost orders ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_an_order_the_venue_does_not_know_is_lost_and_parked(api, market, drop_worker):
    # given a resting order we think is acknowledged, which the venue has forgotten
    order = order_when(submit(api, type="limit", limit_price="1.08000")["id"], "acknowledged")
    SimOrder.objects.filter(client_order_id=str(order.id)).delete()
    # when
    run = reconcile_now()
    # then the order is parked for a person, with nothing else changed
    order.refresh_from_db()
    assert (order.status, order.needs_review, order.filled_quantity) == (
        "acknowledged",
        True,
        D("0"),
    )
    parked = order.events.order_by("-seq").first()
    assert parked.type == "parked"
    assert parked.data["reason"] == (
        f"reconciliation run {run.pk}: venue sim does not know venue order {order.venue_order_id}"
    )
    assert_replays(order)
    lost = run.breaks.get()
    assert (lost.kind, lost.severity, lost.healed, lost.order_id) == (
        "lost_order",
        "critical",
        False,
        order.id,
    )
    assert (lost.expected, lost.actual) == (
        f"acknowledged at the venue as {order.venue_order_id}",
        "the venue does not know the order",
    )
    assert lost.detail["action"] == "parked for review"
    assert run.status == "breaks"
    assert run.summary["breaks"] == {"lost_order": 1}
    # and the next pass leaves the parked order to that person
    again = reconcile_now()
    assert (again.status, again.summary["awaiting_review"]) == ("ok", 1)
    assert order.events.count() == parked.seq


@pytest.mark.django_db
def test_an_order_with_no_venue_id_is_recorded_lost_and_left_to_the_submit_path(
    trader, instruments
):
    # given an order stuck in pending_submit longer than a submission can take, never placed
    order = _order_in(trader, "pending_submit", age_seconds=services.SUBMIT_IN_FLIGHT_SECONDS + 5)
    events = order.events.count()
    # when
    run = reconcile_now()
    # then it is recorded as lost and nothing about it moves
    lost = run.breaks.get()
    assert (lost.kind, lost.severity, lost.order_id) == ("lost_order", "critical", order.id)
    assert lost.detail["action"] == "none: the submit path and the sweeper own it"
    order.refresh_from_db()
    assert (order.status, order.needs_review, order.events.count()) == (
        "pending_submit",
        False,
        events,
    )


@pytest.mark.django_db
def test_an_order_whose_submission_may_be_in_flight_is_not_declared_lost(trader, instruments):
    # given an order in pending_submit for ten seconds, not (yet) at the venue
    _order_in(trader, "pending_submit", age_seconds=10)
    # when
    run = reconcile_now()
    # then
    assert run.status == "ok"
    assert run.summary["submits_in_flight"] == 1


# --- positions ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_position_difference_is_flagged_and_never_overwritten(api, market, drop_worker):
    # given books that agree with the venue, then a position changed behind their back
    order, _ = order_acknowledged_without_its_fill(api)
    assert reconcile_now().summary["healed"] == 1
    Position.objects.filter(pk=account_position().pk).update(quantity=D("90000"))
    counts = (Fill.objects.count(), OrderEvent.objects.count())
    # when
    run = reconcile_now()
    # then the difference is flagged, after a second look at the account's orders
    mismatch = run.breaks.get()
    assert (mismatch.kind, mismatch.severity, mismatch.healed) == (
        "position_mismatch",
        "critical",
        False,
    )
    assert (mismatch.account, mismatch.symbol, mismatch.order_id) == ("ACC-1", "EUR_USD", None)
    assert (mismatch.expected, mismatch.actual) == ("90000", "100000")
    assert mismatch.detail == {
        "ours": "90000",
        "other_venues": "0",
        "venue": "100000",
        "difference": "10000",
        "action": "flagged; our position is not changed",
    }
    assert run.summary["orders_rechecked"] == 1
    # and nothing of ours was written over
    assert account_position().quantity == D("90000")
    assert (Fill.objects.count(), OrderEvent.objects.count()) == counts


@pytest.mark.django_db
def test_a_working_order_at_the_venue_that_is_not_ours_is_named(trader, market, asked):
    # given our resting orders, and one at the venue that is not ours
    ours = resting_buys(trader, 2)
    asked.venue.submit(venue_ticket("not-ours-1", type="limit", time_in_force="gtc",
                                    quantity="1000", limit_price=D("1.08000")))  # fmt: skip
    # when
    run = reconcile_now()
    # then the stranger is named, and ours agree
    stranger = run.breaks.get()
    assert (stranger.kind, stranger.severity, stranger.account) == (
        "unknown_venue_order",
        "warning",
        "",
    )
    assert stranger.detail == {
        "ours": 2,
        "venue": 3,
        "client_order_ids": ["not-ours-1"],
        "closed_here": [],
    }
    assert run.summary["orders_matched"] == len(ours)


@pytest.mark.django_db
def test_a_venue_that_cannot_list_its_orders_is_compared_by_count(trader, market, asked):
    resting_buys(trader, 2)
    asked.venue.submit(venue_ticket("not-ours-1", type="limit", time_in_force="gtc",
                                    quantity="1000", limit_price=D("1.08000")))  # fmt: skip

    def cannot_list():
        raise NotImplementedError

    asked.working_orders = cannot_list
    stranger = reconcile_now().breaks.get()
    assert (stranger.kind, stranger.detail) == ("unknown_venue_order", {"ours": 2, "venue": 3})


def filled_at_the_sim(trader) -> Order:
    """A market buy of 100,000 EUR_USD on ACC-1, filled at the simulated venue and booked."""
    terms = OrderTerms(symbol="EUR_USD", side="buy", type="market", time_in_force="ioc",
                       quantity=D("100000"))  # fmt: skip
    order = services.order_submit(
        account=trader.trading_accounts.get(), terms=terms, user=trader, actor="user:alice"
    ).order
    services.orders_submit_to_venue_many(order_ids=[str(order.pk)])
    order.refresh_from_db()
    assert order.status == "filled"
    return order


@pytest.mark.django_db
def test_with_fills_at_one_venue_only_no_account_sums_its_fills(trader, market):
    filled_at_the_sim(trader)
    with CaptureQueriesContext(connection) as queries:
        run = reconcile_now()
    assert (run.status, run.summary["positions_compared"]) == ("ok", 1)
    assert not [q["sql"] for q in queries if 'SUM("orders_fill"."quantity")' in q["sql"]]


@pytest.mark.django_db
def test_a_position_part_booked_at_another_venue_is_no_difference(trader, market):
    # given a position of 100,000 from the simulated venue and 5,000 booked at another venue
    order = filled_at_the_sim(trader)
    sim_fill = order.fills.get()
    Fill.objects.create(
        order=order, account=sim_fill.account, instrument=sim_fill.instrument, side="buy",
        quantity=D("5000"), price=sim_fill.price, liquidity=sim_fill.liquidity, venue="other",
        venue_execution_id="other-1", executed_at=timezone.now(),
    )  # fmt: skip
    Position.objects.filter(pk=account_position().pk).update(quantity=D("105000"))
    # when
    run = reconcile_now()
    # then the simulated venue's 100,000 is what we expect of it
    assert (run.status, run.summary["breaks"]) == ("ok", {})
    # and a difference there still names the other venue's part
    Position.objects.filter(pk=account_position().pk).update(quantity=D("104000"))
    mismatch = reconcile_now().breaks.get()
    assert (mismatch.expected, mismatch.actual, mismatch.detail["other_venues"]) == (
        "99000",
        "100000",
        "5000",
    )


# --- the run itself -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_venue_error_fails_the_run_and_changes_nothing(
    trader, instruments, settings, monkeypatch
):
    # given a venue that drops every connection, and an order to look at
    order = _order_in(trader, "acknowledged", age_seconds=60, venue_order_id="SIM-1")
    down = SimulatedVenue(config={**settings.SIM_VENUE, "DISCONNECT_RATE": 1})
    monkeypatch.setattr(reconcile, "venue_for", lambda name: down)
    events = order.events.count()
    # when
    run = reconcile_now()
    # then
    assert run.status == "failed"
    assert run.summary["error"] == "VenueTransientError: sim venue: connection dropped"
    assert run.finished_at is not None
    assert not run.breaks.exists()
    order.refresh_from_db()
    assert (order.status, order.needs_review, order.events.count()) == (
        "acknowledged",
        False,
        events,
    )


@pytest.mark.django_db
def test_one_run_per_venue_at_a_time(instruments):
    # given a run under way
    running = ReconciliationRun.objects.create(venue="sim", trigger="beat")
    # when another starts
    answer = reconcile_now()
    # then it answers the running one and does nothing
    assert answer.pk == running.pk
    assert answer.status == "running"
    assert ReconciliationRun.objects.count() == 1


@pytest.mark.django_db
def test_a_run_whose_worker_died_is_closed_by_the_next(instruments):
    # given a run left running long ago (its worker was killed)
    stale = ReconciliationRun.objects.create(
        venue="sim", trigger="beat", started_at=timezone.now() - timedelta(minutes=10)
    )
    # when
    run = reconcile_now()
    # then
    stale.refresh_from_db()
    assert stale.status == "failed"
    assert stale.summary == {"error": "abandoned: the run never finished (its worker stopped)"}
    assert run.status == "ok"


def _order_in(trader, status: str, *, age_seconds: float, venue_order_id: str = "") -> Order:
    """An order of the trader's account in `status`, last changed `age_seconds` ago. Built
    through the order writer itself, so its events replay to it; never sent anywhere."""
    terms = buy_limit_terms(D("1.08000"))
    order = services.order_submit(
        account=trader.trading_accounts.get(), terms=terms, user=trader, actor="user:alice"
    ).order
    with transaction.atomic():
        locked = order_for_update(order.id)
        services._order_change(
            locked, event_type="pending_submit", actor="worker", status="pending_submit"
        )
        if status != "pending_submit":
            services._order_change(
                locked,
                event_type=status,
                actor="venue:sim",
                status=status,
                venue_order_id=venue_order_id,
            )
    Order.objects.filter(pk=order.pk).update(
        updated_at=timezone.now() - timedelta(seconds=age_seconds)
    )
    return Order.objects.get(pk=order.pk)


# --- the API --------------------------------------------------------------------------------


@pytest.fixture
def breaks_of_two_accounts():
    run = ReconciliationRun.objects.create(
        venue="sim", trigger="beat", status="breaks", finished_at=timezone.now(), summary={}
    )
    mine = ReconciliationBreak.objects.create(
        run=run,
        kind="position_mismatch",
        severity="critical",
        account="ACC-1",
        symbol="EUR_USD",
        expected="90000",
        actual="100000",
        detail={"difference": "10000"},
    )
    theirs = ReconciliationBreak.objects.create(
        run=run, kind="missed_fill", severity="warning", account="ACC-2", healed=True
    )
    venue_wide = ReconciliationBreak.objects.create(
        run=run, kind="unknown_venue_order", severity="warning"
    )
    return run, mine, theirs, venue_wide


@pytest.mark.django_db
def test_a_trader_sees_runs_with_only_the_breaks_of_their_accounts(
    trader, other_trader, breaks_of_two_accounts
):
    # given
    run, mine, _, _ = breaks_of_two_accounts
    ReconciliationRun.objects.create(venue="sim", trigger="startup", status="ok")
    # when
    response = client_for(trader).get("/api/v1/reconciliation/")
    # then newest first, each with only the trader's breaks
    assert response.status_code == 200
    results = response.json()["results"]
    assert [(r["trigger"], r["status"]) for r in results] == [("startup", "ok"), ("beat", "breaks")]
    assert results[0]["breaks"] == []
    assert results[1]["breaks"] == [
        {
            "id": mine.id,
            "kind": "position_mismatch",
            "severity": "critical",
            "account": "ACC-1",
            "symbol": "EUR_USD",
            "order_id": None,
            "expected": "90000",
            "actual": "100000",
            "healed": False,
            "detail": {"difference": "10000"},
            "created_at": mine.created_at.isoformat().replace("+00:00", "Z"),
        }
    ]
    assert results[1]["id"] == run.pk


@pytest.mark.django_db
@pytest.mark.parametrize("group", ["compliance", "risk"])
def test_compliance_and_risk_read_every_break(group, breaks_of_two_accounts):
    # given
    officer = make_trader(f"officer-{group}")
    officer.groups.add(Group.objects.get_or_create(name=group)[0])
    run, mine, theirs, venue_wide = breaks_of_two_accounts
    # when
    response = client_for(officer).get("/api/v1/reconciliation/")
    # then
    assert response.status_code == 200
    [body] = response.json()["results"]
    assert [b["id"] for b in body["breaks"]] == [mine.id, theirs.id, venue_wide.id]


@pytest.mark.django_db
def test_runs_filter_by_venue_and_status(trader, breaks_of_two_accounts):
    # given
    ReconciliationRun.objects.create(venue="sim", trigger="beat", status="ok")
    ReconciliationRun.objects.create(venue="other", trigger="beat", status="failed")
    client = client_for(trader)
    # when / then
    by_status = client.get("/api/v1/reconciliation/?status=breaks").json()["results"]
    assert [r["status"] for r in by_status] == ["breaks"]
    by_venue = client.get("/api/v1/reconciliation/?venue=other").json()["results"]
    assert [(r["venue"], r["status"]) for r in by_venue] == [("other", "failed")]
    bad = client.get("/api/v1/reconciliation/?status=nonsense")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "validation_error"


@pytest.mark.django_db
def test_reconciliation_needs_a_role_or_an_account(breaks_of_two_accounts):
    # given a user with neither
    nobody = make_trader("nobody")
    # when / then
    response = client_for(nobody).get("/api/v1/reconciliation/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


@pytest.mark.django_db
def test_reconciliation_needs_authentication(breaks_of_two_accounts):
    response = APIClient().get("/api/v1/reconciliation/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


# --- when it runs ---------------------------------------------------------------------------


def test_a_starting_worker_publishes_one_reconciliation(monkeypatch):
    # given
    published = []
    monkeypatch.setattr(
        tasks.reconcile_task, "apply_async", lambda **options: published.append(options)
    )
    # when Celery says a worker is ready
    from celery.signals import worker_ready

    worker_ready.send(sender=None)
    # then
    assert published == [{"kwargs": {"trigger": "startup"}, "queue": "housekeeping"}]


def test_start_up_reconciliation_can_be_turned_off(monkeypatch, settings):
    # given
    settings.RECONCILE_ON_WORKER_START = False
    published = []
    monkeypatch.setattr(
        tasks.reconcile_task, "apply_async", lambda **options: published.append(options)
    )
    # when
    tasks.reconcile_at_worker_start(sender=None)
    # then
    assert published == []


def test_a_broker_that_cannot_take_the_message_does_not_stop_the_worker(monkeypatch):
    # given
    from kombu.exceptions import OperationalError

    def unreachable(**options):
        raise OperationalError("redis is away")

    monkeypatch.setattr(tasks.reconcile_task, "apply_async", unreachable)
    # when / then: no exception
    tasks.reconcile_at_worker_start(sender=None)


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_real_worker_reconciled_when_it_started(drop_worker):
    # the module's worker published orders.reconcile from worker_ready and ran it
    run = drop_worker.startup_run
    assert (run.venue, run.trigger, run.status) == ("sim", "startup", "ok")


def test_beat_reconciles_every_minute():
    from orders.schedules import SCHEDULE

    [entry] = [entry for entry in SCHEDULE if entry.task == "orders.reconcile"]
    assert (entry.name, entry.every, entry.expire_seconds, entry.queue) == (
        "fillmore: reconcile venues",
        timedelta(seconds=60),
        50,
        "housekeeping",
    )


# --- the admin ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_runs_and_breaks_are_read_only_in_the_admin(admin_client, breaks_of_two_accounts):
    # given
    run, mine, _, _ = breaks_of_two_accounts
    # when / then: readable, with the breaks inline
    page = admin_client.get(f"/admin/orders/reconciliationrun/{run.pk}/change/")
    assert page.status_code == 200
    assert b"position_mismatch" in page.content
    assert admin_client.get(f"/admin/orders/reconciliationbreak/{mine.pk}/change/").status_code == (
        200
    )
    # and never written
    for url in (
        "/admin/orders/reconciliationrun/add/",
        f"/admin/orders/reconciliationrun/{run.pk}/delete/",
        "/admin/orders/reconciliationbreak/add/",
        f"/admin/orders/reconciliationbreak/{mine.pk}/delete/",
    ):
        assert admin_client.get(url).status_code == 403, url
    assert ReconciliationBreak.objects.count() == 3
