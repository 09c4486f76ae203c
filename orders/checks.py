"""System checks of the deployment the order path relies on (`manage.py check --database
default`; `migrate` runs them too)."""

from __future__ import annotations

from typing import Any

from django.core.checks import Tags, Warning, register
from django.db import connections


@register(Tags.database)
def postgres_runs_autovacuum(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[Warning]:
    """Every order's row is updated three to four times on its way to the venue, so the order
    table churns: without autovacuum its dead row versions pile up, and the submit claim's
    scan of the `validated` orders slows with every order ever sent (4-6 ms after 110,000
    orders, against microseconds; docs/operations.md, "PostgreSQL")."""
    found = []
    for alias in databases or ():
        connection = connections[alias]
        if connection.vendor != "postgresql":
            continue
        with connection.cursor() as cursor:
            cursor.execute("SHOW autovacuum")
            (value,) = cursor.fetchone()
        if value != "on":
            found.append(
                Warning(
                    f"PostgreSQL ({alias}) runs with autovacuum = {value}",
                    hint="Turn autovacuum on (postgresql.conf), or vacuum the order tables on a"
                    " schedule: the order path slows as dead row versions pile up.",
                    id="orders.W001",
                )
            )
    return found
