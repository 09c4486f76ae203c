"""The simulated venue: a real venue with its own books, matching against a seeded quote walk.

State lives in the database (brokers.models), so every worker and the market-data process
share it; matching for a symbol is serialized by locking that symbol's quote row. The walk and
the matching rules are the pure functions of brokers.sim.engine, so a seed gives the same
quotes and the same fills every time.

Faults are injected from settings (SIM_VENUE): LATENCY_MS before every call, DISCONNECT_RATE
(the call fails before reaching the venue), REJECT_RATE (the order is refused), TIMEOUT_RATE
(the venue accepts the order, then the answer is lost: the hardest case for a client),
DROP_FILL_REPORT_RATE (the venue fills, but never tells: the fill report is suppressed from
every answer and from the report stream, and only order_status shows it; reconciliation's
missed fill).
"""

from __future__ import annotations

import random
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from brokers.base import (
    ExecutionReport,
    OrderTicket,
    Quote,
    ReportKind,
    VenueOrderNotFound,
    VenueOrderState,
    VenueRejected,
    VenueTransientError,
    refusal_report,
)
from brokers.models import SimOrder, SimPosition, SimQuote, SimReport, sim_venue_order_id
from tradingsite.bulk import (
    QueryTemplate,
    rows_insert,
    rows_insert_sql,
    rows_select,
    rows_update,
    rows_update_sql,
)

from . import engine
from .config import walk_spec_for

# The quote columns a taker's fill moves.
QUOTE_SIZES = ("bid_available", "ask_available")

# The reason of a REJECT_RATE rejection.
REJECTED_BY_VENUE = "rejected by the simulated venue"


@contextmanager
def venue_transaction() -> Iterator[None]:
    """The venue's own transaction. On PostgreSQL it commits without waiting for its WAL to
    reach the disk (`synchronous_commit = off` for this transaction only): the venue is
    another system, its durability is not the order path's, and its fsync would otherwise sit
    in every order's path (0.3-0.4 ms a commit here).

    Nothing of ours can outlive it: WAL is written in order, and our next commit that records
    what the venue answered (the reports' apply, synchronous) flushes the WAL up to itself,
    the venue's commit included. A crash before that loses the venue's transaction and our
    record of its answer alike: the order is still as it was before the call
    (`pending_submit`, `pending_cancel`), and recovery asks the venue, which never saw the
    call, so it is made once (the rule for any call whose answer was lost). Inside a
    transaction of the caller's (tests, a nested call) nothing changes: the setting would be
    the whole transaction's."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield


@dataclass
class _Faults:
    latency_ms: float
    reject_rate: float
    timeout_rate: float
    disconnect_rate: float
    drop_fill_report_rate: float


class SimulatedVenue:
    kind = "sim"
    mode = "sim"

    def __init__(self, *, name: str = "sim", config: dict[str, Any]) -> None:
        self.name = name
        self.seed = int(config.get("SEED", 42))
        self.slippage_ticks = int(config.get("SLIPPAGE_TICKS", 0))
        self.faults = _Faults(
            latency_ms=float(config.get("LATENCY_MS", 0)),
            reject_rate=float(config.get("REJECT_RATE", 0)),
            timeout_rate=float(config.get("TIMEOUT_RATE", 0)),
            disconnect_rate=float(config.get("DISCONNECT_RATE", 0)),
            drop_fill_report_rate=float(config.get("DROP_FILL_REPORT_RATE", 0)),
        )
        # Fault draws come from the seed too: a run with one seed fails the same calls.
        self._fault_random = random.Random(f"{self.seed}:faults")
        self._connected = True

    # --- connection ---------------------------------------------------------------------

    def connect(self) -> None:
        self._connected = True

    def disconnect(self) -> None:
        self._connected = False

    def is_connected(self) -> bool:
        return self._connected

    def ping(self) -> float:
        started = time.perf_counter()
        self._network()
        return (time.perf_counter() - started) * 1000

    def _network(self) -> None:
        if not self._connected:
            raise VenueTransientError("sim venue: not connected")
        if self.faults.latency_ms:
            time.sleep(self.faults.latency_ms / 1000)
        if self._draw(self.faults.disconnect_rate):
            raise VenueTransientError("sim venue: connection dropped")

    def _draw(self, rate: float) -> bool:
        return rate > 0 and self._fault_random.random() < rate

    # --- orders ----------------------------------------------------------------------

    def submit(self, ticket: OrderTicket) -> Sequence[ExecutionReport]:
        self._network()
        with venue_transaction():
            # The symbol's quote lock first: it serializes submissions, so a second delivery of
            # the same order (a sweep racing the first) sees the first's committed row here
            # instead of failing on the unique client order id.
            quote_row = self._quote_for_update(ticket.symbol)
            existing = SimOrder.objects.filter(client_order_id=ticket.client_order_id).first()
            if existing is not None:
                # The same client order id never makes a second order: answer the first.
                return self._reports(existing)
            order = self._new_order(ticket)
            order.save(force_insert=True)
            if self._draw(self.faults.reject_rate):
                order.status = "rejected"
                order.save(update_fields=["status"])
                self._report(order, ReportKind.REJECTED, reason=REJECTED_BY_VENUE)
            else:
                self._report(order, ReportKind.ACK)
                self._match(order, quote_row, on_arrival=True)
            reports = self._reports(order)
        if self._draw(self.faults.timeout_rate):
            raise VenueTransientError("sim venue: timed out waiting for the answer")
        return reports

    def submit_many(self, tickets: Sequence[OrderTicket]) -> Sequence[ExecutionReport]:
        """`submit` for many tickets in one round trip and one transaction, at a cost of a few
        queries per batch and one lock per symbol, not a few queries per order (see
        VenueAdapter.submit_many for what it answers).

        Each new order is matched on arrival as `submit` matches it, in ticket order, so an
        order sees the liquidity the orders before it in the batch took; orders are matched
        before they are written, so each is inserted once, in its state after arrival. The
        faults: latency and disconnect once per batch, before anything is written; the reject
        and dropped fill report draws per new order, in ticket order, as `submit` draws them;
        the timeout once per batch, after commit (every order placed, the answer lost).

        A ticket the venue cannot take is refused alone, with a REJECTED report and no order:
        a symbol it does not trade, or terms the matching engine cannot read (a limit without
        its price; `submit` raises ValueError for those)."""
        if not tickets:
            return []
        self._network()
        with venue_transaction():
            rows, refusals = self._lock_quotes({ticket.symbol for ticket in tickets})
            # After the locks, as in `submit`: a racing delivery of one of these orders has
            # committed by now and is found here.
            known = {
                order.client_order_id: order
                for order in rows_select(
                    SimOrder, {"client_order_id": sorted({t.client_order_id for t in tickets})}
                )
            }
            sent_before = set(known)
            quotes = {symbol: self._as_quote(row) for symbol, row in rows.items()}
            liquidity = {
                symbol: engine.Liquidity(bid_size=row.bid_available, ask_size=row.ask_available)
                for symbol, row in rows.items()
            }
            # Per ticket: the order that answers it, or its refusal.
            answers: list[SimOrder | ExecutionReport] = []
            placed: list[tuple[SimOrder, list[SimReport]]] = []
            for ticket in tickets:
                order = known.get(ticket.client_order_id)
                reason = refusals.get(ticket.symbol, "")
                if order is None and not reason:
                    order = self._new_order(ticket)
                    try:
                        reports = self._arrive(
                            order, quotes[ticket.symbol], liquidity[ticket.symbol]
                        )
                    except ValueError as error:
                        reason = str(error)
                    else:
                        known[ticket.client_order_id] = order
                        placed.append((order, reports))
                if reason:
                    answers.append(
                        refusal_report(
                            venue=self.name, client_order_id=ticket.client_order_id, reason=reason
                        )
                    )
                else:
                    answers.append(order)
            rows_insert([order for order, _ in placed], savepoint=False)
            for order, reports in placed:
                self._number_fills(order, reports, fills_before=0)
                for report in reports:
                    report.order = order
            written = [report for _, reports in placed for report in reports]
            rows_insert(written, savepoint=False)
            touched = []
            for symbol, row in rows.items():
                left = liquidity[symbol]
                if (left.bid_size, left.ask_size) != (row.bid_available, row.ask_available):
                    row.bid_available, row.ask_available = left.bid_size, left.ask_size
                    touched.append(row)
            self._positions_and_quotes(written, touched)
            # The orders placed now answer with the reports just written; one sent before
            # (a repeated delivery) with what it has reported since.
            reports_by_order = self._reports_by_order(
                [
                    answer
                    for answer in answers
                    if isinstance(answer, SimOrder) and answer.client_order_id in sent_before
                ]
            )
            for order, rows in placed:
                reports_by_order[order.pk] = [
                    self._as_report(row, order) for row in rows if not row.suppressed
                ]
        reports: list[ExecutionReport] = []
        for answer in answers:
            if isinstance(answer, SimOrder):
                reports.extend(reports_by_order[answer.pk])
            else:
                reports.append(answer)
        if self._draw(self.faults.timeout_rate):
            raise VenueTransientError("sim venue: timed out waiting for the answer")
        return reports

    def cancel(
        self, *, client_order_id: str, venue_order_id: str = ""
    ) -> Sequence[ExecutionReport]:
        self._network()
        with venue_transaction():
            order = self._order_for_update(client_order_id, venue_order_id)
            if order.status != "working":
                raise VenueRejected(f"order is {order.status}", code="order_closed")
            order.status = "cancelled"
            order.updated_at = timezone.now()
            order.save(update_fields=["status", "updated_at"])
            report = self._report(order, ReportKind.CANCELLED, reason="cancelled on request")
        return [self._as_report(report, order)]

    def modify(
        self,
        *,
        client_order_id: str,
        venue_order_id: str = "",
        quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> Sequence[ExecutionReport]:
        self._network()
        with venue_transaction():
            order = self._order_for_update(client_order_id, venue_order_id)
            if order.status != "working":
                raise VenueRejected(f"order is {order.status}", code="order_closed")
            if quantity is not None and quantity <= order.filled_quantity:
                raise VenueRejected(
                    "quantity must exceed the filled quantity", code="invalid_quantity"
                )
            quote_row = self._quote_for_update(order.symbol)
            first_report_id = self._last_report_id(order)
            order.quantity = quantity if quantity is not None else order.quantity
            order.limit_price = limit_price if limit_price is not None else order.limit_price
            order.stop_price = stop_price if stop_price is not None else order.stop_price
            order.updated_at = timezone.now()
            order.save(update_fields=["quantity", "limit_price", "stop_price", "updated_at"])
            self._report(
                order,
                ReportKind.REPLACED,
                quantity=order.quantity,
                limit_price=order.limit_price,
                stop_price=order.stop_price,
            )
            # New terms may cross the market: they match at once, like a new arrival.
            self._match(order, quote_row, on_arrival=True, keep_on_arrival_tif=False)
            reports = [
                self._as_report(report, order)
                for report in order.reports.filter(
                    id__gt=first_report_id, suppressed=False
                ).order_by("id")
            ]
        return reports

    def order_status(
        self, *, client_order_id: str = "", venue_order_id: str = ""
    ) -> VenueOrderState:
        self._network()
        order = self._find(client_order_id, venue_order_id).first()
        if order is None:
            raise VenueOrderNotFound()
        return VenueOrderState(
            client_order_id=order.client_order_id,
            venue_order_id=order.venue_order_id,
            status=order.status,
            filled_quantity=order.filled_quantity,
            # The venue knows its own fills, including those it never reported.
            reports=tuple(self._reports(order, include_suppressed=True)),
        )

    def working_orders(self) -> Sequence[VenueOrderState]:
        self._network()
        rows = SimOrder.objects.filter(status="working").values_list(
            "pk", "client_order_id", "filled_quantity"
        )
        return [
            VenueOrderState(
                client_order_id=client_order_id,
                venue_order_id=sim_venue_order_id(pk),
                status="working",
                filled_quantity=filled,
            )
            for pk, client_order_id, filled in rows.iterator(chunk_size=5000)
        ]

    # The stream's columns, read as tuples: the pollers read every report once a second, most
    # of them already applied by the submit path, and building two model instances per report
    # cost a tenth of a worker's CPU under batch load.
    _STREAM_COLUMNS = (
        "id", "kind", "order__client_order_id", "order_id", "at", "execution_id", "quantity",
        "price", "liquidity", "limit_price", "stop_price", "reason",
    )  # fmt: skip

    def reports_since(self, cursor: int, *, limit: int = 1000) -> Sequence[ExecutionReport]:
        rows = (
            SimReport.objects.filter(id__gt=cursor, suppressed=False)
            .order_by("id")
            .values_list(*self._STREAM_COLUMNS)[:limit]
        )
        return [self._report_of(*row) for row in rows]

    def account(self) -> dict[str, Any]:
        self._network()
        return {
            "venue": self.name,
            "working_orders": SimOrder.objects.filter(status="working").count(),
        }

    def positions(self, account: str = "") -> dict[str, Decimal]:
        """Signed quantity per symbol from the venue's own fills (reported or not): of one
        account, or of every account when `account` is ""."""
        self._network()
        if account:
            return self.positions_for_account(account)
        totals: dict[str, Decimal] = {}
        for row in SimPosition.objects.all():
            totals[row.symbol] = totals.get(row.symbol, Decimal(0)) + row.quantity
        return totals

    def positions_for_account(self, account: str) -> dict[str, Decimal]:
        return dict(SimPosition.objects.filter(account=account).values_list("symbol", "quantity"))

    @staticmethod
    def _positions_upsert(reports: Sequence[SimReport]) -> tuple[str, list[Any]] | None:
        """The statement that moves the positions by these fill reports (saved, each with its
        order), keys in order; None without fills."""
        moves: dict[tuple[str, str], Decimal] = {}
        for report in reports:
            if report.kind != ReportKind.FILL:
                continue
            order = report.order
            key = (order.account, order.symbol)
            signed = report.quantity if order.side == "buy" else -report.quantity
            moves[key] = moves.get(key, Decimal(0)) + signed
        if not moves:
            return None
        table = SimPosition._meta.db_table
        insert, params = rows_insert_sql(
            [
                SimPosition(account=key[0], symbol=key[1], quantity=moves[key])
                for key in sorted(moves)
            ]
        )
        conflict = (
            " ON CONFLICT (account, symbol) DO UPDATE"
            f" SET quantity = {table}.quantity + EXCLUDED.quantity"
        )
        return insert + conflict, params

    def _positions_and_quotes(self, reports: Sequence[SimReport], quotes: list[SimQuote]) -> None:
        """The positions moved by `reports` and the quotes' sizes written: on PostgreSQL one
        statement (the upsert as a WITH query of the quotes' update), elsewhere two."""
        upsert = self._positions_upsert(reports)
        if upsert is not None and quotes and connection.vendor == "postgresql":
            update, params = rows_update_sql(quotes, QUOTE_SIZES)
            upsert = (f"WITH positions AS ({upsert[0]}) {update}", [*upsert[1], *params])
        elif quotes:
            rows_update(quotes, QUOTE_SIZES)
        if upsert is not None:
            with connection.cursor() as cursor:
                cursor.execute(*upsert)

    def quotes(self, symbols: Sequence[str]) -> dict[str, Quote]:
        result = {}
        for row in rows_select(SimQuote, {"symbol": list(symbols)}):
            result[row.symbol] = self._as_quote(row)
        for symbol in set(symbols) - set(result):
            with transaction.atomic():
                result[symbol] = self._as_quote(self._quote_for_update(symbol))
        return result

    # --- the market ----------------------------------------------------------------------

    def step_market(self, symbols: Sequence[str]) -> int:
        """Advance each symbol's quote one step, match its resting orders, expire what is due.
        Answers the number of reports written."""
        written = 0
        for symbol in symbols:
            with venue_transaction():
                row = self._quote_for_update(symbol)
                spec = walk_spec_for(symbol)
                new = engine.next_quote(spec, self.seed, self._as_quote(row))
                written += self._set_quote(row, new)
        return written

    def set_quote(
        self, symbol: str, *, bid: Decimal, ask: Decimal, bid_size: Decimal, ask_size: Decimal
    ) -> int:
        """Put a quote on the book by hand (tests, replayed files) and match resting orders."""
        with venue_transaction():
            row = self._quote_for_update(symbol)
            new = Quote(
                symbol=symbol,
                bid=bid,
                ask=ask,
                bid_size=bid_size,
                ask_size=ask_size,
                seq=row.seq + 1,
            )
            return self._set_quote(row, new)

    def _set_quote(self, row: SimQuote, new: Quote) -> int:
        """Answers the number of reports this quote wrote (counted as they are written: a read
        of the reports after the last one before it also counted the reports of submissions
        committed meanwhile, and its generic plan read the whole table)."""
        written = 0
        row.seq, row.bid, row.ask = new.seq, new.bid, new.ask
        row.bid_size = row.bid_available = new.bid_size
        row.ask_size = row.ask_available = new.ask_size
        row.at = timezone.now()
        rows_update([row], _QUOTE_FIELDS)
        now = row.at
        working = _working_orders_to_act_on(symbol=row.symbol, bid=row.bid, ask=row.ask, now=now)
        for order in working:
            if order.expire_at is not None and order.expire_at <= now:
                order.status = "expired"
                order.updated_at = now
                order.save(update_fields=["status", "updated_at"])
                self._report(order, ReportKind.EXPIRED, reason="expired")
                written += 1
                continue
            written += self._match(order, row, on_arrival=False)
        return written

    # --- internals --------------------------------------------------------------------

    def _match(
        self, order: SimOrder, row: SimQuote, *, on_arrival: bool, keep_on_arrival_tif: bool = True
    ) -> int:
        """Match one order against the quote; answers the number of reports written."""
        liquidity = engine.Liquidity(bid_size=row.bid_available, ask_size=row.ask_available)
        result = self._match_in_memory(
            order,
            self._as_quote(row),
            liquidity,
            on_arrival=on_arrival,
            keep_on_arrival_tif=keep_on_arrival_tif,
        )
        if result is None:
            return 0
        reports = self._outcome_rows(order, result)
        self._number_fills(
            order, reports, fills_before=order.reports.filter(kind=ReportKind.FILL).count()
        )
        for report in reports:
            report.save(force_insert=True)
        order.save(update_fields=["filled_quantity", "triggered", "status", "updated_at"])
        row.bid_available, row.ask_available = liquidity.bid_size, liquidity.ask_size
        self._positions_and_quotes(reports, [row])
        return len(reports)

    def _match_in_memory(
        self,
        order: SimOrder,
        quote: Quote,
        liquidity: engine.Liquidity,
        *,
        on_arrival: bool,
        keep_on_arrival_tif: bool = True,
    ) -> engine.MatchResult | None:
        """Match `order` against `quote` with the pure engine, drawing on `liquidity`: sets the
        order's fill state in memory (the caller writes it) and answers what happened, or None
        when nothing did (the order is then untouched)."""
        spec = walk_spec_for(order.symbol)
        working = engine.WorkingOrder(
            side=order.side,
            type=order.type,
            time_in_force=order.time_in_force if keep_on_arrival_tif or not on_arrival else "gtc",
            quantity=order.quantity,
            filled_quantity=order.filled_quantity,
            limit_price=order.limit_price,
            stop_price=order.stop_price,
            triggered=order.triggered,
        )
        result = engine.match(
            working,
            quote,
            liquidity,
            tick=spec.tick,
            lot=spec.lot,
            slippage_ticks=self.slippage_ticks,
            on_arrival=on_arrival,
        )
        if not result.executions and not result.triggered_now and working.status == "working":
            return None
        order.filled_quantity = working.filled_quantity
        order.triggered = working.triggered
        order.status = working.status
        order.updated_at = timezone.now()
        return result

    def _outcome_rows(self, order: SimOrder, result: engine.MatchResult) -> list[SimReport]:
        """The unsaved reports of one match: its fills (execution ids still to be given by
        `_number_fills`), then the cancellation of an IOC/FOK remainder."""
        rows = [
            self._report_row(
                order,
                ReportKind.FILL,
                quantity=execution.quantity,
                price=execution.price,
                liquidity=execution.liquidity,
            )
            for execution in result.executions
        ]
        if order.status == "cancelled":
            rows.append(
                self._report_row(order, ReportKind.CANCELLED, reason=result.cancelled_reason)
            )
        return rows

    @staticmethod
    def _number_fills(order: SimOrder, rows: Sequence[SimReport], *, fills_before: int) -> None:
        """Give the FILL rows of a saved order their execution ids, `SIM-<pk>-<n>`, numbered
        on from the `fills_before` fills it already has."""
        fills = [row for row in rows if row.kind == ReportKind.FILL]
        for number, row in enumerate(fills, start=fills_before + 1):
            row.execution_id = f"{order.venue_order_id}-{number}"

    def _lock_quotes(self, symbols: set[str]) -> tuple[dict[str, SimQuote], dict[str, str]]:
        """Lock the quote rows of `symbols`; answers them by symbol, and the refusal reason of
        each symbol the venue does not trade."""
        rows: dict[str, SimQuote] = {}
        refusals: dict[str, str] = {}
        # Sorted: `submit` and `step_market` lock one symbol each, so this order cannot
        # deadlock with them or with another batch.
        for symbol in sorted(symbols):
            try:
                rows[symbol] = self._quote_for_update(symbol)
                walk_spec_for(symbol)
            except (VenueRejected, LookupError) as error:
                refusals[symbol] = str(error)
        return rows, refusals

    def _arrive(
        self, order: SimOrder, quote: Quote, liquidity: engine.Liquidity
    ) -> list[SimReport]:
        """A new, unsaved order arriving at the venue, in memory: the reject fault drawn, then
        matched against `quote` drawing on `liquidity`, as `submit` does it. Sets the order's
        state and answers its unsaved reports, fills not yet numbered (`_number_fills`, once
        the order has its pk). Raises ValueError, having changed nothing but the reject draw,
        on terms the engine cannot read."""
        if self._draw(self.faults.reject_rate):
            order.status = "rejected"
            return [self._report_row(order, ReportKind.REJECTED, reason=REJECTED_BY_VENUE)]
        result = self._match_in_memory(order, quote, liquidity, on_arrival=True)
        acknowledged = self._report_row(order, ReportKind.ACK)
        if result is None:
            return [acknowledged]
        return [acknowledged, *self._outcome_rows(order, result)]

    def _reports_by_order(self, orders: Sequence[SimOrder]) -> dict[int, list[ExecutionReport]]:
        """The reported (not suppressed) reports of each order, oldest first, in one query
        (none for no orders: the common case, a batch of orders new to the venue)."""
        by_pk = {order.pk: order for order in orders}
        answer: dict[int, list[ExecutionReport]] = {pk: [] for pk in by_pk}
        if not by_pk:
            return answer
        rows = SimReport.objects.filter(order_id__in=list(by_pk), suppressed=False).order_by("id")
        for row in rows:
            answer[row.order_id].append(self._as_report(row, by_pk[row.order_id]))
        return answer

    def _quote_for_update(self, symbol: str) -> SimQuote:
        found = rows_select(SimQuote, {"symbol": symbol}, lock=True)
        if found:
            return found[0]  # type: ignore[return-value]
        try:
            spec = walk_spec_for(symbol)
        except LookupError:
            raise VenueRejected(f"unknown symbol {symbol}", code="unknown_symbol") from None
        first = engine.first_quote(spec, self.seed)
        SimQuote.objects.get_or_create(
            symbol=symbol,
            defaults={
                "seq": first.seq,
                "bid": first.bid,
                "ask": first.ask,
                "bid_size": first.bid_size,
                "ask_size": first.ask_size,
                "bid_available": first.bid_size,
                "ask_available": first.ask_size,
            },
        )
        return SimQuote.objects.select_for_update().get(symbol=symbol)

    def _find(self, client_order_id: str, venue_order_id: str):
        if client_order_id:
            return SimOrder.objects.filter(client_order_id=client_order_id)
        if venue_order_id.startswith("SIM-") and venue_order_id[4:].isdigit():
            return SimOrder.objects.filter(pk=int(venue_order_id[4:]))
        return SimOrder.objects.none()

    def _order_for_update(self, client_order_id: str, venue_order_id: str) -> SimOrder:
        order = self._find(client_order_id, venue_order_id).select_for_update().first()
        if order is None:
            raise VenueOrderNotFound()
        return order

    def _last_report_id(self, order: SimOrder) -> int:
        return order.reports.order_by("-id").values_list("id", flat=True).first() or 0

    def _new_order(self, ticket: OrderTicket) -> SimOrder:
        """The unsaved venue order for a ticket, working until matched."""
        return SimOrder(
            client_order_id=ticket.client_order_id,
            account=ticket.account,
            symbol=ticket.symbol,
            side=ticket.side,
            type=ticket.type,
            time_in_force=ticket.time_in_force,
            quantity=ticket.quantity,
            limit_price=ticket.limit_price,
            stop_price=ticket.stop_price,
            expire_at=ticket.expire_at,
        )

    def _report(self, order: SimOrder, kind: ReportKind, **fields: Any) -> SimReport:
        report = self._report_row(order, kind, **fields)
        report.save(force_insert=True)
        return report

    def _report_row(self, order: SimOrder, kind: ReportKind, **fields: Any) -> SimReport:
        """An unsaved report, with the dropped fill report fault drawn for a FILL."""
        # A dropped fill report still happened: the fill is the venue's, only the telling
        # is lost (the answer to the call, and the report stream).
        suppressed = kind == ReportKind.FILL and self._draw(self.faults.drop_fill_report_rate)
        return SimReport(order=order, kind=kind, suppressed=suppressed, **fields)

    def _reports(
        self, order: SimOrder, *, include_suppressed: bool = False
    ) -> list[ExecutionReport]:
        rows = order.reports.order_by("id")
        if not include_suppressed:
            rows = rows.filter(suppressed=False)
        return [self._as_report(row, order) for row in rows]

    def _as_report(self, row: SimReport, order: SimOrder) -> ExecutionReport:
        return self._report_of(
            row.id, row.kind, order.client_order_id, order.pk, row.at, row.execution_id,
            row.quantity, row.price, row.liquidity, row.limit_price, row.stop_price, row.reason,
        )  # fmt: skip

    def _report_of(
        self,
        pk: int,
        kind: str,
        client_order_id: str,
        order_pk: int,
        at: Any,
        execution_id: str | None,
        quantity: Decimal | None,
        price: Decimal | None,
        liquidity: str,
        limit_price: Decimal | None,
        stop_price: Decimal | None,
        reason: str,
    ) -> ExecutionReport:
        """A report from its row's values, in the order of _STREAM_COLUMNS."""
        return ExecutionReport(
            venue=self.name,
            kind=ReportKind(kind),
            client_order_id=client_order_id,
            venue_order_id=sim_venue_order_id(order_pk),
            at=at,
            execution_id=execution_id or "",
            quantity=quantity,
            price=price,
            liquidity=liquidity,
            limit_price=limit_price,
            stop_price=stop_price,
            reason=reason,
            cursor=pk,
        )  # fmt: skip

    @staticmethod
    def _as_quote(row: SimQuote) -> Quote:
        return Quote(
            symbol=row.symbol,
            bid=row.bid,
            ask=row.ask,
            bid_size=row.bid_size,
            ask_size=row.ask_size,
            seq=row.seq,
            at=row.at,
        )


def _may_act_on_arms(*, bid: Decimal, ask: Decimal, now: Any) -> list[Q]:
    """The arms of _may_act_on, each a range on one partial index of SimOrder (see its Meta):
    a buy limit (or triggered buy stop-limit) fills when ask <= limit, a buy stop triggers when
    ask >= stop (sells mirrored), market orders and triggered stops take any price, and
    expiries are due at `now`."""
    limit_or_triggered_stop_limit = Q(type="limit") | Q(type="stop_limit", triggered=True)
    stop_or_stop_limit = ["stop", "stop_limit"]
    return [
        Q(side="buy", limit_price__gte=ask) & limit_or_triggered_stop_limit,
        Q(side="sell", limit_price__lte=bid) & limit_or_triggered_stop_limit,
        Q(side="buy", triggered=False, stop_price__lte=ask, type__in=stop_or_stop_limit),
        Q(side="sell", triggered=False, stop_price__gte=bid, type__in=stop_or_stop_limit),
        Q(type="market") | Q(type="stop", triggered=True),
        Q(expire_at__lte=now),
    ]


def _may_act_on(*, bid: Decimal, ask: Decimal, now: Any) -> Q:
    """The working orders a quote can fill, trigger or expire; the rest are not even read, so
    a step costs what it matches, not the size of the book. Mirrors engine.match."""
    condition = Q()
    for arm in _may_act_on_arms(bid=bid, ask=ask, now=now):
        condition |= arm
    return condition


def _working_ids_to_act_on(
    *, symbol: str, bid: Decimal, ask: Decimal, now: Any
) -> QuerySet[SimOrder, int]:
    """The ids of the symbol's working orders that _may_act_on selects (an order that
    matches two arms comes twice): a UNION ALL of one SELECT per arm, each a range on its own
    partial index of SimOrder."""
    working = SimOrder.objects.filter(symbol=symbol, status="working")
    arms = [
        working.filter(arm).values_list("id", flat=True)
        for arm in _may_act_on_arms(bid=bid, ask=ask, now=now)
    ]
    return arms[0].union(*arms[1:], all=True)


# Every quote of every symbol runs these: compiled once (tradingsite.bulk.QueryTemplate).
_QUOTE_FIELDS = [f.name for f in SimQuote._meta.concrete_fields if f.name not in ("id", "symbol")]
_WORKING_IDS = QueryTemplate(
    _working_ids_to_act_on,
    symbol="\x00symbol",
    bid=Decimal("-1.000000000123"),
    ask=Decimal("-2.000000000456"),
    now=datetime(1901, 2, 3, 4, 5, 6, 789, tzinfo=UTC),
)


def _working_orders_to_act_on(
    *, symbol: str, bid: Decimal, ask: Decimal, now: Any
) -> list[SimOrder]:
    """The symbol's working orders that _may_act_on selects, locked, in id order.

    Two statements, because one cannot be planned reliably: with the arms ORed in one WHERE,
    the planner takes side and price as independent (buy limits at or above the ask look like
    a quarter of the book, where there are a handful) and may read every working order of the
    symbol. The ids come from _working_ids_to_act_on, then the rows are locked by primary key
    in id order with the whole filter checked again on the locked rows: the rows a single
    SELECT ... FOR UPDATE with _may_act_on would have locked."""
    ids = {row[0] for row in _WORKING_IDS.rows(symbol=symbol, bid=bid, ask=ask, now=now)}
    if not ids:
        return []
    return list(_working_orders_for_update(ids=ids, symbol=symbol, bid=bid, ask=ask, now=now))


def _working_orders_for_update(
    *, ids: Collection[int], symbol: str, bid: Decimal, ask: Decimal, now: Any
) -> QuerySet[SimOrder]:
    """Of the orders `ids`, those _may_act_on still selects, locked in id order."""
    return (
        SimOrder.objects.select_for_update()
        .filter(id__in=sorted(ids), symbol=symbol, status="working")
        .filter(_may_act_on(bid=bid, ask=ask, now=now))
        .order_by("id")
    )
