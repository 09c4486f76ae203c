"""The venue poll keeps up with the venue's report stream: page after page while pages come
back full, within a time budget (orders.services.venue_poll_caught_up)."""

from decimal import Decimal

import pytest

from brokers.base import VenueTransientError
from brokers.models import SimOrder, SimReport
from brokers.registry import venue_for
from brokers.sim.config import walk_spec_for
from brokers.sim.venue import SimulatedVenue
from orders import services, tasks
from orders.models import Fill, Order, VenueCursor
from tests.helpers import resting_buy, wide_eur_usd_book

pytestmark = pytest.mark.django_db

D = Decimal


def resting_buys(count: int) -> tuple[list[Order], Decimal]:
    """`count` of our buy limits resting at the sim venue, and their limit."""
    limit = wide_eur_usd_book(venue_for("sim"))
    return [resting_buy(f"poll-{n}", limit) for n in range(count)], limit


def cross_at(limit: Decimal) -> int:
    """A quote asking `limit`: it fills our resting buys there. Answers what the quote step
    answers, the reports it wrote."""
    tick = walk_spec_for("EUR_USD").tick
    size = D("1000000")
    return venue_for("sim").set_quote(
        "EUR_USD", bid=limit - tick, ask=limit, bid_size=size, ask_size=size
    )


def resting_buys_then_filled(count: int) -> list[Order]:
    """`count` of our buy limits resting at the sim venue, then a quote that fills them all:
    the venue's stream holds their ACKs, then their fills, which only the poll delivers."""
    orders, limit = resting_buys(count)
    cross_at(limit)
    return orders


def statuses(orders: list[Order]) -> list[str]:
    return [Order.objects.get(pk=order.pk).status for order in orders]


def fills_each(orders: list[Order]) -> list[int]:
    return [Fill.objects.filter(order_id=order.pk).count() for order in orders]


def test_the_poll_reads_page_after_page_until_the_stream_is_read(trader, instruments):
    # given three resting orders filled at the venue: a stream of six reports
    orders = resting_buys_then_filled(3)
    stream_end = SimReport.objects.order_by("-id").values_list("id", flat=True).first()
    assert SimReport.objects.count() == 6
    # when the poll runs with pages of two
    read = services.venue_poll_caught_up(venue_name="sim", budget_seconds=60, page=2)
    # then it read all of them, in three full pages and an empty one, and the fills are ours
    assert read == 6
    assert VenueCursor.objects.get(venue="sim").cursor == stream_end
    assert statuses(orders) == ["filled"] * 3


def test_the_poll_stops_at_its_budget_and_the_next_run_goes_on(trader, instruments):
    # given the same stream of six reports
    orders = resting_buys_then_filled(3)
    # when a run has no time left after its first page
    read = services.venue_poll_caught_up(venue_name="sim", budget_seconds=0, page=2)
    # then it read that page only (the three ACKs' first two), and no fill yet
    assert read == 2
    assert statuses(orders) == ["acknowledged"] * 3
    # and the next run reads the rest
    assert services.venue_poll_caught_up(venue_name="sim", budget_seconds=60, page=2) == 4
    assert statuses(orders) == ["filled"] * 3


def test_the_poll_task_reads_more_than_one_page_a_run(trader, instruments, settings, monkeypatch):
    # given a stream of six reports and pages of two
    orders = resting_buys_then_filled(3)
    monkeypatch.setattr(services, "VENUE_POLL_PAGE", 2)
    settings.VENUE_POLL_BUDGET_SECONDS = 60
    # when the beat's task runs once
    read = tasks.poll_venues_task()
    # then it read the whole stream: every fill is ours
    assert read == 6
    assert statuses(orders) == ["filled"] * 3


def test_a_venue_that_fails_mid_stream_keeps_the_pages_read_before(
    trader, instruments, settings, monkeypatch
):
    # given a stream of six reports, pages of two, and a venue that times out on its second page
    orders = resting_buys_then_filled(3)
    monkeypatch.setattr(services, "VENUE_POLL_PAGE", 2)
    settings.VENUE_POLL_BUDGET_SECONDS = 60
    calls = []
    real = SimulatedVenue.reports_since

    def flaky(venue, cursor, *, limit):
        calls.append(cursor)
        if len(calls) == 2:
            raise VenueTransientError("sim venue: timed out")
        return real(venue, cursor, limit=limit)

    monkeypatch.setattr(SimulatedVenue, "reports_since", flaky)
    first_page_end = SimReport.objects.order_by("id").values_list("id", flat=True)[1]
    # when the beat's task runs: it logs the failure and ends, it does not raise
    tasks.poll_venues_task()
    # then the first page stays read: the cursor is past it, and the orders wait for their fills
    assert VenueCursor.objects.get(venue="sim").cursor == first_page_end
    assert statuses(orders) == ["acknowledged"] * 3
    # and the next run goes on from there: every fill booked once
    assert tasks.poll_venues_task() == 4
    assert statuses(orders) == ["filled"] * 3
    assert fills_each(orders) == [1, 1, 1]


def test_a_page_read_while_another_poll_moved_the_cursor_is_dropped(
    trader, instruments, monkeypatch
):
    # given the stream of six reports, and another poll that reads and applies all of it while
    # this one is fetching its page (the fetch holds no lock: for a real venue it is a network
    # call)
    orders = resting_buys_then_filled(3)
    real = SimulatedVenue.reports_since
    fetched = []

    def racing(venue, cursor, *, limit):
        fetched.append(cursor)
        if len(fetched) == 1:
            assert services.venue_poll(venue_name="sim") == 6  # the other poll
        return real(venue, cursor, limit=limit)

    monkeypatch.setattr(SimulatedVenue, "reports_since", racing)
    stream_end = SimReport.objects.order_by("-id").values_list("id", flat=True).first()
    # when this poll's page, fetched from the old position, comes back
    read = services.venue_poll(venue_name="sim")
    # then it is dropped: the cursor stays where the other poll left it, every fill booked once
    assert read == 0
    assert fetched == [0, 0]
    assert VenueCursor.objects.get(venue="sim").cursor == stream_end
    assert statuses(orders) == ["filled"] * 3
    assert fills_each(orders) == [1, 1, 1]


def test_a_quote_step_answers_the_reports_it_wrote_without_reading_the_stream(trader, instruments):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # given three of our buy limits resting at the venue
    _, limit = resting_buys(3)
    before = SimReport.objects.count()
    # when a quote crosses them
    with CaptureQueriesContext(connection) as queries:
        written = cross_at(limit)
    # then it answers the reports it wrote (the run_market_data loop nudges the poller on
    # any), counted as written: no read of the reports after the last one before the step,
    # which counted concurrent submissions' reports too, and whose generic plan read them all
    assert written == SimReport.objects.count() - before == 3
    reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert not [sql for sql in reads if '"brokers_simreport"."id" >' in sql], reads


def test_a_quote_step_counts_an_expiry_it_writes_with_its_fills(trader, instruments):
    from datetime import timedelta

    from django.utils import timezone

    # given three of our buy limits resting at the venue, the venue's copy of one past its
    # expiry time
    orders, limit = resting_buys(3)
    expiring = SimOrder.objects.filter(client_order_id=str(orders[0].pk))
    assert expiring.update(expire_at=timezone.now() - timedelta(seconds=1)) == 1
    before = SimReport.objects.count()
    # when a quote crosses all three
    written = cross_at(limit)
    # then the step expired the one and filled the two, and answers every report it wrote
    assert written == SimReport.objects.count() - before == 3
    assert expiring.get().status == "expired"
    assert sorted(
        SimOrder.objects.filter(client_order_id__in=[str(o.pk) for o in orders]).values_list(
            "status", flat=True
        )
    ) == ["expired", "filled", "filled"]
