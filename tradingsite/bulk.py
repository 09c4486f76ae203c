"""One statement for many rows: `rows_update` (many rows of one table, different values),
`rows_insert` (new rows of several tables at once, their generated keys read back) and
`RowWrites` (a transaction's writes in one statement), and the reads `rows_select`,
`rows_values` and `QueryTemplate`.

Django's `bulk_update` builds a CASE WHEN per field and row; resolving those expressions costs
about 15 ms per 50 rows here, more than the database work. On PostgreSQL `rows_update` sends
`UPDATE t SET f = v.f FROM json_to_recordset(%s) v WHERE t.pk = v.pk` (its row count told to
the planner as a LIMIT, below), and the inserts
`INSERT INTO t SELECT ... FROM json_populate_recordset(NULL::t, %s)`: the rows travel as one
JSON document (below, "rows as one JSON document") and the statement is built as a string,
once per shape. Elsewhere (the SQLite fallback) they are `bulk_update` and `bulk_create`,
where speed does not matter.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from contextlib import nullcontext
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import AutoField, BigAutoField, Field, JSONField, Model
from psycopg import sql as pg_sql
from psycopg.types.json import Jsonb


def _db() -> BaseDatabaseWrapper:
    """The default database's connection itself. Django's `connection` is a proxy that looks
    the connection up again, in a thread- and task-local, at every attribute read (1.2 µs
    here, against 0.03 for the connection itself), and the code below reads it for every value
    it converts and hands it to Django's field conversions, which read it again: 6.5 % of a
    worker child's CPU at 333 orders/s (py-spy --gil). Each function looks it up once."""
    return connections[DEFAULT_DB_ALIAS]


def rows_update(objects: Sequence[Model], fields: Sequence[str]) -> int:
    """Write `fields` of every object (same model, saved already) in one statement. Answers
    the number of rows updated."""
    connection = _db()
    if not objects or not fields:
        return 0
    if connection.vendor != "postgresql":
        model = type(objects[0])
        return model._default_manager.bulk_update(objects, list(fields), batch_size=500)
    sql, params = _update_sql(objects, fields)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def rows_update_sql(objects: Sequence[Model], fields: Sequence[str]) -> tuple[str, list[Any]]:
    """`rows_update`'s statement and parameters on PostgreSQL, for a caller that sends it
    with another write (as a WITH query of it, or the other as one of this)."""
    return _update_sql(objects, fields)


def _update_sql(objects: Sequence[Model], fields: Sequence[str]) -> tuple[str, list[Any]]:
    connection = _db()
    shape = _update_shape(type(objects[0]), tuple(fields))
    rows = [
        [
            _copy_value(column, getattr(obj, column.attname), plain, connection)
            for column, plain in shape.columns
        ]
        for obj in objects
    ]
    document = _json_document(shape.keys, rows) if shape.json is not None else None
    if document is not None:
        return shape.json_sql(len(objects)), [document]
    return shape.sql(len(objects)), [value for row in rows for value in row]


class _UpdateShape:
    """The text of `rows_update`'s statement for one model and set of fields, built once: the
    rows as one JSON document, and (for values JSON cannot carry) as VALUES rows."""

    def __init__(self, model: type[Model], fields: tuple[str, ...]) -> None:
        connection = _db()
        meta = model._meta
        quote = connection.ops.quote_name
        columns = [meta.pk, *(meta.get_field(name) for name in fields)]
        self.columns = _sendable(columns)
        self.keys = [f"v_{column.column}" for column in columns]
        casts = ", ".join(f"%s::{column.db_type(connection)}" for column in columns)
        self.row = f"({casts})"
        names = ", ".join(quote(key) for key in self.keys)
        assignments = ", ".join(
            f"{quote(column.column)} = v.{quote('v_' + column.column)}" for column in columns[1:]
        )
        update = f"UPDATE {quote(meta.db_table)} AS t SET {assignments} FROM "
        self.head = f"{update}(VALUES "
        where = f" WHERE t.{quote(meta.pk.column)} = v.{quote('v_' + meta.pk.column)}"
        self.tail = f") AS v({names}){where}"
        definitions = ", ".join(
            f"{quote(key)} {column.db_type(connection)}"
            for key, column in zip(self.keys, columns, strict=True)
        )
        # The planner takes a set-returning function for 100 rows: joined to a table of a few
        # thousand rows, that is a hash join over a sequential scan of the whole table (0.4 ms
        # for one order among 4,500; 2 ms among 20,000), where one row needs one index lookup.
        # A LIMIT of the next power of two above the number of rows gives it the size (within
        # a factor of two, and a dozen statement texts in all); it never cuts a row.
        self.json = (
            f"{update}(SELECT * FROM json_to_recordset(%s::json) AS v({definitions}) "
            f"LIMIT {{limit}}) AS v{where}"
            if _json_columns(columns)
            else None
        )
        self._json_sql: dict[int, str] = {}

    def sql(self, rows: int) -> str:
        return self.head + ", ".join([self.row] * rows) + self.tail

    def json_sql(self, rows: int) -> str:
        limit = 1 << (rows - 1).bit_length()  # the power of two at or above `rows`
        try:
            return self._json_sql[limit]
        except KeyError:
            assert self.json is not None
            text = self._json_sql[limit] = self.json.format(limit=limit)
            return text


_update_shape = functools.cache(_UpdateShape)


class _InsertShape:
    """What an insert of one model's new objects needs, worked out once: the columns (all but
    a generated key, as bulk_create chooses them) with whether their values may go as they
    are (`_copy_value`), the INSERT's head, its RETURNING tail, and its SELECT from one JSON
    document."""

    def __init__(self, model: type[Model]) -> None:
        connection = _db()
        meta = model._meta
        quote = connection.ops.quote_name
        self.generated = isinstance(meta.pk, AutoField | BigAutoField)
        self.fields = [f for f in meta.concrete_fields if not (self.generated and f.primary_key)]
        self.columns = _sendable(self.fields)
        self.keys = [f.column for f in self.fields]
        names = ", ".join(quote(f.column) for f in self.fields)
        table = quote(meta.db_table)
        self.head = f"INSERT INTO {table} ({names}) "
        self.returning = f" RETURNING {quote(meta.pk.column)}"
        self.row = "(" + ", ".join(["%s"] * len(self.fields)) + ")"
        self.json = (
            f"{self.head}SELECT {names} FROM json_populate_recordset(NULL::{table}, %s::json)"
            if _json_columns(self.fields)
            else None
        )

    def values(self, obj: Model, connection: BaseDatabaseWrapper) -> list[Any]:
        return [
            _copy_value(field, field.pre_save(obj, True), plain, connection)
            for field, plain in self.columns
        ]


_insert_shape = functools.cache(_InsertShape)


def _insert_sql(group: Sequence[Model], *, returning: bool) -> tuple[str, list[Any], bool]:
    """The INSERT of one model's new objects; answers whether it returns their generated keys
    (`returning`, for a model whose key the database generates), in the objects' order."""
    shape = _insert_shape(type(group[0]))
    keyed = returning and shape.generated
    tail = shape.returning if keyed else ""
    connection = _db()
    rows = [shape.values(obj, connection) for obj in group]
    document = _json_document(shape.keys, rows) if shape.json is not None else None
    if document is not None:
        return shape.json + tail, [document], keyed
    return (*_values_insert(shape, rows, tail), keyed)


def _values_insert(shape: _InsertShape, rows: list[list[Any]], tail: str) -> tuple[str, list[Any]]:
    sql = f"{shape.head}VALUES {', '.join([shape.row] * len(rows))}{tail}"
    return sql, [value for values in rows for value in values]


def rows_insert_sql(objects: Sequence[Model]) -> tuple[str, list[Any]]:
    """The INSERT of new rows of one model (their keys not read back), for a caller that adds
    a clause to it (ON CONFLICT) or sends it with another write: on PostgreSQL the rows as one
    JSON document, elsewhere VALUES rows of values prepared as the ORM prepares them."""
    connection = _db()
    if connection.vendor == "postgresql":
        sql, params, _ = _insert_sql(objects, returning=False)
        return sql, params
    shape = _insert_shape(type(objects[0]))
    rows = [
        [field.get_db_prep_save(field.pre_save(obj, True), connection) for field in shape.fields]
        for obj in objects
    ]
    return _values_insert(shape, rows, "")


# --- rows as one JSON document ---------------------------------------------------------------
#
# Many rows travel as one parameter, a JSON array of objects that PostgreSQL turns back into
# rows (json_populate_recordset for an insert, json_to_recordset for an update), written by
# orjson in C. psycopg dumps an array parameter element by element in Python, and COPY row by
# row: a batch's writes were 9 % of a worker's CPU in array dumping and 6 % of the web's in
# COPY (py-spy --gil). In process, 500 events: 25 µs of CPU a row as arrays, 15 by COPY, 4 as
# JSON, in about half the time (docs/performance-history.md). The statement text is the same
# for any number of rows (prepared once), and under psycopg's 4,096 characters and 50
# parameters (its parsing is cached). Values JSON cannot carry as they are (a float: NaN would
# become null; a value orjson cannot write) go as VALUES rows of parameters instead.


def _json_columns(fields: Sequence[Field]) -> bool:
    """Whether the fields' values can travel in a JSON document: not floats (orjson writes a
    NaN as null), not binary data."""
    return not any(field.get_internal_type() in ("FloatField", "BinaryField") for field in fields)


def _json_value(value: object) -> object:
    """What orjson does not write itself: a decimal as its text (what psycopg sends), a JSON
    column's value as the field encodes it (its encoder: `_copy_value`)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Jsonb):
        return orjson.Fragment((value.dumps or json.dumps)(value.obj))
    raise TypeError(f"{type(value).__name__} does not travel in a JSON document")


def _json_document(keys: Sequence[str], rows: Sequence[Sequence[Any]]) -> str | None:
    """The rows as one JSON array of objects (`keys` the column names), or None when a value
    cannot travel in it (a type orjson does not write, an integer beyond 64 bits)."""
    try:
        rows_as_objects = [dict(zip(keys, row, strict=True)) for row in rows]
        return orjson.dumps(rows_as_objects, default=_json_value).decode()
    except TypeError:
        return None


def _sendable(fields: Sequence[Field]) -> list[tuple[Field, bool]]:
    """Each field with whether its values may go to psycopg as they are (`_copy_value`)."""
    return [(field, not isinstance(field, JSONField)) for field in fields]


def _array_types(fields: Sequence[Field]) -> list[str] | None:
    """The array element type of each field's column, or None when one cannot travel as an
    array (the conditions Django's PostgreSQL insert compiler checks for its UNNEST)."""
    connection = _db()
    eligible = all(
        not hasattr(field, "get_placeholder")
        and (field.target_field if field.is_relation else field).get_internal_type()
        in connection.data_types
        for field in fields
    )
    return [field.db_type(connection).split("(")[0] for field in fields] if eligible else None


class RowWrites:
    """The row writes of one transaction, gathered and sent together at `flush`: on
    PostgreSQL one statement (each write a data-modifying WITH query; every one runs once, on
    the same snapshot, so two writes must not touch the same row). Elsewhere one statement
    each. Inserted rows' generated keys are not read back: use it for keys set in Python, or
    nobody reads after the insert."""

    def __init__(self) -> None:
        self.updates: list[tuple[Sequence[Model], Sequence[str]]] = []
        self.inserts: list[Sequence[Model]] = []

    def update(self, objects: Sequence[Model], fields: Sequence[str]) -> None:
        if objects and fields:
            self.updates.append((list(objects), list(fields)))

    def insert(self, objects: Sequence[Model]) -> None:
        if objects:
            self.inserts.append(list(objects))

    def flush(self) -> None:
        connection = _db()
        updates, inserts = self.updates, self.inserts
        self.updates, self.inserts = [], []
        if connection.vendor != "postgresql":
            for objects, fields in updates:
                rows_update(objects, fields)
            for objects in inserts:
                type(objects[0])._default_manager.bulk_create(objects, batch_size=1000)
            return
        parts: list[tuple[str, list[Any]]] = [_update_sql(o, f) for o, f in updates]
        for objects in inserts:
            sql, params, _ = _insert_sql(objects, returning=False)
            parts.append((sql, params))
            _mark_saved(objects)
        if not parts:
            return
        if len(parts) == 1:
            sql, params = parts[0]
        else:
            sql = "WITH " + ", ".join(f"w{i} AS ({part})" for i, (part, _) in enumerate(parts))
            sql += " SELECT 1"
            params = [p for _, part_params in parts for p in part_params]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


def rows_insert(*groups: Sequence[Model], savepoint: bool = True) -> None:
    """Insert new rows of several models (one sequence of objects per model, parents before
    children), as `bulk_create` would, and set the objects' generated primary keys.

    On PostgreSQL this is one statement, `WITH g0 AS (INSERT ...), ... SELECT` the generated
    keys: one round trip. Outside a transaction it is its own transaction (no BEGIN and COMMIT
    round trips); inside one, it runs in a savepoint, so that a failure (a unique key taken by
    a concurrent request) leaves the caller's transaction usable, as `atomic()` would; with
    `savepoint=False` (two round trips fewer) a failure fails the caller's transaction, as
    bulk_create's would."""
    _insert(*groups, savepoint=savepoint)


def _insert(*groups: Sequence[Model], savepoint: bool) -> None:
    connection = _db()
    groups = tuple(group for group in groups if group)
    if not groups:
        return
    if connection.vendor != "postgresql":
        alone = savepoint or not connection.in_atomic_block
        with transaction.atomic() if alone else nullcontext():
            for group in groups:
                type(group[0])._default_manager.bulk_create(list(group))
        return
    quote = connection.ops.quote_name
    parts: list[str] = []
    params: list[object] = []
    keyed: list[tuple[int, Sequence[Model]]] = []
    for index, group in enumerate(groups):
        sql, group_params, generated = _insert_sql(group, returning=True)
        parts.append(f"g{index} AS ({sql})")
        params.extend(group_params)
        if generated:
            keyed.append((index, group))
    selected = " UNION ALL ".join(
        f"SELECT {index}, {quote(type(group[0])._meta.pk.column)} FROM g{index}"
        for index, group in keyed
    )
    sql = f"WITH {', '.join(parts)} {selected or 'SELECT 0, 0 WHERE false'}"
    guard = transaction.atomic() if savepoint and connection.in_atomic_block else nullcontext()
    with guard, connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    keys: dict[int, list[object]] = {}
    for index, key in rows:
        keys.setdefault(index, []).append(key)
    for index, group in enumerate(groups):
        for obj, key in zip(group, keys.get(index, ()), strict=False):
            obj.pk = key
        _mark_saved(group)


def _mark_saved(objects: Sequence[Model]) -> None:
    """What bulk_create leaves on the objects it inserted: saved, in this database."""
    for obj in objects:
        obj._state.adding = False
        obj._state.db = DEFAULT_DB_ALIAS


_AS_IS = (str, int, Decimal, UUID)


def _copy_value(
    field: Field, value: object, plain: bool, connection: BaseDatabaseWrapper
) -> object:
    """The value as it is sent. Strings, numbers, decimals, UUIDs and aware datetimes go as
    they are: Django's preparation would hand the same object to psycopg (it no longer
    quantizes decimals), at a cost that dominated a batch's writes. Anything else (JSON,
    naive datetimes, values of unexpected types) takes Django's own preparation. An aware
    datetime goes in UTC: the same instant, written with an offset of +00:00 (orjson writes an
    offset to the minute, and an older zone's offset has seconds: America/Goose_Bay in 1935
    was -03:30:52)."""
    if value is None or (plain and isinstance(value, _AS_IS)):
        return value
    if not (plain and isinstance(value, datetime) and value.tzinfo is not None):
        value = field.get_db_prep_save(value, connection)
    if isinstance(value, datetime) and value.tzinfo is not None and value.tzinfo is not UTC:
        return value.astimezone(UTC)
    return value


# --- reads -----------------------------------------------------------------------------------


# (index, column expression, functions): a column's converters, as the ORM applies them.
Converters = list[tuple[int, Any, list[Any]]]


def _converters(fields: Sequence[Field], alias: str) -> Converters:
    connection = _db()
    found = []
    for i, field in enumerate(fields):
        col = field.get_col(alias)
        functions = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
        if functions:
            found.append((i, col, functions))
    return found


def _convert(values: list[Any], converters: Converters, connection: BaseDatabaseWrapper) -> None:
    for i, col, functions in converters:
        for convert in functions:
            values[i] = convert(values[i], col, connection)


class _Shape:
    """The SELECT of one model's columns joined with related rows (as `select_related`), and
    how to turn a row back into instances: built once per model and relations."""

    def __init__(self, model: type[Model], related: tuple[str, ...]) -> None:
        connection = _db()
        quote = connection.ops.quote_name
        meta = model._meta
        self.model = model
        self.parts: list[tuple[type[Model], list[Field], Converters, Field | None]] = []
        joins: list[str] = []
        columns: list[str] = []
        for index, (part_model, link) in enumerate(
            [
                (model, None),
                *((meta.get_field(name).related_model, meta.get_field(name)) for name in related),
            ]
        ):
            alias = f"t{index}"
            fields = list(part_model._meta.concrete_fields)
            columns.extend(f"{alias}.{quote(f.column)}" for f in fields)
            self.parts.append((part_model, fields, _converters(fields, alias), link))
            if link is not None:
                if link.null:
                    raise ValueError(
                        f"{link} is nullable: rows_select joins only required relations"
                    )
                joins.append(
                    f"JOIN {quote(part_model._meta.db_table)} {alias} "
                    f"ON {alias}.{quote(part_model._meta.pk.column)} = t0.{quote(link.column)}"
                )
        self.columns = ", ".join(columns)
        self.joins = " ".join(joins)
        self.sql = self.select_from(quote(meta.db_table))

    def select_from(self, source: str, extra: str = "") -> str:
        """The SELECT reading the model's rows from `source` (its table, or a subquery giving
        all of its columns) as t0, and `extra` (an expression) as a last column."""
        columns = f"{self.columns}, {extra}" if extra else self.columns
        return f"SELECT {columns} FROM {source} t0 {self.joins}".rstrip()

    def instances(
        self, rows: Sequence[Sequence[Any]], connection: BaseDatabaseWrapper
    ) -> list[Model]:
        found = []
        alias = connection.alias
        for row in rows:
            start = 0
            first: Model | None = None
            for part_model, fields, converters, link in self.parts:
                values = list(row[start : start + len(fields)])
                start += len(fields)
                _convert(values, converters, connection)
                obj = part_model.from_db(alias, [f.attname for f in fields], values)
                if first is None:
                    first = obj
                else:
                    assert link is not None
                    link.set_cached_value(first, obj)
            assert first is not None
            found.append(first)
        return found


# One shape per model and relations (built at first use, shared by every thread after).
_shape = functools.cache(_Shape)


def rows_select_from(
    model: type[Model],
    source: str,
    params: Sequence[Any],
    *,
    related: tuple[str, ...] = (),
    with_: str = "",
    along: str = "",
) -> tuple[list[Model], Any]:
    """Instances of `model` from the rows of `source`, a subquery giving all of the model's
    columns (`SELECT * FROM ...`), with the `related` required foreign keys joined as in
    `rows_select`; `with_` is a WITH clause the subquery may read. For reads one SELECT of
    `rows_select` cannot express (the order claim: its own orders and the backlog, locked in
    one statement: orders/lock_objects.py). Answers them and the value of `along`, an
    expression that does not depend on the row (a scalar subquery: computed once) read in
    the same statement, or None (no `along`, or no row)."""
    connection = _db()
    shape = _shape(model, related)
    sql = f"{with_} {shape.select_from(source, along)}".strip()
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        rows = cursor.fetchall()
    value = rows[0][-1] if along and rows else None
    return shape.instances(rows, connection), value  # the model's columns only


def rows_select(
    model: type[Model],
    where: dict[str | tuple[str, ...], Any],
    *,
    related: tuple[str, ...] = (),
    order_by: Sequence[str] = (),
    lock: bool = False,
    skip_locked: bool = False,
) -> list[Model]:
    """Instances of `model` whose fields equal `where`'s values (a list: one of them; a
    tuple of field names as key, a list of value tuples: one of those combinations), with the
    `related` required foreign keys joined and cached on them (as `select_related`), ordered
    by `order_by` (field names), optionally locked (`row_lock()`, `OF` the model's rows, where the
    database has row locks). One SELECT built as a string, once per shape: the hot paths'
    reads, where the ORM's query compiler cost about 0.7 ms of CPU per query here, more than
    the query itself."""
    connection = _db()
    shape = _shape(model, related)
    found = _where(model, where, connection)
    if found is None:
        return []
    conditions, params = found
    sql = shape.sql + _tail(
        model, conditions, order_by, lock, bool(related), skip_locked, connection
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return shape.instances(rows, connection)


def rows_values(
    model: type[Model],
    fields: Sequence[str],
    where: dict[str | tuple[str, ...], Any],
    *,
    order_by: Sequence[str] = (),
    lock: bool = False,
) -> list[tuple[Any, ...]]:
    """The values of `fields` of the rows of `model` that `where` selects (as `rows_select`),
    converted as the ORM converts them: for a read (or a lock) that needs a column or two,
    not the rows."""
    connection = _db()
    found = _where(model, where, connection)
    if found is None:
        return []
    conditions, params = found
    meta = model._meta
    quote = connection.ops.quote_name
    columns = [meta.get_field(name) for name in fields]
    sql = f"SELECT {', '.join(f't0.{quote(f.column)}' for f in columns)} FROM "
    sql += f"{quote(meta.db_table)} t0" + _tail(
        model, conditions, order_by, lock, False, False, connection
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    converters = _converters(columns, "t0")
    if not converters:
        return rows
    converted = []
    for row in rows:
        values = list(row)
        _convert(values, converters, connection)
        converted.append(tuple(values))
    return converted


def _where(
    model: type[Model], where: dict[str | tuple[str, ...], Any], connection: BaseDatabaseWrapper
) -> tuple[list[str], list[Any]] | None:
    """`where` as SQL conditions on t0 and their parameters; None when a list of values is
    empty (no row can match)."""
    meta = model._meta
    quote = connection.ops.quote_name
    conditions: list[str] = []
    params: list[Any] = []
    for names, wanted in where.items():
        fields = [
            meta.get_field(name) for name in (names if isinstance(names, tuple) else (names,))
        ]
        columns = [f"t0.{quote(field.column)}" for field in fields]
        if not isinstance(wanted, list):
            combos = [(wanted,)]
        elif not wanted:
            return None
        else:
            combos = wanted if isinstance(names, tuple) else [(value,) for value in wanted]
        if len(combos) == 1:
            # One value (a lone order's row): plain equalities, prepared as their own
            # statement; an array parameter costs psycopg more to send than the read itself.
            for column, field, value in zip(columns, fields, combos[0], strict=True):
                conditions.append(f"{column} = %s")
                params.append(field.get_db_prep_value(value, connection))
            continue
        types = _array_types(fields) if connection.vendor == "postgresql" else None
        if types is not None:
            # One array per column: the same statement text for any number of values
            # (prepared once), and one parameter per column instead of one per value.
            arrays = ", ".join(f"%s::{db_type}[]" for db_type in types)
            conditions.append(
                f"{columns[0]} = ANY({arrays})"
                if len(fields) == 1
                else f"({', '.join(columns)}) IN (SELECT * FROM UNNEST({arrays}))"
            )
            params.extend(
                [field.get_db_prep_value(combo[i], connection) for combo in combos]
                for i, field in enumerate(fields)
            )
            continue
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        conditions.append(
            f"({', '.join(columns)}) IN (VALUES {', '.join([row] * len(combos))})"
            if len(fields) > 1
            else f"{columns[0]} IN ({', '.join(['%s'] * len(combos))})"
        )
        params.extend(
            field.get_db_prep_value(value, connection)
            for combo in combos
            for field, value in zip(fields, combo, strict=True)
        )
    return conditions, params


def _tail(
    model: type[Model],
    conditions: list[str],
    order_by: Sequence[str],
    lock: bool,
    joined: bool,
    skip_locked: bool,
    connection: BaseDatabaseWrapper,
) -> str:
    """A SELECT's WHERE, ORDER BY and row lock clauses."""
    meta = model._meta
    quote = connection.ops.quote_name
    sql = ""
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    if order_by:
        sql += " ORDER BY " + ", ".join(f"t0.{quote(meta.get_field(n).column)}" for n in order_by)
    if lock and connection.features.has_select_for_update:
        sql += row_lock(connection)
        if joined and connection.features.has_select_for_update_of:
            sql += " OF t0"
        if skip_locked and connection.features.has_select_for_update_skip_locked:
            sql += " SKIP LOCKED"
    return sql


def row_lock(connection: BaseDatabaseWrapper | None = None) -> str:
    """The lock a hot path takes on rows it is about to update: `FOR NO KEY UPDATE` where the
    database has it. Those paths change no key and delete nothing, and the weaker lock still
    excludes every other updater and locker, but not the foreign-key checks of rows inserted
    meanwhile that refer to the locked one (`FOR KEY SHARE`). With `FOR UPDATE`, a web
    request inserting an order waited for the worker's transaction booking a fill on the
    same account: under the 50-client load that check took 0.73 ms on average, 15 s of 20
    (pg_stat_statements; docs/performance-history.md). `connection`: the default one."""
    if (connection or _db()).features.has_select_for_no_key_update:
        return " FOR NO KEY UPDATE"
    return " FOR UPDATE"


class QueryTemplate:
    """The SQL of a queryset compiled once and run again with other values: for a hot read
    whose shape never changes, where the ORM's compiler costs more than the query.

    `build(**values)` makes the queryset; it is built once with `sentinels` (one distinct value
    per name, of the type the real values have), and each parameter equal to a sentinel
    becomes a slot that `rows(**values)` fills. Values go as they are: where the database's
    adapter changes one (SQLite sends decimals and datetimes as text), a sentinel is not found
    among the parameters, and the queryset is built again for every call instead.

    On PostgreSQL the queryset's own constants (the strings, integers and booleans that are not
    slots: `status = 'working'`) are written into the text as literals. A statement run often
    is prepared (settings.PREPARE_THRESHOLD), and PostgreSQL may then run it with a generic
    plan, made without the parameters' values: such a plan cannot use a partial index
    (`WHERE status = 'working'`), whose condition a parameter cannot be shown to meet. The
    venue's matching read (brokers/sim/venue.py) then read every simulated order of the
    table, 59 ms a quote step with 95,000 of them, instead of 0.14 ms on its partial indexes;
    with its constants as literals, the generic plan uses them too."""

    def __init__(self, build: Any, **sentinels: Any) -> None:
        self.build = build
        self.sentinels = sentinels
        self.compiled: tuple[str, list[Any], list[str | None]] | None = None
        self.cacheable = True

    def _compile(self) -> tuple[str, list[Any], list[str | None]] | None:
        connection = _db()
        sql, params = self.build(**self.sentinels).query.sql_with_params()
        slots = [
            next(
                (name for name, s in self.sentinels.items() if type(p) is type(s) and p == s),
                None,
            )
            for p in params
        ]
        if set(self.sentinels) - set(slots):
            return None
        if connection.vendor == "postgresql":
            return _constants_inlined(sql, list(params), slots)
        return sql, list(params), slots

    def rows(self, **values: Any) -> list[tuple[Any, ...]]:
        connection = _db()
        if self.compiled is None and self.cacheable:
            self.compiled = self._compile()
            self.cacheable = self.compiled is not None
        if self.compiled is None:
            sql, params = self.build(**values).query.sql_with_params()
        else:
            sql, fixed, slots = self.compiled
            params = [values[slot] if slot else p for p, slot in zip(fixed, slots, strict=True)]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()


_PLACEHOLDER = re.compile(r"%%|%s")
_INLINED = (str, int)  # with their subclasses: booleans, and the choices of a TextChoices


def _constants_inlined(
    sql: str, params: list[Any], slots: list[str | None]
) -> tuple[str, list[Any], list[str | None]]:
    """`sql` with each parameter that is not a slot and is a string or an integer (a boolean,
    a TextChoices member) written in as a literal (psycopg's quoting; PostgreSQL only); the
    other parameters and their slots as they were."""
    connection = _db()
    connection.ensure_connection()
    raw = connection.connection
    kept: list[Any] = []
    kept_slots: list[str | None] = []
    values = iter(zip(params, slots, strict=True))

    def each(match: re.Match[str]) -> str:
        if match.group() == "%%":
            return "%%"
        value, slot = next(values)
        if slot is None and isinstance(value, _INLINED):
            return pg_sql.Literal(value).as_string(raw)
        kept.append(value)
        kept_slots.append(slot)
        return "%s"

    text = _PLACEHOLDER.sub(each, sql)
    return text, kept, kept_slots
