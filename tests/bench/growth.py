"""Growth (issue 5): is the order path as fast with a big history as on an empty database?

    python -m tests.bench.growth [--orders N] [--events-per-order K] [--resting N] [--quick]
                                 [--blocks N] [--per-block N] [--keep] [--reuse]

1. A fresh database `fillmore_growth` (dropped first), Redis dbs 13 (cache) and 14 (broker,
   nothing consumes it), `migrate`, `seed_demo` and 8 traders `bench000`..`bench007` with
   their accounts (`create_trader`), the way the bench stack sets itself up.
2. In this process (Django against that database, no HTTP server): the submit latency of
   `orders.services.order_submit` for GTC limit orders far from the market (they rest), 300
   sequential after 30 warm-up, and the same order through DRF's APIClient (POST
   /api/v1/orders/ with a token) and GET /api/v1/orders/?status=filled: on the EMPTY database.
3. Preload with psycopg COPY: 1,000,000 orders (100,000 with --quick) over 30 days and 8
   accounts, statuses as a busy book has them, K events each (10 by default) shaped like the
   ones orders.services writes, and the fills of their fill events; every constraint and the
   append-only trigger stay on. Then VACUUM ANALYZE.
4. The same latencies on the loaded database. Then the figure the target is judged on: an
   empty twin database (`fillmore_growth_empty`, set up as in 1.) in a child process, and
   order_submit timed in alternating blocks on the loaded database and on the twin (20 blocks
   of 250 a side; quick 6 of 100), so that the machine's drift falls on both sides alike.
   Then EXPLAIN (ANALYZE, BUFFERS) of the hot queries of the order path on the big tables
   (plan nodes, time, sequential scans flagged).
5. The simulated venue's matching cost per quote step (`SimulatedVenue.step_market`) with
   1,000 and with 100,000 resting orders (3 symbols, both sides, 300 near the touch).
6. `growth` in bench/results.json (merged: the other keys stay), a short table on stdout.

The database is dropped at the end unless --keep; --reuse measures a kept, loaded database
again (no set-up, no empty-database figures).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import queue
import random
import re
import secrets
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import redis
from psycopg import sql

from .load import pct, r2
from .stack import (
    BENCH_DIR,
    PG_SERVER,
    REDIS_HOST,
    REDIS_PORT,
    REPO,
    Stack,
    StackError,
    pg_connect,
    recreate_database,
)

DB_NAME = "fillmore_growth"
REDIS_DB, BROKER_DB = 13, 14
# The empty twin the loaded database is compared with, block by block (`interleaved`).
TWIN_DB_NAME, TWIN_REDIS_DB = "fillmore_growth_empty", 15
TRADERS = 8
SEED = 5
D = Decimal

BIG_TABLES = ("orders_order", "orders_orderevent", "orders_fill", "brokers_simorder")
MATCH_SYMBOLS = ("EUR_USD", "GBP_USD", "USD_JPY")
NEAR_TOUCH = 300
# Orders per COPY transaction: big enough that commits cost nothing, small enough that a
# failure shows quickly and the generator and the server overlap (two cores).
BATCH_ORDERS = 10_000


def say(text: str) -> None:
    sys.stderr.write(f"[growth {time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


# --- set-up (before Django) --------------------------------------------------------------------


def make_env(db_name: str = DB_NAME, redis_db: int = REDIS_DB) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "SIM_LATENCY_MS", "CONN_MAX_AGE"):
        env.pop(name, None)
    env.update(
        DJANGO_SETTINGS_MODULE="tradingsite.settings",
        DATABASE_URL=f"{PG_SERVER}/{db_name}",
        REDIS_URL=f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}",
        CELERY_BROKER_URL=f"redis://{REDIS_HOST}:{REDIS_PORT}/{BROKER_DB}",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
        LOG_LEVEL="WARNING",
        # As in the bench stack: the rate limit check runs on every order but never trips.
        RISK_ORDERS_PER_MINUTE="1000000000",
        # No worker runs here, so every timed submit stays `validated`: past the default
        # backpressure limit (5,000 waiting) a larger --submit-count would be refused. The
        # check still runs (every ORDERS_INTAKE_BACKLOG_CHECK_SECONDS), it just never trips.
        ORDERS_INTAKE_MAX_BACKLOG="1000000",
        RECONCILE_ON_WORKER_START="false",
    )
    return env


def flush_redis(dbs: tuple[int, ...] = (REDIS_DB, BROKER_DB)) -> None:
    for db in dbs:
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_timeout=5)
        client.flushdb()
        client.close()


def prepare(env: dict[str, str], db_name: str = DB_NAME, redis_db: int = REDIS_DB) -> list[str]:
    """Fresh database and Redis dbs, migrate, seed_demo, the traders. Answers their tokens."""
    recreate_database(db_name)
    flush_redis((redis_db, BROKER_DB))
    stack = Stack(traders=TRADERS)
    stack.env = env  # Stack.manage/create_traders run manage.py with this environment
    stack.manage("migrate", "--noinput")
    stack.manage("seed_demo")
    return stack.create_traders(TRADERS)


def drop_database(name: str = DB_NAME) -> None:
    with pg_connect("postgres") as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


# --- the preload -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inst:
    id: int
    symbol: str
    asset_class: str
    quote_currency: str
    price: float
    places: int  # tick = 10 ** -places (every demo instrument's tick is a power of ten)
    lot_places: int


@dataclass(frozen=True)
class Acct:
    id: int
    code: str
    user_id: int
    username: str


# (status, weight per 1,000 orders): a month of a busy book. Open orders are few.
STATUS_MIX = (
    ("filled", 560),
    ("cancelled", 300),
    ("expired", 80),
    ("rejected", 40),
    ("risk_rejected", 15),
    ("acknowledged", 3),
    ("partially_filled", 2),
)
INSTRUMENT_WEIGHTS = {
    "EUR_USD": 30,
    "GBP_USD": 20,
    "USD_JPY": 20,
    "AAPL": 10,
    "MSFT": 10,
    "BTC_USD": 10,
}
STRATEGIES = ("", "", "", "momentum-1", "meanrev-2", "twap-eu")

ORDER_COLUMNS = (
    "id, account_id, instrument_id, client_order_id, side, type, time_in_force, quantity, "
    "limit_price, stop_price, expire_at, status, filled_quantity, remaining_quantity, "
    "average_fill_price, commission, venue, venue_order_id, reject_reason, strategy_id, "
    "signal_id, metadata, request_fingerprint, reduce_only, needs_review, event_seq, "
    "created_by_id, created_at, updated_at"
)
EVENT_COLUMNS = "order_id, seq, type, at, actor, correlation_id, data"
FILL_COLUMNS = (
    "id, order_id, account_id, instrument_id, side, quantity, price, commission, "
    "commission_currency, liquidity, venue, venue_execution_id, account_rate, booked_seq, "
    "realized_pnl, executed_at, created_at"
)
NULL = "\\N"


_DAYS: dict[int, str] = {}


def ts(epoch: float) -> str:
    """ISO 8601 of a UTC epoch, microseconds truncated, without a datetime per call: the
    generator formats ~15 of these per order."""
    whole = int(epoch)
    day, rest = divmod(whole, 86400)
    prefix = _DAYS.get(day)
    if prefix is None:
        prefix = _DAYS[day] = datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%dT")
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    micros = int((epoch - whole) * 1_000_000)
    if not micros:
        return f"{prefix}{hours:02d}:{minutes:02d}:{seconds:02d}+00:00"
    return f"{prefix}{hours:02d}:{minutes:02d}:{seconds:02d}.{micros:06d}+00:00"


def _norm(text: str) -> str:
    """A decimal as orders.replay.encode writes it (normalized: no trailing zeros)."""
    return text.rstrip("0").rstrip(".") if "." in text else text


def _js(value: str | None) -> str:
    """A JSON string or null, for values that hold no quote or backslash (ids, codes,
    numbers, timestamps)."""
    return "null" if value is None else f'"{value}"'


def copy_text(value: str) -> str:
    """A text value for COPY's text format (JSON may hold backslashes; nothing here holds tabs
    or newlines)."""
    return value.replace("\\", "\\\\")


class Generator:
    """Rows of orders, their events and fills, as COPY text. Every order's events replay to
    its stored state (created carries every replayed field, each later event the fields it
    changed), statuses follow orders.states, quantities respect the check constraints.

    Events per order: K on average. Each script has a fixed skeleton (a risk rejection is 2
    events, a venue rejection 4, a filled market order 4 + its fills); limit orders that
    reached the venue take the rest as amendments (`modified`), so the total is orders x K."""

    def __init__(
        self,
        *,
        orders: int,
        events_per_order: int,
        accounts: list[Acct],
        instruments: list[Inst],
        now: float,
        days: int = 30,
    ) -> None:
        self.rng = random.Random(SEED)
        self.orders = orders
        self.k = events_per_order
        self.accounts = accounts
        self.instruments = instruments
        self.inst_cum = list(
            itertools.accumulate(INSTRUMENT_WEIGHTS.get(i.symbol, 5) for i in instruments)
        )
        self.statuses = [s for s, _ in STATUS_MIX]
        self.status_cum = list(itertools.accumulate(w for _, w in STATUS_MIX))
        self.now = now
        self.t0 = now - days * 86400
        self.spacing = days * 86400 / orders
        self.emitted = 0
        self.fills = 0
        self.venue_seq = 0
        self.booked = {a.id: 0 for a in accounts}
        self.status_counts: dict[str, int] = {}

    def _uuid(self, at: float) -> str:
        """A version-7 UUID for the time `at` (epoch seconds), as `tradingsite.ids.uuid7`
        makes them, its random bits from the seeded generator."""
        ms = int(at * 1000)
        h = f"{ms:012x}7{self.rng.getrandbits(12):03x}{0b10 << 62 | self.rng.getrandbits(62):016x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def _quantity_lots(self, inst: Inst) -> int:
        rng = self.rng
        if inst.asset_class == "fx":
            return 1000 * rng.randint(1, 1000)
        if inst.asset_class == "crypto":
            return rng.randint(1, 50_000)  # lots of 0.0001: up to 5 BTC
        return rng.randint(1, 500)

    @staticmethod
    def _q(lots: int, inst: Inst) -> str:
        if inst.lot_places == 0:
            return str(lots)
        return _norm(f"{lots / 10**inst.lot_places:.{inst.lot_places}f}")

    def batch(self, start: int, stop: int) -> tuple[bytes, bytes, bytes, int, int]:
        orders: list[str] = []
        events: list[str] = []
        fills: list[str] = []
        for i in range(start, stop):
            self._order(i, orders, events, fills)
        return (
            "".join(orders).encode(),
            "".join(events).encode(),
            "".join(fills).encode(),
            len(events),
            len(fills),
        )

    def _order(self, i: int, orders: list[str], events: list[str], fills: list[str]) -> None:
        rng = self.rng
        acct = self.accounts[rng.randrange(len(self.accounts))]
        inst = rng.choices(self.instruments, cum_weights=self.inst_cum)[0]
        status = rng.choices(self.statuses, cum_weights=self.status_cum)[0]
        self.status_counts[status] = self.status_counts.get(status, 0) + 1
        created = self.t0 + (i + rng.random()) * self.spacing
        order_id = self._uuid(created)
        side = "buy" if rng.random() < 0.5 else "sell"
        market = status in ("filled", "rejected", "risk_rejected") and rng.random() < 0.5
        kind = "market" if market else "limit"
        tif = "ioc" if market else rng.choices(("gtc", "day", "gtd"), cum_weights=(6, 9, 10))[0]
        if status == "expired" and tif == "gtc":
            tif = "day"
        if status in ("acknowledged", "partially_filled"):
            tif = "gtc" if rng.random() < 0.8 else "gtd"
        lots = self._quantity_lots(inst)
        quantity = self._q(lots, inst)
        places = inst.places
        tick = 10.0**-places
        # A limit within ~1% of the reference, on the passive side.
        offset = rng.randint(1, max(2, int(inst.price * 0.01 / tick))) * tick
        price = inst.price - offset if side == "buy" else inst.price + offset
        limit = None if market else price
        expire_at: float | None = None
        if tif == "day":
            day = datetime.fromtimestamp(created, UTC).replace(
                hour=22, minute=0, second=0, microsecond=0
            )
            if day.timestamp() <= created:
                day += timedelta(days=1)
            expire_at = day.timestamp()
        elif tif == "gtd":
            expire_at = created + rng.uniform(3600, 2 * 86400)
        if status in ("acknowledged", "partially_filled") and expire_at is not None:
            expire_at = self.now + rng.uniform(3600, 3 * 86400)  # still open: not yet due
        if status == "expired" and expire_at is not None and expire_at >= self.now:
            expire_at = max(created + 60, self.now - rng.uniform(60, 3600))

        client_order_id = f"{rng.getrandbits(128):032x}"
        corr = f"{rng.getrandbits(128):032x}"
        user_actor = f"user:{acct.username}"
        strategy = STRATEGIES[rng.randrange(len(STRATEGIES))]

        # The skeleton, then the amendments that make up K events on average.
        n_fills = 0
        if status == "filled":
            n_fills = rng.randint(1, 4) if market else 2
        elif status in ("partially_filled",) or (status == "cancelled" and rng.random() < 0.3):
            n_fills = 1
        skeleton = {
            "filled": 4 + n_fills,
            "cancelled": 6 + n_fills,
            "expired": 6,
            "rejected": 4,
            "risk_rejected": 2,
            "acknowledged": 4,
            "partially_filled": 5,
        }[status]
        amendable = kind == "limit" and status not in ("rejected", "risk_rejected")
        target = (i + 1) * self.k
        amendments = max(0, target - self.emitted - skeleton) if amendable else 0
        amendments = min(amendments, 4 * self.k)

        # state as it moves
        seq = 0
        t = created
        filled = 0
        notional = 0.0
        cur_status = "created"
        venue_order_id = ""
        reject_reason: str | None = None
        remaining = lots

        def event(kind_: str, at: float, actor: str, data: str, correlation: str = "") -> None:
            nonlocal seq
            seq += 1
            events.append(
                f"{order_id}\t{seq}\t{kind_}\t{ts(at)}\t{actor}\t{correlation}\t{copy_text(data)}\n"
            )

        limit_text = None if limit is None else _norm(f"{limit:.{places}f}")
        expire_text = None if expire_at is None else ts(expire_at)
        created_changes = (
            f'{{"changes": {{"client_order_id": "{client_order_id}", "account": "{acct.code}", '
            f'"symbol": "{inst.symbol}", "side": "{side}", "type": "{kind}", '
            f'"time_in_force": "{tif}", "venue": "sim", "reduce_only": false, '
            f'"quantity": "{quantity}", "limit_price": {_js(limit_text)}, "stop_price": null, '
            f'"expire_at": {_js(expire_text)}, "status": "created", "filled_quantity": "0", '
            f'"remaining_quantity": "{quantity}", "average_fill_price": null, "commission": "0", '
            '"venue_order_id": "", "reject_reason": null, "needs_review": false}}'
        )
        event("created", created, user_actor, created_changes, corr)
        if status == "risk_rejected":
            reject_reason = "max_order_notional: notional exceeds the limit"
            cur_status = "rejected"
            remaining = 0
            reasons = [{"rule": "max_order_notional", "message": reject_reason}]
            event(
                "risk_rejected",
                created,
                user_actor,
                json.dumps(
                    {
                        "changes": {
                            "status": "rejected",
                            "reject_reason": reject_reason,
                            "remaining_quantity": "0",
                        },
                        "reasons": reasons,
                    }
                ),
                corr,
            )
        else:
            cur_status = "validated"
            event("validated", created, user_actor, '{"changes": {"status": "validated"}}', corr)
            t += rng.uniform(0.002, 0.05)
            cur_status = "pending_submit"
            event("pending_submit", t, "worker", '{"changes": {"status": "pending_submit"}}')
            t += rng.uniform(0.001, 0.02)
            if status == "rejected":
                reject_reason = "rejected by the simulated venue"
                cur_status = "rejected"
                remaining = 0
                event(
                    "rejected",
                    t,
                    "venue:sim",
                    '{"changes": {"status": "rejected", "remaining_quantity": "0", '
                    f'"reject_reason": "{reject_reason}"}}, "reason": "{reject_reason}"}}',
                )
            else:
                self.venue_seq += 1
                venue_order_id = f"SIM-{self.venue_seq}"
                cur_status = "acknowledged"
                event(
                    "acknowledged",
                    t,
                    "venue:sim",
                    '{"changes": {"status": "acknowledged", '
                    f'"venue_order_id": "{venue_order_id}"}}}}',
                )
        # The life of the order at the venue, up to a few hours, never past now.
        horizon = min(self.now - 1, t + rng.uniform(60, 6 * 3600))
        if expire_at is not None and status == "expired":
            horizon = max(t + 1, min(horizon, expire_at))
        step = max(0.001, (horizon - t) / (amendments + n_fills + 3))
        for _ in range(amendments):
            t += rng.uniform(0.2, 1.0) * step
            moved = rng.randint(1, 20) * tick
            limit = max(tick, limit + (moved if rng.random() < 0.5 else -moved))
            event(
                "modified",
                t,
                "venue:sim",
                f'{{"changes": {{"limit_price": "{_norm(f"{limit:.{places}f}")}"}}}}',
            )
        fill_lots: list[int] = []
        if n_fills:
            share = lots if status == "filled" else lots // rng.randint(2, 5)
            base = share // n_fills
            if base == 0:
                n_fills = 1 if share else 0
                base = share
            if n_fills:
                fill_lots = [base] * (n_fills - 1) + [share - base * (n_fills - 1)]
        fill_number = 0
        for part in fill_lots:
            t += rng.uniform(0.2, 1.0) * step
            fill_price = limit if limit is not None else inst.price + rng.randint(-20, 20) * tick
            filled += part
            remaining = lots - filled
            notional += part * fill_price
            average = notional / filled
            new_status = "filled" if remaining == 0 else "partially_filled"
            changes = (
                f'"filled_quantity": "{self._q(filled, inst)}", '
                f'"average_fill_price": "{_norm(f"{average:.{places + 2}f}")}", '
                f'"remaining_quantity": "{self._q(remaining, inst)}"'
            )
            if new_status != cur_status:
                changes += f', "status": "{new_status}"'
            cur_status = new_status
            self.fills += 1
            self.booked[acct.id] += 1
            fill_id = self._uuid(t)
            fill_number += 1
            execution_id = f"{venue_order_id}-{fill_number}"
            liquidity = "taker" if market else "maker"
            event(
                "fill",
                t,
                "venue:sim",
                f'{{"changes": {{{changes}}}, "realized_pnl": "0", "commission": "0", '
                f'"fill_id": "{fill_id}", "execution_id": "{execution_id}", '
                f'"quantity": "{self._q(part, inst)}", "price": "{_norm(f"{fill_price:.{places}f}")}", '
                f'"liquidity": "{liquidity}"}}',
            )
            rate = "1" if inst.quote_currency == "USD" else f"{1 / inst.price:.10f}"
            fills.append(
                f"{fill_id}\t{order_id}\t{acct.id}\t{inst.id}\t{side}\t{self._q(part, inst)}\t"
                f"{fill_price:.{places}f}\t0\t\t{liquidity}\tsim\t{execution_id}\t{rate}\t"
                f"{self.booked[acct.id]}\t0\t{ts(t)}\t{ts(t)}\n"
            )
        if status in ("cancelled", "expired"):
            t += rng.uniform(0.2, 1.0) * step
            expiring = status == "expired"
            reason = "expired" if expiring else "cancelled on request"
            data = (
                f'{{"changes": {{"status": "pending_cancel"}}, "reason": "expired", '
                f'"from": "{cur_status}"}}'
                if expiring
                else '{"changes": {"status": "pending_cancel"}}'
            )
            event("pending_cancel", t, "system:beat" if expiring else user_actor, data)
            t += rng.uniform(0.005, 0.05)
            cur_status = status
            remaining = 0
            event(
                status,
                t,
                "venue:sim",
                f'{{"changes": {{"status": "{status}", "remaining_quantity": "0"}}, '
                f'"reason": "{reason}"}}',
            )
        self.emitted += seq
        average_price = NULL if not filled else f"{notional / filled:.{places + 2}f}"
        orders.append(
            "\t".join(
                (
                    order_id,
                    str(acct.id),
                    str(inst.id),
                    client_order_id,
                    side,
                    kind,
                    tif,
                    quantity,
                    NULL if limit is None else f"{limit:.{places}f}",
                    NULL,
                    NULL if expire_at is None else ts(expire_at),
                    cur_status,
                    self._q(filled, inst),
                    self._q(remaining, inst),
                    average_price,
                    "0",
                    "sim",
                    venue_order_id,
                    NULL if reject_reason is None else reject_reason,
                    strategy,
                    "",
                    "{}",
                    f"{rng.getrandbits(256):064x}",
                    "f",
                    "f",
                    str(seq),
                    str(acct.user_id),
                    ts(created),
                    ts(t),
                )
            )
            + "\n"
        )


def preload(*, orders: int, events_per_order: int) -> dict[str, Any]:
    """COPY `orders` orders, their events and fills into the growth database, one transaction
    per BATCH_ORDERS orders, generating the next batch while the server ingests the last.
    Then VACUUM ANALYZE. Answers counts, times and rows/s."""
    with pg_connect(DB_NAME) as conn:
        accounts = [
            Acct(*row)
            for row in conn.execute(
                "SELECT a.id, a.code, u.id, u.username FROM orders_account a "
                "JOIN orders_account_users au ON au.account_id = a.id "
                "JOIN auth_user u ON u.id = au.user_id "
                "WHERE a.code LIKE 'BENCH-%' ORDER BY a.code"
            ).fetchall()
        ]
        instruments = []
        for row in conn.execute(
            "SELECT id, symbol, asset_class, quote_currency, reference_price, tick_size, "
            "lot_size FROM orders_instrument ORDER BY symbol"
        ).fetchall():
            iid, symbol, asset_class, quote, ref, tick, lot = row
            instruments.append(
                Inst(
                    id=iid,
                    symbol=symbol,
                    asset_class=asset_class,
                    quote_currency=quote,
                    price=float(ref),
                    places=max(0, -tick.normalize().as_tuple().exponent),
                    lot_places=max(0, -lot.normalize().as_tuple().exponent),
                )
            )
    if not accounts or not instruments:
        raise StackError("the growth database has no BENCH accounts or no instruments")
    gen = Generator(
        orders=orders,
        events_per_order=events_per_order,
        accounts=accounts,
        instruments=instruments,
        now=time.time() - 60,
    )
    work: queue.Queue = queue.Queue(maxsize=2)
    failure: list[BaseException] = []
    counts = {"orders": 0, "events": 0, "fills": 0}

    def writer() -> None:
        try:
            with pg_connect(DB_NAME, autocommit=False) as conn:
                while (item := work.get()) is not None:
                    order_rows, event_rows, fill_rows, n_orders, n_events, n_fills = item
                    with conn.cursor() as cur:
                        with cur.copy(f"COPY orders_order ({ORDER_COLUMNS}) FROM STDIN") as cp:
                            cp.write(order_rows)
                        with cur.copy(f"COPY orders_orderevent ({EVENT_COLUMNS}) FROM STDIN") as cp:
                            cp.write(event_rows)
                        if fill_rows:
                            with cur.copy(f"COPY orders_fill ({FILL_COLUMNS}) FROM STDIN") as cp:
                                cp.write(fill_rows)
                    conn.commit()
                    counts["orders"] += n_orders
                    counts["events"] += n_events
                    counts["fills"] += n_fills
        except BaseException as exc:  # reported by the producer, which stops
            failure.append(exc)
            while True:  # unblock the producer
                try:
                    work.get_nowait()
                except queue.Empty:
                    break

    thread = threading.Thread(target=writer, name="copy", daemon=True)
    started = time.monotonic()
    thread.start()
    last_note = started
    try:
        for start in range(0, orders, BATCH_ORDERS):
            if failure:
                break
            stop = min(orders, start + BATCH_ORDERS)
            order_rows, event_rows, fill_rows, n_events, n_fills = gen.batch(start, stop)
            item = (order_rows, event_rows, fill_rows, stop - start, n_events, n_fills)
            while not failure:
                try:
                    work.put(item, timeout=1)
                    break
                except queue.Full:
                    continue
            if time.monotonic() - last_note > 15:
                last_note = time.monotonic()
                rows = counts["orders"] + counts["events"] + counts["fills"]
                say(
                    f"preload: {counts['orders']:,} orders, {counts['events']:,} events, "
                    f"{counts['fills']:,} fills committed "
                    f"({rows / (last_note - started):,.0f} rows/s)"
                )
    finally:
        if not failure:
            work.put(None)
        thread.join()
    if failure:
        raise StackError(f"preload failed: {failure[0]}") from failure[0]
    load_s = time.monotonic() - started
    with pg_connect(DB_NAME) as conn:
        # The books' booking counter follows the fills (nothing checks it; a rebuild would).
        conn.execute(
            "UPDATE orders_account a SET fills_booked = f.n FROM "
            "(SELECT account_id, max(booked_seq) AS n FROM orders_fill GROUP BY account_id) f "
            "WHERE f.account_id = a.id"
        )
        vacuum_started = time.monotonic()
        conn.execute("SET maintenance_work_mem = '512MB'")
        for table in ("orders_order", "orders_orderevent", "orders_fill", "orders_account"):
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))
        # The load's dirty pages are written now, not by a checkpoint during the measurement.
        conn.execute("CHECKPOINT")
        vacuum_s = time.monotonic() - vacuum_started
        sizes = {
            table: conn.execute(
                "SELECT pg_total_relation_size(%s::regclass), "
                "(SELECT count(*) FROM pg_indexes WHERE tablename = %s)",
                (table, table),
            ).fetchone()
            for table in ("orders_order", "orders_orderevent", "orders_fill")
        }
        by_status = dict(
            conn.execute("SELECT status, count(*) FROM orders_order GROUP BY status").fetchall()
        )
    rows = counts["orders"] + counts["events"] + counts["fills"]
    return {
        "orders": counts["orders"],
        "events": counts["events"],
        "fills": counts["fills"],
        "load_s": round(load_s, 1),
        "load_rows_per_s": round(rows / load_s),
        "vacuum_analyze_s": round(vacuum_s, 1),
        "table_mb": {t: round(size / 2**20) for t, (size, _) in sizes.items()},
        "table_indexes": {t: n for t, (_, n) in sizes.items()},
        "orders_by_status": by_status,
        "accounts": len(accounts),
    }


# --- in-process measurements (Django) ----------------------------------------------------------


def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(REPO))
    import django

    django.setup()


def _spread(samples_ms: list[float]) -> dict[str, Any]:
    return {
        "p50_ms": r2(pct(samples_ms, 50), 3),
        "p99_ms": r2(pct(samples_ms, 99), 3),
        "mean_ms": r2(statistics.fmean(samples_ms), 3),
        "max_ms": r2(max(samples_ms), 3),
        "n": len(samples_ms),
    }


def submit_latency(*, label: str, count: int, warmup: int) -> dict[str, Any]:
    """order_submit of GTC limit buys far below the market (they rest: no worker consumes the
    broker db), one after another, for the first trader's account."""
    return {
        **_spread(submit_samples(label=label, count=count, warmup=warmup)),
        "loadavg": _loadavg(),
    }


def submit_samples(*, label: str, count: int, warmup: int) -> list[float]:
    """The milliseconds of `count` timed order_submit calls (`submit_latency`), after
    `warmup` untimed ones."""
    from django.contrib.auth import get_user_model

    from orders import actors, services
    from orders.models import Account
    from orders.validation import OrderTerms

    user = get_user_model().objects.get(username="bench000")
    account = Account.objects.get(code="BENCH-000")
    samples = []
    for i in range(warmup + count):
        terms = OrderTerms(
            symbol="EUR_USD",
            side="buy",
            type="limit",
            time_in_force="gtc",
            quantity=D("1000"),
            limit_price=D("1.00000"),
            client_order_id=f"growth-{label}-{i}",
        )
        started = time.perf_counter_ns()
        result = services.order_submit(
            account=account, user=user, actor=actors.user_actor(user), terms=terms
        )
        elapsed = (time.perf_counter_ns() - started) / 1e6
        if not result.created:
            raise StackError(f"submit {terms.client_order_id} was not created")
        if i >= warmup:
            samples.append(elapsed)
    return samples


def _wal_lsn(conn: psycopg.Connection) -> int:
    """The cluster's current WAL position, in bytes."""
    row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    assert row is not None
    return int(row[0])


class Twin:
    """The empty database's side of `interleaved`: a child process running Django on
    TWIN_DB_NAME (its own Redis db), timing blocks of order_submit when asked
    (`python -m tests.bench.growth --serve-submits`, one JSON line in, one out)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.growth", "--serve-submits"],
            cwd=REPO,
            env=make_env(TWIN_DB_NAME, TWIN_REDIS_DB),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def samples(self, *, label: str, count: int, warmup: int) -> list[float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        request = {"label": label, "count": count, "warmup": warmup}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise StackError(f"the empty twin exited ({self.proc.wait()})")
        answer = json.loads(line)
        if "error" in answer:
            raise StackError(f"the empty twin: {answer['error']}")
        return answer["samples"]  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def serve_submits() -> int:
    """The twin's loop (`Twin`): Django on the database of its environment; each line in asks
    for a block of submits, each line out answers its milliseconds."""
    django_setup({})
    for line in sys.stdin:
        request = json.loads(line)
        try:
            samples = submit_samples(
                label=request["label"], count=request["count"], warmup=request["warmup"]
            )
            answer: dict[str, Any] = {"samples": samples}
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which stops
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


def interleaved(twin: Twin, *, blocks: int, per_block: int, warmup: int, run: str) -> dict:
    """order_submit on the loaded database (this process) and on the empty twin, in
    alternating blocks (loaded first in even blocks, empty first in odd ones): whatever the
    machine does meanwhile (its speed moved by a third within an hour here) falls on both
    sides alike, which two measurements minutes apart, before and after the preload, could
    not promise. Each block starts with 2 untimed submits; each side warms up first."""
    submit_samples(label=f"il-loaded-w-{run}", count=0, warmup=warmup)
    twin.samples(label=f"il-empty-w-{run}", count=0, warmup=warmup)
    sides: dict[str, list[float]] = {"loaded": [], "empty": []}
    block_p50: dict[str, list[float | None]] = {"loaded": [], "empty": []}
    wal = {"loaded": 0, "empty": 0}  # bytes of WAL written during each side's blocks
    with pg_connect("postgres") as conn:
        for block in range(blocks):
            order = ("loaded", "empty") if block % 2 == 0 else ("empty", "loaded")
            for side in order:
                label = f"il-{side}-{run}-{block}"
                start = _wal_lsn(conn)
                if side == "loaded":
                    got = submit_samples(label=label, count=per_block, warmup=2)
                else:
                    got = twin.samples(label=label, count=per_block, warmup=2)
                wal[side] += _wal_lsn(conn) - start
                sides[side] += got
                block_p50[side].append(r2(pct(got, 50), 3))
    timed = blocks * (per_block + 2)
    return {
        "empty": {**_spread(sides["empty"]), "wal_bytes_per_submit": round(wal["empty"] / timed)},
        "loaded": {
            **_spread(sides["loaded"]),
            "wal_bytes_per_submit": round(wal["loaded"] / timed),
        },
        "blocks": blocks,
        "per_block": per_block,
        "block_p50_ms": block_p50,
        "loadavg": _loadavg(),
    }


def _loadavg() -> str | None:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return None


def api_latency(*, token: str, label: str, count: int, warmup: int) -> dict[str, Any]:
    """POST /api/v1/orders/ (the same resting order) and GET /api/v1/orders/?status=filled
    (first page, 50) through DRF's APIClient: the whole view, no server, no network."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    posts, lists = [], []
    for i in range(warmup + count):
        body = {
            "symbol": "EUR_USD",
            "side": "buy",
            "type": "limit",
            "time_in_force": "gtc",
            "quantity": "1000",
            "limit_price": "1.00000",
            "client_order_id": f"growth-api-{label}-{i}",
        }
        started = time.perf_counter_ns()
        response = client.post("/api/v1/orders/", body, format="json")
        elapsed = (time.perf_counter_ns() - started) / 1e6
        if response.status_code != 201:
            raise StackError(f"POST /api/v1/orders/ answered {response.status_code}")
        if i >= warmup:
            posts.append(elapsed)
    for i in range(warmup + count // 3):
        started = time.perf_counter_ns()
        response = client.get("/api/v1/orders/?status=filled")
        elapsed = (time.perf_counter_ns() - started) / 1e6
        if response.status_code != 200:
            raise StackError(f"GET /api/v1/orders/ answered {response.status_code}")
        if i >= warmup:
            lists.append(elapsed)
    return {"post": _spread(posts), "list_filled": _spread(lists)}


SCAN = re.compile(
    r"((?:Parallel )?(?:Seq Scan on \w+|Index Only Scan(?: Backward)? using \w+ on \w+|"
    r"Index Scan(?: Backward)? using \w+ on \w+|Bitmap Heap Scan on \w+|Bitmap Index Scan on \w+))"
)


def _plan_summary(name: str, text: str) -> dict[str, Any]:
    scans: list[str] = []
    for found in SCAN.findall(text):
        if found not in scans:
            scans.append(found)
    execution = re.search(r"Execution Time: ([\d.]+) ms", text)
    planning = re.search(r"Planning Time: ([\d.]+) ms", text)
    top_rows = re.search(r"actual time=[\d.]+\.\.[\d.]+ rows=(\d+)", text)
    buffers = re.search(r"Buffers: ([^\n]+)", text)
    seq_big = [s for s in scans if "Seq Scan" in s and s.rsplit(" ", 1)[-1] in BIG_TABLES]
    return {
        "plan": "; ".join(scans) or text.splitlines()[0].strip(),
        "ms": float(execution.group(1)) if execution else None,
        "planning_ms": float(planning.group(1)) if planning else None,
        "rows": int(top_rows.group(1)) if top_rows else None,
        "buffers": buffers.group(1).strip() if buffers else None,
        "seq_scan_on_big_table": bool(seq_big),
        "text": text,
    }


def explain_queryset(name: str, queryset: Any) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of a queryset, inside a transaction that is rolled back
    (row locks of FOR UPDATE queries are taken and released)."""
    from django.db import transaction

    with transaction.atomic():
        text = queryset.explain(analyze=True, buffers=True)
        transaction.set_rollback(True)
    return _plan_summary(name, text)


def explain_sql(name: str, statement: str) -> dict[str, Any]:
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement)
        text = "\n".join(row[0] for row in cursor.fetchall())
        transaction.set_rollback(True)
    return _plan_summary(name, text)


def captured_select(path: str, token: str, table: str) -> str:
    """The SQL of the page query a GET runs on `table` (the one with a LIMIT), as executed."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    if response.status_code != 200:
        raise StackError(f"GET {path} answered {response.status_code}")
    for query in captured.captured_queries:
        statement = query["sql"]
        if f'FROM "{table}"' in statement and "LIMIT" in statement:
            return statement
    raise StackError(f"GET {path}: no page query on {table} captured")


def explain_all(token: str) -> dict[str, dict[str, Any]]:
    """EXPLAIN the hot queries of the order path on the loaded tables, built as the code
    builds them (the querysets of orders.services, orders.lock_objects, risk.selectors; the
    list pages' SQL as the API ran it; the admin's event list, `explain_admin`)."""
    from django.conf import settings
    from django.utils import timezone

    from orders import services
    from orders.models import Account, Fill, Order, OrderEvent
    from orders.states import OPEN, OrderStatus
    from risk import selectors as risk_selectors

    account = Account.objects.get(code="BENCH-000")
    old = (
        Order.objects.filter(account=account, status=OrderStatus.FILLED)
        .order_by("created_at")
        .values("id", "client_order_id")
        .first()
    )
    if old is None:
        raise StackError("no filled order of BENCH-000 to explain with")
    execution_id = (
        Fill.objects.filter(order_id=old["id"]).values_list("venue_execution_id", flat=True).first()
    )
    now = timezone.now()
    cutoff = now - timezone.timedelta(seconds=settings.ORDERS_STUCK_AFTER_SECONDS)
    plans = {
        # order_submit: the idempotency check for a new client_order_id (a miss) and a repeat
        "idempotency_lookup_new": explain_queryset(
            "idempotency_lookup_new",
            Order.objects.filter(account=account, client_order_id="never-used-before")[:1],
        ),
        "idempotency_lookup_repeat": explain_queryset(
            "idempotency_lookup_repeat",
            Order.objects.filter(account=account, client_order_id=old["client_order_id"])[:1],
        ),
        # orders.lock_objects.order_for_update
        "order_for_update": explain_queryset(
            "order_for_update",
            Order.objects.select_related("instrument", "account")
            .select_for_update(of=("self",))
            .filter(pk=old["id"]),
        ),
        # GET /api/v1/orders/?status=... for a trader (his one account), first page
        "order_list_filled": explain_sql(
            "order_list_filled",
            captured_select("/api/v1/orders/?status=filled", token, "orders_order"),
        ),
        "order_list_rejected": explain_sql(
            "order_list_rejected",
            captured_select("/api/v1/orders/?status=rejected", token, "orders_order"),
        ),
        "order_list_open": explain_sql(
            "order_list_open", captured_select("/api/v1/orders/?open=true", token, "orders_order")
        ),
        # GET /api/v1/orders/{id}/events/ and orders.selectors.order_events
        "order_events_by_seq": explain_queryset(
            "order_events_by_seq", OrderEvent.objects.filter(order_id=old["id"]).order_by("seq")
        ),
        # _fill_apply's duplicate check and reports_not_yet_applied
        "fill_by_execution_id": explain_queryset(
            "fill_by_execution_id",
            Fill.objects.filter(venue="sim", venue_execution_id=execution_id or "none")[:1],
        ),
        # orders_sweep_stuck
        "sweeper_stuck_orders": explain_queryset(
            "sweeper_stuck_orders",
            Order.objects.filter(
                status__in=list(services.STUCK_TASKS), updated_at__lt=cutoff, needs_review=False
            )
            .order_by("updated_at")
            .values_list("pk", "status")[:1000],
        ),
        # orders_expire
        "expiry_due_orders": explain_queryset(
            "expiry_due_orders",
            Order.objects.filter(status__in=OPEN, expire_at__lte=now)
            .exclude(status=OrderStatus.PENDING_CANCEL)
            .values_list("pk", flat=True)[:1000],
        ),
        # risk.selectors.working_orders (the gate's snapshot when a limit needs it): its SQL,
        # the statuses as literals (until 2026-12-05 this explained an ORM stand-in with the
        # statuses as parameters, which the code no longer runs: 11.6-14.4 ms)
        "risk_working_orders": explain_sql(
            "risk_working_orders", risk_selectors._WORKING_ALL_SQL % int(account.pk)
        ),
        # GET /api/v1/fills/ for a trader, first page
        "fill_list": explain_sql(
            "fill_list", captured_select("/api/v1/fills/", token, "orders_fill")
        ),
        # GET /api/v1/fills/ for compliance, risk and superusers (every account): the page
        # query of orders.selectors.fills_visible_to in NewestFillFirst's order
        "fill_list_all_accounts": explain_queryset(
            "fill_list_all_accounts",
            Fill.objects.select_related("instrument", "account", "order").order_by(
                "-executed_at", "-id"
            )[:51],
        ),
    }
    plans.update(explain_admin(old["id"]))
    return plans


def explain_admin(order_id: Any) -> dict[str, dict[str, Any]]:
    """The admin's event list on the loaded trail, built by orders.admin: its first page, its
    capped count, and its search by a correlation id, an actor and a client order id."""
    from django.contrib import admin as django_admin
    from django.test import RequestFactory

    from orders.admin import CappedCountPaginator, OrderEventAdmin
    from orders.models import Order, OrderEvent

    events = OrderEventAdmin(OrderEvent, django_admin.site)
    ordering = events.get_ordering(None)
    correlation_id = (
        OrderEvent.objects.filter(order_id=order_id)
        .exclude(correlation_id="")
        .values_list("correlation_id", flat=True)
        .first()
    )
    client_order_id = Order.objects.values_list("client_order_id", flat=True).get(pk=order_id)

    def search(term: str) -> Any:
        found, _ = events.get_search_results(
            RequestFactory().get("/"), OrderEvent.objects.all(), term
        )
        return found.order_by(*ordering)[: events.list_per_page]

    plans = {
        "admin_events_page": OrderEvent.objects.order_by(*ordering)[: events.list_per_page],
        "admin_event_search_correlation_id": search(correlation_id or "none"),
        "admin_event_search_actor": search("user:bench000"),
        "admin_event_search_client_order_id": search(client_order_id),
    }
    explained = {name: explain_queryset(name, queryset) for name, queryset in plans.items()}
    capped = OrderEvent.objects.order_by()[: CappedCountPaginator.cap + 1]
    explained["admin_events_count"] = explain_sql(
        "admin_events_count", f"SELECT COUNT(*) FROM ({capped.query}) counted"
    )
    return explained


# --- the venue's matching cost -----------------------------------------------------------------


def match_cost(*, resting: int, steps: int, warmup: int = 5) -> dict[str, Any]:
    """Fresh venue books (reports, orders, quotes emptied; the same seeded walk every time),
    `resting` working limit orders over MATCH_SYMBOLS and both sides, NEAR_TOUCH of them a few
    ticks behind the touch (the walk reaches some: they fill), the rest 1-10 % away. Then
    `steps` quote steps per symbol, each timed: one `step_market([symbol])`, i.e. one quote
    with its matching, in its own transaction, as the market-data process runs it."""
    from django.db import connection
    from django.utils import timezone

    from brokers.models import SimOrder, SimReport
    from brokers.registry import venue_for
    from brokers.sim.venue import _working_ids_to_act_on, _working_orders_for_update

    venue = venue_for("sim")
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE brokers_simposition, brokers_simreport, brokers_simorder, brokers_simquote"
            " RESTART IDENTITY"
        )
    quotes = venue.quotes(list(MATCH_SYMBOLS))
    rng = random.Random(SEED + resting)
    now = timezone.now().isoformat()
    lines = []
    near = min(NEAR_TOUCH, resting)
    for n in range(resting):
        symbol = MATCH_SYMBOLS[n % len(MATCH_SYMBOLS)]
        quote = quotes[symbol]
        tick = D(1).scaleb(quote.bid.as_tuple().exponent)
        side = "buy" if (n // len(MATCH_SYMBOLS)) % 2 == 0 else "sell"
        if n < near:
            ticks = rng.randint(1, 40)
            price = quote.bid - ticks * tick if side == "buy" else quote.ask + ticks * tick
        else:
            away = D(rng.uniform(0.01, 0.10)).quantize(D("0.0001"))
            price = quote.bid * (1 - away) if side == "buy" else quote.ask * (1 + away)
            price = price.quantize(tick)
        quantity = 1000 * rng.randint(1, 100)
        lines.append(
            f"match-{resting}-{n}\tBENCH-{n % TRADERS:03d}\t{symbol}\t{side}\tlimit\tgtc\t"
            f"{quantity}\t0\t{price}\t\\N\tf\tworking\t\\N\t{now}\t{now}\n"
        )
    connection.ensure_connection()
    with connection.connection.cursor() as pg:  # the psycopg connection under Django's
        with pg.copy(
            "COPY brokers_simorder (client_order_id, account, symbol, side, type, "
            "time_in_force, quantity, filled_quantity, limit_price, stop_price, triggered, "
            "status, expire_at, created_at, updated_at) FROM STDIN"
        ) as cp:
            cp.write("".join(lines).encode())
    _vacuum("brokers_simorder")
    per_symbol: dict[str, list[float]] = {s: [] for s in MATCH_SYMBOLS}
    for i in range(warmup + steps):
        for symbol in MATCH_SYMBOLS:
            started = time.perf_counter_ns()
            venue.step_market([symbol])
            elapsed = (time.perf_counter_ns() - started) / 1e6
            if i >= warmup:
                per_symbol[symbol].append(elapsed)
    # The matching queries as _set_quote runs them (the ids, one SELECT per arm of _may_act_on,
    # then the lock by id): on the book as it is now, and for a quote whose ask crosses the
    # 20 best buy limits (the lock statement only runs when something crosses).
    from brokers.models import SimQuote

    row = SimQuote.objects.get(symbol=MATCH_SYMBOLS[0])
    now_at = timezone.now()
    plan = explain_queryset(
        "match_working_orders",
        _working_ids_to_act_on(symbol=row.symbol, bid=row.bid, ask=row.ask, now=now_at),
    )
    best_buys = list(
        SimOrder.objects.filter(symbol=row.symbol, status="working", side="buy", type="limit")
        .order_by("-limit_price")
        .values_list("limit_price", flat=True)[:20]
    )
    crossing_ask = best_buys[-1]
    crossing_bid = crossing_ask - (row.ask - row.bid)
    crossing: dict[str, Any] = {
        "symbol": row.symbol,
        "bid": str(crossing_bid),
        "ask": str(crossing_ask),
    }
    crossing_ids = _working_ids_to_act_on(
        symbol=row.symbol, bid=crossing_bid, ask=crossing_ask, now=now_at
    )
    crossing["ids"] = explain_queryset("match_crossing_ids", crossing_ids)
    crossing["lock"] = explain_queryset(
        "match_crossing_lock",
        _working_orders_for_update(
            ids=set(crossing_ids),
            symbol=row.symbol,
            bid=crossing_bid,
            ask=crossing_ask,
            now=now_at,
        ),
    )
    every = [s for samples in per_symbol.values() for s in samples]
    return {
        "resting": resting,
        "near_touch": near,
        "steps_per_symbol": steps,
        **_spread(every),
        "per_symbol": {s: _spread(v) for s, v in per_symbol.items()},
        "fills": SimReport.objects.filter(kind="fill").count(),
        "still_working": SimOrder.objects.filter(status="working").count(),
        "explain": plan,
        "explain_crossing": crossing,
    }


def _checkpoint() -> None:
    with pg_connect(DB_NAME) as conn:
        conn.execute("CHECKPOINT")


def previous_empty() -> dict[str, Any]:
    """--reuse: the empty-database figures and the preload of the run that loaded the kept
    database (bench/results.json), so that the growth can still be computed."""
    try:
        growth = json.loads((BENCH_DIR / "results.json").read_text()).get("growth") or {}
    except (OSError, json.JSONDecodeError):
        return {}
    details = growth.get("details") or {}
    if not details.get("submit_empty"):
        return {}
    say(f"empty-database figures from the run of {growth.get('measured_at')}")
    return {
        "submit_empty": details["submit_empty"],
        "api_empty": details.get("api_empty"),
        "preload": details.get("preload"),
        "empty_measured_at": growth.get("measured_at"),
    }


def _vacuum(table: str) -> None:
    with pg_connect(DB_NAME) as conn:
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))


# --- results -----------------------------------------------------------------------------------


def growth_pct(empty: float | None, loaded: float | None) -> float | None:
    if not empty or loaded is None:
        return None
    return round((loaded / empty - 1) * 100, 1)


def _comparison(empty: dict[str, Any], loaded: dict[str, Any]) -> dict[str, Any]:
    """p50 and p99 of the empty and the loaded side, and their growth."""
    return {
        "p50_ms_empty": empty.get("p50_ms"),
        "p99_ms_empty": empty.get("p99_ms"),
        "p50_ms_loaded": loaded.get("p50_ms"),
        "p99_ms_loaded": loaded.get("p99_ms"),
        "p99_growth_pct": growth_pct(empty.get("p99_ms"), loaded.get("p99_ms")),
        "p50_growth_pct": growth_pct(empty.get("p50_ms"), loaded.get("p50_ms")),
    }


def figures(raw: dict[str, Any]) -> dict[str, Any]:
    mixed = raw["interleaved"]
    empty, loaded = mixed["empty"], mixed["loaded"]
    before, after = raw.get("submit_empty") or {}, raw["submit_loaded"]
    api_empty, api_loaded = raw.get("api_empty") or {}, raw["api_loaded"]
    m1k, m100k = raw["match_small"], raw["match_big"]
    load = raw.get("preload") or {}
    explain = {
        name: {k: v for k, v in plan.items() if k != "text"}
        for name, plan in raw["explain"].items()
    }
    explain["match_working_orders_big"] = {k: v for k, v in m100k["explain"].items() if k != "text"}
    for part in ("ids", "lock"):
        plan = m100k["explain_crossing"][part]
        explain[f"match_crossing_{part}_big"] = {k: v for k, v in plan.items() if k != "text"}
    return {
        "orders": load.get("orders", raw.get("orders")),
        "events": load.get("events", raw.get("events")),
        "fills": load.get("fills"),
        **{f"submit_{key}": value for key, value in _comparison(empty, loaded).items()},
        "submit_measured": (
            f"interleaved: {mixed['blocks']} blocks of {mixed['per_block']} submits a side,"
            " alternating between the loaded database and an empty twin"
        ),
        "submit_count_per_side": loaded["n"],
        "submit_wal_bytes_empty": empty.get("wal_bytes_per_submit"),
        "submit_wal_bytes_loaded": loaded.get("wal_bytes_per_submit"),
        # The same submits timed on the empty database before the preload and on the loaded
        # one after it, minutes apart (the figures up to 2026-12-05).
        "submit_sequential": {"count": raw["submit_count"], **_comparison(before, after)},
        "api_post_p50_ms_empty": api_empty.get("post", {}).get("p50_ms"),
        "api_post_p99_ms_empty": api_empty.get("post", {}).get("p99_ms"),
        "api_post_p50_ms_loaded": api_loaded["post"]["p50_ms"],
        "api_post_p99_ms_loaded": api_loaded["post"]["p99_ms"],
        "api_post_p99_growth_pct": growth_pct(
            api_empty.get("post", {}).get("p99_ms"), api_loaded["post"]["p99_ms"]
        ),
        "api_list_filled_p50_ms_empty": api_empty.get("list_filled", {}).get("p50_ms"),
        "api_list_filled_p50_ms_loaded": api_loaded["list_filled"]["p50_ms"],
        "api_list_filled_p99_ms_loaded": api_loaded["list_filled"]["p99_ms"],
        "load_rows_per_s": load.get("load_rows_per_s"),
        "load_s": load.get("load_s"),
        "vacuum_analyze_s": load.get("vacuum_analyze_s"),
        "table_mb": load.get("table_mb"),
        "match_resting_small": m1k["resting"],
        "match_resting_big": m100k["resting"],
        "match_ms_per_quote_1k_p50": m1k["p50_ms"],
        "match_ms_per_quote_1k_p99": m1k["p99_ms"],
        "match_ms_per_quote_100k_p50": m100k["p50_ms"],
        "match_ms_per_quote_100k_p99": m100k["p99_ms"],
        "match_per_symbol_100k": {s: v for s, v in m100k["per_symbol"].items()},
        "match_fills": {"1k": m1k["fills"], "100k": m100k["fills"]},
        "explain": explain,
        "seq_scans_on_big_tables": [
            name for name, plan in explain.items() if plan["seq_scan_on_big_table"]
        ],
        "measured_at": raw["measured_at"],
        "empty_measured_at": raw.get("empty_measured_at", raw["measured_at"]),
        "command": raw["command"],
        "profile": raw["profile"],
        "submit_count": raw["submit_count"],
        "loadavg_during_submit": {
            "empty": before.get("loadavg"),
            "loaded": after.get("loadavg"),
            "interleaved": mixed.get("loadavg"),
        },
        "details": {
            "submit_interleaved": mixed,
            "submit_empty": raw.get("submit_empty"),
            "submit_loaded": after,
            "api_empty": raw.get("api_empty"),
            "api_loaded": api_loaded,
            "preload": load,
            "match_1k": {k: v for k, v in m1k.items() if not k.startswith("explain")},
            "match_100k": {k: v for k, v in m100k.items() if not k.startswith("explain")},
            "match_crossing_quote_100k": {
                k: v for k, v in m100k["explain_crossing"].items() if k not in ("ids", "lock")
            },
            "explain_text": {name: plan["text"] for name, plan in raw["explain"].items()}
            | {
                "match_working_orders_small": m1k["explain"]["text"],
                "match_working_orders_big": m100k["explain"]["text"],
                "match_crossing_ids_big": m100k["explain_crossing"]["ids"]["text"],
                "match_crossing_lock_big": m100k["explain_crossing"]["lock"]["text"],
            },
        },
    }


def write_results(growth: dict[str, Any]) -> None:
    """Merge `growth` into bench/results.json (every other key kept) and refresh results.md
    when the file is a full bench result."""
    from . import report

    BENCH_DIR.mkdir(exist_ok=True)
    path = BENCH_DIR / "results.json"
    results: dict[str, Any] = {}
    if path.exists():
        try:
            results = json.loads(path.read_text())
        except json.JSONDecodeError:
            results = {}
    results["growth"] = growth
    results["growth_note"] = (
        f"measured by python -m tests.bench.growth at {growth['measured_at']} "
        f"({growth['orders']:,} orders, {growth['events']:,} events preloaded)"
    )
    path.write_text(json.dumps(results, indent=2, default=str))
    if "figures" in results and "limits_runs" in results:
        (BENCH_DIR / "results.md").write_text(report.render_markdown(results))


def render(growth: dict[str, Any]) -> str:
    from .report import fmt

    def pair(a: Any, b: Any) -> str:
        return f"{fmt(a)} / {fmt(b)}"

    def g(value: float | None) -> str:
        return "-" if value is None else f"{value:+.1f} %"

    seq = growth["submit_sequential"]
    rows = [
        ("", "empty", "loaded", "growth"),
        (
            f"order_submit p50 / p99 ms (in process, interleaved, {growth['submit_count_per_side']:,}"
            " a side)",
            pair(growth["submit_p50_ms_empty"], growth["submit_p99_ms_empty"]),
            pair(growth["submit_p50_ms_loaded"], growth["submit_p99_ms_loaded"]),
            f"{g(growth['submit_p50_growth_pct'])} / {g(growth['submit_p99_growth_pct'])}",
        ),
        (
            "WAL bytes per submit (interleaved)",
            fmt(growth["submit_wal_bytes_empty"]),
            fmt(growth["submit_wal_bytes_loaded"]),
            "",
        ),
        (
            "order_submit p50 / p99 ms (before / after the preload)",
            pair(seq["p50_ms_empty"], seq["p99_ms_empty"]),
            pair(seq["p50_ms_loaded"], seq["p99_ms_loaded"]),
            f"{g(seq['p50_growth_pct'])} / {g(seq['p99_growth_pct'])}",
        ),
        (
            "POST /api/v1/orders/ p50 / p99 ms (APIClient)",
            pair(growth["api_post_p50_ms_empty"], growth["api_post_p99_ms_empty"]),
            pair(growth["api_post_p50_ms_loaded"], growth["api_post_p99_ms_loaded"]),
            f"p99 {g(growth['api_post_p99_growth_pct'])}",
        ),
        (
            "GET /api/v1/orders/?status=filled p50 ms",
            fmt(growth["api_list_filled_p50_ms_empty"]),
            fmt(growth["api_list_filled_p50_ms_loaded"]),
            "",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        f"growth: {growth['orders']:,} orders, {growth['events']:,} events, "
        f"{growth['fills'] or 0:,} fills preloaded"
        + (f" at {growth['load_rows_per_s']:,} rows/s" if growth["load_rows_per_s"] else ""),
        "target: submit p99 within +10 % of the empty database",
    ]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    small = pair(growth["match_ms_per_quote_1k_p50"], growth["match_ms_per_quote_1k_p99"])
    big = pair(growth["match_ms_per_quote_100k_p50"], growth["match_ms_per_quote_100k_p99"])
    lines.append(
        f"venue matching per quote step, p50 / p99 ms: {growth['match_resting_small']:,} resting "
        f"{small}, {growth['match_resting_big']:,} resting {big}"
    )
    lines.append("EXPLAIN (ANALYZE, BUFFERS) on the loaded tables:")
    for name, plan in growth["explain"].items():
        flag = "  << SEQ SCAN on a big table" if plan["seq_scan_on_big_table"] else ""
        lines.append(f"  {name:<28}{fmt(plan['ms']):>9} ms  {plan['plan']}{flag}")
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.growth", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--orders", type=int, help="orders to preload (1,000,000; quick 100,000)")
    parser.add_argument("--events-per-order", type=int, default=10, help="events per order (10)")
    parser.add_argument("--resting", type=int, default=100_000, help="resting venue orders")
    parser.add_argument("--submit-count", type=int, help="timed submits (300; quick 100)")
    parser.add_argument("--quick", action="store_true", help="100,000 orders / 1,000,000 events")
    parser.add_argument(
        "--blocks", type=int, help="alternating blocks against the empty twin (20; quick 6)"
    )
    parser.add_argument(
        "--per-block", type=int, help="timed submits per block and side (250; quick 100)"
    )
    parser.add_argument("--serve-submits", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep the fillmore_growth database")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="measure a kept, loaded fillmore_growth again (no set-up or preload)",
    )
    args = parser.parse_args(argv)
    if args.serve_submits:
        return serve_submits()
    orders = args.orders or (100_000 if args.quick else 1_000_000)
    blocks = args.blocks or (6 if args.quick else 20)
    per_block = args.per_block or (100 if args.quick else 250)
    count = args.submit_count or (100 if args.quick else 300)
    warmup = 30
    steps = 50 if args.quick else 200
    env = make_env()
    raw: dict[str, Any] = {
        "command": "python -m tests.bench.growth" + (" " + " ".join(argv) if argv else ""),
        "profile": "quick" if args.quick else "full",
        "submit_count": count,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", ""),
    }
    started = time.monotonic()
    run = f"{int(time.time()):x}"  # client order ids stay new when a kept database is reused
    try:
        if args.reuse:
            flush_redis()
            with pg_connect(DB_NAME) as conn:
                tokens = [
                    key
                    for (key,) in conn.execute(
                        "SELECT t.key FROM authtoken_token t JOIN auth_user u ON u.id = t.user_id "
                        "WHERE u.username LIKE 'bench%' ORDER BY u.username"
                    ).fetchall()
                ]
            django_setup(env)
            from orders.models import Order, OrderEvent

            raw["orders"] = Order.objects.count()
            raw["events"] = OrderEvent.objects.count()
            raw.update(previous_empty())
            _checkpoint()
        else:
            say(f"set-up: database {DB_NAME}, Redis dbs {REDIS_DB}/{BROKER_DB}, migrate, seed")
            tokens = prepare(env)
            django_setup(env)
            say(f"empty database: {count} submits after {warmup} warm-up (in process)")
            raw["submit_empty"] = submit_latency(label=f"empty-{run}", count=count, warmup=warmup)
            raw["api_empty"] = api_latency(
                token=tokens[0], label=f"empty-{run}", count=count, warmup=warmup
            )
            say(
                f"  order_submit p50 {raw['submit_empty']['p50_ms']} ms, "
                f"p99 {raw['submit_empty']['p99_ms']} ms"
            )
            say(f"preload: {orders:,} orders x {args.events_per_order} events, COPY")
            raw["preload"] = preload(orders=orders, events_per_order=args.events_per_order)
            load = raw["preload"]
            say(
                f"  {load['orders']:,} orders, {load['events']:,} events, {load['fills']:,} "
                f"fills in {load['load_s']} s ({load['load_rows_per_s']:,} rows/s); "
                f"VACUUM ANALYZE {load['vacuum_analyze_s']} s; sizes {load['table_mb']} MB"
            )
        say(f"loaded database: {count} submits after {warmup} warm-up (in process)")
        raw["submit_loaded"] = submit_latency(label=f"loaded-{run}", count=count, warmup=warmup)
        raw["api_loaded"] = api_latency(
            token=tokens[0], label=f"loaded-{run}", count=count, warmup=warmup
        )
        say(
            f"  order_submit p50 {raw['submit_loaded']['p50_ms']} ms, "
            f"p99 {raw['submit_loaded']['p99_ms']} ms"
        )
        say(
            f"interleaved: {blocks} blocks of {per_block} submits, alternating between the loaded"
            f" database and an empty twin ({TWIN_DB_NAME})"
        )
        prepare(make_env(TWIN_DB_NAME, TWIN_REDIS_DB), TWIN_DB_NAME, TWIN_REDIS_DB)
        _checkpoint()
        twin = Twin()
        try:
            raw["interleaved"] = interleaved(
                twin, blocks=blocks, per_block=per_block, warmup=warmup, run=run
            )
        finally:
            twin.close()
        mixed = raw["interleaved"]
        say(
            f"  order_submit p50 {mixed['empty']['p50_ms']} -> {mixed['loaded']['p50_ms']} ms, "
            f"p99 {mixed['empty']['p99_ms']} -> {mixed['loaded']['p99_ms']} ms"
        )
        say("EXPLAIN (ANALYZE, BUFFERS) of the order path's queries")
        raw["explain"] = explain_all(tokens[0])
        say(f"venue matching: 1,000 resting orders, {steps} quote steps per symbol")
        raw["match_small"] = match_cost(resting=1000, steps=steps)
        say(f"venue matching: {args.resting:,} resting orders, {steps} quote steps per symbol")
        raw["match_big"] = match_cost(resting=args.resting, steps=steps)
    except (StackError, psycopg.Error, redis.RedisError) as exc:
        say(f"failed: {exc}")
        return 2
    finally:
        if not args.keep:
            try:
                from django.db import connections

                connections.close_all()
            except Exception:  # Django never set up: nothing to close
                pass
            drop_database()
        try:
            drop_database(TWIN_DB_NAME)
        except psycopg.Error:
            pass
        try:
            flush_redis((REDIS_DB, BROKER_DB, TWIN_REDIS_DB))
        except redis.RedisError:
            pass
    growth = figures(raw)
    growth["duration_s"] = round(time.monotonic() - started, 1)
    write_results(growth)
    print(render(growth))
    print(f"\nwritten: growth in {BENCH_DIR / 'results.json'} ({growth['duration_s']:.0f} s)")
    if not args.keep:
        print(f"database {DB_NAME} dropped (--keep keeps it)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
