"""The venue's matching read (brokers/sim/venue.py, `_WORKING_IDS`) keeps to its partial
indexes under the plan a prepared statement may be given: a generic plan, made without the
parameters' values. Its constants (`status = 'working'`, the sides and types) are in the text
(tradingsite.bulk.QueryTemplate), so the plan can use indexes whose condition names them; as
parameters, it read every simulated order of the table on each quote step."""

from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
from django.db import connection, transaction

from brokers.models import SimOrder
from brokers.sim.venue import _WORKING_IDS

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _orders(count: int, status: str) -> list[SimOrder]:
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
    SimOrder.objects.bulk_create(_orders(3000, "filled") + _orders(3, "working"))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE brokers_simorder")
    values = {
        "symbol": "EUR_USD",
        "bid": Decimal("1.09"),  # a sell limit at 1.08 fills at this bid,
        "ask": Decimal("1.07"),  # and a buy limit at 1.08 at this ask
        "now": datetime(2026, 1, 1, tzinfo=UTC),
    }
    rows = _WORKING_IDS.rows(**values)
    assert len(rows) == 3  # every working order, none of the filled ones
    sql, params, slots = _WORKING_IDS.compiled
    assert "'working'" in sql and "'buy'" in sql
    assert set(slots) == set(values)  # what is left as parameters is the call's values only
    statement = sql % tuple(f"${n}" for n in range(1, len(params) + 1))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        raw = connection.connection
        raw.execute(f"PREPARE matching_probe AS {statement}")
        try:
            arguments = [values[slot] if slot else p for p, slot in zip(params, slots, strict=True)]
            placeholders = ", ".join(["%s"] * len(arguments))
            with psycopg.ClientCursor(raw) as client:  # the values quoted into the text
                client.execute(f"EXPLAIN EXECUTE matching_probe({placeholders})", arguments)
                plan = "\n".join(row[0] for row in client.fetchall())
        finally:
            raw.execute("DEALLOCATE matching_probe")
    assert "Seq Scan" not in plan, plan
    assert "simorder_working" in plan, plan
