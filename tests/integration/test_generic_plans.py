"""Hot reads keep to their partial indexes under the plan a prepared statement may be given: a
generic plan, made without the parameters' values. Their constants (`status = 'working'`, the
open statuses) are in the text (tradingsite.bulk.QueryTemplate), so the plan can use indexes
whose condition names them; as parameters, the venue's matching read (brokers/sim/venue.py)
read every simulated order of the table on each quote step."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import connection, transaction
from django.utils import timezone

from brokers.models import SimOrder
from brokers.sim.venue import _WORKING_IDS
from orders import services
from tradingsite.bulk import QueryTemplate

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def generic_plan(template: QueryTemplate, values: dict, *, seqscan: bool = True) -> str:
    """EXPLAIN of `template`'s statement (compiled by a call) under a forced generic plan;
    with `seqscan=False`, a table scan only where no index can serve (whether an index is
    usable at all, on a table too small for the planner to prefer it)."""
    sql, params, slots = template.compiled
    assert set(slots) - {None} == set(values)  # the call's values are its only slots
    statement = sql % tuple(f"${n}" for n in range(1, len(params) + 1))
    arguments = [values[slot] if slot else p for p, slot in zip(params, slots, strict=True)]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        if not seqscan:
            cursor.execute("SET LOCAL enable_seqscan = off")
        raw = connection.connection
        raw.execute(f"PREPARE generic_probe AS {statement}")
        try:
            placeholders = ", ".join(["%s"] * len(arguments))
            with psycopg.ClientCursor(raw) as client:  # the values quoted into the text
                client.execute(f"EXPLAIN EXECUTE generic_probe({placeholders})", arguments)
                return "\n".join(row[0] for row in client.fetchall())
        finally:
            raw.execute("DEALLOCATE generic_probe")


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
