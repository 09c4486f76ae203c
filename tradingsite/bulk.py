"""One statement for many rows: `rows_update` (many rows of one table, different values),
`rows_insert` (new rows of several tables at once) and `rows_copy` (many new rows of one
table, with COPY).

Django's `bulk_update` builds a CASE WHEN per field and row; resolving those expressions costs
about 15 ms per 50 rows here, more than the database work. On PostgreSQL `rows_update` sends
`UPDATE t SET f = v.f FROM (VALUES ...) v WHERE t.pk = v.pk`: the values travel as typed
parameters and the statement is built as a string. Elsewhere (the SQLite fallback) it is
`bulk_update`, where speed does not matter.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import nullcontext
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.db.models import AutoField, BigAutoField, Field, JSONField, Model


def rows_update(objects: Sequence[Model], fields: Sequence[str]) -> int:
    """Write `fields` of every object (same model, saved already) in one statement. Answers
    the number of rows updated."""
    if not objects or not fields:
        return 0
    model = type(objects[0])
    if connection.vendor != "postgresql":
        return model._default_manager.bulk_update(objects, list(fields), batch_size=500)
    meta = model._meta
    quote = connection.ops.quote_name
    columns = [meta.pk, *(meta.get_field(name) for name in fields)]
    casts = ", ".join(f"%s::{column.db_type(connection)}" for column in columns)
    values = ", ".join(f"({casts})" for _ in objects)
    names = ", ".join(quote(f"v_{column.column}") for column in columns)
    assignments = ", ".join(
        f"{quote(column.column)} = v.{quote('v_' + column.column)}" for column in columns[1:]
    )
    params = [
        column.get_db_prep_save(getattr(obj, column.attname), connection)
        for obj in objects
        for column in columns
    ]
    sql = (
        f"UPDATE {quote(meta.db_table)} AS t SET {assignments} "
        f"FROM (VALUES {values}) AS v({names}) "
        f"WHERE t.{quote(meta.pk.column)} = v.{quote('v_' + meta.pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def rows_insert(*groups: Sequence[Model]) -> None:
    """Insert new rows of several models (one sequence of objects per model, parents before
    children), as `bulk_create` would, and set the objects' generated primary keys.

    On PostgreSQL this is one statement, `WITH g0 AS (INSERT ...), ... SELECT` the generated
    keys: one round trip. Outside a transaction it is its own transaction (no BEGIN and COMMIT
    round trips); inside one, it runs in a savepoint, so that a failure (a unique key taken by
    a concurrent request) leaves the caller's transaction usable, as `atomic()` would."""
    groups = tuple(group for group in groups if group)
    if not groups:
        return
    if connection.vendor != "postgresql":
        with transaction.atomic():
            for group in groups:
                type(group[0])._default_manager.bulk_create(list(group))
        return
    quote = connection.ops.quote_name
    parts: list[str] = []
    params: list[object] = []
    keyed: list[tuple[int, Sequence[Model]]] = []
    for index, group in enumerate(groups):
        meta = type(group[0])._meta
        generated, fields = _inserted_fields(meta)
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        returning = f" RETURNING {quote(meta.pk.column)}" if generated else ""
        parts.append(
            f"g{index} AS (INSERT INTO {quote(meta.db_table)} "
            f"({', '.join(quote(f.column) for f in fields)}) "
            f"VALUES {', '.join([row] * len(group))}{returning})"
        )
        params.extend(
            field.get_db_prep_save(field.pre_save(obj, True), connection)
            for obj in group
            for field in fields
        )
        if generated:
            keyed.append((index, group))
    selected = " UNION ALL ".join(
        f"SELECT {index}, {quote(type(group[0])._meta.pk.column)} FROM g{index}"
        for index, group in keyed
    )
    sql = f"WITH {', '.join(parts)} {selected or 'SELECT 0, 0 WHERE false'}"
    savepoint = transaction.atomic() if connection.in_atomic_block else nullcontext()
    with savepoint, connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    keys: dict[int, list[object]] = {}
    for index, key in rows:
        keys.setdefault(index, []).append(key)
    for index, group in enumerate(groups):
        for obj, key in zip(group, keys.get(index, ()), strict=False):
            obj.pk = key
        _mark_saved(group)


# Below this many rows a multi-row INSERT is cheaper: COPY takes two round trips.
COPY_MIN_ROWS = 20


def rows_copy(objects: Sequence[Model]) -> None:
    """Insert new rows of one model, as `bulk_create` would, with COPY on PostgreSQL from
    `COPY_MIN_ROWS` rows on: no SQL text is built and no parameter is quoted into it, which is
    where a multi-row INSERT of many rows spends its time here (LIMITS.md: COPY about 206,000
    rows/s, bulk_create 24,300). Generated primary keys are not read back: use it for models
    whose key is set in Python (UUIDs) or whose key nobody reads after the insert (events).
    The COPY is logged with the queries when they are (query-count tests see it)."""
    if not objects:
        return
    model = type(objects[0])
    if connection.vendor != "postgresql" or len(objects) < COPY_MIN_ROWS:
        model._default_manager.bulk_create(list(objects), batch_size=1000)
        return
    meta = model._meta
    _, fields = _inserted_fields(meta)
    quote = connection.ops.quote_name
    sql = f"COPY {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) FROM STDIN"
    started = time.monotonic()
    plain = [not isinstance(field, JSONField) for field in fields]
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for obj in objects:
            copy.write_row(
                [
                    _copy_value(field, field.pre_save(obj, True), is_plain)
                    for field, is_plain in zip(fields, plain, strict=True)
                ]
            )
    if connection.queries_logged:
        connection.queries_log.append(
            {"sql": f"{sql} -- {len(objects)} rows", "time": f"{time.monotonic() - started:.3f}"}
        )
    _mark_saved(objects)


def _inserted_fields(meta: Any) -> tuple[bool, list[Field]]:
    """Whether the model's key is generated by the database, and the columns an insert
    writes (all but a generated key), as bulk_create chooses them."""
    generated = isinstance(meta.pk, AutoField | BigAutoField)
    return generated, [f for f in meta.concrete_fields if not (generated and f.primary_key)]


def _mark_saved(objects: Sequence[Model]) -> None:
    """What bulk_create leaves on the objects it inserted: saved, in this database."""
    for obj in objects:
        obj._state.adding = False
        obj._state.db = connection.alias


_AS_IS = (str, int, Decimal, UUID)


def _copy_value(field: Field, value: object, plain: bool) -> object:
    """The value as COPY sends it. Strings, numbers, decimals, UUIDs and aware datetimes go as
    they are: Django's preparation would hand the same object to psycopg (it no longer
    quantizes decimals), at a cost that dominated the COPY. Anything else (JSON, naive
    datetimes, values of unexpected types) takes Django's own preparation."""
    if value is None or (
        plain
        and (
            isinstance(value, _AS_IS) or (isinstance(value, datetime) and value.tzinfo is not None)
        )
    ):
        return value
    return field.get_db_prep_save(value, connection)
