"""The batch paths, the intake (services.orders_submit_many) and the worker's
(services.orders_submit_to_venue_many, the batched report application): the same outcome as
the one-order path, at a cost that does not grow with the number of orders, and every
guarantee of the spine kept (halts, limits, resumes, unknown outcomes)."""

from __future__ import annotations

import random
import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from brokers import registry
from brokers.base import ExecutionReport, VenueTransientError
from brokers.models import SimOrder
from orders import services
from orders.models import Account, Fill, Order, OutboxMessage, Position
from orders.validation import OrderTerms
from risk.models import RiskEvent
from risk.services import trading_halt
from tests.helpers import eur_usd_market, set_quote
from tests.integration.test_batch_pipeline import batch_of
from tests.integration.test_books import DEPOSIT, funded_account, venue_answer, working_order

pytestmark = pytest.mark.django_db

D = Decimal


def validated(account: Account, count: int, *, symbol="EUR_USD", **terms) -> list[str]:
    ids = []
    for n in range(count):
        result = services.order_submit(
            account=account,
            terms=OrderTerms(
                symbol=symbol,
                side=terms.get("side", "buy" if n % 2 else "sell"),
                type="market",
                time_in_force="ioc",
                quantity=D(terms.get("quantity", "1000")),
                strategy_id=terms.get("strategy_id", ""),
            ),
            actor="test",
            reduce_only=terms.get("reduce_only", False),
        )
        ids.append(str(result.order.id))
    return ids


@pytest.fixture
def market(instruments, settings):
    settings.RISK_ORDERS_PER_MINUTE = 10**6
    settings.COMMISSIONS = {}
    venue = eur_usd_market(size="100000000")
    set_quote(venue, symbol="GBP_USD", bid="1.26990", ask="1.27000", size="100000000")
    return venue


def test_a_batch_fills_every_order_once(market):
    account = funded_account()
    ids = validated(account, 30) + validated(account, 10, symbol="GBP_USD")
    batch = services.orders_submit_to_venue_many(order_ids=ids)
    assert (batch.sent, batch.one_by_one) == (40, [])
    assert Order.objects.filter(pk__in=ids, status="filled").count() == 40
    assert SimOrder.objects.filter(client_order_id__in=ids).count() == 40
    assert Fill.objects.filter(order_id__in=ids).count() == 40
    # and a second delivery of the same batch changes nothing
    again = services.orders_submit_to_venue_many(order_ids=ids)
    assert (again.sent, again.one_by_one) == (0, [])
    assert SimOrder.objects.filter(client_order_id__in=ids).count() == 40


def test_the_cost_of_a_batch_does_not_grow_with_its_size(market):
    account = funded_account()
    # the first fill of each position creates it: warm both positions up first
    services.orders_submit_to_venue_many(order_ids=validated(account, 2))
    counts = []
    # (45 at most: SQLite splits an insert of more rows of the venue's reports by its limit on
    # the number of parameters)
    for size in (25, 45):
        ids = validated(account, size)
        with CaptureQueriesContext(connection) as captured:
            services.orders_submit_to_venue_many(order_ids=ids)
        assert Order.objects.filter(pk__in=ids, status="filled").count() == size
        counts.append(len(captured.captured_queries))
    assert counts[0] == counts[1], counts


def test_orders_that_need_the_one_order_path_are_handed_back(market):
    account = funded_account()
    halted = funded_account()
    fresh = validated(account, 3)
    resumed = validated(account, 1)[0]
    done = validated(account, 1)[0]
    services.order_submit_to_venue(order_id=done)
    on_halted = validated(halted, 1)[0]
    flatten = validated(halted, 1, reduce_only=True)[0]
    trading_halt(scope="account", target=halted.code, reason="desk call", actor="test")
    # an earlier attempt that died after taking the order to pending_submit
    order = Order.objects.get(pk=resumed)
    services._order_change(
        order, event_type="pending_submit", actor="worker", status="pending_submit"
    )

    batch = services.orders_submit_to_venue_many(
        order_ids=[*fresh, resumed, done, on_halted, flatten]
    )

    assert sorted(batch.one_by_one) == sorted([resumed, on_halted])
    assert batch.sent == 4  # the fresh three and the kill switch's reduce-only order
    statuses = dict(Order.objects.filter(pk__in=[*fresh, flatten]).values_list("id", "status"))
    assert set(statuses.values()) == {"filled"}
    # and the one-order path does the rest: the halted order is refused, the other resumed
    for order_id in batch.one_by_one:
        services.order_submit_to_venue(order_id=order_id)
    assert Order.objects.get(pk=on_halted).status == "rejected"
    assert RiskEvent.objects.filter(kind="order_refused_halted", order_id=on_halted).exists()
    assert Order.objects.get(pk=resumed).status == "filled"
    assert SimOrder.objects.filter(client_order_id=on_halted).count() == 0
    assert SimOrder.objects.filter(client_order_id__in=[*fresh, resumed, done]).count() == 5


def test_an_unknown_outcome_is_asked_about_order_by_order(market, settings):
    # given a venue that takes the orders, then loses the answer
    account = funded_account()
    ids = validated(account, 5)
    settings.SIM_VENUE = {**settings.SIM_VENUE, "TIMEOUT_RATE": 1}
    registry.reset()
    try:
        batch = services.orders_submit_to_venue_many(order_ids=ids)
    finally:
        settings.SIM_VENUE = {**settings.SIM_VENUE, "TIMEOUT_RATE": 0}
        registry.reset()
    # then nothing is applied blind: every order is handed back, still pending_submit
    assert (batch.sent, sorted(batch.one_by_one)) == (0, sorted(ids))
    assert set(Order.objects.filter(pk__in=ids).values_list("status", flat=True)) == {
        "pending_submit"
    }
    # and the one-order path finds each at the venue instead of placing it again
    for order_id in batch.one_by_one:
        services.order_submit_to_venue(order_id=order_id)
    assert Order.objects.filter(pk__in=ids, status="filled").count() == 5
    assert SimOrder.objects.filter(client_order_id__in=ids).count() == 5


def test_a_failed_venue_call_leaves_the_orders_to_be_asked_about(market, monkeypatch):
    account = funded_account()
    ids = validated(account, 3)

    def down(self, tickets):
        raise VenueTransientError("connection refused")

    monkeypatch.setattr(type(market), "submit_many", down)
    batch = services.orders_submit_to_venue_many(order_ids=ids)
    assert (batch.sent, sorted(batch.one_by_one)) == (0, sorted(ids))
    assert SimOrder.objects.filter(client_order_id__in=ids).count() == 0


def books(account: Account) -> tuple:
    account.refresh_from_db()
    positions = sorted(
        (p.instrument.symbol, p.strategy_id, p.quantity, p.average_price, p.realized_pnl)
        for p in Position.objects.filter(account=account).select_related("instrument")
    )
    return account.cash, account.realized_pnl, account.fills_booked, positions


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reports_applied_together_book_as_one_by_one(market, seed):
    # given the same random orders and executions on two accounts (two strategies, two symbols,
    # reversals, partial fills, several fills per order)
    generator = random.Random(seed)
    plan = []
    for _ in range(25):
        symbol = generator.choice(["EUR_USD", "GBP_USD"])
        side = generator.choice(["buy", "sell"])
        parts = [str(generator.randint(1, 9) * 1000) for _ in range(generator.randint(1, 3))]
        prices = [f"{generator.uniform(1.0, 1.3):.5f}" for _ in parts]
        plan.append(
            (symbol, side, generator.choice(["", "s1"]), list(zip(parts, prices, strict=True)))
        )
    together, one_by_one = funded_account(), funded_account()
    reports = []
    for symbol, side, strategy_id, fills in plan:
        total = sum(D(q) for q, _ in fills)
        a = working_order(together, symbol, side, total, strategy_id=strategy_id)
        b = working_order(one_by_one, symbol, side, total, strategy_id=strategy_id)
        reports.extend(venue_answer(a, *fills))
        for report in venue_answer(b, *fills):
            services.execution_reports_apply(reports=[report])
    # when one account's reports are applied in one call (a redelivered fill among them)
    assert services.execution_reports_apply(reports=reports + reports[-1:]) == len(reports)
    # then both books are the same, to the last decimal
    assert books(together)[0] != DEPOSIT
    assert books(together) == books(one_by_one)


# --- the intake ---


@pytest.mark.postgres  # SQLite splits a bulk INSERT by its limit on bound parameters
def test_the_batch_intake_costs_the_same_for_10_or_200_orders(api, instruments, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.RISK_ORDERS_PER_MINUTE = 10**6
    settings.ORDERS_INTAKE_BACKLOG_CHECK_SECONDS = 3600  # (not on the counted requests)
    api.post("/api/v1/orders/batch/", batch_of(2, "warm"), format="json")
    counts = []
    for size, prefix in ((10, "ten"), (200, "many")):
        with CaptureQueriesContext(connection) as captured:
            response = api.post("/api/v1/orders/batch/", batch_of(size, prefix), format="json")
        assert [r["status"] for r in response.json()["results"]] == [201] * size
        counts.append(len(captured.captured_queries))
    assert counts[0] == counts[1], counts


def test_an_order_under_limits_sees_the_batch_orders_before_it(api, instruments, settings):
    # given at most 3 open orders on the account
    from risk.models import RiskLimit

    settings.RISK_ORDERS_PER_MINUTE = 10**6
    RiskLimit.objects.create(scope="account", target="ACC-1", rule="max_open_orders", value=3)
    # when a batch of 5 limit orders resting far from the market arrives
    orders = [
        {
            "account": "ACC-1",
            "client_order_id": f"lim-{n}",
            "symbol": "EUR_USD",
            "side": "buy",
            "type": "limit",
            "limit_price": "1.00000",
            "quantity": "1000",
        }
        for n in range(5)
    ]
    response = api.post("/api/v1/orders/batch/", {"orders": orders}, format="json")
    # then the first three are accepted and the rest rejected with the rule's reason
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 201, 201, 422, 422]
    assert results[3]["error"]["code"] == "risk_rejected"
    assert Order.objects.filter(status="rejected").count() == 2


def test_a_batch_under_a_halt_is_refused_order_by_order(api, instruments, settings):
    from risk.services import trading_halt

    settings.RISK_ORDERS_PER_MINUTE = 10**6
    trading_halt(scope="symbol", target="GBP_USD", reason="news", actor="test")
    orders = batch_of(2, "h")["orders"] + [{**batch_of(1, "g")["orders"][0], "symbol": "GBP_USD"}]
    response = api.post("/api/v1/orders/batch/", {"orders": orders}, format="json")
    assert [r["status"] for r in response.json()["results"]] == [201, 201, 423]
    assert Order.objects.count() == 2


def test_the_rate_limit_counts_each_order_of_a_batch(api, instruments, settings):
    settings.RISK_ORDERS_PER_MINUTE = 3
    response = api.post("/api/v1/orders/batch/", batch_of(5, "r"), format="json")
    assert [r["status"] for r in response.json()["results"]] == [201, 201, 201, 429, 429]
    assert Order.objects.count() == 3


def _batch(api, *orders):
    """POST a batch of (client order id, symbol) market orders; answers the statuses."""
    body = [
        {**batch_of(1)["orders"][0], "client_order_id": coid, "symbol": symbol}
        for coid, symbol in orders
    ]
    response = api.post("/api/v1/orders/batch/", {"orders": body}, format="json")
    return [r["status"] for r in response.json()["results"]]


def _refusals():
    return sorted(RiskEvent.objects.exclude(kind="halt").values_list("kind", flat=True))


def test_a_batch_is_counted_in_one_round_trip(api, instruments, settings, monkeypatch):
    from risk import ratelimit

    settings.RISK_ORDERS_PER_MINUTE = 3
    calls = []
    many = ratelimit.admit_many
    monkeypatch.setattr("risk.services.admit", lambda *a, **k: pytest.fail("one call per order"))
    monkeypatch.setattr(
        "risk.services.admit_many", lambda orders: calls.append(len(orders)) or many(orders)
    )
    assert _batch(api, *[(f"n{i}", "EUR_USD") for i in range(5)]) == [201, 201, 201, 429, 429]
    assert calls == [5]
    assert _refusals() == ["rate_limited", "rate_limited"]


def test_a_rate_limit_of_zero_refuses_every_order_for_the_limit(api, instruments, settings):
    """An override of 0 orders a minute stops a trader: 429 with a retry, one order alone or
    in a batch, nothing counted or stored (the limiter's script used to fail on an empty
    window, which refused with 503 as if Redis were away)."""
    from risk.models import RateLimitOverride

    RateLimitOverride.objects.create(user=User.objects.get(username="alice"), orders_per_minute=0)
    single = api.post("/api/v1/orders/", {**batch_of(1, "z")["orders"][0]}, format="json")
    assert single.status_code == 429 and single["Retry-After"] == "60"
    assert _batch(api, ("a", "EUR_USD"), ("b", "EUR_USD")) == [429, 429]
    assert Order.objects.count() == 0
    assert _refusals() == ["rate_limited"] * 3


def test_a_batch_with_the_rate_limiter_away_is_refused_order_by_order(
    api, instruments, monkeypatch
):
    import redis

    def away(orders):
        raise redis.ConnectionError("Redis is away")

    monkeypatch.setattr("risk.services.admit_many", away)
    assert _batch(api, ("a", "EUR_USD"), ("b", "EUR_USD")) == [503, 503]
    assert Order.objects.count() == 0
    assert _refusals() == ["risk_unavailable", "risk_unavailable"]


def test_an_order_a_halt_refuses_in_a_batch_leaves_the_count_to_the_others(
    api, instruments, settings
):
    """As on the one-order path (counted, refused, count given back): the halted order does
    not take a slot from the orders after it."""
    settings.RISK_ORDERS_PER_MINUTE = 3
    trading_halt(scope="symbol", target="GBP_USD", reason="news", actor="test")
    statuses = _batch(api, ("a", "EUR_USD"), ("g", "GBP_USD"), ("b", "EUR_USD"), ("c", "EUR_USD"))
    assert statuses == [201, 423, 201, 201]
    assert _refusals() == ["order_refused_halted"]
    assert _batch(api, ("d", "EUR_USD")) == [429]  # a, b and c count; g does not


def test_a_halted_order_over_the_limit_in_a_batch_is_refused_for_the_limit(
    api, instruments, settings
):
    """One call would count it first: over the limit, it is refused 429 (not 423), and only
    the rate refusal is recorded."""
    settings.RISK_ORDERS_PER_MINUTE = 1
    trading_halt(scope="symbol", target="GBP_USD", reason="news", actor="test")
    assert _batch(api, ("a", "EUR_USD"), ("g", "GBP_USD")) == [201, 429]
    assert _refusals() == ["rate_limited"]


def test_a_client_order_id_repeated_in_a_batch_after_its_first_was_refused_is_an_order(
    api, instruments, settings
):
    """The first order with the id is refused (halted): the second with it is a new order,
    counted and checked on its own, not a repeat of the refused one."""
    settings.RISK_ORDERS_PER_MINUTE = 10
    trading_halt(scope="symbol", target="GBP_USD", reason="news", actor="test")
    statuses = _batch(api, ("x", "GBP_USD"), ("x", "EUR_USD"), ("x", "EUR_USD"))
    assert statuses == [423, 201, 200]  # the third repeats the second
    assert Order.objects.get(client_order_id="x").instrument.symbol == "EUR_USD"


def test_a_submit_task_takes_the_orders_queued_behind_it_along(market, monkeypatch):
    from orders import outbox
    from orders.tasks import order_submit_task

    published = []
    monkeypatch.setattr(outbox, "publish_now", lambda task, **kw: published.append(task))
    account = funded_account()
    queued = validated(account, 3)  # however young: coalesced orders have no task of their own
    own = validated(account, 1)[0]
    order_submit_task(order_id=own)
    assert Order.objects.filter(pk__in=[*queued, own], status="filled").count() == 4
    # and the tasks of the orders taken along find them sent: reads only, no venue call
    with CaptureQueriesContext(connection) as captured:
        order_submit_task(order_id=queued[0])
    statements = [re.sub(r"FOR (NO KEY )?UPDATE", "", q["sql"]) for q in captured.captured_queries]
    assert not any(re.search(r"\b(INSERT|UPDATE|DELETE)\b", sql) for sql in statements), statements
    assert SimOrder.objects.filter(client_order_id__in=[*queued, own]).count() == 4
    assert published == []  # nothing was left behind: no drain


def test_a_submit_task_that_took_its_limit_leaves_the_rest_to_a_drain(market, monkeypatch):
    from orders import outbox, tasks

    published = []
    monkeypatch.setattr(outbox, "publish_now", lambda task, **kw: published.append(task))
    monkeypatch.setattr(tasks, "SUBMIT_BACKLOG", 2)
    account = funded_account()
    ids = validated(account, 6)
    tasks.order_submit_task(order_id=ids[-1])
    assert Order.objects.filter(pk__in=ids, status="filled").count() == 3  # its own and 2
    assert published == ["orders.drain"]
    # the drain takes up to SUBMIT_BACKLOG + 1, and leaves the rest to another
    tasks.orders_drain_task()
    assert Order.objects.filter(pk__in=ids, status="filled").count() == 6
    assert published == ["orders.drain", "orders.drain"]
    tasks.orders_drain_task()  # nothing left: no drain after it
    assert published == ["orders.drain", "orders.drain"]


def test_a_redelivered_submit_task_goes_alone_then_drains(market, monkeypatch):
    """The worker died under the first delivery (an order taken along may be what killed it):
    the redelivery sends its own order only, then leaves the others to a drain (orders
    coalesced behind it have no task of their own)."""
    from django.core.cache import cache

    from orders import outbox
    from orders.tasks import order_submit_task

    published = []
    monkeypatch.setattr(outbox, "publish_now", lambda task, **kw: published.append(task))
    account = funded_account()
    queued = validated(account, 3)
    own = validated(account, 1)[0]
    cache.set(f"deliveries:submit:{own}", 1, timeout=60)  # the first delivery never finished
    order_submit_task(order_id=own)
    assert Order.objects.get(pk=own).status == "filled"
    assert set(Order.objects.filter(pk__in=queued).values_list("status", flat=True)) == {
        "validated"
    }
    assert cache.get(f"deliveries:submit:{own}") is None
    assert published == ["orders.drain"]


def test_a_redelivered_batch_is_split_into_one_task_per_order(market, monkeypatch):
    import hashlib

    from django.core.cache import cache

    from orders import outbox
    from orders.tasks import order_submit_batch_task

    account = funded_account()
    ids = validated(account, 4)
    published = []
    monkeypatch.setattr(outbox, "publish_now", lambda task, **kw: published.append((task, kw)))
    key = hashlib.sha256(",".join(sorted(ids)).encode()).hexdigest()[:32]
    cache.set(f"deliveries:submit_batch:{key}", 1, timeout=60)
    assert order_submit_batch_task(order_ids=ids) == 0
    assert [(task, kw["order_id"]) for task, kw in published] == [
        ("orders.submit", order_id) for order_id in ids
    ]
    assert set(Order.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"validated"}
    # and a first delivery sends the batch itself
    assert order_submit_batch_task(order_ids=ids) == 4


def test_reports_naming_the_order_in_another_uuid_spelling_are_booked(market):
    account = funded_account()
    order = working_order(account, "EUR_USD", "buy", "2000")
    reports = [
        ExecutionReport(
            venue=report.venue,
            kind=report.kind,
            client_order_id=order.id.hex.upper(),  # no hyphens, upper case: the same UUID
            venue_order_id=report.venue_order_id,
            at=report.at,
            execution_id=report.execution_id,
            quantity=report.quantity,
            price=report.price,
            liquidity=report.liquidity,
        )
        for report in venue_answer(order, ("2000", "1.08500"))
    ]
    assert services.execution_reports_apply(reports=reports) == 2
    order.refresh_from_db()
    assert (order.status, order.filled_quantity) == ("filled", D("2000"))
    assert Position.objects.get(account=account, strategy_id="").quantity == D("2000")


def test_the_sweeper_sends_stuck_submissions_back_as_batches(market, monkeypatch):
    from orders import outbox

    account = funded_account()
    ids = validated(account, services.SUBMIT_BATCH_SIZE + 5)
    published = []
    monkeypatch.setattr(outbox, "publish_now", lambda task, **kw: published.append((task, kw)))
    assert services.orders_sweep_stuck(older_than=0) == len(ids)
    assert [(task, len(kw["order_ids"])) for task, kw in published] == [
        ("orders.submit_batch", services.SUBMIT_BATCH_SIZE),
        ("orders.submit_batch", 5),
    ]
    assert sorted(i for _, kw in published for i in kw["order_ids"]) == sorted(ids)


def test_a_client_order_id_racing_another_request_is_stored_once(market, monkeypatch):
    """Another request stores client order id "race" between the batch's read of stored ids
    and its insert: the batch's insert fails on the unique key, its orders take the one-order
    path, and each id ends with one order (the winner's for "race", repeats included)."""
    from risk import services as risk_services

    account = funded_account()
    body = {"symbol": "EUR_USD", "side": "buy", "type": "market", "time_in_force": "ioc"}

    def terms(client_order_id):
        return OrderTerms(**body, quantity=D(1000), client_order_id=client_order_id)

    admit = risk_services.orders_rate_limit_many
    raced = []

    def another_request_wins(**kwargs):
        if not raced:
            raced.append(None)
            raced[0] = services.order_submit(account=account, terms=terms("race"), actor="x")
        return admit(**kwargs)

    monkeypatch.setattr(risk_services, "orders_rate_limit_many", another_request_wins)
    answers = services.orders_submit_many(
        requests=[services.SubmitRequest(account, terms(c)) for c in ("race", "b", "race")],
        actor="test",
    )
    winner = raced[0].order
    assert [(a.order.pk == winner.pk, a.created) for a in answers] == [
        (True, False),
        (False, True),
        (True, False),
    ]
    assert sorted(
        Order.objects.filter(account=account).values_list("client_order_id", flat=True)
    ) == ["b", "race"]
    # The failed insert left nothing: each stored order has its two creation events once, and
    # its work item once (the one-order path's); no batch work item names an order.
    stored = list(Order.objects.filter(account=account))
    for order in stored:
        assert list(order.events.order_by("seq").values_list("type", flat=True)) == [
            "created",
            "validated",
        ]
    submitted = [
        m.kwargs.get("order_id") for m in OutboxMessage.objects.filter(task="orders.submit")
    ]
    assert sorted(submitted) == sorted(str(order.pk) for order in stored)
    assert not OutboxMessage.objects.filter(task="orders.submit_batch").exists()


def test_a_parked_submit_task_leaves_the_orders_behind_it_to_a_drain(market, monkeypatch, settings):
    from django.core.cache import cache

    from orders import outbox
    from orders.tasks import order_submit_task

    published = []
    monkeypatch.setattr(outbox, "publish_now", lambda task, **kw: published.append(task))
    account = funded_account()
    queued = validated(account, 2)
    own = validated(account, 1)[0]
    cache.set(f"deliveries:submit:{own}", settings.ORDERS_MAX_DELIVERIES, timeout=60)
    order_submit_task(order_id=own)
    assert Order.objects.get(pk=own).needs_review
    assert published == ["orders.drain"]
    assert set(Order.objects.filter(pk__in=queued).values_list("status", flat=True)) == {
        "validated"
    }


def test_the_apply_locks_the_orders_it_sent_without_reading_them_again(market):
    from orders.lock_objects import orders_for_update_unless_known

    account = funded_account()
    ids = validated(account, 3)
    known = {
        o.pk: o for o in Order.objects.select_related("instrument", "account").filter(pk__in=ids)
    }
    with CaptureQueriesContext(connection) as captured:
        locked = orders_for_update_unless_known(ids, known)
    assert [o.pk for o in locked] == sorted(known)
    assert all(o is known[o.pk] for o in locked)  # the caller's own objects
    (statement,) = [q["sql"] for q in captured.captured_queries]
    assert '"event_seq"' in statement and '"client_order_id"' not in statement


def test_an_order_changed_since_the_caller_wrote_it_is_read_again(market):
    from orders.lock_objects import orders_for_update_unless_known

    account = funded_account()
    ids = validated(account, 3)
    known = {
        o.pk: o for o in Order.objects.select_related("instrument", "account").filter(pk__in=ids)
    }
    changed = Order.objects.get(pk=ids[1])
    services._order_change(changed, event_type="pending_submit", actor="w", status="pending_submit")
    locked = {o.pk: o for o in orders_for_update_unless_known(ids, known)}
    assert locked[changed.pk] is not known[changed.pk]
    assert (locked[changed.pk].status, locked[changed.pk].event_seq) == ("pending_submit", 3)
    assert locked[changed.pk].instrument.symbol == "EUR_USD"  # read with its relations
    assert all(locked[pk] is known[pk] for pk in known if pk != changed.pk)
    # and what the caller does not know is read
    assert [o.pk for o in orders_for_update_unless_known(ids, {})] == sorted(known)


def test_a_sent_batch_applies_its_fills_with_the_orders_it_holds(market):
    account = funded_account()
    services.orders_submit_to_venue_many(order_ids=validated(account, 2))  # positions exist
    ids = validated(account, 4)
    with CaptureQueriesContext(connection) as captured:
        services.orders_submit_to_venue_many(order_ids=ids)
    assert Order.objects.filter(pk__in=ids, status="filled").count() == 4
    reads = [
        q["sql"] for q in captured.captured_queries
        if q["sql"].startswith('SELECT t0."id"') and '"orders_order" t0' in q["sql"]
    ]  # fmt: skip
    # the claim reads the orders; the apply only locks them (id and event_seq), and does not
    # look their fills up among the stored ones (an unchanged order has booked none since)
    assert len(reads) == 2 and '"client_order_id"' not in reads[1]
    assert not [q for q in captured.captured_queries if 'FROM "orders_fill"' in q["sql"]]


def test_a_fill_reported_again_on_another_order_is_skipped_as_before(market, caplog):
    """The apply does not look up the fills of orders unchanged since the caller wrote them;
    a venue reusing an execution id of another order's fill makes the insert fail, and the
    reports are applied again reading the stored fills: the fill is skipped, as it always was."""
    import dataclasses

    account = funded_account()
    first, second = (Order.objects.get(pk=pk) for pk in validated(account, 2))
    for order in (first, second):
        services._order_change(
            order, event_type="pending_submit", actor="w", status="pending_submit"
        )
    services.execution_reports_apply(reports=venue_answer(first, ("1000", "1.08000")))
    booked = Fill.objects.get(order=first).venue_execution_id
    reports = [
        dataclasses.replace(r, execution_id=booked) if r.execution_id else r
        for r in venue_answer(second, ("1000", "1.08000"))
    ]
    caplog.set_level("WARNING")
    with CaptureQueriesContext(connection) as captured:
        services.execution_reports_apply(reports=reports, known={second.pk: second})
    assert "booked already" in caplog.text
    again = Order.objects.get(pk=second.pk)
    assert (again.status, again.filled_quantity) == ("acknowledged", D(0))
    assert list(Fill.objects.filter(venue_execution_id=booked).values_list("order", flat=True)) == [
        first.pk
    ]
    # the first attempt left nothing behind: the second order's events once each, no fill
    assert list(again.events.order_by("seq").values_list("type", flat=True)) == [
        "created",
        "validated",
        "pending_submit",
        "acknowledged",
    ]
    assert not Fill.objects.filter(order=second).exists()
    assert any(
        '"orders_fill"' in q["sql"] and q["sql"].startswith("SELECT")
        for q in captured.captured_queries
    )
