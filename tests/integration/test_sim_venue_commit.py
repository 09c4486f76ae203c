"""The simulated venue's own transactions commit without waiting for the WAL flush; ours do
not (brokers/sim/venue.py, venue_transaction)."""

import pytest
from django.db import connection, transaction

from brokers.sim.venue import venue_transaction

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


def test_the_venue_transaction_alone_commits_without_waiting_for_the_flush():
    assert synchronous_commit() == "on"
    with venue_transaction():
        assert synchronous_commit() == "off"
    # the next transaction on the same connection is ours again
    with transaction.atomic():
        assert synchronous_commit() == "on"
    assert synchronous_commit() == "on"


def test_inside_a_transaction_of_the_caller_nothing_changes():
    with transaction.atomic():
        with venue_transaction():
            assert synchronous_commit() == "on"
        assert synchronous_commit() == "on"


def test_a_venue_call_runs_its_transaction_so(instruments, monkeypatch):
    """The venue's submit, seen from inside its transaction."""
    from brokers.registry import venue_for
    from brokers.sim import venue as sim
    from tests.helpers import venue_ticket

    seen = []
    lock = sim.SimulatedVenue._lock_quotes

    def spy(self, symbols):
        seen.append(synchronous_commit())
        return lock(self, symbols)

    monkeypatch.setattr(sim.SimulatedVenue, "_lock_quotes", spy)
    resting = venue_ticket("c0de", type="limit", time_in_force="gtc", limit_price="1.00000")
    reports = venue_for("sim").submit_many([resting])
    assert seen == ["off"]
    assert reports and synchronous_commit() == "on"
