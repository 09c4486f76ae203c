"""Row locks, one helper per locked thing, always in primary-key order so two transactions
locking several orders can never deadlock.

An order is locked with its instrument and account (as `select_related`), by a SELECT built
once (`tradingsite.bulk.rows_select`): every state change of every order takes this lock, and
the ORM's query compiler cost more than the query.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple
from uuid import UUID

from django.db import connection

from tradingsite import refdata
from tradingsite.bulk import row_lock, rows_select, rows_select_from, rows_values

from .models import ORDER_RELATED, Order
from .states import S


def order_for_update(order_id: UUID | str) -> Order:
    found = rows_select(Order, {"id": _uuid(order_id)}, related=ORDER_RELATED, lock=True)
    if not found:
        raise Order.DoesNotExist(f"no order {order_id}")
    return found[0]  # type: ignore[return-value]


def orders_for_update(order_ids: Iterable[UUID | str]) -> list[Order]:
    return rows_select(  # type: ignore[return-value]
        Order,
        {"id": [_uuid(i) for i in order_ids]},
        related=ORDER_RELATED,
        order_by=("id",),
        lock=True,
    )


def orders_for_update_unless_known(
    order_ids: Iterable[UUID | str], known: Mapping[UUID, Order]
) -> list[Order]:
    """`orders_for_update`, answering from `known` the orders whose row has not changed since
    they were read or written (the same `event_seq`: every change of an order writes an event
    and moves it): the rows are locked, and only the others are read. For the reports of a
    batch this transaction's caller has just sent, whose orders it holds."""
    ids = [_uuid(i) for i in order_ids]
    if not known:
        return orders_for_update(ids)
    rows = rows_values(Order, ("id", "event_seq"), {"id": ids}, order_by=("id",), lock=True)
    found = {pk: known[pk] for pk, seq in rows if pk in known and known[pk].event_seq == seq}
    changed = [pk for pk, _ in rows if pk not in found]
    if changed:  # locked already: read as they are now
        found.update((order.pk, order) for order in orders_for_update(changed))
    return [found[pk] for pk, _ in rows]


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


class Claim(NamedTuple):
    mine: list[Order]  # the task's own orders, in primary-key order
    taken: list[Order]  # the backlog taken along, oldest first
    # The reference-data version read in the same statement (PostgreSQL; else None): for the
    # claim's halt check (tradingsite/refdata.py, `assume`).
    refdata_version: int | None


def orders_and_backlog_for_update(order_ids: Sequence[UUID | str], *, limit: int) -> Claim:
    """A submit task's claim: its own orders, locked (waiting for another holder, in
    primary-key order), and up to `limit` other validated orders, oldest first, locked too,
    skipping any another worker holds. No age filter: an order coalesced behind a task,
    committed an instant before its claim, must be taken.

    On PostgreSQL one statement: its own orders are locked first (the backlog's scan waits on
    a one-time filter that reads them all), so two claims never wait on each other's backlog,
    which they skip, while holding their own orders. Both are read from the locking
    subqueries, which see each row's latest version, not the statement's snapshot."""
    own = [_uuid(i) for i in order_ids]
    if connection.vendor != "postgresql":
        mine = orders_for_update(own)
        return Claim(mine, _backlog_for_update(exclude=own, limit=limit), None)
    table = connection.ops.quote_name(Order._meta.db_table)
    # The status and the limit are written into the text (two constants: a text per limit,
    # each prepared). As parameters, PostgreSQL's generic plan looked dearer than a plan made
    # for the values (a rare status, a small limit), so it planned the claim again on every
    # run: 0.5 ms of its CPU per claim, more than running it (pg_prepared_statements showed
    # 0 generic plans to 225 custom ones). Literals give the generic plan the values' costs.
    # A submit task claims one order of its own (a scalar: with an array of unknown length
    # the generic plan looked dearer too); a drain none, a redelivered batch many (an array).
    mine = "id = %s" if len(own) == 1 else "id = ANY(%s)"
    value = own[0] if len(own) == 1 else own
    found, version = rows_select_from(
        Order,
        "(SELECT * FROM own UNION ALL SELECT * FROM backlog)",
        [value, value],
        related=ORDER_RELATED,
        # The reference-data version, which the claim's halt check reads next: one round
        # trip less for a lone order.
        along=refdata.VERSION_SUBQUERY,
        with_=(
            f"WITH own AS MATERIALIZED (SELECT * FROM {table} WHERE {mine}"
            f" ORDER BY id{row_lock()}),"
            f" backlog AS MATERIALIZED (SELECT * FROM {table} WHERE status = '{S.VALIDATED}'"
            f" AND NOT ({mine}) AND (SELECT count(*) FROM own) >= 0"
            f" ORDER BY updated_at LIMIT {int(limit)}{row_lock()} SKIP LOCKED)"
        ),
    )
    wanted = set(own)
    mine = sorted((o for o in found if o.pk in wanted), key=lambda o: o.pk)
    taken = sorted((o for o in found if o.pk not in wanted), key=lambda o: (o.updated_at, o.pk))
    return Claim(mine, taken, version)  # type: ignore[arg-type]


def _backlog_for_update(*, exclude: list[UUID], limit: int) -> list[Order]:
    return list(
        Order.objects.select_related(*ORDER_RELATED)
        .filter(status=S.VALIDATED)
        .exclude(pk__in=exclude)
        .order_by("updated_at")
        .select_for_update(of=("self",), skip_locked=True)[:limit]
    )
