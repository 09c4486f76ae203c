"""The venue boundary: what `orders` may ask of any venue, and what a venue answers.

`orders` knows this module and nothing else of `brokers`' internals. Every adapter (the
simulated venue, and later OANDA, Alpaca, CCXT, FIX) implements `VenueAdapter`. Values cross
the boundary as frozen dataclasses of Decimals, strings and UTC datetimes, never models.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

from django.utils import timezone


class VenueError(Exception):
    """Base of every error an adapter raises."""


class VenueTransientError(VenueError):
    """Timeouts, disconnects, 5xx, rate limits: the request may or may not have taken effect.

    The caller retries with backoff, and before it resubmits an order it asks the venue for
    the client order id (a timeout is not a rejection)."""


class VenueRejected(VenueError):
    """The venue refused the request for good (bad symbol, insufficient margin, unknown order)."""

    def __init__(self, message: str, *, code: str = "venue_rejected") -> None:
        super().__init__(message)
        self.code = code


class VenueOrderNotFound(VenueRejected):
    def __init__(self, message: str = "order not known at the venue") -> None:
        super().__init__(message, code="order_not_found")


class ReportKind(enum.StrEnum):
    ACK = "ack"  # the venue holds the order (working)
    FILL = "fill"  # an execution; `execution_id` is unique per venue
    CANCELLED = "cancelled"  # done for the rest of the quantity (cancel, IOC/FOK remainder)
    REJECTED = "rejected"
    EXPIRED = "expired"
    REPLACED = "replaced"  # a modify took effect; `quantity`/prices carry the new terms


@dataclass(frozen=True)
class OrderTicket:
    """What a venue needs to place an order."""

    client_order_id: str
    symbol: str
    side: str  # buy | sell
    type: str  # market | limit | stop | stop_limit
    time_in_force: str  # gtc | day | gtd | ioc | fok
    quantity: Decimal
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    expire_at: datetime | None = None
    account: str = ""


@dataclass(frozen=True)
class ExecutionReport:
    """One thing that happened to one order at the venue."""

    venue: str
    kind: ReportKind
    client_order_id: str
    venue_order_id: str
    at: datetime
    execution_id: str = ""  # FILL only
    quantity: Decimal | None = None  # FILL: executed quantity; REPLACED: new total quantity
    price: Decimal | None = None  # FILL: execution price
    liquidity: str = ""  # FILL: maker | taker
    limit_price: Decimal | None = None  # REPLACED
    stop_price: Decimal | None = None  # REPLACED
    reason: str = ""  # REJECTED / CANCELLED / EXPIRED
    cursor: int = 0  # position in the venue's report stream, for pollers


@dataclass(frozen=True)
class VenueOrderState:
    """The venue's view of one order, with every report it has for it, oldest first."""

    client_order_id: str
    venue_order_id: str
    status: str  # working | filled | cancelled | rejected | expired
    filled_quantity: Decimal
    reports: Sequence[ExecutionReport] = field(default_factory=tuple)


@dataclass(frozen=True)
class Quote:
    symbol: str
    bid: Decimal
    ask: Decimal
    bid_size: Decimal
    ask_size: Decimal
    seq: int
    at: datetime | None = None

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2


@runtime_checkable
class VenueAdapter(Protocol):
    """Every venue speaks this. Every method that talks to the venue has its own timeout and
    raises VenueTransientError or VenueRejected, nothing else."""

    name: str
    kind: str  # sim | oanda | alpaca | ccxt | fix
    mode: str  # sim | practice | live

    def connect(self) -> None: ...
    def disconnect(self) -> None: ...
    def is_connected(self) -> bool: ...
    def ping(self) -> float:
        """Round trip in milliseconds."""
        ...

    def submit(self, ticket: OrderTicket) -> Sequence[ExecutionReport]:
        """Place an order; answers its ACK (or REJECTED) and any immediate fills. Placing the
        same client_order_id twice never makes two orders: the second call answers the
        reports of the first."""
        ...

    def submit_many(self, tickets: Sequence[OrderTicket]) -> Sequence[ExecutionReport]:
        """Place many orders in one round trip; answers every report the venue has for every
        ticket, grouped per ticket in the order given (within one ticket oldest first),
        exactly what `submit(ticket)` would have answered for each.

        - A refusal of one order (an unknown symbol, the venue's own rejection) is a REJECTED
          report for that ticket; the other tickets still go. It is never an exception for
          the whole batch.
        - VenueTransientError means the outcome of the whole batch is unknown: some or all
          of the orders may be placed. Before resending any of them the caller asks
          `order_status` for each.
        - A ticket whose client_order_id the venue already knows (from an earlier call, or an
          earlier ticket of the same batch) answers that order's reports; it never makes a
          second order.

        Adapters whose venue has no batch call answer `submit_each(self, tickets)`."""
        ...

    def cancel(
        self, *, client_order_id: str, venue_order_id: str = ""
    ) -> Sequence[ExecutionReport]: ...
    def modify(
        self,
        *,
        client_order_id: str,
        venue_order_id: str = "",
        quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> Sequence[ExecutionReport]: ...
    def order_status(
        self, *, client_order_id: str = "", venue_order_id: str = ""
    ) -> VenueOrderState:
        """Raises VenueOrderNotFound when the venue has no such order."""
        ...

    def working_orders(self) -> Sequence[VenueOrderState]:
        """Every order the venue holds working, each as `order_status` would answer it but
        without its reports: one call, paged by the adapter as its venue pages (OANDA's
        `GET /accounts/{id}/pendingOrders`, Alpaca's `GET /v2/orders?status=open`, 500 a page,
        CCXT's `fetch_open_orders`). Reconciliation compares our open orders with it and asks
        about the ones that differ only. Raises NotImplementedError where the venue cannot
        list its orders: reconciliation then asks about every order."""
        ...

    def reports_since(self, cursor: int, *, limit: int = 1000) -> Sequence[ExecutionReport]:
        """The execution-report stream from a cursor (exclusive), for pollers."""
        ...

    def account(self) -> dict:
        """The venue's account summary. Keys are the venue's own; `working_orders` (int), when
        present, is how many orders the venue holds working (reconciliation compares it)."""
        ...

    def positions(self, account: str = "") -> dict[str, Decimal]:
        """Signed quantity per symbol as the venue books it, from its own executions: of one
        account (our Account.code, as sent on the ticket), or of every account when `account`
        is "". Symbols the venue holds flat may be left out."""
        ...

    def quotes(self, symbols: Sequence[str]) -> dict[str, Quote]: ...


def submit_each(venue: VenueAdapter, tickets: Sequence[OrderTicket]) -> list[ExecutionReport]:
    """`submit_many` for an adapter without a native batch call: one `submit` per ticket, in
    order. A VenueRejected becomes a REJECTED report for its ticket, as the batch semantics
    ask; a VenueTransientError propagates at once, the tickets before it possibly placed and
    the rest not sent (the caller asks `order_status` for each before resending)."""
    reports: list[ExecutionReport] = []
    for ticket in tickets:
        try:
            reports.extend(venue.submit(ticket))
        except VenueRejected as error:
            reports.append(
                refusal_report(
                    venue=venue.name, client_order_id=ticket.client_order_id, reason=str(error)
                )
            )
    return reports


def refusal_report(*, venue: str, client_order_id: str, reason: str) -> ExecutionReport:
    """The REJECTED report of an order the venue refused without ever holding it: no venue
    order id, no place in the venue's report stream (cursor 0)."""
    return ExecutionReport(
        venue=venue,
        kind=ReportKind.REJECTED,
        client_order_id=client_order_id,
        venue_order_id="",
        at=timezone.now(),
        reason=reason,
    )
