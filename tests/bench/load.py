"""Load phases: clients on this machine drive the stack over HTTP, as real clients would.

Every client is one trader with its own token and account (bench000, bench001, ...). Times sent
are the client's wall clock; the audit events' `at` are the server's, on the same machine, so
"filled event at - POST start" is the end-to-end fill latency. Counts after a phase come from
the database (orders by the phase's client_order_id prefix, OrderEvent rows by time).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from . import http
from .stack import OPEN_STATUSES, Stack, pg_connect

ORDERS = "/api/v1/orders/"
BATCH = "/api/v1/orders/batch/"
# FX only: a displayed size of ~1,000,000 per quote, so market orders of 1,000 never run dry;
# three symbols, so that orders do not all queue on one quote row lock at the venue.
SYMBOLS = ("EUR_USD", "GBP_USD", "USD_JPY")
QUANTITY = "1000"
# Far below the market: rests at the venue.
RESTING_PRICES = {"EUR_USD": "0.90000", "GBP_USD": "1.00000", "USD_JPY": "120.000"}


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(q / 100 * len(ordered) + 0.5))))
    return ordered[rank - 1]


def r2(value: float | None, places: int = 2) -> float | None:
    return None if value is None else round(value, places)


@dataclass
class Sample:
    coid: str
    sent: float  # wall clock, time.time()
    latency_ms: float | None = None
    status: int | None = None
    error: str | None = None
    order_id: str | None = None


@dataclass
class OrderMaker:
    tag: str
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))

    def market(self) -> dict[str, str]:
        n = next(self.counter)
        return {
            "client_order_id": f"{self.tag}-{n}",
            "symbol": SYMBOLS[n % len(SYMBOLS)],
            "side": "buy" if n % 2 else "sell",
            "type": "market",
            "time_in_force": "ioc",
            "quantity": QUANTITY,
        }

    def resting(self) -> dict[str, str]:
        n = next(self.counter)
        symbol = SYMBOLS[n % len(SYMBOLS)]
        return {
            "client_order_id": f"{self.tag}-{n}",
            "symbol": symbol,
            "side": "buy",
            "type": "limit",
            "time_in_force": "gtc",
            "quantity": QUANTITY,
            "limit_price": RESTING_PRICES[symbol],
        }


def client_for(stack: Stack, trader: int, connections: int = 1, timeout: float = 60.0):
    """Trader `trader`'s client: its token, `connections` keep-alive connections
    (tests/bench/http.py: why not httpx)."""
    return http.Client(
        stack.base_url,
        headers={"Authorization": f"Token {stack.tokens[trader]}"},
        connections=connections,
        timeout=timeout,
    )


async def post_order(client: http.Client, body: dict[str, Any]) -> Sample:
    sample = Sample(coid=body["client_order_id"], sent=time.time())
    started = time.perf_counter()
    try:
        response = await client.post(ORDERS, json=body)
    except http.HTTPError as exc:
        sample.error = type(exc).__name__
        sample.latency_ms = (time.perf_counter() - started) * 1000
        return sample
    sample.latency_ms = (time.perf_counter() - started) * 1000
    sample.status = response.status_code
    if response.status_code in (200, 201):
        sample.order_id = response.json().get("id")
    else:
        sample.error = response.text[:200]
    return sample


def status_summary(samples: list[Sample]) -> dict[str, int]:
    counts = Counter(str(s.status) if s.status is not None else s.error or "?" for s in samples)
    return dict(sorted(counts.items()))


# --- database views ------------------------------------------------------------------------


class Db:
    """The harness's own connection to the bench database (autocommit)."""

    def __init__(self, stack: Stack) -> None:
        self.conn = pg_connect(stack.database_url.rsplit("/", 1)[1])

    def close(self) -> None:
        self.conn.close()

    def open_count(self, tag: str | None = None) -> int:
        if tag is None:
            query = "SELECT count(*) FROM orders_order WHERE status = ANY(%s)"
            return self.conn.execute(query, (list(OPEN_STATUSES),)).fetchone()[0]
        query = (
            "SELECT count(*) FROM orders_order WHERE status = ANY(%s) AND client_order_id LIKE %s"
        )
        return self.conn.execute(query, (list(OPEN_STATUSES), f"{tag}-%")).fetchone()[0]

    def statuses(self, tag: str) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT status, count(*) FROM orders_order WHERE client_order_id LIKE %s "
            "GROUP BY status ORDER BY status",
            (f"{tag}-%",),
        ).fetchall()
        return {status: count for status, count in rows}

    def needs_review(self, tag: str) -> int:
        return self.conn.execute(
            "SELECT count(*) FROM orders_order WHERE client_order_id LIKE %s AND needs_review",
            (f"{tag}-%",),
        ).fetchone()[0]

    def filled_at(self, tag: str) -> dict[str, float]:
        """client_order_id -> wall time of the event that made the order filled."""
        rows = self.conn.execute(
            "SELECT o.client_order_id, e.at FROM orders_orderevent e "
            "JOIN orders_order o ON o.id = e.order_id "
            "WHERE o.client_order_id LIKE %s AND e.data->'changes'->>'status' = 'filled'",
            (f"{tag}-%",),
        ).fetchall()
        return {coid: at.timestamp() for coid, at in rows}

    def events_between(self, start: float, end: float) -> int:
        return self.conn.execute(
            "SELECT count(*) FROM orders_orderevent WHERE at >= to_timestamp(%s) "
            "AND at <= to_timestamp(%s)",
            (start, end),
        ).fetchone()[0]

    def connections(self) -> int:
        """Connections to the bench database (the harness's own included)."""
        return self.conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        ).fetchone()[0]

    def stored(self, coids: list[str]) -> int:
        """How many of these client_order_ids are stored (for answers that were errors)."""
        if not coids:
            return 0
        return self.conn.execute(
            "SELECT count(*) FROM orders_order WHERE client_order_id = ANY(%s)", (coids,)
        ).fetchone()[0]

    def stuck_orders(self, tag: str, limit: int = 5) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT id::text, client_order_id, status, needs_review, updated_at "
            "FROM orders_order WHERE client_order_id LIKE %s AND status = ANY(%s) "
            "ORDER BY updated_at LIMIT %s",
            (f"{tag}-%", list(OPEN_STATUSES), limit),
        ).fetchall()
        return [
            {"id": r[0], "client_order_id": r[1], "status": r[2], "needs_review": r[3],
             "updated_at": r[4].isoformat()}
            for r in rows
        ]  # fmt: skip


class BacklogSampler:
    """Every `every` seconds: open orders in the database and messages queued in the broker."""

    def __init__(self, stack: Stack, every: float = 1.0) -> None:
        self.stack = stack
        self.every = every
        self.series: list[dict[str, float | int]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def __enter__(self) -> BacklogSampler:
        self._t0 = time.time()
        self._thread = threading.Thread(target=self._run, name="backlog", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        try:
            db = Db(self.stack)
        except Exception as exc:  # e.g. the server's connection slots are all taken
            self.series.append({"t": 0.0, "error": f"sampler could not connect: {exc}"})
            return
        try:
            while not self._stop.is_set():
                try:
                    queues = self.stack.redis_queue_lengths()
                    self.series.append(
                        {
                            "t": round(time.time() - self._t0, 2),
                            "open_orders": db.open_count(),
                            "queued_orders_tasks": queues["orders"],
                            "queued_housekeeping_tasks": queues["housekeeping"],
                            "db_connections": db.connections(),
                        }
                    )
                except Exception as exc:  # the sampler never stops the bench
                    self.series.append({"t": round(time.time() - self._t0, 2), "error": str(exc)})
                self._stop.wait(self.every)
        finally:
            db.close()

    def slope(self, until: float) -> float | None:
        """Least-squares growth of open orders (orders/s) over samples with t <= until."""
        points = [(p["t"], p["open_orders"]) for p in self.series if "open_orders" in p]
        points = [(t, v) for t, v in points if t <= until]
        if len(points) < 3:
            return None
        mean_t = statistics.fmean(t for t, _ in points)
        mean_v = statistics.fmean(v for _, v in points)
        den = sum((t - mean_t) ** 2 for t, _ in points)
        if den == 0:
            return None
        return sum((t - mean_t) * (v - mean_v) for t, v in points) / den


def drain(db: Db, tag: str, timeout: float) -> tuple[bool, float]:
    """Wait until no order of the phase is open. Answers (drained, seconds waited)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if db.open_count(tag) == 0:
            return True, time.monotonic() - started
        time.sleep(0.2)
    return db.open_count(tag) == 0, time.monotonic() - started


def cancel_leftovers(stack: Stack, db: Db, tag: str, traders: int) -> int:
    """After the drain cap: cancel-all for each trader of the phase, so that its backlog does
    not run into the next phase. Answers how many of the phase's orders were still open."""
    left = db.open_count(tag)
    if left == 0:
        return 0

    async def run() -> None:
        async def one(trader: int) -> None:
            async with client_for(stack, trader, timeout=120) as client:
                try:
                    await client.post(f"{ORDERS}cancel-all/")
                except http.HTTPError:
                    pass

        await asyncio.gather(*(one(t) for t in range(traders)))

    asyncio.run(run())
    return left


def peak(series: list[dict], key: str) -> int | None:
    values = [p[key] for p in series if key in p]
    return max(values) if values else None


def wait_idle(db: Db, timeout: float) -> bool:
    """Between phases: no open order anywhere (a previous phase's backlog would skew the next)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.open_count() == 0:
            return True
        time.sleep(0.25)
    return False


def outcome(db: Db, tag: str, samples_accepted: int, start: float, drain_timeout: float):
    """After a load window: drain, then what became of the accepted orders."""
    drained, waited = drain(db, tag, drain_timeout)
    statuses = db.statuses(tag)
    filled = db.filled_at(tag)
    stored = sum(statuses.values())
    last = max(filled.values()) if filled else None
    result = {
        "drained": drained,
        "drain_wait_s": r2(waited, 1),
        "orders_stored": stored,
        "final_statuses": statuses,
        "needs_review": db.needs_review(tag),
        "accepted_not_stored": max(0, samples_accepted - stored),
        "still_open": sum(statuses.get(s, 0) for s in OPEN_STATUSES),
    }
    if not drained:
        result["stuck_examples"] = db.stuck_orders(tag)
    if last is not None:
        events = db.events_between(start, last)
        result["filled"] = len(filled)
        result["filled_per_s"] = r2(len(filled) / max(last - start, 1e-6), 1)
        result["events"] = events
        result["events_per_s"] = r2(events / max(last - start, 1e-6), 1)
        result["last_fill_after_s"] = r2(last - start, 2)
    else:
        result.update(filled=0, filled_per_s=0.0, events=0, events_per_s=0.0)
    return result, filled


def latency_figures(samples: list[Sample], filled: dict[str, float] | None = None):
    ok = accepted_latencies(samples)
    figures = {
        "requests": len(samples),
        "http": status_summary(samples),
        "errors": sum(1 for s in samples if s.status is None or s.status >= 400),
        "submit_p50_ms": r2(pct(ok, 50)),
        "submit_p99_ms": r2(pct(ok, 99)),
        "submit_max_ms": r2(max(ok) if ok else None),
    }
    if filled is not None:
        fills = [(filled[s.coid] - s.sent) * 1000 for s in samples if s.coid in filled]
        figures["fill_p50_ms"] = r2(pct(fills, 50))
        figures["fill_p99_ms"] = r2(pct(fills, 99))
    errors = [s for s in samples if s.status is None or s.status >= 400]
    if errors:
        figures["error_examples"] = sorted({f"{s.status}: {s.error}"[:200] for s in errors})[:5]
    return figures


# --- phases ------------------------------------------------------------------------------


async def _sequential(stack: Stack, trader: int, bodies, warmup: int) -> list[Sample]:
    async with client_for(stack, trader) as client:
        samples = []
        for i, body in enumerate(bodies):
            sample = await post_order(client, body)
            if i >= warmup:
                samples.append(sample)
        return samples


def submit_latency(stack: Stack, db: Db, tag: str, count: int, warmup: int = 20):
    """One client, sequential POSTs of limit orders far from the market (they rest)."""
    return cancel_resting(stack, db, tag, post_resting(stack, tag, count, warmup))


def post_resting(stack: Stack, tag: str, count: int, warmup: int = 20) -> dict[str, Any]:
    maker = OrderMaker(tag)
    bodies = [maker.resting() for _ in range(count + warmup)]
    samples = asyncio.run(_sequential(stack, 0, bodies, warmup))
    return latency_figures(samples)


def cancel_resting(stack: Stack, db: Db, tag: str, figures: dict[str, Any]) -> dict[str, Any]:
    """Cancel what rests, so the venue's matching loop does not carry it into later phases."""
    cancel = httpx.post(
        f"{stack.base_url}{ORDERS}cancel-all/",
        headers={"Authorization": f"Token {stack.tokens[0]}"},
        timeout=120,
    )
    figures["cancel_all_http"] = cancel.status_code
    drained, waited = drain(db, tag, timeout=120)
    figures["cancel_drained"] = drained
    figures["final_statuses"] = db.statuses(tag)
    return figures


# How often the fill-latency client asks whether its order has filled. The latency itself is
# read from the server's `filled` event, not from when a poll sees it; polling back to back
# (every 2 ms until 2026-12-04) kept the web process busy answering GETs on the same two
# cores while the worker filled the order being measured: the bench slowed what it measured.
FILL_POLL_SECONDS = 0.010


async def _fill_one(client: http.Client, body: dict[str, Any], timeout: float):
    sample = await post_order(client, body)
    result: dict[str, Any] = {"sample": sample, "final": None, "filled_at": None}
    if sample.order_id is None:
        return result
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        response = await client.get(f"{ORDERS}{sample.order_id}/")
        status = response.json().get("status") if response.status_code == 200 else None
        if status in ("filled", "cancelled", "rejected", "expired"):
            break
        await asyncio.sleep(FILL_POLL_SECONDS)
    result["final"] = status
    result["seen_ms"] = (time.time() - sample.sent) * 1000
    response = await client.get(f"{ORDERS}{sample.order_id}/events/", params={"page_size": 100})
    for event in response.json().get("results", []):
        if (event.get("data") or {}).get("changes", {}).get("status") == "filled":
            result["filled_at"] = datetime.fromisoformat(event["at"]).timestamp()
    return result


def fill_latency(stack: Stack, tag: str, count: int, warmup: int = 5):
    """One client: POST a market order, poll it until filled, read its events; the latency is
    the filled event's `at` minus the POST's start."""

    async def run():
        maker = OrderMaker(tag)
        results = []
        misses = 0
        async with client_for(stack, 0) as client:
            for i in range(count + warmup):
                result = await _fill_one(client, maker.market(), timeout=10)
                if i >= warmup:
                    results.append(result)
                misses = misses + 1 if result["final"] != "filled" else 0
                if misses >= 3:  # the order path is stuck: do not wait 10 s per order
                    break
        return results

    results = asyncio.run(run())
    fills = [
        (r["filled_at"] - r["sample"].sent) * 1000 for r in results if r["filled_at"] is not None
    ]
    seen = [r["seen_ms"] for r in results if r["final"] == "filled"]
    figures = latency_figures([r["sample"] for r in results])
    figures.update(
        fill_p50_ms=r2(pct(fills, 50)),
        fill_p99_ms=r2(pct(fills, 99)),
        fill_max_ms=r2(max(fills) if fills else None),
        fill_seen_by_polling_p50_ms=r2(pct(seen, 50)),
        final_statuses=dict(Counter(str(r["final"]) for r in results)),
    )
    return figures


async def warm(clients: list[http.Client], parallel: int = 20) -> None:
    """Open each client's connection before a timed window (GET /healthz: no database)."""
    gate = asyncio.Semaphore(parallel)

    async def one(client: http.Client) -> None:
        async with gate:
            try:
                await client.get("/healthz")
            except http.HTTPError:
                pass

    await asyncio.gather(*(one(c) for c in clients))


async def _closed_loop(stack: Stack, clients: int, seconds: float, maker: OrderMaker):
    samples: list[Sample] = []
    pool = [client_for(stack, i) for i in range(clients)]
    try:
        await warm(pool)
        started = time.time()
        end = time.monotonic() + seconds

        async def client_loop(client: http.Client) -> None:
            while time.monotonic() < end:
                samples.append(await post_order(client, maker.market()))

        await asyncio.gather(*(client_loop(c) for c in pool))
    finally:
        await asyncio.gather(*(c.aclose() for c in pool))
    return samples, started


def single_throughput(stack: Stack, db: Db, tag: str, clients: int, seconds: float, drain_s):
    """`clients` traders, each posting market orders back to back for `seconds`."""
    figures = _measured_window(
        stack, db, tag, clients, drain_s,
        lambda maker: _closed_loop(stack, clients, seconds, maker),
    )  # fmt: skip
    figures["clients"] = clients
    return figures


def _measured_window(
    stack: Stack, db: Db, tag: str, traders: int, drain_s, load, keep_samples: bool = False
) -> dict:
    """Run `load(maker)` (a coroutine answering the samples and the window's start) under a
    backlog sampler, drain, cancel what is left, and answer the window's figures (with the
    accepted submits' latencies as `submit_samples_ms` when `keep_samples`)."""
    maker = OrderMaker(tag)
    with BacklogSampler(stack) as sampler:
        samples, start = asyncio.run(load(maker))
        window = time.time() - start
        accepted = sum(1 for s in samples if s.status == 201)
        backlog_at_end = db.open_count(tag)
        result, filled = outcome(db, tag, accepted, start, drain_s)
    result["open_after_drain_cap_cancelled"] = cancel_leftovers(stack, db, tag, traders)
    result["error_answers_but_stored"] = db.stored(
        [s.coid for s in samples if s.status is None or s.status >= 400]
    )
    figures = latency_figures(samples, filled)
    if keep_samples:  # pooled over the runs (tests/bench/__main__.py, pooled_curve)
        figures["submit_samples_ms"] = [round(ms, 3) for ms in accepted_latencies(samples)]
    figures.update(result)
    figures.update(
        peak_db_connections=peak(sampler.series, "db_connections"),
        window_s=r2(window, 1),
        accepted=accepted,
        accepted_per_s=r2(accepted / window, 1),
        backlog_at_window_end=backlog_at_end,
        backlog_growth_per_s=r2(sampler.slope(window), 1),
        backlog_series=sampler.series,
    )
    return figures


async def _batches(stack: Stack, clients: int, size: int, seconds: float, maker: OrderMaker):
    results: list[dict[str, Any]] = []
    end = time.monotonic() + seconds

    async def client_loop(trader: int) -> None:
        async with client_for(stack, trader, timeout=300) as client:
            while time.monotonic() < end:
                orders = [maker.market() for _ in range(size)]
                started = time.perf_counter()
                sent = time.time()
                try:
                    response = await client.post(BATCH, json={"orders": orders})
                except http.HTTPError as exc:
                    results.append({"sent": sent, "error": type(exc).__name__, "size": size})
                    continue
                item = {
                    "sent": sent,
                    "latency_ms": (time.perf_counter() - started) * 1000,
                    "status": response.status_code,
                    "size": size,
                    "coids": [o["client_order_id"] for o in orders],
                }
                if response.status_code == 200:
                    item["per_order"] = Counter(r["status"] for r in response.json()["results"])
                else:
                    item["error"] = response.text[:200]
                results.append(item)
                # A refused request (503 service_busy: the workers are behind) is retried after
                # Retry-After, as a well-behaved client does.
                retry_after = response.headers.get("Retry-After")
                if response.status_code == 503 and retry_after:
                    await asyncio.sleep(min(float(retry_after), max(0.0, end - time.monotonic())))

    await asyncio.gather(*(client_loop(i) for i in range(clients)))
    return results


def batch_throughput(stack: Stack, db: Db, tag: str, clients: int, size: int, seconds, drain_s):
    """`clients` traders posting batches of `size` market orders back to back for `seconds`."""
    maker = OrderMaker(tag)
    start = time.time()
    with BacklogSampler(stack) as sampler:
        batches = asyncio.run(_batches(stack, clients, size, seconds, maker))
        window = time.time() - start
        per_order: Counter = Counter()
        for item in batches:
            per_order.update(item.get("per_order", {}))
        accepted = per_order.get(201, 0)
        backlog_at_end = db.open_count(tag)
        result, filled = outcome(db, tag, accepted, start, drain_s)
    result["open_after_drain_cap_cancelled"] = cancel_leftovers(stack, db, tag, clients)
    sent_at = {}
    for item in batches:
        for coid in item.get("coids", ()):
            sent_at[coid] = item["sent"]
    fills = [(filled[c] - sent_at[c]) * 1000 for c in filled if c in sent_at]
    latencies = [b["latency_ms"] for b in batches if b.get("status") == 200]
    figures = {
        "clients": clients,
        "batch_size": size,
        "requests": len(batches),
        "http": dict(Counter(str(b.get("status", b.get("error"))) for b in batches)),
        "per_order_status": {str(k): v for k, v in sorted(per_order.items())},
        "batch_request_p50_ms": r2(pct(latencies, 50)),
        "batch_request_max_ms": r2(max(latencies) if latencies else None),
        "window_s": r2(window, 1),
        "accepted": accepted,
        "accepted_per_s": r2(accepted / window, 1),
        "backlog_at_window_end": backlog_at_end,
        "backlog_growth_per_s": r2(sampler.slope(window), 1),
        "fill_p50_ms": r2(pct(fills, 50)),
        "fill_p99_ms": r2(pct(fills, 99)),
        "peak_db_connections": peak(sampler.series, "db_connections"),
        "backlog_series": sampler.series,
    }
    errors = sorted({str(b.get("error"))[:200] for b in batches if b.get("error")})
    if errors:
        figures["error_examples"] = errors[:5]
    figures.update(result)
    return figures


async def prime(clients: list[http.Client], maker: OrderMaker, db: Db, parallel: int = 10):
    """One market order from each client (tagged apart from the window's), then no open order
    anywhere: every trader has traded on its connection before the window. The web process a
    connection lands on reads a trader's token, accounts and limits once (in process: a first
    POST costs 5.3-6.5 ms of CPU, later ones 1.8-2.9), and a level whose traders are new to
    their process would time that, not concurrency (2026-12-04: the 200-trader level had up to
    100 traders new to it; the 20-trader level none)."""
    gate = asyncio.Semaphore(parallel)

    async def one(client: http.Client) -> None:
        async with gate:
            with contextlib.suppress(http.HTTPError):
                await client.post(ORDERS, json=maker.market())

    await asyncio.gather(*(one(c) for c in clients))
    await asyncio.to_thread(wait_idle, db, 60)


async def _open_loop(
    stack: Stack, traders: int, rate: float, seconds: float, maker, conns: int, db: Db
):
    """Orders at a fixed total rate, `rate` per second, sent on schedule whether or not earlier
    ones have been answered (open loop), round robin over the traders: order k goes at
    start + k/rate from trader k mod `traders`. Every trader's connection is open beforehand,
    and has sent one order (`prime`), so the server holds `traders` client connections of
    traders it knows during the window at every level."""
    samples: list[Sample] = []
    pool = [client_for(stack, i, connections=conns) for i in range(traders)]
    try:
        await warm(pool)
        await prime(pool, OrderMaker(f"warm-{maker.tag}"), db)
        pending: list[asyncio.Task] = []

        async def send(client: http.Client) -> None:
            samples.append(await post_order(client, maker.market()))

        start = time.monotonic() + 0.1
        started = time.time() + 0.1
        for k in range(max(1, int(rate * seconds))):
            delay = start + k / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(send(pool[k % traders])))
        await asyncio.gather(*pending)
    finally:
        await asyncio.gather(*(c.aclose() for c in pool))
    return samples, started


def open_loop(
    stack: Stack,
    db: Db,
    tag: str,
    traders: int,
    rate: float,
    seconds,
    drain_s,
    conns,
    keep_samples: bool = False,
):
    figures = _measured_window(
        stack, db, tag, traders, drain_s,
        lambda maker: _open_loop(stack, traders, rate, seconds, maker, conns, db),
        keep_samples,
    )  # fmt: skip
    figures.update(traders=traders, offered_per_s=rate)
    return figures


def accepted_latencies(samples: list[Sample]) -> list[float]:
    """The submit latencies (ms) of the accepted orders."""
    return [s.latency_ms for s in samples if s.status in (200, 201) and s.latency_ms is not None]
