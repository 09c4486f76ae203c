"""A submit task's claim (orders.lock_objects.orders_and_backlog_for_update): its own orders and
the backlog behind them, locked in one statement on PostgreSQL. What is under test is the
locking: another transaction's row locks, waited for or skipped, and the row versions read."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from orders import services
from orders.lock_objects import orders_and_backlog_for_update, orders_for_update
from risk.models import Scope, TradingMode, TradingState
from risk.selectors import trading_states_restricting
from tests.integration.test_batch_submission import validated
from tests.integration.test_books import funded_account
from tests.integration.test_books_concurrency import Holder, in_thread
from tradingsite import refdata

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def orders(instruments, settings):
    settings.RISK_ORDERS_PER_MINUTE = 10**6
    return validated(funded_account(), 5)


def test_one_statement_takes_the_own_order_and_the_oldest_backlog(orders):
    own, queued = orders[-1], orders[:-1]
    with transaction.atomic(), CaptureQueriesContext(connection) as captured:
        mine, taken, _ = orders_and_backlog_for_update([own], limit=3)
    assert len(captured.captured_queries) == 1
    assert [str(o.pk) for o in mine] == [own]
    assert [str(o.pk) for o in taken] == queued[:3]  # oldest first, up to the limit
    # with their instrument and account, as every order lock gives them
    assert mine[0].instrument.symbol == "EUR_USD" and mine[0].account.code


def test_the_backlog_skips_what_another_worker_holds_without_waiting(orders):
    own, queued = orders[-1], orders[:-1]
    holder = Holder(lambda: orders_for_update([queued[0]]))
    try:
        started = time.monotonic()
        with transaction.atomic():
            mine, taken, _ = orders_and_backlog_for_update([own], limit=10)
        waited = time.monotonic() - started
    finally:
        holder.done()
    assert [str(o.pk) for o in mine] == [own]
    assert [str(o.pk) for o in taken] == queued[1:]
    assert waited < 5  # skipped, not waited for (the holder holds it up to 30 s)


def test_the_own_order_is_waited_for_and_read_as_the_holder_left_it(orders):
    """The holder changes the order and commits while the claim waits for it: the claim sees
    the change (the locking subquery's latest version, not the statement's snapshot), so it
    does not send an order another worker has just taken."""
    own = orders[-1]

    def take(order):  # as another submit task's claim does
        services._order_change(
            order, event_type="pending_submit", actor="test", status="pending_submit"
        )

    holder = Holder(lambda: take(orders_for_update([own])[0]))
    answer: dict = {}

    def claim():
        with transaction.atomic():
            answer["mine"], answer["taken"], _ = orders_and_backlog_for_update([own], limit=10)

    claimer, claim_errors = in_thread(claim)
    claimer.join(0.5)
    assert claimer.is_alive()  # waiting for the holder's lock
    holder.done()
    claimer.join(10)
    assert not claim_errors
    assert [(str(o.pk), o.status) for o in answer["mine"]] == [(own, "pending_submit")]
    assert len(answer["taken"]) == 4


def test_two_claims_of_different_orders_do_not_deadlock(orders):
    """Each claim's own order sits in the other's backlog: each locks its own first, so each
    skips the other's and neither waits."""
    first, second = orders[0], orders[1]
    barrier = threading.Barrier(2)
    answers: dict[str, tuple] = {}

    def claim(own: str):
        barrier.wait(5)
        for _ in range(20):
            with transaction.atomic():
                answers[own] = orders_and_backlog_for_update([own], limit=10)

    threads = [in_thread(claim, own) for own in (first, second)]
    for thread, _ in threads:
        thread.join(30)
    assert all(not errors for _, errors in threads), [e for _, e in threads]
    assert [str(o.pk) for o in answers[first][0]] == [first]
    assert [str(o.pk) for o in answers[second][0]] == [second]


def test_a_submit_tasks_claim_runs_on_a_plan_made_once(orders):
    # given a table as a working desk's is: many orders done, a few waiting (5,000 filled
    # copies of one order, analyzed; removed at the end: they have no events)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO orders_order SELECT (jsonb_populate_record(NULL::orders_order,"
            " to_jsonb(o) || jsonb_build_object('id', gen_random_uuid(), 'client_order_id',"
            " 'done-' || g, 'status', 'filled'))).* FROM orders_order o,"
            " generate_series(1, 5000) g WHERE o.id = %s",
            [orders[0]],
        )
        cursor.execute("ANALYZE orders_order")
    # when a submit task's claim (one order of its own, the backlog behind it) runs past
    # psycopg's threshold for preparing a statement (5) and PostgreSQL's first five plans of
    # a prepared one
    try:
        for run in range(12):
            with transaction.atomic():
                orders_and_backlog_for_update([orders[run % len(orders)]], limit=services_backlog())
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM orders_order WHERE client_order_id LIKE 'done-%%'")
    # then PostgreSQL runs it on its generic plan instead of planning it again on every run
    # (as it did with the status, the limit and the one id as parameters: 0.5 ms a claim)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE 'WITH own AS MATERIALIZED%%'"
        )
        [(generic, custom)] = cursor.fetchall()
    assert generic >= 1 and custom <= 5, (generic, custom)


def services_backlog() -> int:
    from orders.tasks import SUBMIT_BACKLOG

    return SUBMIT_BACKLOG


def test_the_claim_reads_the_reference_data_version_along(orders):
    """The claim's halt check reads the trading states from the reference-data cache: the
    claim statement carries the version it needs, so no statement of its own reads it."""
    own = orders[-1]
    trading_states_restricting()  # the cache holds the trading states at this version
    with refdata.scope(), transaction.atomic(), CaptureQueriesContext(connection) as captured:
        mine, _, version = orders_and_backlog_for_update([own], limit=3)
        refdata.assume(version)
        assert trading_states_restricting() == []
    assert [str(o.pk) for o in mine] == [own]
    assert version == refdata._version()  # the row's current version
    assert len(captured.captured_queries) == 1
    assert "refdata_version" in captured.captured_queries[0]["sql"]


def test_a_halt_committed_before_the_claim_is_seen_by_its_check(orders):
    own = orders[-1]
    trading_states_restricting()

    def halt():  # another process's write: this one's cache still holds the states before it
        TradingState.objects.create(scope=Scope.GLOBAL, mode=TradingMode.HALTED)

    thread, errors = in_thread(halt)
    thread.join(10)
    assert not errors
    with refdata.scope(), transaction.atomic():
        refdata.assume(orders_and_backlog_for_update([own], limit=3).refdata_version)
        assert [s.mode for s in trading_states_restricting()] == [TradingMode.HALTED]


def test_a_claim_that_finds_no_order_reads_no_version(orders):
    """A drain with nothing waiting: no row, so no version along, and the scope is left to
    read its own if anything asks."""
    with transaction.atomic():
        for order_id in orders:  # every order taken to pending_submit: nothing validated
            services._order_change(
                orders_for_update([order_id])[0],
                event_type="pending_submit",
                actor="test",
                status="pending_submit",
            )
    with refdata.scope(), transaction.atomic():
        claim = orders_and_backlog_for_update([], limit=10)
        refdata.assume(claim.refdata_version)
        assert claim == ([], [], None)
        assert refdata._scope.get().version is None


def test_a_lone_order_is_claimed_sent_and_applied_without_a_version_read(orders, settings):
    """orders_submit_to_venue_many for one order with nothing behind it: no statement reads
    the reference-data version on its own in the claim's transaction."""
    own = orders[-1]
    trading_states_restricting()
    with CaptureQueriesContext(connection) as captured:
        services.orders_submit_to_venue_many(order_ids=[own], backlog=10)
    sql = [q["sql"] for q in captured.captured_queries]
    claim = next(i for i, s in enumerate(sql) if "backlog AS MATERIALIZED" in s)
    assert not any(
        s.strip().startswith("SELECT version FROM refdata_version") for s in sql[: claim + 3]
    )
