"""Reads that more than one caller needs."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from .models import Account, Fill, Instrument, Order, OrderEvent
from .validation import InstrumentRules

READ_ALL_GROUPS = ("compliance", "risk")


def instrument_by_symbol(symbol: str) -> Instrument | None:
    return Instrument.objects.filter(symbol=symbol).first()


def instrument_symbols_active() -> list[str]:
    """Symbols open for trading, in symbol order (what the market-data process quotes)."""
    return list(
        Instrument.objects.filter(is_active=True)
        .order_by("symbol")
        .values_list("symbol", flat=True)
    )


def instrument_rules(instrument: Instrument) -> InstrumentRules:
    return InstrumentRules(
        symbol=instrument.symbol,
        lot_size=instrument.lot_size,
        min_quantity=instrument.min_quantity,
        tick_size=instrument.tick_size,
        is_active=instrument.is_active,
    )


def user_reads_all_accounts(user: Any) -> bool:
    return bool(user.is_superuser) or user.groups.filter(name__in=READ_ALL_GROUPS).exists()


def accounts_readable_by(user: Any) -> QuerySet[Account]:
    """Accounts whose orders the user may see: their own, or every account for compliance,
    risk and superusers."""
    if user_reads_all_accounts(user):
        return Account.objects.all()
    return Account.objects.filter(users=user)


def accounts_tradable_by(user: Any) -> QuerySet[Account]:
    """Accounts the user may submit, modify and cancel orders for: only those granted."""
    return Account.objects.filter(users=user, is_active=True)


def account_ids_granted_to(user: Any) -> list[int]:
    """Ids of the accounts granted to the user (not every account for compliance and risk)."""
    return list(
        Account.users.through.objects.filter(user_id=user.pk)
        .order_by("account_id")
        .values_list("account_id", flat=True)
    )


def orders_visible_to(user: Any) -> QuerySet[Order]:
    """Orders the user may see. The account ids are resolved first, so that the list pages
    filter on `account_id IN (...)`: a join through the users table would hide from the
    planner which accounts it reads, and it would scan the newest orders of every account
    (or all of one status) instead of the account's own indexes."""
    queryset = Order.objects.select_related("instrument", "account")
    if user_reads_all_accounts(user):
        return queryset
    return queryset.filter(account_id__in=account_ids_granted_to(user))


def orders_tradable_by(user: Any) -> QuerySet[Order]:
    return Order.objects.select_related("instrument", "account").filter(account__users=user)


def fills_visible_to(user: Any) -> QuerySet[Fill]:
    """Fills the user may see; the account ids are resolved first, as in orders_visible_to."""
    queryset = Fill.objects.select_related("instrument", "account", "order")
    if user_reads_all_accounts(user):
        return queryset
    return queryset.filter(account_id__in=account_ids_granted_to(user))


def order_events(order: Order) -> QuerySet[OrderEvent]:
    return OrderEvent.objects.filter(order=order).order_by("seq")


def open_orders_filter() -> Q:
    from .states import OPEN

    return Q(status__in=list(OPEN))
