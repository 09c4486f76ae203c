"""Hot reads keep to their partial indexes under the plan a prepared statement may be given: a
generic plan, made without the parameters' values. Their constants (`status = 'working'`, the
open statuses) are in the text (tradingsite.bulk.QueryTemplate), so the plan can use indexes
whose condition names them; as parameters, the venue's matching read (brokers/sim/venue.py)
read every simulated order of the table on each quote step. Lookups of many keys send one
array a column (tradingsite.bulk.rows_values / rows_select), one statement text for any number
of keys: an IN list of a parameter a key was prepared once per length, and its generic plan,
made while the table was small, compared every row of the venue (or the account) with every
key."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from brokers.models import SimOrder
from brokers.sim.venue import _WORKING_IDS
from orders import services
from orders.models import Fill
from tradingsite.bulk import QueryTemplate
from tradingsite.db import read as db_read

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def generic_plan_of(sql: str, params: list, *, seqscan: bool = True) -> str:
    """EXPLAIN of a statement as Django sends it (`%s` placeholders and their values) under a
    forced generic plan; with `seqscan=False`, a table scan only where no index can serve
    (whether an index is usable at all, on a table too small for the planner to prefer it)."""
    statement = sql % tuple(f"${n}" for n in range(1, len(params) + 1))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        if not seqscan:
            cursor.execute("SET LOCAL enable_seqscan = off")
        raw = connection.connection
        raw.execute(f"PREPARE generic_probe AS {statement}")
        try:
            placeholders = ", ".join(["%s"] * len(params))
            with psycopg.ClientCursor(raw) as client:  # the values quoted into the text
                client.execute(f"EXPLAIN EXECUTE generic_probe({placeholders})", params)
                return "\n".join(row[0] for row in client.fetchall())
        finally:
            raw.execute("DEALLOCATE generic_probe")


def generic_plan(template: QueryTemplate, values: dict, *, seqscan: bool = True) -> str:
    """`generic_plan_of` the statement of `template` (compiled by a call) with `values`."""
    sql, params, slots = template.compiled
    assert set(slots) - {None} == set(values)  # the call's values are its only slots
    arguments = [values[slot] if slot else p for p, slot in zip(params, slots, strict=True)]
    return generic_plan_of(sql, arguments, seqscan=seqscan)


def _sim_orders(count: int, status: str) -> list[SimOrder]:
    return [
        SimOrder(
            client_order_id=f"plan-{status}-{n}",
            account="ACC-1",
            symbol="EUR_USD",
            side="buy" if n % 2 else "sell",
            type="limit",
            time_in_force="gtc",
            quantity=Decimal(1),
            limit_price=Decimal("1.08"),
            status=status,
        )
        for n in range(count)
    ]


def test_the_matching_read_names_its_constants_and_its_generic_plan_uses_partial_indexes():
    SimOrder.objects.bulk_create(_sim_orders(3000, "filled") + _sim_orders(3, "working"))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE brokers_simorder")
    values = {
        "symbol": "EUR_USD",
        "bid": Decimal("1.09"),  # a sell limit at 1.08 fills at this bid,
        "ask": Decimal("1.07"),  # and a buy limit at 1.08 at this ask
        "now": datetime(2026, 1, 1, tzinfo=UTC),
    }
    assert len(_WORKING_IDS.rows(**values)) == 3  # every working order, none of the filled
    assert "'working'" in _WORKING_IDS.compiled[0] and "'buy'" in _WORKING_IDS.compiled[0]
    plan = generic_plan(_WORKING_IDS, values)
    assert "Seq Scan" not in plan, plan
    assert "simorder_working" in plan, plan


def test_the_expiry_read_names_the_open_statuses_and_its_generic_plan_uses_its_index(api):
    from tests.helpers import LIMIT_ORDER, submit

    now = timezone.now()
    soon, later = (now + timedelta(hours=h) for h in (1, 3))
    gtd = {**LIMIT_ORDER, "time_in_force": "gtd"}
    ids = [
        submit(api, **{**gtd, "client_order_id": f"exp-{n}", "expire_at": expiry.isoformat()})["id"]
        for n, expiry in enumerate([soon, soon, soon, later, later])
    ]
    now = soon + timedelta(minutes=1)  # the first three are due
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE orders_order")
    due = services._DUE_TO_EXPIRE.rows(now=now)
    assert {str(order_id) for (order_id,) in due} == set(ids[:3])
    assert "'validated'" in services._DUE_TO_EXPIRE.compiled[0]
    plan = generic_plan(services._DUE_TO_EXPIRE, {"now": now}, seqscan=False)
    assert "order_open_expire_at" in plan, plan


class Statements:
    """The statements sent while it is active (Django's execute wrapper): their text, with
    its placeholders, and their parameters."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list]] = []

    def __call__(self, execute, sql, params, many, context):
        self.sent.append((sql, list(params or ())))
        return execute(sql, params, many, context)

    def reading(self, table: str) -> list[tuple[str, list]]:
        return [(sql, p) for sql, p in self.sent if sql.startswith("SELECT") and table in sql]


def sent_while(call) -> Statements:
    statements = Statements()
    with connection.execute_wrapper(statements):
        call()
    return statements


def test_the_poll_finds_booked_fills_with_one_statement_whatever_the_page_and_probes_per_pair(
    trader, instruments
):
    from brokers.registry import venue_for
    from tests.integration.test_venue_poll import resting_buys_then_filled

    # given six resting orders filled at the venue, their fills booked by a poll
    resting_buys_then_filled(6)
    services.venue_poll_caught_up(venue_name="sim", budget_seconds=5)
    stream = list(venue_for("sim").reports_since(0, limit=1000))
    fills = [r for r in stream if r.kind == "fill"]
    assert len(fills) == 6
    # among 3,000 other fills of the venue, so that probing pays
    booked = Fill.objects.first()
    values = {f.attname: getattr(booked, f.attname) for f in Fill._meta.concrete_fields}
    del values["id"]
    Fill.objects.bulk_create(
        [Fill(**{**values, "venue_execution_id": f"OTHER-{n}"}) for n in range(3000)]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE orders_fill")
    # when the poll's check reads a page of 2 fills, then one of 6
    small = sent_while(lambda: services.reports_not_yet_applied(fills[:2]))
    whole = sent_while(lambda: services.reports_not_yet_applied(stream))
    # then every booked fill is dropped, by one statement whose text does not depend on the
    # page (one array a column, not a parameter an id: prepared once for every page size)
    assert services.reports_not_yet_applied(stream) == []
    [(sql_small, _)] = small.reading("orders_fill")
    [(sql, params)] = whole.reading("orders_fill")
    assert sql == sql_small and len(params) == 2
    # (and so does its read of the orders the page names)
    [(orders_small, _)] = small.reading("orders_order")
    [(orders_whole, order_params)] = whole.reading("orders_order")
    assert orders_whole == orders_small and len(order_params) == 1
    # and its generic plan can probe the unique key with both columns, where an IN list of
    # ids made a plan that read every fill of the venue and compared each with every id
    plan = generic_plan_of(sql, params)
    assert "fill_unique_venue_execution" in plan, plan
    assert "venue_execution_id = (unnest" in plan, plan
    assert "Filter" not in plan, plan


def test_the_batch_intake_finds_stored_client_order_ids_with_one_statement(api, trader):
    from orders.models import Account
    from tests.helpers import buy_limit_terms

    account = Account.objects.get(code="ACC-1")

    def requests(ids):
        return [
            services.SubmitRequest(account, buy_limit_terms(Decimal("1.00000"), client_order_id))
            for client_order_id in ids
        ]

    def submit(ids):
        return services.orders_submit_many(requests=requests(ids), user=trader, actor="user:alice")

    first = sent_while(lambda: submit(["b-1", "b-2"]))
    again = sent_while(lambda: submit(["b-1", "b-2", "b-3", "b-4", "b-5"]))
    [(sql_first, _)] = [s for s in first.reading("orders_order") if "client_order_id" in s[0]]
    [(sql, params)] = [s for s in again.reading("orders_order") if "client_order_id" in s[0]]
    assert sql == sql_first and len(params) == 2


def test_the_intake_counts_waiting_orders_by_their_status_index_under_a_generic_plan(
    api, monkeypatch
):
    from tests.helpers import LIMIT_ORDER, submit

    for n in range(3):
        submit(api, **{**LIMIT_ORDER, "client_order_id": f"wait-{n}"})  # no worker: they wait
    monkeypatch.setattr(services, "_backlog_seen", (float("-inf"), 0))  # count now
    statements = sent_while(services.intake_check)
    [(sql, params)] = statements.reading("orders_order")
    # the status is in the text, the limit a parameter
    assert "'validated'" in sql and params == [settings.ORDERS_INTAKE_MAX_BACKLOG + 1]
    assert db_read(sql, params) == [(3,)]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE orders_order")
    plan = generic_plan_of(sql, params, seqscan=False)  # a table too small to prefer it
    assert "Index" in plan and "Seq Scan" not in plan, plan
