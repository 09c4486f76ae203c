"""Fills for one position applied by two workers at once (threads, each with its own database
connection) give the same books as applying them one by one in the order they were booked.
PostgreSQL only: the row locks are what is under test."""

from __future__ import annotations

import random
import threading
import time
from decimal import Decimal

import pytest
from django.db import connection, transaction

from orders import books
from orders.books import books_rebuild
from orders.pnl import signed
from tests.integration.test_books import (
    COMMISSIONS,
    DEPOSIT,
    _q,
    booking_order,
    books_of,
    execute,
    expected_positions,
    funded_account,
    positions_by_key,
    trade,
    working_order,
)

D = Decimal

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def commissions(settings):
    settings.COMMISSIONS = COMMISSIONS


def in_thread(target, *args, name: str = "") -> tuple[threading.Thread, list[BaseException]]:
    """Start `target(*args)` in a thread with its own connection, closed when it ends; the
    list collects what it raised."""
    errors: list[BaseException] = []

    def run():
        try:
            target(*args)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=run, name=name or None, daemon=True)
    thread.start()
    return thread, errors


class Holder:
    """Another worker, in a thread with its own connection: inside one transaction, takes the
    locks `lock()` takes (and whatever else it does), and keeps them until `done()`, which
    commits, joins the thread and checks it raised nothing."""

    def __init__(self, lock) -> None:
        self.held, self.release = threading.Event(), threading.Event()

        def hold():
            with transaction.atomic():
                lock()
                self.held.set()
                self.release.wait(30)

        self.thread, self.errors = in_thread(hold)
        assert self.held.wait(10), self.errors

    def done(self) -> None:
        self.release.set()
        self.thread.join(10)
        assert not self.errors


def test_two_workers_filling_one_position_book_every_fill(instruments, commissions):
    # given 2 x 40 working AAPL orders on one account, one strategy per worker, no position yet
    account = funded_account()
    generator = random.Random(7)
    batches = []
    for strategy_id in ("s1", "s2"):
        batch = []
        for _ in range(40):
            side = generator.choice(["buy", "sell"])
            quantity = D(generator.randint(1, 300))
            price = D(generator.randint(18_000, 20_000)) / 100
            order = working_order(account, "AAPL", side, quantity, strategy_id=strategy_id)
            batch.append((order, quantity, price))
        batches.append(batch)
    start = threading.Barrier(2)

    def fill_all(batch):
        start.wait(timeout=30)
        for order, quantity, price in batch:
            execute(order, (quantity, price))

    # when two workers apply the venue's reports at the same time
    workers = [in_thread(fill_all, batch) for batch in batches]
    for thread, errors in workers:
        thread.join(timeout=120)
        assert not thread.is_alive()
        assert errors == []
    # then every fill was booked once, and the position holds their signed sum
    booked = booking_order(account)
    assert len(booked) == 80
    everything = [item for batch in batches for item in batch]
    positions = positions_by_key(account)
    assert positions[("AAPL", "")].quantity == sum(
        (signed(order.side, quantity) for order, quantity, _ in everything), D(0)
    )
    for strategy_id, batch in zip(("s1", "s2"), batches, strict=True):
        assert positions[("AAPL", strategy_id)].quantity == sum(
            (signed(order.side, quantity) for order, quantity, _ in batch), D(0)
        )
    # and cash, which does not depend on the order of the fills, is exact
    account.refresh_from_db()
    assert account.cash == DEPOSIT + sum(
        (_q(-signed(f.side, f.quantity) * f.price - f.commission) for f in booked), D(0)
    )
    assert account.realized_pnl == sum((f.realized_pnl for f in booked), D(0))
    # and average cost and realized P&L are orders.pnl applied one by one in booking order
    assert positions == expected_positions(booked)
    # and rebuilding from the fills gives exactly the live books
    live = books_of(account)
    assert books_rebuild(accounts=[account]) == 80
    rebuilt = books_of(account)
    # (quantities, commissions and cash do not depend on the order of the fills)
    assert rebuilt.cash == live.cash
    assert [(p[:3], p[5]) for p in rebuilt.positions] == [(p[:3], p[5]) for p in live.positions]
    assert rebuilt == live


def test_a_fill_executed_first_but_booked_second_rebuilds_as_booked(
    instruments, commissions, monkeypatch
):
    # given long 100 AAPL @ 10, and two working orders: A sells 100 @ 12, B buys 100 @ 14
    account = funded_account()
    trade(account, "AAPL", "buy", "100", "10")
    order_a = working_order(account, "AAPL", "sell", "100")
    order_b = working_order(account, "AAPL", "buy", "100")
    # and worker 1 holds A's reports (executed first) but stalls before its ledger takes the
    # account lock
    ledger_init = books.Ledger.__init__
    stalled, b_booked = threading.Event(), threading.Event()

    def stall_first_worker(self, orders):
        if threading.current_thread().name == "worker-1":
            stalled.set()
            assert b_booked.wait(timeout=30)
        ledger_init(self, orders)

    monkeypatch.setattr(books.Ledger, "__init__", stall_first_worker)
    # when worker 1 applies A, and meanwhile worker 2 applies B to the end
    worker_1, errors_1 = in_thread(execute, order_a, ("100", "12"), name="worker-1")
    assert stalled.wait(timeout=30)
    worker_2, errors_2 = in_thread(execute, order_b, ("100", "14"), name="worker-2")
    worker_2.join(timeout=30)
    b_booked.set()
    worker_1.join(timeout=30)
    assert (errors_1, errors_2) == ([], [])
    # then the live books took B before A: 200 @ 12, then 100 sold at cost
    booked = booking_order(account)
    assert [(f.side, f.price) for f in booked] == [
        ("buy", D(10)),
        ("buy", D(14)),
        ("sell", D(12)),
    ]
    live = positions_by_key(account)[("AAPL", "")]
    assert (live.quantity, live.average_price, live.realized_pnl) == (D(100), D(12), D(0))
    # and the rebuilt books must be the same (replaying A before B, in execution order, gives
    # 100 @ 14 and 200 realized)
    before = books_of(account)
    books_rebuild(accounts=[account])
    assert books_of(account) == before


def test_a_fill_booked_while_the_books_are_rebuilt_is_kept(instruments, commissions, monkeypatch):
    # given long 100 AAPL @ 10, and a working order to buy 50 more
    account = funded_account()
    trade(account, "AAPL", "buy", "100", "10")
    order = working_order(account, "AAPL", "buy", "50")
    # and a rebuild that stalls after it has cleared the books, before it replays the fills
    replay_fill = books.fill_book
    stalled, go_on = threading.Event(), threading.Event()

    def stall_rebuild(fill, order, **kwargs):
        if threading.current_thread().name == "rebuild" and not stalled.is_set():
            stalled.set()
            assert go_on.wait(timeout=30)
        return replay_fill(fill, order, **kwargs)

    monkeypatch.setattr(books, "fill_book", stall_rebuild)
    rebuild, rebuild_errors = in_thread(books_rebuild, name="rebuild")
    assert stalled.wait(timeout=30)
    # when the venue fills the order meanwhile (its booking waits for the rebuild's locks)
    worker, worker_errors = in_thread(execute, order, ("50", "13"), name="worker")
    wait_until_a_session_waits_for_a_lock()
    go_on.set()
    rebuild.join(timeout=30)
    worker.join(timeout=30)
    assert (rebuild_errors, worker_errors) == ([], [])
    # then the fill is in the cash and in the position: 150 @ (1,000 + 650) / 150
    account.refresh_from_db()
    assert account.cash == DEPOSIT - D(1000) - D(1) - D(650) - D(1)
    row = positions_by_key(account)[("AAPL", "")]
    assert (row.quantity, row.average_price, row.realized_pnl) == (D(150), D(11), D(0))


def wait_until_a_session_waits_for_a_lock(timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
        time.sleep(0.02)
    raise AssertionError("no session came to wait for a lock")
