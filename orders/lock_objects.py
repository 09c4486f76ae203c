"""Row locks, one helper per locked thing, always in primary-key order so two transactions
locking several orders can never deadlock."""

from collections.abc import Iterable
from uuid import UUID

from django.db.models import QuerySet

from .models import Account, Order, Position


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


def account_for_update(account_id: int) -> Account:
    """The account row, locked: every fill of an account is booked under it, so bookings of
    one account happen one at a time and in the order of their booking sequence."""
    return Account.objects.select_for_update().get(pk=account_id)


def positions_for_update(
    *, account_id: int, instrument_id: int, strategy_ids: list[str]
) -> list[Position]:
    return list(
        Position.objects.select_for_update()
        .filter(account_id=account_id, instrument_id=instrument_id, strategy_id__in=strategy_ids)
        .order_by("pk")
    )
