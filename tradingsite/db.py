"""A read that is also the connection's health check.

With CONN_HEALTH_CHECKS, Django pings a persistent connection (`SELECT 1`) before its first
statement in each request or task: a round trip that does nothing else, on every order.
Most requests and tasks begin with a read anyway (the reference-data version, the "still
waiting?" read of a submit task). `read` runs such a read *as* the check: on a connection due
for its check it skips the ping, and if the read meets a dead connection (PostgreSQL
restarted, the backend was terminated), it reconnects and reads again. Reading twice is
harmless; a write is never retried this way, and inside a transaction the ping is left to
Django (a transaction cannot be reopened on a new connection).

`db_decimal` reads a numeric value of such a raw read the way the ORM would.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Context, Decimal
from typing import Any

from django.db import InterfaceError, OperationalError, connection


def _check_due() -> bool:
    return (
        connection.connection is not None
        and connection.health_check_enabled
        and not connection.health_check_done
        and connection.get_autocommit()
        and not connection.in_atomic_block
    )


def _dead() -> bool:
    raw = connection.connection
    return raw is None or raw.closed or bool(getattr(raw, "broken", False))


def read(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """The rows of one read-only statement; on a connection due for its health check, the
    statement is the check (one round trip instead of two)."""
    if _check_due():
        connection.health_check_done = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()
        except (OperationalError, InterfaceError):
            if not _dead():
                raise  # the statement failed, not the connection
            connection.close()  # the next cursor connects again
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# SQLite answers a decimal column, or a sum of them, in a statement sent as text as a float
# (or an int): read as the ORM reads it there, to 15 significant digits. PostgreSQL's numeric
# arrives as a Decimal already.
_FLOAT_DECIMALS = Context(prec=15)


def db_decimal(value: Any) -> Decimal | None:
    """A numeric value of a raw read as a Decimal (None stays None)."""
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return _FLOAT_DECIMALS.create_decimal_from_float(value)
    return Decimal(value)
