"""Row locks, one helper per locked thing, always in primary-key order so two transactions
locking several orders can never deadlock.

An order is locked with its instrument and account (as `select_related`), by a SELECT built
once (`tradingsite.bulk.rows_select`): every state change of every order takes this lock, and
the ORM's query compiler cost more than the query.
"""

from collections.abc import Iterable
from uuid import UUID

from tradingsite.bulk import rows_select

from .models import Order

_RELATED = ("instrument", "account")


def order_for_update(order_id: UUID | str) -> Order:
    found = rows_select(Order, {"id": _uuid(order_id)}, related=_RELATED, lock=True)
    if not found:
        raise Order.DoesNotExist(f"no order {order_id}")
    return found[0]  # type: ignore[return-value]


def orders_for_update(order_ids: Iterable[UUID | str]) -> list[Order]:
    return rows_select(  # type: ignore[return-value]
        Order,
        {"id": [_uuid(i) for i in order_ids]},
        related=_RELATED,
        order_by=("id",),
        lock=True,
    )


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def orders_read(order_ids: Iterable[UUID | str]) -> list[Order]:
    """The orders with their instrument and account, without taking a lock (for rows this
    transaction has locked already)."""
    return rows_select(  # type: ignore[return-value]
        Order, {"id": [_uuid(i) for i in order_ids]}, related=_RELATED
    )
