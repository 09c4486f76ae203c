"""`submit_each`: the batch submit of an adapter without a native batch call, one `submit` per
ticket (no database: a fake adapter)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from brokers.base import (
    ExecutionReport,
    OrderTicket,
    ReportKind,
    VenueRejected,
    VenueTransientError,
    submit_each,
)

AT = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def ticket(client_order_id: str) -> OrderTicket:
    return OrderTicket(
        client_order_id=client_order_id,
        symbol="EUR_USD",
        side="buy",
        type="market",
        time_in_force="ioc",
        quantity=Decimal("100"),
    )


class FakeVenue:
    """Acknowledges every ticket, but refuses `refused` and times out on `lost`."""

    name = "fake"

    def __init__(self, *, refused: str = "", lost: str = "") -> None:
        self.refused, self.lost = refused, lost
        self.submitted: list[str] = []

    def submit(self, ticket: OrderTicket) -> list[ExecutionReport]:
        self.submitted.append(ticket.client_order_id)
        if ticket.client_order_id == self.refused:
            raise VenueRejected("insufficient margin", code="insufficient_margin")
        if ticket.client_order_id == self.lost:
            raise VenueTransientError("timed out")
        return [
            ExecutionReport(
                venue=self.name,
                kind=ReportKind.ACK,
                client_order_id=ticket.client_order_id,
                venue_order_id=f"V-{ticket.client_order_id}",
                at=AT,
            )
        ]


def test_a_refused_ticket_becomes_a_rejected_report_and_the_rest_still_go():
    # given a venue that refuses the second of three orders
    venue = FakeVenue(refused="c-2")
    # when the three go through the fallback
    answered = submit_each(venue, [ticket("c-1"), ticket("c-2"), ticket("c-3")])
    # then each is answered in order, the refused one with a REJECTED report of its own
    assert venue.submitted == ["c-1", "c-2", "c-3"]
    assert [(report.client_order_id, report.kind) for report in answered] == [
        ("c-1", ReportKind.ACK),
        ("c-2", ReportKind.REJECTED),
        ("c-3", ReportKind.ACK),
    ]
    rejected = answered[1]
    assert (rejected.venue, rejected.venue_order_id, rejected.reason, rejected.cursor) == (
        "fake",
        "",
        "insufficient margin",
        0,
    )
    assert rejected.at.utcoffset().total_seconds() == 0


def test_a_transient_error_stops_the_batch_and_propagates():
    # given a venue whose answer to the second order is lost
    venue = FakeVenue(lost="c-2")
    # when three orders go through the fallback
    with pytest.raises(VenueTransientError):
        submit_each(venue, [ticket("c-1"), ticket("c-2"), ticket("c-3")])
    # then the third was never sent
    assert venue.submitted == ["c-1", "c-2"]
