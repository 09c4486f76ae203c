"""`manage.py run_market_data`: the simulated venue's market-data process.

Every SIM_VENUE["QUOTE_INTERVAL_MS"] milliseconds it moves the quote of every active
instrument one step of its seeded walk; the venue matches its resting orders against the new
quote and expires what is due, in the same transaction. When a step wrote execution reports,
it publishes `orders.poll_venues` at once so the order book applies them within milliseconds
(beat also polls every second: a lost publish only costs latency).

Run until stopped, it first freezes its start-up objects (tradingsite/gcfreeze.py): a full
garbage collection would otherwise stall a step, quote lock held, for 70-170 ms.

Errors (the database restarting, a lock timeout) are logged and the loop goes on, backing off
up to MAX_BACKOFF_SECONDS while they last. SIGINT or SIGTERM stops it after the current step.
`--steps N` stops after N steps (tests); `--interval-ms` overrides the setting.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections, connection, connections
from kombu.exceptions import OperationalError as BrokerError

from brokers.base import VenueRejected
from brokers.registry import venue_for
from brokers.sim.venue import SimulatedVenue
from orders.selectors import instrument_symbols_active
from tradingsite.celery import app
from tradingsite.gcfreeze import freeze_startup_objects

logger = logging.getLogger(__name__)

POLL_TASK = "orders.poll_venues"
# A poll not started within this time is useless: the next step or beat has sent another.
POLL_EXPIRES_SECONDS = 5
# Never hold up the quote loop for long while Redis is away: beat polls anyway.
PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.1,
    "interval_max": 0.2,
}
MAX_BACKOFF_SECONDS = 5.0


def publish_poll() -> bool:
    """Ask the order side to pull venue reports now. Answers False when the broker is away."""
    try:
        app.send_task(
            POLL_TASK, retry=True, retry_policy=PUBLISH_RETRY_POLICY, expires=POLL_EXPIRES_SECONDS
        )
    except (BrokerError, OSError) as error:
        logger.warning(
            "poll publish failed; beat will poll: %s", error, extra={"error": str(error)}
        )
        return False
    return True


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop`; the previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        logger.info("market data stopping on %s", name, extra={"signal": name})
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _fresh_connection() -> None:
    # Drop a connection that broke (database restarted) or outlived CONN_MAX_AGE, as Django
    # does around each request. Never inside a transaction (a test's): that would end it.
    if not connection.in_atomic_block:
        close_old_connections()


def run_market(
    *,
    venue: SimulatedVenue,
    interval_seconds: float,
    stop: threading.Event,
    steps: int | None = None,
    publish: Callable[[], bool] = publish_poll,
) -> int:
    """Step the market until `stop` is set or `steps` steps ran. Answers the steps run."""
    done = 0
    failures = 0
    next_at = time.monotonic()
    while not stop.is_set() and (steps is None or done < steps):
        _fresh_connection()
        try:
            symbols = instrument_symbols_active()
            written = venue.step_market(symbols) if symbols else 0
        except Exception:
            failures += 1
            # The traceback once per outage; a count on every later failure.
            logger.warning(
                "market step failed (%d in a row)",
                failures,
                extra={"failures": failures},
                exc_info=failures == 1,
            )
        else:
            if failures:
                logger.info(
                    "market steps recovered after %d failures",
                    failures,
                    extra={"after_failures": failures},
                )
            failures = 0
            if written:
                publish()
        done += 1
        if steps is not None and done >= steps:
            break
        delay = interval_seconds
        if failures:
            delay = min(interval_seconds * 2**failures, max(MAX_BACKOFF_SECONDS, interval_seconds))
        # Keep the cadence: a slow step shortens the wait, but a late loop never bursts.
        next_at = max(next_at + delay, time.monotonic())
        stop.wait(max(0.0, next_at - time.monotonic()))
    return done


class Command(BaseCommand):
    help = "Run the simulated venue's quote stream (matching resting orders on every step)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--interval-ms",
            type=int,
            default=None,
            help="milliseconds between steps (default SIM_VENUE['QUOTE_INTERVAL_MS'])",
        )
        parser.add_argument(
            "--steps", type=int, default=None, help="stop after this many steps (tests)"
        )
        parser.add_argument("--venue", default="sim", help="simulated venue name (default sim)")

    def handle(self, *args: Any, **options: Any) -> None:
        interval_ms = options["interval_ms"]
        if interval_ms is None:
            interval_ms = int(settings.SIM_VENUE.get("QUOTE_INTERVAL_MS", 250))
        if interval_ms <= 0:
            raise CommandError("--interval-ms must be a positive number of milliseconds")
        steps = options["steps"]
        if steps is not None and steps <= 0:
            raise CommandError("--steps must be a positive number")
        try:
            venue = venue_for(options["venue"])
        except VenueRejected as error:
            raise CommandError(str(error)) from error
        if not isinstance(venue, SimulatedVenue):
            raise CommandError(f"venue {options['venue']!r} is not a simulated venue")

        stop = threading.Event()
        logger.info(
            "market data started: venue %s, a step every %d ms",
            venue.name,
            interval_ms,
            extra={"venue": venue.name, "interval_ms": interval_ms, "steps": steps},
        )
        if steps is None:  # the long-running process (a bounded run is a test's or a shell's)
            freeze_startup_objects("market data")
        try:
            with _stop_on_signals(stop):
                done = run_market(
                    venue=venue, interval_seconds=interval_ms / 1000, stop=stop, steps=steps
                )
        finally:
            if not connection.in_atomic_block:
                connections.close_all()
        logger.info("market data stopped after %d steps", done, extra={"steps": done})
