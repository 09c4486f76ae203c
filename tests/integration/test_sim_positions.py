"""The simulated venue's positions (`SimPosition`) move with every fill, in the fill's
transaction, whatever path made it: a batch, a lone submit, a resting order matched by a quote
step, a fill whose report was dropped. They always equal the sum of the venue's fill reports,
which is what reconciliation read before, summing every report on every pass."""

import importlib
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection

from brokers.models import SimOrder, SimPosition, SimQuote, SimReport
from tests.helpers import venue_ticket
from tests.integration.test_sim_venue_batch import SCENARIO, faulty, market

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def venue(instruments, settings):
    return faulty(settings)


def summed_from_reports(account: str | None = None) -> dict[tuple[str, str], Decimal]:
    """Every fill report (reported or not), signed by its order's side, per account and
    symbol: the venue's positions as they were computed before."""
    totals: dict[tuple[str, str], Decimal] = {}
    for report in SimReport.objects.filter(kind="fill").select_related("order"):
        order = report.order
        if account is not None and order.account != account:
            continue
        key = (order.account, order.symbol)
        signed = report.quantity if order.side == "buy" else -report.quantity
        totals[key] = totals.get(key, D(0)) + signed
    return totals


def kept() -> dict[tuple[str, str], Decimal]:
    return {(p.account, p.symbol): p.quantity for p in SimPosition.objects.all()}


def test_every_way_of_filling_moves_the_positions(venue):
    market(venue)
    # a batch of every kind of arrival, for two accounts
    venue.submit_many(SCENARIO)
    venue.submit_many([venue_ticket("b-1", account="ACC-2", side="sell", quantity="50")])
    # a lone submit
    venue.submit(venue_ticket("s-1", "AAPL", quantity="20"))
    # a quote step that reaches the resting limit e-2 (buy at 1.08000) and the stop e-6
    venue.set_quote(
        "EUR_USD", bid=D("1.07990"), ask=D("1.08000"), bid_size=D(1000), ask_size=D(1000)
    )
    assert SimOrder.objects.get(client_order_id="e-2").filled_quantity > 0  # by the step
    assert summed_from_reports()
    assert kept() == summed_from_reports()
    assert venue.positions(account="ACC-1") == {
        symbol: quantity for (account, symbol), quantity in kept().items() if account == "ACC-1"
    }
    both = {}
    for (_, symbol), quantity in kept().items():
        both[symbol] = both.get(symbol, D(0)) + quantity
    assert venue.positions() == both


def test_a_fill_whose_report_was_dropped_still_moves_the_position(settings, instruments):
    venue = faulty(settings, DROP_FILL_REPORT_RATE=1)
    market(venue)
    assert [r.kind for r in venue.submit(venue_ticket("d-1", quantity="100"))] == ["ack"]
    assert venue.positions(account="ACC-1") == {"EUR_USD": D(100)}


def test_the_migration_fills_the_positions_from_the_reports(venue):
    # given fills written, and their positions lost (as before the migration)
    market(venue)
    venue.submit_many(SCENARIO)
    expected = kept()
    SimPosition.objects.all().delete()
    # when the migration's backfill runs
    backfill = importlib.import_module("brokers.migrations.0004_simposition").BACKFILL
    with connection.cursor() as cursor:
        cursor.execute(backfill)
    # then the positions are back, equal to the sum of the reports
    assert kept() == expected == summed_from_reports()


def test_a_failed_positions_write_leaves_the_venue_as_it_was(venue, monkeypatch):
    # given a batch whose positions cannot be written (the statement fails)
    market(venue)
    quotes_before = list(
        SimQuote.objects.order_by("symbol").values_list("bid_available", "ask_available")
    )
    broken = "INSERT INTO brokers_simposition (no_such_column) VALUES (%s)"
    monkeypatch.setattr(
        type(venue), "_positions_upsert", staticmethod(lambda reports: (broken, [1]))
    )
    # when it is sent, it fails as a whole
    with pytest.raises(DatabaseError):
        venue.submit_many(SCENARIO)
    # then nothing of it was written: no order, report or position, the quotes' sizes whole;
    # the same tickets sent again are placed once
    assert not SimOrder.objects.exists() and not SimReport.objects.exists()
    assert not SimPosition.objects.exists()
    assert (
        list(SimQuote.objects.order_by("symbol").values_list("bid_available", "ask_available"))
        == quotes_before
    )
    monkeypatch.undo()
    venue.submit_many(SCENARIO)
    assert SimOrder.objects.count() == len(SCENARIO)
    assert kept() == summed_from_reports()
