"""Row locks, one helper per locked thing, always in primary-key order so two transactions
locking several orders can never deadlock."""

from collections.abc import Iterable
from uuid import UUID

from django.db.models import QuerySet

from .models import Order


def order_for_update(order_id: UUID | str) -> Order:
    return (
        Order.objects.select_related("instrument", "account")
        .select_for_update(of=("self",))
        .get(pk=order_id)
    )


def orders_for_update(order_ids: Iterable[UUID | str]) -> QuerySet[Order]:
    return (
        Order.objects.select_related("instrument", "account")
        .filter(pk__in=list(order_ids))
        .order_by("pk")
        .select_for_update(of=("self",))
    )
