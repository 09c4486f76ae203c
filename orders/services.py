"""Every write to the order book of record.

One rule holds throughout: an order's state changes only in `_order_change`, under the order's
row lock, inside a transaction, and each change writes one OrderEvent carrying exactly the
fields it changed. No row lock is held while a venue is called.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID

from django.conf import settings
from django.db import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    transaction,
)
from django.utils import timezone

from brokers.base import (
    ExecutionReport,
    OrderTicket,
    ReportKind,
    VenueOrderNotFound,
    VenueRejected,
    VenueTransientError,
)
from brokers.registry import venue_for, venue_names
from risk import services as risk_services
from risk.exceptions import RiskRejected
from risk.selectors import trading_state_among, trading_state_for, trading_states_restricting
from tradingsite import db, refdata
from tradingsite.bulk import QueryTemplate, RowWrites, rows_insert, rows_select, rows_values

from . import actors, books, outbox
from .exceptions import (
    ApplicationError,
    DuplicateClientOrderId,
    IntakeBusy,
    InvalidTransition,
    OrderValidationError,
    ServiceUnavailable,
)
from .lock_objects import (
    order_for_update,
    orders_and_backlog_for_update,
    orders_for_update,
    orders_for_update_unless_known,
)
from .models import Account, Fill, Instrument, Order, OrderEvent
from .replay import encode, order_state
from .selectors import instrument_by_symbol, instrument_rules, order_by_client_order_id
from .states import AT_VENUE, OPEN, TERMINAL, OrderStatus, can_transition
from .validation import OrderTerms, day_expiry, validate_terms

logger = logging.getLogger(__name__)

S = OrderStatus
PRICE_QUANTUM = Decimal("1e-10")

# A pending_cancel order whose submission may still be in flight is not declared absent from
# the venue before a submit task could possibly have finished (its hard time limit).
SUBMIT_IN_FLIGHT_SECONDS = 35
# The reason on a pending_cancel the expiry sweep asked for: its cancel completes as expired.
EXPIRY_REASON = "expired"


class SubmitInFlight(Exception):
    """The venue does not know the order yet, but its submission may still arrive: retry."""


@dataclass(frozen=True)
class SubmitResult:
    order: Order
    created: bool


# --- the one writer -------------------------------------------------------------------------


def _order_change(order: Order, **change: Any) -> None:
    """Apply a change (`_order_change_staged`'s arguments) to a locked order, save it and
    append its event. Raises InvalidTransition, writing nothing, if `status` changes to a
    status the table forbids."""
    writes = _OrderWrites()
    writes.change(order, **change)
    writes.flush()


def _order_change_staged(
    order: Order,
    *,
    event_type: str,
    actor: str,
    correlation_id: str = "",
    data: dict[str, Any] | None = None,
    **changes: Any,
) -> tuple[OrderEvent, list[str]]:
    """`_order_change` without the writes: the order changed in memory, and its unsaved event
    and changed field names (the caller writes both, in the same transaction, under the lock)."""
    new_status = changes.get("status")
    if (
        new_status is not None
        and new_status != order.status
        and not can_transition(order.status, new_status)
    ):
        raise InvalidTransition(
            f"order {order.id} is {order.status}; it cannot become {new_status}",
            order_id=order.id,
        )
    changed = {name: value for name, value in changes.items() if getattr(order, name) != value}
    for name, value in changed.items():
        setattr(order, name, value)
    now = timezone.now()
    order.updated_at = now
    order.event_seq += 1
    payload = {"changes": {name: encode(value) for name, value in changed.items()}}
    if data:
        payload.update(data)
    event = OrderEvent(
        order=order,
        seq=order.event_seq,
        type=event_type,
        at=now,
        actor=actor,
        correlation_id=correlation_id,
        data=payload,
    )
    return event, [*changed, "updated_at", "event_seq"]


class _OrderWrites:
    """The order changes of one transaction, written together at its end: one UPDATE for
    every changed order and one INSERT for every event (`_order_change` is one change written
    at once). Orders must be locked by the caller."""

    def __init__(self) -> None:
        self.orders: dict[UUID, Order] = {}
        self.fields: set[str] = set()
        self.events: list[OrderEvent] = []

    def change(self, order: Order, **change: Any) -> OrderEvent:
        event, fields = _order_change_staged(order, **change)
        self.orders[order.pk] = order
        self.fields.update(fields)
        self.events.append(event)
        return event

    def flush(self, writes: RowWrites | None = None) -> None:
        """Write them, or add them to `writes` (the caller's other writes: one statement)."""
        together = writes if writes is not None else RowWrites()
        if self.orders:
            together.update(list(self.orders.values()), sorted(self.fields))
        together.insert(self.events)
        if writes is None:
            together.flush()
        self.orders, self.fields, self.events = {}, set(), []


# --- intake ---------------------------------------------------------------------------------


def _fingerprint(terms: OrderTerms) -> str:
    canonical = {
        "symbol": terms.symbol,
        "side": terms.side,
        "type": terms.type,
        "time_in_force": terms.time_in_force,
        "quantity": encode(terms.quantity),
        "limit_price": encode(terms.limit_price) if terms.limit_price is not None else None,
        "stop_price": encode(terms.stop_price) if terms.stop_price is not None else None,
        "expire_at": terms.expire_at.isoformat() if terms.expire_at else None,
        "venue": terms.venue or None,
        "strategy_id": terms.strategy_id,
        "signal_id": terms.signal_id,
        "metadata": terms.metadata,
    }
    raw = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def _idempotent_repeat(existing: Order, fingerprint: str) -> SubmitResult:
    """The same request again gets the same answer: the order, or its risk rejection."""
    if existing.request_fingerprint != fingerprint:
        raise DuplicateClientOrderId(
            f"client_order_id {existing.client_order_id} was already used for a different order",
            order_id=existing.id,
        )
    if existing.status == S.REJECTED:
        reasons = (
            OrderEvent.objects.filter(order=existing, type=RISK_REJECTED_EVENT)
            .values_list("data__reasons", flat=True)
            .first()
        )
        if reasons is not None:
            raise RiskRejected(
                existing.reject_reason or "risk limits breached",
                order_id=existing.id,
                extra={"reasons": reasons},
            )
    return SubmitResult(order=existing, created=False)


def _repeat_of(account: Account, client_order_id: str, fingerprint: str) -> SubmitResult | None:
    """The answer to a repeated client_order_id (or DuplicateClientOrderId), or None when the
    account has no order with it."""
    existing = order_by_client_order_id(account.pk, client_order_id) if client_order_id else None
    return None if existing is None else _idempotent_repeat(existing, fingerprint)


RISK_REJECTED_EVENT = "risk_rejected"


def order_submit(
    *,
    account: Account,
    terms: OrderTerms,
    user: Any = None,
    actor: str,
    correlation_id: str = "",
    reduce_only: bool = False,
    _rate_counted: bool = False,
) -> SubmitResult:
    """Validate, risk-check and store a new order and queue it for its venue.

    Idempotent by (account, client_order_id): the same body again answers the stored order
    (created=False); another body raises DuplicateClientOrderId. A repeat is found by the
    unique key when its insert fails, or when the gate refuses it (no lookup before: a new
    order, the common case, costs one statement less). Neither a repeat nor a refused order
    is counted by the rate limit. Invalid terms raise OrderValidationError and store nothing. Then the risk gate: RateLimited (429),
    TradingHalted (423) and RiskUnavailable (503) store nothing; breached limits store the
    order as rejected, with its reasons, and raise RiskRejected (422). The order, its events
    and its outbox row are one transaction; the venue is reached only after commit.
    `reduce_only` orders (the kill switch's flatten) are not rate-limited and pass a halt."""
    # What `held` holds (the account's check lock, when the order's limits take one) is
    # held until the order is stored or refused.
    with ExitStack() as held:
        fingerprint = _fingerprint(terms)
        now = timezone.now()
        admission = None
        try:
            gate = _gate_request(
                account, terms, instrument_by_symbol(terms.symbol), now, reduce_only
            )
            if not reduce_only:
                intake_check()
            if not (reduce_only or _rate_counted):
                admission = risk_services.order_rate_limit(
                    user=user,
                    account=account,
                    actor=actor,
                    correlation_id=correlation_id,
                    record=False,
                )
            reducing = risk_services.order_trading_state_check(
                gate, actor=actor, correlation_id=correlation_id, record=False
            )
            # with the account's check lock, when its limits take one: held until it is stored
            breaches = held.enter_context(risk_services.limits_checked(gate, reducing=reducing))
        except ApplicationError as refusal:
            # A refused order is not counted by the rate limit (a halt refuses after the count).
            # A repeat is answered with what the first request got, whatever the gate says now,
            # and leaves no refusal in the audit trail.
            risk_services.order_rate_release(admission)
            repeat = _repeat_of(account, terms.client_order_id, fingerprint)
            if repeat is None:
                risk_services.refusal_record(refusal)
                raise
            return repeat
        order = _new_order(gate, terms, user, now, fingerprint, breaches)
        events = _creation_events(
            order, actor=actor, correlation_id=correlation_id, breaches=breaches
        )
        try:
            if breaches:
                with transaction.atomic():
                    rows_insert([order], events)
                    risk_services.risk_event_record(
                        kind="order_rejected",
                        actor=actor,
                        account=account.code,
                        order_id=order.id,
                        reason=order.reject_reason or "",
                        correlation_id=correlation_id,
                        data={"reasons": risk_services.reasons_of(breaches)},
                    )
            else:
                # The order, its events and its outbox row: one statement, one transaction.
                submission = outbox.message(
                    "orders.submit", order_id=str(order.id), correlation_id=correlation_id
                )
                rows_insert([order], events, [submission])
                outbox.publish_after_commit(submission)
        except IntegrityError:
            # A repeat, or two requests with one client_order_id racing: the unique key answers.
            repeat = _repeat_of(account, order.client_order_id, fingerprint)
            if repeat is None:
                raise
            risk_services.order_rate_release(admission)  # a repeat is not a new order
            return repeat
        except (OperationalError, InterfaceError) as error:
            if not _stored_after_all(error, order.id):
                risk_services.order_rate_release(admission)
                raise
            if not breaches:  # stored, though the answer was lost on the way
                outbox.publish_after_commit(submission)
        if breaches:
            raise RiskRejected(
                order.reject_reason or "risk limits breached",
                order_id=order.id,
                extra={"reasons": risk_services.reasons_of(breaches)},
            )
        return SubmitResult(order=order, created=True)


def _stored_after_all(error: DatabaseError, order_id: UUID) -> bool:
    """Whether the database stored the order, after it failed the statement that stores it.
    The intake's insert is its own transaction, so a connection that broke while it committed
    leaves the client not knowing: it is asked on a new connection, and a stored order is
    answered as stored instead of as a failure a client would send again (without a
    client_order_id, that would store it twice). Raises `error` when it cannot be told: inside
    an outer transaction (the failure rolled it back), or with the database still away."""
    if connection.in_atomic_block:
        raise error
    connection.close()
    try:
        return Order.objects.filter(pk=order_id).exists()
    except DatabaseError:
        raise error from None


def _gate_request(
    account: Account,
    terms: OrderTerms,
    instrument: Instrument | None,
    now: datetime,
    reduce_only: bool,
) -> risk_services.GateRequest:
    """The order's terms checked against its instrument and venue (OrderValidationError)."""
    if instrument is None:
        raise OrderValidationError(
            "unknown_symbol", "symbol", "unknown symbol", f"unknown symbol {terms.symbol!r}"
        )
    validate_terms(terms, instrument_rules(instrument), now)
    venue = terms.venue or settings.DEFAULT_VENUE
    if venue not in venue_names():
        raise OrderValidationError("unknown_venue", "venue", f"unknown venue {venue!r}")
    return risk_services.GateRequest(
        account=account,
        instrument=instrument,
        side=terms.side,
        type=terms.type,
        quantity=terms.quantity,
        limit_price=terms.limit_price,
        stop_price=terms.stop_price,
        strategy_id=terms.strategy_id,
        venue=venue,
        reduce_only=reduce_only,
    )


def _new_order(
    gate: risk_services.GateRequest,
    terms: OrderTerms,
    user: Any,
    now: datetime,
    fingerprint: str,
    breaches: list[Any],
) -> Order:
    expire_at = terms.expire_at
    if terms.time_in_force == "day":
        expire_at = day_expiry(now, settings.ORDERS_DAY_CUTOFF_UTC)
    return Order(
        account=gate.account,
        instrument=gate.instrument,
        client_order_id=terms.client_order_id or uuid.uuid4().hex,
        side=terms.side,
        type=terms.type,
        time_in_force=terms.time_in_force,
        quantity=terms.quantity,
        limit_price=terms.limit_price,
        stop_price=terms.stop_price,
        expire_at=expire_at,
        status=S.REJECTED if breaches else S.VALIDATED,
        reject_reason="; ".join(b.message for b in breaches) if breaches else None,
        filled_quantity=Decimal(0),
        remaining_quantity=Decimal(0) if breaches else terms.quantity,
        venue=gate.venue,
        reduce_only=gate.reduce_only,
        strategy_id=terms.strategy_id,
        signal_id=terms.signal_id,
        metadata=terms.metadata,
        request_fingerprint=fingerprint,
        created_by=user if getattr(user, "is_authenticated", False) else None,
        created_at=now,
        updated_at=now,
        event_seq=2,
    )


def _creation_events(
    order: Order, *, actor: str, correlation_id: str, breaches: list[Any]
) -> list[OrderEvent]:
    """The first events of a new order: created (every replayed field), then validated, or
    risk_rejected with every breached rule."""
    state = order_state(order)
    final: dict[str, Any] = {"status": order.status}
    data: dict[str, Any] = {}
    if breaches:
        final.update(
            reject_reason=order.reject_reason, remaining_quantity=state["remaining_quantity"]
        )
        data["reasons"] = risk_services.reasons_of(breaches)
    created = {
        **state,
        "status": S.CREATED,
        "reject_reason": None,
        "remaining_quantity": encode(order.quantity),
    }
    return [
        OrderEvent(
            order=order,
            seq=1,
            type="created",
            at=order.created_at,
            actor=actor,
            correlation_id=correlation_id,
            data={"changes": created},
        ),
        OrderEvent(
            order=order,
            seq=2,
            type=RISK_REJECTED_EVENT if breaches else "validated",
            at=order.created_at,
            actor=actor,
            correlation_id=correlation_id,
            data={"changes": final, **data},
        ),
    ]


class _Counting(NamedTuple):
    """A batch order on its way to the rate limiter: its place in the batch, its fingerprint
    and idempotency key, its gate request (made at `now`), and its trading state check (a
    `reducing` flag, or a halt's refusal not yet recorded)."""

    index: int
    fingerprint: str
    key: tuple[int, str]
    now: datetime
    gate: Any
    state: bool | ApplicationError


@dataclass(frozen=True)
class SubmitRequest:
    account: Account
    terms: OrderTerms


def orders_submit_many(
    *,
    requests: Sequence[SubmitRequest],
    user: Any = None,
    actor: str,
    correlation_id: str = "",
    admitted: bool = False,
) -> list[SubmitResult | ApplicationError]:
    """`order_submit` for many orders (the batch intake): one answer per request, in order,
    each what `order_submit` would have answered (a result, or the error it would raise).
    `admitted`: the caller passed `intake_check` for these orders a moment ago (the batch view,
    before it read the bodies), so they are not refused one by one for a busy intake now: the
    backlog may pass its limit by one batch per request in flight, instead of a client's batch
    being checked, then refused order by order (the bench saw 6,500-17,500 orders a run
    answered 503 inside 200 answers, 2026-12-04 22:34).

    What every order reads is read once (instruments, stored client order ids, trading states,
    limits, rate buckets), and the accepted orders are stored together: one statement inserting
    the orders, their events, and one outbox row per SUBMIT_BATCH_SIZE orders (an
    `orders.submit_batch` task, published after commit). An order that limits apply to, or
    that a `reducing` state covers, takes the one-order path after the orders before it are
    stored, so its risk snapshot sees them. A client order id that races another request
    sends its group through the one-order path, which answers the stored order."""
    answers: list[SubmitResult | ApplicationError | None] = [None] * len(requests)
    instruments = {
        i.symbol: i
        for i in Instrument.objects.filter(symbol__in={r.terms.symbol for r in requests})
    }
    # By (account, client order id) pairs, one array a column: not an IN list of each, whose
    # generic plan, made while the table was small, read every order of the account (as
    # reports_not_yet_applied's fills).
    named = {(r.account.pk, r.terms.client_order_id) for r in requests if r.terms.client_order_id}
    stored = {
        (o.account_id, o.client_order_id): o
        for o in rows_select(Order, {("account", "client_order_id"): list(named)})
    }
    context = risk_services.GateContext.read()
    busy: IntakeBusy | None = None
    if not admitted:
        try:
            intake_check()
        except IntakeBusy as error:
            busy = error
    pending: list[tuple[int, SubmitRequest, Order]] = []
    in_batch: dict[tuple[int, str], Order] = {}

    def one_by_one(request: SubmitRequest, counted: bool = True) -> SubmitResult | ApplicationError:
        """The one-order path for one request (`counted`: its rate-limit count is taken)."""
        try:
            return order_submit(
                account=request.account,
                terms=request.terms,
                user=user,
                actor=actor,
                correlation_id=correlation_id,
                _rate_counted=counted,
            )
        except ApplicationError as error:
            return error

    def store_pending() -> None:
        if not pending:
            return
        orders = [order for _, _, order in pending]
        ids = [str(order.id) for order in orders]
        events = [
            event
            for order in orders
            for event in _creation_events(
                order, actor=actor, correlation_id=correlation_id, breaches=[]
            )
        ]
        submissions = [
            outbox.message(
                "orders.submit_batch",
                order_ids=ids[at : at + SUBMIT_BATCH_SIZE],
                correlation_id=correlation_id,
            )
            for at in range(0, len(ids), SUBMIT_BATCH_SIZE)
        ]
        try:
            # The orders, their events and their outbox rows: one statement, one transaction.
            rows_insert(orders, events, submissions)
        except IntegrityError:
            # A client order id of this group raced another request: each order of the group
            # goes the one-order path, which answers the stored order for a repeat.
            for index, request, order in pending:
                answers[index] = one_by_one(request)
                _repoint_repeats(answers, order, answers[index])
        except (OperationalError, InterfaceError) as error:
            # One statement stores the group: all of it or none. Stored, it is answered as
            # stored; not, the request fails (503) with what it stored before this group.
            if not _stored_after_all(error, orders[0].id):
                raise
            outbox.publish_after_commit(*submissions)
        else:
            outbox.publish_after_commit(*submissions)
        pending.clear()

    def checked(index: int, request: SubmitRequest) -> tuple[datetime, Any] | None:
        """What an order passes before it is counted: its terms (the gate's request) and a
        busy intake. Answers (now, gate), or None with the order's answer given."""
        try:
            now = timezone.now()
            gate = _gate_request(
                request.account, request.terms, instruments.get(request.terms.symbol), now, False
            )
            if busy is not None:
                raise busy
        except ApplicationError as error:
            answers[index] = error
            return None
        return now, gate

    def state_check(gate: Any) -> bool | ApplicationError:
        """The trading state: whether a `reducing` one applies, or the halt's refusal (its
        risk event not recorded yet: a refusal for the rate limit may come first)."""
        try:
            return risk_services.order_trading_state_check(
                gate, actor=actor, correlation_id=correlation_id, context=context, record=False
            )
        except ApplicationError as error:
            return error

    # 1. Repeats of stored orders and orders refused before the count are answered. The rest
    # are counted against the rate limit together, in one round trip, in order, as one call
    # each would count them: an order a halt refuses is only checked (one call would count it,
    # then give the count back), so its refusal says 429 when over the limit, as one call's
    # would. An order whose client order id an earlier order of this batch has waits for
    # step 2, where that one is decided: a repeat if it was accepted here, else the one-order
    # path decides it (counted there; a repeat of a stored order is found by its unique key).
    to_count: list[_Counting] = []
    later: dict[int, tuple[str, tuple[int, str]]] = {}
    named_here: set[tuple[int, str]] = set()
    for index, request in enumerate(requests):
        try:
            fingerprint = _fingerprint(request.terms)
        except ApplicationError as error:
            answers[index] = error
            continue
        key = (request.account.pk, request.terms.client_order_id or "")
        if key in stored:
            answers[index] = _idempotent_repeat(stored[key], fingerprint)
            continue
        if request.terms.client_order_id and key in named_here:
            later[index] = (fingerprint, key)
            continue
        found = checked(index, request)
        if found is None:
            continue
        if request.terms.client_order_id:
            named_here.add(key)
        now, gate = found
        to_count.append(_Counting(index, fingerprint, key, now, gate, state_check(gate)))
    admissions = dict(
        zip(
            [item.index for item in to_count],
            risk_services.orders_rate_limit_many(
                user=user,
                accounts=[requests[item.index].account for item in to_count],
                counted=[not isinstance(item.state, ApplicationError) for item in to_count],
                actor=actor,
                correlation_id=correlation_id,
                context=context,
            ),
            strict=True,
        )
    )

    # 2. In order: each order is refused, stored with the others, or takes the one-order path.
    counted = {item.index: item for item in to_count}

    try:
        for index, request in enumerate(requests):
            if index in later:
                fingerprint, key = later[index]
                if key in in_batch:
                    answers[index] = _idempotent_repeat(in_batch[key], fingerprint)
                else:
                    store_pending()
                    answers[index] = one_by_one(request, counted=False)
                continue
            if index not in counted:
                continue  # answered in step 1
            item = counted[index]
            admission = admissions[index]
            if isinstance(admission, ApplicationError):
                answers[index] = admission
                continue
            if isinstance(item.state, ApplicationError):
                risk_services.refusal_record(item.state)
                answers[index] = item.state
                continue
            if item.state or context.limits_apply(item.gate):
                store_pending()
                answers[index] = one_by_one(request)
                continue
            order = _new_order(item.gate, request.terms, user, item.now, item.fingerprint, [])
            pending.append((index, request, order))
            if request.terms.client_order_id:
                in_batch[item.key] = order
            answers[index] = SubmitResult(order=order, created=True)
        store_pending()
    except (OperationalError, InterfaceError):
        # The database failed while storing, and what failed was not stored (store_pending and
        # order_submit look it up). Orders stored before are answered as stored, the rest are
        # refused to be sent again; with none stored, the request fails as a whole (503).
        lost = {order.id for _, _, order in pending}
        unavailable = ServiceUnavailable(
            "the database failed while the order was stored, and it was not stored; send it "
            "again shortly (with the same client_order_id)"
        )
        for at, answer in enumerate(answers):
            if answer is None or (isinstance(answer, SubmitResult) and answer.order.id in lost):
                answers[at] = unavailable
        if not any(isinstance(answer, SubmitResult) and answer.created for answer in answers):
            raise
    return [answer for answer in answers if answer is not None]


_backlog_seen: tuple[float, int] = (float("-inf"), 0)

# The orders waiting for a worker, counted up to a limit: the status written into the text,
# so that any plan of it, a prepared statement's generic plan included, is planned knowing
# that `validated` is rare and reads its range of the (status, updated_at) index. With the
# status as a parameter, a generic plan made while the table was small took `validated` for a
# share of the table and read the table from its start to the few waiting orders at its end
# (37 ms a count on a fresh bench stack); on the analyzed 1,000,000-order growth database
# both read the index (1.46 and 1.26 ms).
_WAITING_COUNT = (
    f"SELECT count(*) FROM (SELECT 1 FROM {Order._meta.db_table} "
    f"WHERE status = '{S.VALIDATED.value}' LIMIT %s) AS waiting"
)


def _waiting_orders(at_most: int) -> int:
    """The orders waiting for a worker (`validated`), counted up to `at_most`."""
    return db.read(_WAITING_COUNT, [at_most])[0][0]


def intake_check() -> None:
    """Backpressure: raises IntakeBusy while ORDERS_INTAKE_MAX_BACKLOG accepted orders wait
    for a worker (`validated`). Counted at most every ORDERS_INTAKE_BACKLOG_CHECK_SECONDS per
    process, and never past the limit (an index range of at most limit + 1 entries)."""
    global _backlog_seen
    limit = settings.ORDERS_INTAKE_MAX_BACKLOG
    if limit <= 0:
        return
    at, waiting = _backlog_seen
    now = time.monotonic()
    interval = settings.ORDERS_INTAKE_BACKLOG_CHECK_SECONDS
    if now - at >= interval:
        # This thread counts; the process's other threads go on with the last count meanwhile
        # instead of all counting at once. A count older than two intervals (the process sat
        # idle) says nothing of now: they admit meanwhile rather than refuse on it (the bench
        # saw 3 orders refused at a phase's start on a count from the batch phase before).
        _backlog_seen = (now, waiting if now - at < 2 * interval else 0)
        waiting = _waiting_orders(limit + 1)
        _backlog_seen = (now, waiting)
    if waiting >= limit:
        raise IntakeBusy(
            f"{waiting if waiting <= limit else f'more than {limit}'} orders are waiting for a"
            " worker: new orders are refused until they are sent; retry shortly",
            retry_after=1,
        )


# Orders per `orders.submit_batch` task from the batch intake: a worker sends them in one
# venue call and applies the answers in one transaction. A batch's statements are shared by
# its orders: in process, 0.55 ms of worker CPU per order at 50, 0.44 at 100, 0.42 at 200;
# the bench's batch phase 1,258 -> 1,449 -> 1,618 orders/s (python -m tests.bench.cpu_split
# --phase batch). The price: a task of 200 holds a worker child for ~0.1-0.15 s on this
# machine kind, and a lone order queued behind it waits that long (docs/operations.md).
SUBMIT_BATCH_SIZE = 200


def _repoint_repeats(
    answers: list[SubmitResult | ApplicationError | None],
    unsaved: Order,
    stored: SubmitResult | ApplicationError | None,
) -> None:
    """Repeats within the batch answered with an order that was never stored get the answer
    its one-order submission got instead."""
    for at, answer in enumerate(answers):
        if isinstance(answer, SubmitResult) and answer.order is unsaved and not answer.created:
            answers[at] = (
                SubmitResult(order=stored.order, created=False)
                if isinstance(stored, SubmitResult)
                else stored
            )


# --- cancel and modify (requests) -----------------------------------------------------------


def order_cancel(
    *, order_id: UUID | str, actor: str, correlation_id: str = "", reason: str = "requested"
) -> Order:
    """Cancel an order. Not yet sent: cancelled at once. At the venue (or on its way there):
    pending_cancel, and a worker asks the venue. Already pending_cancel: unchanged.
    Terminal: InvalidTransition, nothing written."""
    with transaction.atomic():
        order = order_for_update(order_id)
        if order.status in (S.CREATED, S.VALIDATED):
            _order_change(
                order,
                event_type="cancelled",
                actor=actor,
                correlation_id=correlation_id,
                data={"reason": reason},
                status=S.CANCELLED,
                remaining_quantity=Decimal(0),
            )
        elif order.status in AT_VENUE or order.status == S.PENDING_SUBMIT:
            _order_change(
                order,
                event_type="pending_cancel",
                actor=actor,
                correlation_id=correlation_id,
                data={"reason": reason, "from": order.status},
                status=S.PENDING_CANCEL,
            )
            outbox.enqueue("orders.cancel", order_id=str(order.id), correlation_id=correlation_id)
        elif order.status != S.PENDING_CANCEL:
            raise InvalidTransition(
                f"order {order.id} is {order.status} and cannot be cancelled", order_id=order.id
            )
        return order


def order_cancel_many(
    *, orders: Iterable[Order], actor: str, correlation_id: str = "", reason: str = "requested"
) -> list[Order]:
    """Cancel each open order given; an order that finished meanwhile is skipped."""
    cancelled = []
    for candidate in orders:
        try:
            cancelled.append(
                order_cancel(
                    order_id=candidate.pk,
                    actor=actor,
                    correlation_id=correlation_id,
                    reason=reason,
                )
            )
        except InvalidTransition:
            continue
    return cancelled


MODIFIABLE = frozenset({S.VALIDATED, S.SUBMITTED, S.ACKNOWLEDGED, S.PARTIALLY_FILLED})


def order_modify(
    *,
    order_id: UUID | str,
    actor: str,
    correlation_id: str = "",
    quantity: Decimal | None = None,
    limit_price: Decimal | None = None,
    stop_price: Decimal | None = None,
    expire_at: datetime | None = None,
) -> tuple[Order, bool]:
    """Change the terms of a working order. Answers (order, applied): applied is True when the
    change took effect at once (order not yet sent), False when it went to the venue. The new
    terms pass the same validation and risk gate as a new order (a halt refuses every modify,
    423; breached limits refuse it, 422, and change nothing)."""
    requested = {
        name: value
        for name, value in (
            ("quantity", quantity),
            ("limit_price", limit_price),
            ("stop_price", stop_price),
            ("expire_at", expire_at),
        )
        if value is not None
    }
    if not requested:
        raise OrderValidationError(
            "validation_error",
            "non_field_errors",
            "give at least one of quantity, limit_price, stop_price, expire_at",
        )
    current = Order.objects.select_related("instrument", "account").get(pk=order_id)
    reducing = risk_services.order_trading_state_check(
        _gate_for(current, current.quantity, current.limit_price, current.stop_price),
        actor=actor,
        correlation_id=correlation_id,
    )
    breaches: list[Any] = []
    with transaction.atomic():
        order = order_for_update(order_id)
        if order.status not in MODIFIABLE:
            raise InvalidTransition(
                f"order {order.id} is {order.status} and cannot be modified", order_id=order.id
            )
        terms = OrderTerms(
            symbol=order.instrument.symbol,
            side=order.side,
            type=order.type,
            time_in_force=order.time_in_force,
            quantity=requested.get("quantity", order.quantity),
            limit_price=requested.get("limit_price", order.limit_price),
            stop_price=requested.get("stop_price", order.stop_price),
            expire_at=requested.get("expire_at", order.expire_at)
            if order.time_in_force == "gtd" or "expire_at" in requested
            else None,
        )
        validate_terms(terms, instrument_rules(order.instrument), timezone.now())
        if terms.quantity <= order.filled_quantity:
            raise OrderValidationError(
                "invalid_quantity",
                "quantity",
                f"must be above the filled quantity {encode(order.filled_quantity)}",
            )
        gate = _gate_for(order, terms.quantity, terms.limit_price, terms.stop_price)
        # the check lock, when taken, is this transaction's: held until the change commits
        with risk_services.limits_checked(gate, reducing=reducing) as breaches:
            if not breaches:
                return _modify_apply(order, requested, terms, actor, correlation_id)
    risk_services.risk_event_record(
        kind="modify_rejected",
        actor=actor,
        account=current.account.code,
        order_id=current.id,
        reason="; ".join(b.message for b in breaches),
        correlation_id=correlation_id,
        data={
            "reasons": risk_services.reasons_of(breaches),
            "requested": {name: encode(value) for name, value in requested.items()},
        },
    )
    raise RiskRejected(
        "; ".join(b.message for b in breaches),
        order_id=current.id,
        extra={"reasons": risk_services.reasons_of(breaches)},
    )


def _gate_for(
    order: Order, quantity: Decimal, limit_price: Decimal | None, stop_price: Decimal | None
) -> risk_services.GateRequest:
    return risk_services.GateRequest(
        account=order.account,
        instrument=order.instrument,
        side=order.side,
        type=order.type,
        quantity=quantity - order.filled_quantity,
        limit_price=limit_price,
        stop_price=stop_price,
        strategy_id=order.strategy_id,
        venue=order.venue,
        reduce_only=order.reduce_only,
        replacing=order,
    )


def _modify_apply(
    order: Order, requested: dict[str, Any], terms: OrderTerms, actor: str, correlation_id: str
) -> tuple[Order, bool]:
    if order.status == S.VALIDATED:
        changes = dict(requested)
        if "quantity" in changes:
            changes["remaining_quantity"] = terms.quantity - order.filled_quantity
        _order_change(
            order, event_type="modified", actor=actor, correlation_id=correlation_id, **changes
        )
        return order, True
    encoded = {name: encode(value) for name, value in requested.items()}
    _order_change(
        order,
        event_type="modify_requested",
        actor=actor,
        correlation_id=correlation_id,
        data={"requested": encoded},
    )
    outbox.enqueue(
        "orders.modify", order_id=str(order.id), correlation_id=correlation_id, changes=encoded
    )
    return order, False


# --- the venue side (run by workers) ----------------------------------------------------------


def order_ticket(order: Order) -> OrderTicket:
    """The venue's view of an order. The client order id at the venue is our order id: it is
    unique across accounts, which an account's own client_order_id is not."""
    return OrderTicket(
        client_order_id=str(order.id),
        symbol=order.instrument.symbol,
        side=order.side,
        type=order.type,
        time_in_force=order.time_in_force,
        quantity=order.remaining_quantity,
        limit_price=order.limit_price,
        stop_price=order.stop_price,
        expire_at=order.expire_at,
        account=order.account.code,
    )


def order_submit_to_venue(*, order_id: UUID | str, correlation_id: str = "") -> None:
    """Send one validated order to its venue. Safe to run any number of times: a run finds the
    state already moved and returns, and a run that finds the order pending_submit (an earlier
    attempt died or timed out) first asks the venue whether it has the order, so the order is
    never placed twice. Transient venue errors propagate for the task to retry."""
    with transaction.atomic():
        order = order_for_update(order_id)
        if order.status == S.VALIDATED and _halted_before_sending(order, correlation_id):
            return
        if order.status == S.VALIDATED:
            _order_change(
                order,
                event_type="pending_submit",
                actor=actors.WORKER,
                correlation_id=correlation_id,
                status=S.PENDING_SUBMIT,
            )
            resuming = False
        elif order.status == S.PENDING_SUBMIT:
            resuming = True
        else:
            return
        ticket = order_ticket(order)
        venue_name = order.venue
    venue = venue_for(venue_name)
    if resuming:
        try:
            known = venue.order_status(client_order_id=ticket.client_order_id)
        except VenueOrderNotFound:
            logger.info("resubmitting order unknown at venue", extra={"order_id": str(order_id)})
        else:
            execution_reports_apply(reports=known.reports, correlation_id=correlation_id)
            return
    try:
        reports = venue.submit(ticket)
    except VenueRejected as rejection:
        order_reject(
            order_id=order_id,
            reason=str(rejection),
            actor=actors.venue_actor(venue_name),
            correlation_id=correlation_id,
        )
        return
    execution_reports_apply(reports=reports, correlation_id=correlation_id)


@dataclass(frozen=True)
class BatchSubmission:
    sent: int  # orders whose venue answer was applied here
    one_by_one: list[str]  # orders to hand to `order_submit_to_venue` (see below)
    backlog_full: bool = False  # `backlog` orders were taken along: more may be waiting


def orders_submit_to_venue_many(
    *, order_ids: Sequence[UUID | str], correlation_id: str = "", backlog: int = 0
) -> BatchSubmission:
    """Send many validated orders to their venues at the cost of a few statements, not a few
    per order: one transaction claims them (locked in primary-key order; one UPDATE and one
    INSERT of `pending_submit` events for all), one `submit_many` call per venue sends them,
    and one transaction applies every report (`execution_reports_apply`).

    Every guarantee of the one-order path holds. Orders that need it are answered in
    `one_by_one`, for the caller to send through `order_submit_to_venue`: an order found
    pending_submit (an earlier attempt died: it asks the venue before resending), an order a
    halt has reached (it is rejected there, with its risk event), and every order of a venue
    call that failed transiently (its outcome is unknown, so each is asked about, never sent
    blind). Orders already past validated are skipped: another delivery did them.

    With `backlog`, up to that many other validated orders go along (oldest first, skipping
    any another worker holds): the batch grows with the queue behind it, and a lone order goes
    at once, alone. Orders coalesced behind a submit task (outbox.publish_submission) have no
    task of their own: this is how they are sent."""
    one_by_one: list[str] = []
    tickets: dict[str, list[OrderTicket]] = {}
    taken: list[Order] = []
    sending: dict[UUID, Order] = {}  # as written at pending_submit: the reports' apply uses them
    # One reference-data version for the claim's halt check: the claim's statement reads it.
    with refdata.scope(), transaction.atomic():
        if backlog:
            mine, taken, version = orders_and_backlog_for_update(order_ids, limit=backlog)
            refdata.assume(version)  # the halt check below reads no version of its own
            orders = mine + taken
        else:
            orders = orders_for_update(order_ids)
        states = (
            trading_states_restricting() if any(o.status == S.VALIDATED for o in orders) else []
        )
        writes = _OrderWrites()
        for order in orders:
            if order.status == S.PENDING_SUBMIT:
                one_by_one.append(str(order.pk))
                continue
            if order.status != S.VALIDATED:
                continue
            state = trading_state_among(
                states,
                account=order.account.code,
                strategy_id=order.strategy_id,
                symbol=order.instrument.symbol,
            )
            if state is not None and state.mode == "halted" and not order.reduce_only:
                one_by_one.append(str(order.pk))
                continue
            writes.change(
                order,
                event_type="pending_submit",
                actor=actors.WORKER,
                correlation_id=correlation_id,
                status=S.PENDING_SUBMIT,
            )
            tickets.setdefault(order.venue, []).append(order_ticket(order))
            sending[order.pk] = order
        writes.flush()
    sent = 0
    for venue_name, venue_tickets in tickets.items():
        venue = venue_for(venue_name)
        try:
            reports = venue.submit_many(venue_tickets)
        except VenueTransientError:
            logger.warning(
                "batch submission failed; asking about each order",
                extra={"venue": venue_name, "orders": len(venue_tickets)},
                exc_info=True,
            )
            one_by_one.extend(ticket.client_order_id for ticket in venue_tickets)
            continue
        execution_reports_apply(reports=reports, correlation_id=correlation_id, known=sending)
        sent += len(venue_tickets)
    return BatchSubmission(
        sent=sent, one_by_one=one_by_one, backlog_full=bool(backlog) and len(taken) >= backlog
    )


def _halted_before_sending(order: Order, correlation_id: str) -> bool:
    """The kill switch reaches orders queued before it: a halted scope rejects them here,
    before the venue is called (the kill switch's own reduce-only orders still go)."""
    state = trading_state_for(
        account=order.account.code, strategy_id=order.strategy_id, symbol=order.instrument.symbol
    )
    if state is None or state.mode != "halted" or order.reduce_only:
        return False
    where = state.scope if state.scope == "global" else f"{state.scope} {state.target}"
    reason = f"trading halted ({where}) before submission: {state.reason or 'no reason given'}"
    _order_change(
        order,
        event_type="rejected",
        actor=actors.WORKER,
        correlation_id=correlation_id,
        status=S.REJECTED,
        reject_reason=reason,
        remaining_quantity=Decimal(0),
    )
    risk_services.risk_event_record(
        kind="order_refused_halted",
        actor=actors.WORKER,
        account=order.account.code,
        scope=state.scope,
        target=state.target,
        order_id=order.id,
        reason=reason,
        correlation_id=correlation_id,
    )
    return True


def order_reject(
    *, order_id: UUID | str, reason: str, actor: str, correlation_id: str = ""
) -> None:
    with transaction.atomic():
        order = order_for_update(order_id)
        if order.status in TERMINAL:
            return
        _order_change(
            order,
            event_type="rejected",
            actor=actor,
            correlation_id=correlation_id,
            status=S.REJECTED,
            reject_reason=reason,
            remaining_quantity=Decimal(0),
        )


def order_cancel_at_venue(*, order_id: UUID | str, correlation_id: str = "") -> None:
    """Carry out a pending cancel. Raises SubmitInFlight when the venue does not know the
    order yet but its submission may still arrive (the task retries)."""
    with transaction.atomic():
        order = order_for_update(order_id)
        if order.status != S.PENDING_CANCEL:
            return
        client_order_id, venue_order_id, venue_name = (
            str(order.id),
            order.venue_order_id,
            order.venue,
        )
        waited = (timezone.now() - order.updated_at).total_seconds()
    venue = venue_for(venue_name)
    try:
        reports = venue.cancel(client_order_id=client_order_id, venue_order_id=venue_order_id)
    except VenueOrderNotFound:
        if not venue_order_id and waited < SUBMIT_IN_FLIGHT_SECONDS:
            raise SubmitInFlight(str(order_id)) from None
        _cancel_never_placed(order_id=order_id, correlation_id=correlation_id)
        return
    except VenueRejected as refusal:
        # Too late (filled or done at the venue): bring our state up to the venue's.
        known = venue.order_status(client_order_id=client_order_id)
        execution_reports_apply(reports=known.reports, correlation_id=correlation_id)
        _cancel_refused(order_id=order_id, reason=str(refusal), correlation_id=correlation_id)
        return
    execution_reports_apply(reports=reports, correlation_id=correlation_id)


def _cancel_never_placed(*, order_id: UUID | str, correlation_id: str) -> None:
    with transaction.atomic():
        order = order_for_update(order_id)
        if order.status != S.PENDING_CANCEL:
            return
        final = S.EXPIRED if _cancel_requested_for_expiry(order) else S.CANCELLED
        _order_change(
            order,
            event_type=str(final),
            actor=actors.WORKER,
            correlation_id=correlation_id,
            data={"reason": "the venue never received the order"},
            status=final,
            remaining_quantity=Decimal(0),
        )


def _cancel_refused(*, order_id: UUID | str, reason: str, correlation_id: str) -> None:
    with transaction.atomic():
        order = order_for_update(order_id)
        if order.status != S.PENDING_CANCEL:
            return
        working = S.PARTIALLY_FILLED if order.filled_quantity > 0 else S.ACKNOWLEDGED
        _order_change(
            order,
            event_type="cancel_rejected",
            actor=actors.WORKER,
            correlation_id=correlation_id,
            data={"reason": reason},
            status=working,
        )


def order_modify_at_venue(
    *, order_id: UUID | str, changes: dict[str, str], correlation_id: str = ""
) -> None:
    """Send a requested modify to the venue; the venue's REPLACED report applies it."""
    with transaction.atomic():
        order = order_for_update(order_id)
        if order.status not in AT_VENUE:
            if order.status not in TERMINAL:
                _order_change(
                    order,
                    event_type="modify_rejected",
                    actor=actors.WORKER,
                    correlation_id=correlation_id,
                    data={"reason": f"order is {order.status}", "requested": changes},
                )
            return
        client_order_id, venue_order_id, venue_name = (
            str(order.id),
            order.venue_order_id,
            order.venue,
        )
    venue = venue_for(venue_name)
    decimals = {name: Decimal(value) for name, value in changes.items() if name != "expire_at"}
    try:
        reports = venue.modify(
            client_order_id=client_order_id, venue_order_id=venue_order_id, **decimals
        )
    except VenueRejected as refusal:
        with transaction.atomic():
            order = order_for_update(order_id)
            _order_change(
                order,
                event_type="modify_rejected",
                actor=actors.venue_actor(venue_name),
                correlation_id=correlation_id,
                data={"reason": str(refusal), "requested": changes},
            )
        return
    execution_reports_apply(reports=reports, correlation_id=correlation_id)
    if "expire_at" in changes:
        with transaction.atomic():
            order = order_for_update(order_id)
            if order.status not in TERMINAL:
                _order_change(
                    order,
                    event_type="modified",
                    actor=actors.WORKER,
                    correlation_id=correlation_id,
                    expire_at=datetime.fromisoformat(changes["expire_at"]),
                )


# --- execution reports ------------------------------------------------------------------------


def execution_reports_apply(
    *,
    reports: Sequence[ExecutionReport],
    correlation_id: str = "",
    known: Mapping[UUID, Order] | None = None,
) -> int:
    """Apply venue reports in one transaction: the orders locked in primary-key order, each
    order's reports in the order given, then one write per changed row (orders, events, fills,
    positions, accounts). Idempotent: a fill whose execution id is stored already, or a status
    the order has already passed, changes nothing. Answers the number of reports that changed
    something. Reports for orders we do not know are logged and skipped.

    `known`: orders the caller holds as it last wrote them. Those still unchanged are not read
    again (`orders_for_update_unless_known`), and their fills are not looked up among the
    stored ones: an unchanged order has booked no fill since (a fill moves its `event_seq`).
    Should a venue report an execution id already booked on another order, the insert of the
    fill fails on its unique key, and the reports are applied again as if nothing were known
    (the stored fills read, that fill skipped)."""
    by_order: dict[UUID, list[ExecutionReport]] = {}
    for report in reports:
        try:
            order_uuid = UUID(report.client_order_id)
        except ValueError:
            logger.warning(
                "report for a foreign client order id", extra={"id": report.client_order_id}
            )
            continue
        by_order.setdefault(order_uuid, []).append(report)
    if not by_order:
        return 0
    if known:
        try:
            return _reports_apply(by_order, reports, correlation_id, known)
        except IntegrityError:
            logger.warning(
                "a reported execution is booked already: applying the reports again",
                exc_info=True,
            )
    return _reports_apply(by_order, reports, correlation_id, {})


def _reports_apply(
    by_order: dict[UUID, list[ExecutionReport]],
    reports: Sequence[ExecutionReport],
    correlation_id: str,
    known: Mapping[UUID, Order],
) -> int:
    changed = 0
    # One reference-data version for the whole apply (tradingsite/refdata.py): its lookups
    # (the instruments a conversion looks for) read it once, not once each.
    with refdata.scope(), transaction.atomic():
        locked = orders_for_update_unless_known(by_order, known)
        orders = {order.pk: order for order in locked}
        for order_uuid in by_order.keys() - orders.keys():
            logger.warning("report for an unknown order", extra={"id": str(order_uuid)})
        unchanged = {pk for pk, order in orders.items() if known.get(pk) is order}
        applying = _ReportsApplying(
            [orders[pk] for pk in by_order if pk in orders], reports, correlation_id, unchanged
        )
        for pk, order_reports in by_order.items():
            order = orders.get(pk)
            if order is None:
                continue
            for report in order_reports:
                changed += _report_apply(order, report, applying)
        applying.flush()
    return changed


class _ReportsApplying:
    """What one `execution_reports_apply` transaction writes, gathered: the order changes and
    events, the fills and their bookings (a Ledger over the orders that have fills)."""

    def __init__(
        self,
        orders: list[Order],
        reports: Sequence[ExecutionReport],
        correlation_id: str,
        unchanged: set[UUID],
    ) -> None:
        self.correlation_id = correlation_id
        self.writes = _OrderWrites()
        fills = [r for r in reports if r.kind == ReportKind.FILL]
        self.executions_seen: set[tuple[str, str]] = set()
        # The fills of orders unchanged since the caller wrote them cannot be stored yet.
        unsure = [r for r in fills if _uuid_or_none(r.client_order_id) not in unchanged]
        if unsure:
            self.executions_seen = _executions_stored(unsure)
        filled = {_uuid_or_none(r.client_order_id) for r in fills}
        self.ledger = books.Ledger([o for o in orders if o.pk in filled]) if fills else None
        self.fills: list[Fill] = []
        self.rates: dict[tuple[str, str], Decimal] = {}
        self.accounts_filled: set[str] = set()

    def account_rate(self, order: Order) -> Decimal:
        """Quote currency -> account currency, once per pair of currencies in a transaction:
        each conversion reads the reference data and the pair's quote, and every account of
        one currency gets the same rate."""
        key = (order.instrument.quote_currency, order.account.currency)
        if key not in self.rates:
            self.rates[key] = books.account_rate(order.instrument.quote_currency, order.account)
        return self.rates[key]

    def flush(self) -> None:
        # Positions, accounts, fills, orders and events: one statement (tradingsite.bulk).
        writes = RowWrites()
        if self.ledger is not None:
            self.ledger.flush(writes)
        writes.insert(self.fills)
        self.writes.flush(writes)
        writes.flush()
        # Circuit breakers look at the books as soon as these fills are committed (at most one
        # evaluation a second: a burst of fills needs one look).
        if self.accounts_filled:
            transaction.on_commit(_breakers_kick)


def _executions_stored(fills: Sequence[ExecutionReport]) -> set[tuple[str, str]]:
    """(venue, execution id) of these fills that are booked already (this runs for every
    fill: a SELECT built once, `rows_select`)."""
    stored = rows_select(
        Fill,
        {
            "venue": sorted({r.venue for r in fills}),
            "venue_execution_id": sorted({r.execution_id for r in fills}),
        },
    )
    return {(fill.venue, fill.venue_execution_id) for fill in stored}  # type: ignore[attr-defined]


def _uuid_or_none(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        return None


def _report_apply(order: Order, report: ExecutionReport, applying: _ReportsApplying) -> int:
    actor = actors.venue_actor(report.venue)
    status = order.status
    change = functools.partial(
        applying.writes.change, order, actor=actor, correlation_id=applying.correlation_id
    )
    if report.kind == ReportKind.ACK:
        if status in (S.PENDING_SUBMIT, S.SUBMITTED):
            change(
                event_type="acknowledged",
                status=S.ACKNOWLEDGED,
                venue_order_id=report.venue_order_id,
            )
            return 1
        if not order.venue_order_id:
            change(event_type="acknowledged", venue_order_id=report.venue_order_id)
            return 1
        return 0
    if report.kind == ReportKind.FILL:
        return _fill_apply(order, report, applying)
    if report.kind == ReportKind.REPLACED:
        if status in TERMINAL:
            return 0
        quantity = report.quantity if report.quantity is not None else order.quantity
        change(
            event_type="modified",
            quantity=quantity,
            remaining_quantity=quantity - order.filled_quantity,
            limit_price=report.limit_price if report.limit_price is not None else order.limit_price,
            stop_price=report.stop_price if report.stop_price is not None else order.stop_price,
        )
        return 1
    final = {
        ReportKind.CANCELLED: S.CANCELLED,
        ReportKind.REJECTED: S.REJECTED,
        ReportKind.EXPIRED: S.EXPIRED,
    }[report.kind]
    if status in TERMINAL:
        return 0
    if final == S.CANCELLED and status == S.PENDING_CANCEL and _cancel_requested_for_expiry(order):
        final = S.EXPIRED
    extra: dict[str, Any] = {}
    if final == S.REJECTED:
        extra["reject_reason"] = report.reason or "rejected by the venue"
    if not order.venue_order_id and report.venue_order_id:
        extra["venue_order_id"] = report.venue_order_id
    change(
        event_type=str(final),
        data={"reason": report.reason} if report.reason else None,
        status=final,
        remaining_quantity=Decimal(0),
        **extra,
    )
    return 1


BREAKER_KICK_KEY = "breakers:kick"
BREAKER_KICK_SECONDS = 1
_breakers_kicked_at = float("-inf")  # this process's last kick (time.monotonic)


def _breakers_kick() -> None:
    """Ask for one evaluation of every armed circuit breaker, at most one a second whatever
    the number of accounts filling (beat evaluates them every few seconds as well): under load
    a kick per account and fill would cost the workers more than the fills. A process that
    kicked less than a second ago does not ask Redis again: the question was a round trip
    after every fill, 0.5 ms of a lone order's 7 in the worker."""
    global _breakers_kicked_at
    from django.core.cache import cache

    now = time.monotonic()
    if now - _breakers_kicked_at < BREAKER_KICK_SECONDS:
        return
    _breakers_kicked_at = now
    try:
        first = cache.add(BREAKER_KICK_KEY, 1, timeout=BREAKER_KICK_SECONDS)
    except Exception:  # Redis away: publish anyway; beat evaluates every few seconds too
        logger.warning("breaker kick throttle unavailable", exc_info=True)
        first = True
    if first:
        outbox.publish_now("risk.evaluate_breakers")


def _cancel_requested_for_expiry(order: Order) -> bool:
    reason = (
        OrderEvent.objects.filter(order=order, type="pending_cancel")
        .order_by("-seq")
        .values_list("data__reason", flat=True)
        .first()
    )
    return reason == EXPIRY_REASON


def _fill_apply(order: Order, report: ExecutionReport, applying: _ReportsApplying) -> int:
    """Book one execution: the fill row, the order's quantities and average price, the
    positions, cash and realized P&L (orders.books), one event. Runs inside the caller's
    transaction with the order locked, so a fill is booked completely or not at all."""
    assert report.quantity is not None and report.price is not None
    execution = (report.venue, report.execution_id)
    if execution in applying.executions_seen:
        return 0
    applying.executions_seen.add(execution)
    assert applying.ledger is not None
    quantity, price = report.quantity, report.price
    commission, commission_currency = books.fill_commission(
        order, venue=report.venue, quantity=quantity, price=price
    )
    fill = Fill(
        order=order,
        account=order.account,
        instrument=order.instrument,
        side=order.side,
        quantity=quantity,
        price=price,
        commission=commission,
        commission_currency=commission_currency,
        account_rate=applying.account_rate(order),
        liquidity=report.liquidity or "taker",
        venue=report.venue,
        venue_execution_id=report.execution_id,
        executed_at=report.at,
    )
    filled = order.filled_quantity + quantity
    previous_notional = (order.average_fill_price or Decimal(0)) * order.filled_quantity
    average = ((previous_notional + quantity * price) / filled).quantize(PRICE_QUANTUM)
    booking = applying.ledger.book(fill, order)  # sets the fill's booking fields
    applying.fills.append(fill)
    applying.accounts_filled.add(order.account.code)
    changes: dict[str, Any] = {
        "filled_quantity": filled,
        "average_fill_price": average,
        "commission": order.commission + commission,
    }
    data = {
        "realized_pnl": encode(booking.realized),
        "commission": encode(commission),
        "fill_id": str(fill.id),
        "execution_id": report.execution_id,
        "quantity": encode(quantity),
        "price": encode(price),
        "liquidity": fill.liquidity,
    }
    if not order.venue_order_id and report.venue_order_id:
        changes["venue_order_id"] = report.venue_order_id
    change = functools.partial(
        applying.writes.change,
        order,
        actor=actors.venue_actor(report.venue),
        correlation_id=applying.correlation_id,
        data=data,
    )
    if filled > order.quantity or order.status in TERMINAL:
        # Money moved at the venue; book it and flag the order for a person to look at.
        changes["needs_review"] = True
        changes["remaining_quantity"] = max(Decimal(0), order.quantity - filled)
        if filled > order.quantity:
            changes["quantity"] = filled
        change(event_type="late_fill", **changes)
        return 1
    remaining = order.quantity - filled
    changes["remaining_quantity"] = remaining
    if remaining == 0:
        changes["status"] = S.FILLED
    elif order.status != S.PENDING_CANCEL:
        changes["status"] = S.PARTIALLY_FILLED
    change(event_type="fill", **changes)
    return 1


# --- scheduled work ---------------------------------------------------------------------------


# Reports one poll reads at most (one transaction).
VENUE_POLL_PAGE = 1000


def venue_poll(*, venue_name: str, limit: int | None = None) -> int:
    """Read one page of the venue's execution-report stream from our cursor and apply it;
    answers the number of reports read (at most `limit`, default VENUE_POLL_PAGE).

    The page is fetched with no transaction open and no row locked: for a real venue the fetch
    is a network call. Then one transaction locks the cursor and applies the page only if the
    cursor still stands where the page starts. A poller that finds it moved, or held by another
    poller, drops its page (read 0): two pollers never apply one page, and a dropped page is
    read again from the new position."""
    from .models import VenueCursor

    position = VenueCursor.objects.get_or_create(venue=venue_name)[0].cursor
    reports = venue_for(venue_name).reports_since(position, limit=limit or VENUE_POLL_PAGE)
    if not reports:
        return 0
    with transaction.atomic():
        cursor = (
            VenueCursor.objects.select_for_update(skip_locked=True)
            .filter(venue=venue_name, cursor=position)
            .first()
        )
        if cursor is None:
            return 0
        execution_reports_apply(reports=reports_not_yet_applied(reports))
        cursor.cursor = max(report.cursor for report in reports)
        cursor.updated_at = timezone.now()
        cursor.save(update_fields=["cursor", "updated_at"])
        return len(reports)


def venue_poll_caught_up(*, venue_name: str, budget_seconds: float, page: int | None = None) -> int:
    """`venue_poll`, page after page, while a page comes back full (more reports wait behind
    it), for up to `budget_seconds`; answers the reports read. The stream grows by two
    reports an order (the venue's answer, which the submit path applied already, and its
    repeat here) and by every fill of a resting order, which only this poll delivers. One page
    a second fell behind a burst of batch orders: after 30 s at 1,946 orders/s the cursor
    trailed the stream by 87,200 reports and caught up 90 s later, resting orders' fills
    waiting as long, and under sustained load it would never have caught up. `page`: reports
    a poll reads at most (default VENUE_POLL_PAGE)."""
    page = page or VENUE_POLL_PAGE
    deadline = time.monotonic() + budget_seconds
    total = 0
    while True:
        read = venue_poll(venue_name=venue_name, limit=page)
        total += read
        if read < page or time.monotonic() >= deadline:
            return total


def reports_not_yet_applied(reports: Sequence[ExecutionReport]) -> list[ExecutionReport]:
    """Drop, with two queries for the whole batch, the reports our books already reflect: the
    submit path applies the venue's answer at once, and the stream repeats it. Applying them
    again would change nothing (the path is idempotent) but would lock every order twice.

    Both queries send their keys as one array a column (bulk.rows_values), one statement text
    for any page: a page's ids as parameters of an IN list made a prepared statement whose
    generic plan, made while the table was small, read every fill of the venue and compared
    each with every id (140-500 ms a page on 60,000 fills; tests/integration/
    test_generic_plans.py)."""
    order_ids = set()
    for report in reports:
        try:
            order_ids.add(UUID(report.client_order_id))
        except ValueError:
            continue
    known = {
        str(pk): (status, venue_order_id)
        for pk, status, venue_order_id in rows_values(
            Order, ["id", "status", "venue_order_id"], {"id": list(order_ids)}
        )
    }
    fills = {(r.venue, r.execution_id) for r in reports if r.kind == ReportKind.FILL}
    booked = set(
        rows_values(
            Fill, ["venue", "venue_execution_id"], {("venue", "venue_execution_id"): list(fills)}
        )
    )
    pending = []
    for report in reports:
        status, venue_order_id = known.get(report.client_order_id, (None, ""))
        if report.kind == ReportKind.FILL and (report.venue, report.execution_id) in booked:
            continue
        if (
            report.kind == ReportKind.ACK
            and venue_order_id
            and status
            not in (
                S.PENDING_SUBMIT,
                S.SUBMITTED,
            )
        ):
            continue
        if report.kind in (ReportKind.CANCELLED, ReportKind.REJECTED, ReportKind.EXPIRED) and (
            status in TERMINAL
        ):
            continue
        pending.append(report)
    return pending


def _due_to_expire(now: datetime) -> Any:
    return (
        Order.objects.filter(status__in=OPEN, expire_at__lte=now)
        .exclude(status=S.PENDING_CANCEL)
        .values_list("pk", flat=True)[:1000]
    )


# The statuses written into the text (QueryTemplate): a generic plan of this read, run every
# few seconds, can then use the partial index `order_open_expire_at`.
_DUE_TO_EXPIRE = QueryTemplate(_due_to_expire, now=datetime(1901, 2, 3, 4, 5, 6, 789, tzinfo=UTC))


def orders_expire(*, now: datetime | None = None) -> int:
    """Expire GTD and DAY orders past their expire_at: not yet sent, expired at once; at the
    venue, cancelled there first (the cancel completes as expired)."""
    now = now or timezone.now()
    count = 0
    for (order_id,) in _DUE_TO_EXPIRE.rows(now=now):
        with transaction.atomic():
            order = order_for_update(order_id)
            if order.status not in OPEN or order.expire_at is None or order.expire_at > now:
                continue
            if order.status in (S.CREATED, S.VALIDATED):
                _order_change(
                    order,
                    event_type="expired",
                    actor=actors.BEAT,
                    status=S.EXPIRED,
                    remaining_quantity=Decimal(0),
                )
            elif order.status in AT_VENUE or order.status == S.PENDING_SUBMIT:
                _order_change(
                    order,
                    event_type="pending_cancel",
                    actor=actors.BEAT,
                    data={"reason": EXPIRY_REASON, "from": order.status},
                    status=S.PENDING_CANCEL,
                )
                outbox.enqueue("orders.cancel", order_id=str(order.id))
            count += 1
    return count


STUCK_TASKS = {
    S.VALIDATED: "orders.submit",
    S.PENDING_SUBMIT: "orders.submit",
    S.PENDING_CANCEL: "orders.cancel",
}


def orders_sweep_stuck(*, now: datetime | None = None, older_than: float | None = None) -> int:
    """Re-dispatch orders left in validated, pending_submit or pending_cancel: their message
    was lost (worker killed, Redis restarted). The tasks are idempotent, so a duplicate
    dispatch is harmless."""
    now = now or timezone.now()
    age = older_than if older_than is not None else settings.ORDERS_STUCK_AFTER_SECONDS
    cutoff = now - timezone.timedelta(seconds=age)
    stuck = list(
        Order.objects.filter(
            status__in=list(STUCK_TASKS), updated_at__lt=cutoff, needs_review=False
        )
        .order_by("updated_at")
        .values_list("pk", "status")[:1000]
    )
    # Submissions go back as batches (one `orders.submit_batch` per SUBMIT_BATCH_SIZE): under
    # a backlog most "stuck" orders are only queued, and one task per order flooded the queue
    # with duplicates faster than the workers could discard them (the bench's full profile:
    # 200 tasks a second, the real work starved behind them). A duplicate batch costs one claim.
    to_submit = [str(pk) for pk, status in stuck if STUCK_TASKS[status] == "orders.submit"]
    for at in range(0, len(to_submit), SUBMIT_BATCH_SIZE):
        outbox.publish_now("orders.submit_batch", order_ids=to_submit[at : at + SUBMIT_BATCH_SIZE])
    for order_id, status in stuck:
        if STUCK_TASKS[status] != "orders.submit":
            outbox.publish_now(STUCK_TASKS[status], order_id=str(order_id))
    if stuck:
        logger.info("re-dispatched stuck orders", extra={"count": len(stuck)})
    return len(stuck)


def order_park_for_review(*, order_id: UUID | str, reason: str) -> None:
    """Stop retrying an order whose task keeps dying; a person must look at it."""
    with transaction.atomic():
        order = order_for_update(order_id)
        if order.needs_review or order.status in TERMINAL:
            return
        _order_change(
            order,
            event_type="parked",
            actor=actors.WORKER,
            data={"reason": reason},
            needs_review=True,
        )
