"""The indexes of the growth findings (docs/performance.md, Growth) and the query shapes that
use them: the quote step's two-statement matching query, the list pages' account filter, and
on PostgreSQL, that each partial index's condition is implied by the query it is for (a
partial index whose condition the planner cannot prove is silently never used)."""

import importlib
import re
from datetime import timedelta
from decimal import Decimal
from itertools import product

import pytest
from django.db import connection
from django.utils import timezone

from brokers.models import SimOrder
from brokers.registry import venue_for
from brokers.sim.venue import _may_act_on, _working_ids_to_act_on, _working_orders_to_act_on
from orders import services
from orders.models import Order
from orders.states import OPEN, OrderStatus
from tests.conftest import client_for, make_trader
from tests.helpers import submit

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def sim_book():
    """Working and finished orders of every type, side and trigger state on two symbols, at
    prices around EUR_USD 1.08490 / 1.08500, some due to expire, some not."""
    now = timezone.now()
    prices = [D("1.08480"), D("1.08490"), D("1.08495"), D("1.08500"), D("1.08510")]
    n = 0
    for symbol, status, side, order_type, price, triggered, expire_at in product(
        ["EUR_USD", "GBP_USD"],
        ["working", "filled"],
        ["buy", "sell"],
        ["market", "limit", "stop", "stop_limit"],
        prices,
        [False, True],
        [None, now - timedelta(minutes=1), now + timedelta(hours=1)],
    ):
        if order_type in ("market", "limit") and triggered:
            continue
        n += 1
        SimOrder.objects.create(
            client_order_id=f"book-{n}",
            symbol=symbol,
            side=side,
            type=order_type,
            time_in_force="gtd" if expire_at else "gtc",
            quantity=D("1000"),
            triggered=triggered,
            status=status,
            expire_at=expire_at,
            limit_price=price if order_type in ("limit", "stop_limit") else None,
            stop_price=price if order_type in ("stop", "stop_limit") else None,
        )
    return now


@pytest.mark.parametrize(
    ("bid", "ask"),
    [
        ("1.08490", "1.08500"),
        ("1.08470", "1.08475"),
        ("1.08520", "1.08530"),
        ("1.08495", "1.08495"),
    ],
)
def test_the_quote_step_locks_exactly_the_orders_the_single_filter_selects(sim_book, bid, ask):
    # given a book of every kind of order on two symbols, and a quote
    now = sim_book
    single = list(
        SimOrder.objects.filter(symbol="EUR_USD", status="working")
        .filter(_may_act_on(bid=D(bid), ask=D(ask), now=now))
        .order_by("id")
        .values_list("id", flat=True)
    )
    # when the step reads the orders it can act on (one SELECT per arm, then the lock by id)
    locked = _working_orders_to_act_on(symbol="EUR_USD", bid=D(bid), ask=D(ask), now=now)
    # then they are exactly those of the single WHERE, in id order, and none is missing
    # from the per-arm ids
    assert [order.id for order in locked] == single
    assert set(single) <= set(
        _working_ids_to_act_on(symbol="EUR_USD", bid=D(bid), ask=D(ask), now=now)
    )
    assert single  # the quotes above cross something: the comparison is not vacuous


def test_lists_show_the_orders_and_fills_of_every_account_granted_and_no_other(
    instruments, settings
):
    # given alice with two accounts and bob with one, each with a filled AAPL market order
    settings.COMMISSIONS = {}
    alice = make_trader("alice", "ACC-1", "ACC-3")
    bob = make_trader("bob", "ACC-2")
    venue_for("sim").set_quote(
        "AAPL", bid=D("189.99"), ask=D("190.00"), bid_size=D("5000"), ask_size=D("5000")
    )
    placed = {}
    for user, account in ((alice, "ACC-1"), (alice, "ACC-3"), (bob, "ACC-2")):
        response = client_for(user).post(
            "/api/v1/orders/",
            {
                "account": account,
                "client_order_id": f"market-{account}",
                "symbol": "AAPL",
                "side": "buy",
                "type": "market",
                "quantity": "10",
                "time_in_force": "ioc",
            },
            format="json",
        )
        assert response.status_code == 201, response.content
        services.order_submit_to_venue(order_id=response.json()["id"])
        placed[account] = response.json()["id"]
    # when each lists orders and fills
    alice_api, bob_api = client_for(alice), client_for(bob)
    alice_orders = alice_api.get("/api/v1/orders/?status=filled").json()["results"]
    alice_fills = alice_api.get("/api/v1/fills/").json()["results"]
    bob_orders = bob_api.get("/api/v1/orders/").json()["results"]
    bob_fills = bob_api.get("/api/v1/fills/").json()["results"]
    # then each sees the orders and fills of his own accounts, newest first
    assert [o["id"] for o in alice_orders] == [placed["ACC-3"], placed["ACC-1"]]
    assert sorted(f["order_id"] for f in alice_fills) == sorted([placed["ACC-1"], placed["ACC-3"]])
    assert [o["id"] for o in bob_orders] == [placed["ACC-2"]]
    assert [f["order_id"] for f in bob_fills] == [placed["ACC-2"]]


def test_a_user_without_accounts_sees_no_orders_or_fills(api):
    # given an order of alice's, and carol who was granted no account
    submit(api)
    carol = client_for(make_trader("carol"))
    # when carol lists orders and fills
    # then both lists are empty
    assert carol.get("/api/v1/orders/").json()["results"] == []
    assert carol.get("/api/v1/fills/").json()["results"] == []


# --- PostgreSQL: the partial indexes are usable by their queries -------------------------------


def _plan_with_only(index: str, table: str, queryset) -> str:
    """EXPLAIN of `queryset` (or of a statement and its parameters as SQL literals, prepared,
    its generic plan) with every other index of `table` but its primary key dropped (in
    the test's transaction: rolled back) and sequential scans disabled: the plan names `index`
    only if the planner can prove the query implies the index's condition."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indexrelid::regclass::text, c.conname FROM pg_index i "
            "LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid "
            "WHERE i.indrelid = %s::regclass AND NOT i.indisprimary",
            [table],
        )
        others = [(name, constraint) for name, constraint in cursor.fetchall() if name != index]
        for name, constraint in others:
            if constraint:
                cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{constraint}"')
            else:
                cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute("SET LOCAL enable_seqscan = off")
        try:
            if isinstance(queryset, tuple):  # its generic plan: blind to the parameters
                sql, params = queryset
                numbered = sql.split("%s")
                sql = numbered[0] + "".join(f"${n}{part}" for n, part in enumerate(numbered[1:], 1))
                cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                cursor.execute(f"PREPARE planned AS {sql}")
                try:
                    cursor.execute(f"EXPLAIN EXECUTE planned({', '.join(map(str, params))})")
                    return "\n".join(row[0] for row in cursor.fetchall())
                finally:
                    cursor.execute("DEALLOCATE planned")
            return queryset.explain()
        finally:
            cursor.execute("SET LOCAL enable_seqscan = on")


@pytest.mark.postgres
@pytest.mark.parametrize(
    "statement",
    [
        "risk.selectors._WORKING_ALL_SQL",
        "risk.selectors._WORKING_ONE_SQL",
        "orders.valuation._OPEN_COUNT_SQL",
    ],
)
def test_the_open_order_reads_can_use_the_open_orders_index(trader, instruments, statement):
    # given a read of an account's open orders (the risk snapshot's totals, of every
    # instrument or of one, and the open count)
    module, name = statement.rsplit(".", 1)
    sql = getattr(importlib.import_module(module), name)
    account = trader.trading_accounts.get()
    params = [account.pk, instruments["EUR_USD"].pk][: sql.count("%s")]
    # when it is planned with only the partial index to choose from, as the generic plan a
    # prepared statement may take after five runs (blind to its parameters' values)
    plan = _plan_with_only("order_open_account_created", "orders_order", (sql, params))
    # then the partial index serves it
    assert "order_open_account_created" in plan, plan


def test_open_true_lists_the_open_orders_newest_first_and_open_false_the_others(api):
    # given six orders of one account, the second and the fifth cancelled (no longer open)
    ids = [submit(api, client_order_id=f"o-{n}")["id"] for n in range(6)]
    for order_id in (ids[1], ids[4]):
        assert api.post(f"/api/v1/orders/{order_id}/cancel/").status_code in (200, 202)
    # when the open and the other orders are listed, in pages of two
    first = api.get("/api/v1/orders/?open=true&page_size=2").json()
    second = api.get(first["next"]).json()
    done = api.get("/api/v1/orders/?open=false").json()["results"]
    # then the open ones come newest first across the pages, and the others apart
    assert [o["id"] for o in first["results"] + second["results"]] == [
        ids[5],
        ids[3],
        ids[2],
        ids[0],
    ]
    assert second["next"] is None
    assert [o["id"] for o in done] == [ids[4], ids[1]]
    assert {o["status"] for o in done} == {"cancelled"}


@pytest.mark.postgres
@pytest.mark.parametrize("generic", [False, True])
def test_the_open_orders_page_is_read_in_order_from_the_open_orders_index(trader, generic):
    """GET /orders/?open=true of a trader: `order_open_account_created` gives the page newest
    first, so no sort of all the account's open orders (27 ms a page with 625 of them on
    1,000,000 orders before orders 0011). The statuses are literals: a prepared statement's
    generic plan can use the index as well."""
    from orders import selectors
    from orders.api.filters import OrderFilter

    # given the list's query as the view builds it (visible orders, the open filter, the
    # cursor page's order and size)
    visible = selectors.orders_visible_to(trader)
    queryset = OrderFilter({"open": "true"}, queryset=visible).qs.order_by("-created_at", "-id")
    page = queryset[:51]
    # when it is planned with only the partial index to choose from
    if generic:
        sql, params = page.query.sql_with_params()
        plan = _plan_with_only("order_open_account_created", "orders_order", (sql, params))
    else:
        plan = _plan_with_only("order_open_account_created", "orders_order", page)
    # then the index is read in order: no sort
    assert "order_open_account_created" in plan, plan
    assert "Sort" not in plan, plan


@pytest.mark.postgres
def test_the_expiry_sweep_can_use_the_open_expiry_index(db):
    # given the expiry query, as orders.services.orders_expire builds it
    query = (
        Order.objects.filter(status__in=OPEN, expire_at__lte=timezone.now())
        .exclude(status=OrderStatus.PENDING_CANCEL)
        .values_list("pk", flat=True)[:1000]
    )
    # when it is planned with only the partial index to choose from
    plan = _plan_with_only("order_open_expire_at", "orders_order", query)
    # then the partial index serves it
    assert "order_open_expire_at" in plan, plan


@pytest.mark.postgres
def test_an_algorithms_children_and_the_parents_protect_check_use_the_partial_parent_index(db):
    """`order_parent` holds only orders that have a parent (orders 0009); `parent_id = x`
    implies that, with its value known or as a generic plan's parameter."""
    import uuid

    some = uuid.uuid4()
    children = Order.objects.filter(parent_id=some).values_list("pk", flat=True)
    assert "order_parent" in _plan_with_only("order_parent", "orders_order", children)
    sql = 'SELECT 1 FROM "orders_order" WHERE "parent_id" = %s'  # as PROTECT's check reads
    plan = _plan_with_only("order_parent", "orders_order", (sql, [f"'{some}'::uuid"]))
    assert "order_parent" in plan, plan


@pytest.mark.postgres
@pytest.mark.parametrize(
    "index",
    [
        "simorder_working_limit",
        "simorder_working_stop",
        "simorder_working_at_market",
        "simorder_working_expire_at",
    ],
)
def test_each_arm_of_the_quote_step_has_its_partial_index(db, index):
    # given the per-arm SELECTs of a quote step
    query = _working_ids_to_act_on(
        symbol="EUR_USD", bid=D("1.08490"), ask=D("1.08500"), now=timezone.now()
    )
    # when they are planned with only one of the partial indexes to choose from
    plan = _plan_with_only(index, "brokers_simorder", query)
    # then that index serves its arm(s)
    assert index in plan, plan


@pytest.mark.postgres
@pytest.mark.parametrize(
    "table, column",
    [
        ("orders_order", "account_id"),
        ("orders_fill", "order_id"),
        ("orders_fill", "account_id"),
        ("orders_orderevent", "order_id"),
    ],
)
def test_a_foreign_key_is_served_by_a_composite_index_and_has_none_of_its_own(table, column):
    """Every write of the row maintains every index: a single-column index on a foreign key
    that a composite index already leads with costs each write and serves no read (orders
    0008). Lookups by the key (and PROTECT's check before a delete) still have an index."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indexrelid::regclass::text, i.indnatts FROM pg_index i "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
            "WHERE i.indrelid = %s::regclass AND a.attname = %s",
            [table, column],
        )
        leading = dict(cursor.fetchall())
    assert leading, f"no index leads with {table}.{column}"
    assert all(columns > 1 for columns in leading.values()), leading


@pytest.mark.postgres
def test_a_client_order_id_across_accounts_probes_the_unique_key_per_account(db):
    """selectors.client_order_id_condition: `client_order_id = x` alone is no prefix of the
    unique (account, client_order_id) index; with every account's id it is probed once an
    account (the admin's searches)."""
    from django.db import transaction

    from orders.selectors import client_order_id_condition

    make_trader("alice", "ACC-1", "ACC-2")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        probed = Order.objects.filter(client_order_id_condition("c-1")).explain()
        alone = Order.objects.filter(client_order_id="c-1").explain()
    # an index probed by account (the unique key, or the account's own index with the
    # client id filtered, as the statistics of the moment have it), never a whole scan
    assert re.search(r"Index Cond: \(+account_id = ANY", probed), probed
    assert "Seq Scan on orders_order" not in probed, probed
    assert "account_id" not in alone  # the whole index read, or the table


@pytest.mark.postgres
def test_analyze_builds_no_statistics_of_the_event_data_and_keeps_the_other_columns(api):
    # given orders with their audit events (0014: the events' jsonb is read back, never
    # searched, and its statistics were half of every ANALYZE of the table)
    for n in range(3):
        submit(api, client_order_id=f"stats-{n}")
    # when the table is analyzed, as autovacuum does
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE orders_orderevent")
        cursor.execute(
            "SELECT attname FROM pg_stats WHERE schemaname = current_schema()"
            " AND tablename = 'orders_orderevent'"
        )
        analyzed = {row[0] for row in cursor.fetchall()}
    # then every column but the document has statistics, and the documents read back whole
    assert "data" not in analyzed
    assert {"order_id", "seq", "type", "at", "actor", "correlation_id"} <= analyzed
    order = Order.objects.get(client_order_id="stats-0")
    assert order.events.get(seq=1).data["changes"]["client_order_id"] == "stats-0"
