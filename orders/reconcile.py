"""Reconciliation: prove our books agree with a venue's, heal what the normal path can heal,
and flag the rest for a person (issue 4; docs/reconciliation.md).

One pass per venue (`venue_reconcile`), run by beat every minute and at worker start-up:

1. Orders. Each of our orders that should be at the venue (pending_submit, submitted,
   acknowledged, partially_filled, pending_cancel) and has not changed for a few seconds is
   compared with the venue's list of its working orders (one call); one the list shows as we
   have it (working, our filled quantity) agrees, and every other is looked up by client
   order id. The venue's reports go through
   `services.execution_reports_apply`, the same idempotent path the poller uses, so a fill we
   never heard of is booked exactly once (missed_fill, healed) and a cancel or expiry we
   missed is applied. An order the venue does not know is lost: with no venue order id it may
   never have arrived (the submit path and the sweeper own it; recorded only), with one the
   venue has forgotten it (parked for review).
2. Working orders. The venue's count of working orders must not exceed ours.
3. Positions. Per account with orders at the venue, the venue's positions against our
   account-level Position rows. A difference first triggers a second look at that account's
   orders in those symbols (a fill may have landed meanwhile); what still differs is a
   position_mismatch, flagged and never written over.

No row lock is held while the venue is called: the only writes are the services' own (each in
its short transaction) and the run with its breaks, written together at the end.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from brokers.base import VenueAdapter, VenueError, VenueOrderNotFound, VenueOrderState
from brokers.registry import venue_for

from .exceptions import InvalidTransition
from .models import Account, Fill, Order, OrderEvent, Position
from .models_reconciliation import ReconciliationBreak, ReconciliationRun
from .replay import encode
from .services import SUBMIT_IN_FLIGHT_SECONDS, execution_reports_apply, order_park_for_review
from .states import OPEN, OrderStatus

logger = logging.getLogger(__name__)

S = OrderStatus
Run = ReconciliationRun
Break = ReconciliationBreak
Kind = ReconciliationBreak.Kind
Severity = ReconciliationBreak.Severity

# Statuses in which an order should be at the venue (or on its way there).
CHECKED: tuple[str, ...] = (
    S.PENDING_SUBMIT,
    S.SUBMITTED,
    S.ACKNOWLEDGED,
    S.PARTIALLY_FILLED,
    S.PENDING_CANCEL,
)
# Our statuses in which an order the venue lists as working, filled as much as ours, agrees
# with the venue. The others are on their way (a submission, a cancel) and are always asked
# about, as is every order of a venue that cannot list its orders.
RESTING: frozenset[str] = frozenset({S.ACKNOWLEDGED, S.PARTIALLY_FILLED})
FILL_EVENTS = frozenset({"fill", "late_fill"})
# A run still "running" this long after it started lost its worker (the task's hard limit is
# 120 s); the next run closes it as failed so the one-running-run constraint frees the venue.
ABANDONED_AFTER_SECONDS = 180
# Orders are looked up one by one: past this many seconds the rest wait for the next run
# (counted as orders_unchecked), far inside the task's soft limit.
TIME_BUDGET_SECONDS = 60
# On a position difference, the account's orders in that symbol changed this recently (or
# still open) are asked for again before the difference is declared.
RECHECK_WINDOW = timedelta(hours=1)
RECHECK_MAX_ORDERS = 500
# The client order ids an unknown_venue_order break names, at most.
STRANGERS_NAMED = 50


@dataclass(frozen=True)
class _OrderSeen:
    """Our view of one order before the venue is asked (read without a lock)."""

    id: UUID
    status: str
    venue_order_id: str
    needs_review: bool
    filled_quantity: Decimal
    account: str
    symbol: str
    updated_at: datetime


_SEEN_FIELDS = (
    "pk",
    "status",
    "venue_order_id",
    "needs_review",
    "filled_quantity",
    "account__code",
    "instrument__symbol",
    "updated_at",
)


def _seen(orders: QuerySet[Order], *, limit: int | None = None) -> list[_OrderSeen]:
    rows = orders.values_list(*_SEEN_FIELDS)
    return [_OrderSeen(*row) for row in (rows[:limit] if limit is not None else rows)]


def _order_key(client_order_id: str) -> UUID | str:
    """Our order id, from any spelling of it the venue answers with; a client order id that
    is no UUID is no order of ours, and stays as it is."""
    try:
        return UUID(client_order_id)
    except ValueError:
        return client_order_id


def _agrees(seen: _OrderSeen, listed: VenueOrderState | None) -> bool:
    """The venue lists the order working, as much filled as ours, under its venue id."""
    return (
        listed is not None
        and seen.status in RESTING
        and listed.status == "working"
        and listed.filled_quantity == seen.filled_quantity
        and (not seen.venue_order_id or listed.venue_order_id == seen.venue_order_id)
    )


def venue_reconcile(
    *, venue_name: str, trigger: str, settle_seconds: float | None = None
) -> ReconciliationRun:
    """Reconcile our orders, fills and positions with one venue; answers the finished run.

    Heals through the normal idempotent path (missed fills and statuses), parks orders the
    venue has forgotten, and records every difference as a break of the run. Never overwrites
    a position. If a run of this venue is already under way, answers that run (status
    running) and does nothing. A venue error (transient or not) ends the run as failed, with
    the error in its summary and the breaks found until then; any other error does the same
    and propagates. `settle_seconds` (default RECONCILE_SETTLE_SECONDS): orders changed more
    recently are in motion and left to the order path."""
    if trigger not in Run.Trigger.values:
        raise ValueError(f"unknown reconciliation trigger {trigger!r}")
    run, started = _run_start(venue_name=venue_name, trigger=trigger)
    if not started:
        logger.info("reconciliation already running", extra={"venue": venue_name, "run_id": run.pk})
        return run
    settle = settings.RECONCILE_SETTLE_SECONDS if settle_seconds is None else settle_seconds
    reconciliation = _Reconciliation(run=run, settle=settle)
    try:
        reconciliation.check(venue_for(venue_name))
    except VenueError as error:
        logger.warning(
            "reconciliation failed: venue error",
            extra={"venue": venue_name, "run_id": run.pk, "error": str(error)},
        )
        return _run_finish(run, reconciliation, error=f"{type(error).__name__}: {error}")
    except Exception as error:
        _run_finish(run, reconciliation, error=f"{type(error).__name__}: {error}")
        raise
    return _run_finish(run, reconciliation)


def _run_start(*, venue_name: str, trigger: str) -> tuple[ReconciliationRun, bool]:
    now = timezone.now()
    Run.objects.filter(
        venue=venue_name,
        status=Run.Status.RUNNING,
        started_at__lt=now - timedelta(seconds=ABANDONED_AFTER_SECONDS),
    ).update(
        status=Run.Status.FAILED,
        finished_at=now,
        summary={"error": "abandoned: the run never finished (its worker stopped)"},
    )
    try:
        with transaction.atomic():
            return Run.objects.create(venue=venue_name, trigger=trigger, started_at=now), True
    except IntegrityError:
        running = Run.objects.filter(venue=venue_name, status=Run.Status.RUNNING).first()
        if running is None:  # it finished between our insert and this read: start again
            return _run_start(venue_name=venue_name, trigger=trigger)
        return running, False


def _run_finish(
    run: ReconciliationRun, reconciliation: _Reconciliation, *, error: str = ""
) -> ReconciliationRun:
    breaks = reconciliation.breaks
    summary = reconciliation.summary()
    if error:
        summary["error"] = error
        run.status = Run.Status.FAILED
    else:
        run.status = Run.Status.BREAKS if breaks else Run.Status.OK
    run.finished_at = timezone.now()
    run.summary = summary
    with transaction.atomic():
        Break.objects.bulk_create(breaks)
        run.save(update_fields=["status", "finished_at", "summary"])
    log = logger.warning if run.status != Run.Status.OK else logger.info
    log(
        "reconciliation finished",
        extra={"venue": run.venue, "run_id": run.pk, "status": run.status, "breaks": len(breaks)},
    )
    return run


class _Reconciliation:
    """The state of one pass: what was found, and what was already reported."""

    venue: VenueAdapter

    def __init__(self, *, run: ReconciliationRun, settle: float) -> None:
        self.run = run
        self.venue_name = run.venue
        self.now = run.started_at
        self.settle = settle
        # Events written by this run's applies carry it; that is how a healed fill is told
        # apart from one the poller applied at the same moment.
        self.correlation_id = f"reconcile:{run.pk}"
        self.deadline = time.monotonic() + TIME_BUDGET_SECONDS
        self.breaks: list[ReconciliationBreak] = []
        self.counts: Counter[str] = Counter()
        self._reported_events: set[int] = set()
        self._status_flagged: set[UUID] = set()
        # The ids of our orders open at the venue just before it was asked for its working
        # orders (`_venue_working`).
        self._open_before: set[UUID] = set()

    def check(self, venue: VenueAdapter) -> None:
        self.venue = venue
        self.orders_check()
        self.working_orders_check()
        self.positions_check()

    # --- orders ---------------------------------------------------------------------------

    def orders_check(self) -> None:
        cutoff = self.now - timedelta(seconds=self.settle)
        at_venue = Order.objects.filter(venue=self.venue_name, status__in=CHECKED)
        self.counts["orders_in_motion"] = at_venue.filter(updated_at__gte=cutoff).count()
        # Ours first, then the venue's list: whatever the venue does after our read shows as a
        # difference, and the order is asked about.
        orders = _seen(at_venue.filter(updated_at__lt=cutoff).order_by("updated_at", "pk"))
        listed = (self._venue_working or {}) if orders else {}
        for seen in orders:
            if _agrees(seen, listed.get(seen.id)):
                self.counts["orders_matched"] += 1
                continue
            if time.monotonic() > self.deadline:
                self.counts["orders_unchecked"] += 1
                continue
            self.counts["orders_checked"] += 1
            self._order_check(seen, judge_lost=True)

    @functools.cached_property
    def _venue_working(self) -> dict[UUID | str, VenueOrderState] | None:
        """The venue's working orders by our order id, asked once a pass (both checks use the
        one answer); None where the venue cannot list its orders. Our open orders are read
        just before the venue is asked (`_open_before`), so that one closing here meanwhile
        is not taken for a stranger."""
        self._open_before = self._open_here()
        try:
            working = self.venue.working_orders()
        except NotImplementedError:
            return None
        return {_order_key(state.client_order_id): state for state in working}

    def _open_here(self) -> set[UUID]:
        open_here = Order.objects.filter(venue=self.venue_name, status__in=OPEN)
        return set(open_here.values_list("pk", flat=True))

    def _order_check(self, seen: _OrderSeen, *, judge_lost: bool) -> None:
        try:
            state = self.venue.order_status(client_order_id=str(seen.id))
        except VenueOrderNotFound:
            if judge_lost:
                self._order_unknown(seen)
            return
        try:
            execution_reports_apply(reports=state.reports, correlation_id=self.correlation_id)
        except InvalidTransition as refusal:
            # One order the state table will not move must not stop the pass for the others.
            if seen.id in self._status_flagged:
                return
            self._status_flagged.add(seen.id)
            self._break(
                Kind.STATUS_MISMATCH,
                Severity.WARNING,
                seen=seen,
                expected=seen.status,
                actual=f"{state.status}, filled {encode(state.filled_quantity)} at the venue",
                detail={"client_order_id": str(seen.id), "error": refusal.message},
            )
            return
        self._order_compare(seen, state)

    def _order_unknown(self, seen: _OrderSeen) -> None:
        if seen.needs_review:
            # Parked already (by an earlier run or the redelivery cap): a person owns it.
            self.counts["awaiting_review"] += 1
            return
        base = {"status": seen.status, "client_order_id": str(seen.id)}
        if not seen.venue_order_id:
            age = (self.now - seen.updated_at).total_seconds()
            if age < SUBMIT_IN_FLIGHT_SECONDS:
                # Its submission may still be on its way (a submit task's hard limit).
                self.counts["submits_in_flight"] += 1
                return
            self._break(
                Kind.LOST_ORDER,
                Severity.CRITICAL,
                seen=seen,
                expected=f"{seen.status}: sent to the venue",
                actual="the venue does not know the client order id",
                detail={**base, "action": "none: the submit path and the sweeper own it"},
            )
            return
        order_park_for_review(
            order_id=seen.id,
            reason=(
                f"reconciliation run {self.run.pk}: venue {self.venue_name} does not know "
                f"venue order {seen.venue_order_id}"
            ),
        )
        self._break(
            Kind.LOST_ORDER,
            Severity.CRITICAL,
            seen=seen,
            expected=f"{seen.status} at the venue as {seen.venue_order_id}",
            actual="the venue does not know the order",
            detail={**base, "venue_order_id": seen.venue_order_id, "action": "parked for review"},
        )

    def _order_compare(self, seen: _OrderSeen, state: VenueOrderState) -> None:
        order = Order.objects.get(pk=seen.id)
        events = [
            event
            for event in OrderEvent.objects.filter(
                order_id=seen.id, correlation_id=self.correlation_id
            ).order_by("seq")
            if event.pk not in self._reported_events
        ]
        self._reported_events.update(event.pk for event in events)
        fills = [event for event in events if event.type in FILL_EVENTS]
        if fills:
            quantity = sum((Decimal(event.data["quantity"]) for event in fills), Decimal(0))
            self._break(
                Kind.MISSED_FILL,
                Severity.WARNING,
                seen=seen,
                healed=True,
                expected=f"filled {encode(seen.filled_quantity)}",
                actual=f"filled {encode(state.filled_quantity)} at the venue",
                detail={
                    "client_order_id": str(seen.id),
                    "venue_order_id": state.venue_order_id,
                    "execution_ids": [event.data["execution_id"] for event in fills],
                    "fill_ids": [event.data["fill_id"] for event in fills],
                    "quantity": encode(quantity),
                    "status_after": order.status,
                },
            )
        others = [event for event in events if event.type not in FILL_EVENTS]
        if others:
            self._break(
                Kind.STATUS_MISMATCH,
                Severity.INFO,
                seen=seen,
                healed=True,
                expected=seen.status,
                actual=state.status,
                detail={
                    "client_order_id": str(seen.id),
                    "applied": [event.type for event in others],
                    "status_after": order.status,
                },
            )
        ours = "working" if order.status in CHECKED else order.status
        if (
            ours != state.status or order.filled_quantity != state.filled_quantity
        ) and seen.id not in self._status_flagged:
            self._status_flagged.add(seen.id)
            self._break(
                Kind.STATUS_MISMATCH,
                Severity.WARNING,
                seen=seen,
                expected=f"{order.status}, filled {encode(order.filled_quantity)}",
                actual=f"{state.status}, filled {encode(state.filled_quantity)} at the venue",
                detail={"client_order_id": str(seen.id), "venue_order_id": state.venue_order_id},
            )

    # --- working orders -------------------------------------------------------------------

    def working_orders_check(self) -> None:
        """The venue works no order that is not open here. Our side is read before and after
        the venue is asked, so an order that opens or closes meanwhile is not taken for a
        stranger. From the venue's list of its working orders the strangers are named; a venue
        that cannot list them is compared by count (`account()["working_orders"]`), if it
        gives one."""
        listed = self._venue_working
        if listed is None:
            self._working_orders_counted()
            return
        ours = self._open_before | self._open_here()
        strangers = sorted(str(key) for key in listed if key not in ours)
        if not strangers:
            return
        # An id of ours closed here, still working there, is no stranger to us: say which.
        closed_here = sorted(
            str(pk)
            for pk in Order.objects.filter(
                pk__in=[key for key in listed if isinstance(key, UUID) and key not in ours]
            ).values_list("pk", flat=True)
        )
        self._break(
            Kind.UNKNOWN_VENUE_ORDER,
            Severity.WARNING,
            expected=f"no working order at the venue that is not open here ({len(ours)} open)",
            actual=f"{len(strangers)} working at the venue and not open here",
            detail={
                "ours": len(ours),
                "venue": len(listed),
                "client_order_ids": strangers[:STRANGERS_NAMED],
                "closed_here": closed_here[:STRANGERS_NAMED],
            },
        )

    def _working_orders_counted(self) -> None:
        working = self.venue.account().get("working_orders")
        if not isinstance(working, int):
            return
        ours = len(self._open_before | self._open_here())
        if working > ours:
            self._break(
                Kind.UNKNOWN_VENUE_ORDER,
                Severity.WARNING,
                expected=f"at most {ours} working orders",
                actual=f"{working} working orders at the venue",
                detail={"ours": ours, "venue": working},
            )

    # --- positions ------------------------------------------------------------------------

    def positions_check(self) -> None:
        # Per account, one probe of its orders for one at this venue (an index on the account
        # leads there), not a DISTINCT over every order: 0.25 s a pass on a million orders.
        accounts = sorted(
            Account.objects.filter(
                Exists(Order.objects.filter(account_id=OuterRef("pk"), venue=self.venue_name))
            ).values_list("code", flat=True)
        )
        # Fills at other venues count in our positions too. Where none was ever booked (one
        # venue: the common case), the per-account sums below are not read: they read every
        # fill of the account (0.1-0.4 s an account a pass on 1,350,000 fills).
        fills_elsewhere = (
            Fill.objects.filter(venue__lt=self.venue_name).exists()
            or Fill.objects.filter(venue__gt=self.venue_name).exists()
        )
        for code in accounts:
            self.counts["accounts_checked"] += 1
            differences = self._position_differences(code, fills_elsewhere)
            if differences:
                self._recheck_orders(code, sorted(differences))
                differences = self._position_differences(code, fills_elsewhere)
            for symbol, (expected, actual, elsewhere) in sorted(differences.items()):
                self._break(
                    Kind.POSITION_MISMATCH,
                    Severity.CRITICAL,
                    account=code,
                    symbol=symbol,
                    expected=encode(expected),
                    actual=encode(actual),
                    detail={
                        "ours": encode(expected + elsewhere),
                        "other_venues": encode(elsewhere),
                        "venue": encode(actual),
                        "difference": encode(actual - expected),
                        "action": "flagged; our position is not changed",
                    },
                )

    def _position_differences(
        self, code: str, fills_elsewhere: bool
    ) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
        """symbol -> (our quantity at this venue, the venue's, ours at other venues), for the
        symbols that differ. The venue is asked first: a fill applied by us after that was
        already in its answer, never the other way round."""
        theirs = self.venue.positions(account=code)
        ours = dict(
            Position.objects.filter(account__code=code, strategy_id="").values_list(
                "instrument__symbol", "quantity"
            )
        )
        elsewhere: dict[str, Decimal] = {}
        rows = (
            Fill.objects.filter(account__code=code)
            .exclude(venue=self.venue_name)
            .values("instrument__symbol", "side")
            .annotate(total=Sum("quantity"))
            .order_by()
            if fills_elsewhere
            else ()
        )
        for row in rows:
            signed = row["total"] if row["side"] == "buy" else -row["total"]
            symbol = row["instrument__symbol"]
            elsewhere[symbol] = elsewhere.get(symbol, Decimal(0)) + signed
        self.counts["positions_compared"] += len(set(theirs) | set(ours))
        differences = {}
        for symbol in set(theirs) | set(ours):
            other = elsewhere.get(symbol, Decimal(0))
            expected = ours.get(symbol, Decimal(0)) - other
            actual = theirs.get(symbol, Decimal(0))
            if expected != actual:
                differences[symbol] = (expected, actual, other)
        return differences

    def _recheck_orders(self, code: str, symbols: list[str]) -> None:
        """Ask again for the account's orders in these symbols that are open or changed
        lately, whatever their age: a fill may have landed since the first look."""
        recent = self.now - RECHECK_WINDOW
        rows = (
            Order.objects.filter(
                venue=self.venue_name, account__code=code, instrument__symbol__in=symbols
            )
            .filter(Q(status__in=CHECKED) | Q(updated_at__gte=recent))
            .order_by("updated_at", "pk")
        )
        for seen in _seen(rows, limit=RECHECK_MAX_ORDERS):
            self.counts["orders_rechecked"] += 1
            self._order_check(seen, judge_lost=False)

    # --- breaks ---------------------------------------------------------------------------

    def _break(
        self,
        kind: str,
        severity: str,
        *,
        seen: _OrderSeen | None = None,
        account: str = "",
        symbol: str = "",
        expected: str = "",
        actual: str = "",
        healed: bool = False,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.breaks.append(
            Break(
                run=self.run,
                kind=kind,
                severity=severity,
                account=seen.account if seen else account,
                symbol=seen.symbol if seen else symbol,
                order_id=seen.id if seen else None,
                expected=expected,
                actual=actual,
                healed=healed,
                detail=detail or {},
            )
        )

    def summary(self) -> dict[str, Any]:
        kinds = Counter(item.kind for item in self.breaks)
        healed = sum(1 for item in self.breaks if item.healed)
        return {
            "orders_matched": self.counts["orders_matched"],
            "orders_checked": self.counts["orders_checked"],
            "orders_in_motion": self.counts["orders_in_motion"],
            "orders_unchecked": self.counts["orders_unchecked"],
            "orders_rechecked": self.counts["orders_rechecked"],
            "submits_in_flight": self.counts["submits_in_flight"],
            "awaiting_review": self.counts["awaiting_review"],
            "accounts_checked": self.counts["accounts_checked"],
            "positions_compared": self.counts["positions_compared"],
            "breaks": dict(sorted(kinds.items())),
            "healed": healed,
            "unhealed": len(self.breaks) - healed,
        }
