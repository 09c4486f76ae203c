"""Reads that more than one caller needs."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from uuid import UUID

from django.db import connection
from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL

from tradingsite import refdata
from tradingsite.bulk import rows_select

from .models import ORDER_RELATED, Account, Fill, Instrument, Order, OrderEvent
from .states import OPEN_LITERALS
from .validation import InstrumentRules

READ_ALL_GROUPS = ("compliance", "risk")


def instrument_by_symbol(symbol: str) -> Instrument | None:
    """From the reference-data cache (tradingsite/refdata.py): a copy, the caller's own."""
    instrument = refdata.cached(("instruments",), _instruments_by_symbol).get(symbol)
    return None if instrument is None else refdata.instance_copy(instrument)


def instruments_by_id() -> dict[int, Instrument]:
    """Every instrument by primary key, from the reference-data cache: shared, read them
    only (`instrument_by_symbol` hands out copies)."""
    return refdata.cached(
        ("instruments_by_id",),
        lambda: {
            instrument.pk: instrument
            for instrument in refdata.cached(("instruments",), _instruments_by_symbol).values()
        },
    )


def instruments_listed() -> Collection[str]:
    """The symbols of every listed instrument (reference data: read them only)."""
    return refdata.cached(("instruments",), _instruments_by_symbol).keys()


def _instruments_by_symbol() -> dict[str, Instrument]:
    return {instrument.symbol: instrument for instrument in Instrument.objects.all()}


def order_by_client_order_id(account_id: int, client_order_id: str) -> Order | None:
    """The account's order with this client order id, or None. None is the common answer (a
    new order, on every submit): it costs one index read, sent without the ORM's query
    compiler (about 1 ms of CPU here); a hit then reads the whole order."""
    meta = Order._meta
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote(meta.pk.column)} FROM {quote(meta.db_table)} "
            f"WHERE {quote(meta.get_field('account').column)} = %s "
            f"AND {quote(meta.get_field('client_order_id').column)} = %s",
            [account_id, client_order_id],
        )
        row = cursor.fetchone()
    return None if row is None else Order.objects.get(pk=row[0])


def client_order_id_condition(client_order_id: str) -> Q:
    """Orders with this client order id, in any account, as a condition the unique (account,
    client_order_id) index serves: probed once an account. A client id alone is not the
    index's prefix: `client_order_id = x` by itself reads the whole order table (87 ms at
    1,000,000 orders), unless the query joins the accounts, whose rows the planner then
    probes the index with (GET /orders/by-client-id/ for a compliance user: 1.0 ms). For the
    admin's searches, which read the order ids alone or OR the client id with other fields."""
    return Q(account_id__in=account_ids_all(), client_order_id=client_order_id)


def account_ids_all() -> list[int]:
    """Every account's id, from the reference-data cache (a list of the caller's own)."""

    def load() -> tuple[int, ...]:
        return tuple(Account.objects.order_by("pk").values_list("pk", flat=True))

    return list(refdata.cached(("account_ids",), load))


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
    """Superusers, compliance and risk read every account. From the reference-data cache
    (user and group membership writes bump its version): every read of an order asks."""
    if user.is_superuser:
        return True
    return refdata.cached(
        ("reads_all", user.pk),
        lambda: user.groups.filter(name__in=READ_ALL_GROUPS).exists(),
    )


def accounts_readable_by(user: Any) -> QuerySet[Account]:
    """Accounts whose orders the user may see: their own, or every account for compliance,
    risk and superusers."""
    if user_reads_all_accounts(user):
        return Account.objects.all()
    return Account.objects.filter(users=user)


def accounts_tradable_by(user: Any) -> QuerySet[Account]:
    """Accounts the user may submit, modify and cancel orders for: only those granted."""
    return Account.objects.filter(users=user, is_active=True)


def account_tradable(user: Any, code: str) -> Account | None:
    """The account `code` if the user may trade it, from the reference-data cache: a copy
    without the money columns (cash, realized P&L and the booking count are read from the
    database when touched, never from the cache)."""
    account = accounts_tradable(user).get(code)
    return None if account is None else refdata.instance_copy(account)


def accounts_tradable(user: Any) -> dict[str, Account]:
    """Code -> account, in code order, for the accounts the user may trade (cached and shared:
    hand out copies)."""

    def load() -> dict[str, Account]:
        rows = accounts_tradable_by(user).defer("cash", "realized_pnl", "fills_booked")
        return {account.code: account for account in rows}

    return refdata.cached(("accounts", user.pk), load)


def account_ids_granted_to(user: Any) -> list[int]:
    """Ids of the accounts granted to the user (not every account for compliance and risk),
    from the reference-data cache (a list of the caller's own)."""

    def load() -> tuple[int, ...]:
        return tuple(
            Account.users.through.objects.filter(user_id=user.pk)
            .order_by("account_id")
            .values_list("account_id", flat=True)
        )

    return list(refdata.cached(("granted", user.pk), load))


def orders_visible_to(user: Any) -> QuerySet[Order]:
    """Orders the user may see. The account ids are resolved first, so that the list pages
    filter on `account_id IN (...)`: a join through the users table would hide from the
    planner which accounts it reads, and it would scan the newest orders of every account
    (or all of one status) instead of the account's own indexes."""
    queryset = Order.objects.select_related("instrument", "account")
    if user_reads_all_accounts(user):
        return queryset
    return queryset.filter(account_id__in=account_ids_granted_to(user))


def order_visible_to(user: Any, order_id: UUID) -> Order | None:
    """The order if the user may see it, else None: one SELECT built once
    (`tradingsite.bulk.rows_select`), as clients poll their orders' status."""
    found = rows_select(Order, {"id": order_id}, related=ORDER_RELATED)
    if not found:
        return None
    order: Order = found[0]  # type: ignore[assignment]
    if user_reads_all_accounts(user) or order.account_id in account_ids_granted_to(user):
        return order
    return None


def order_fills(order: Order) -> list[Fill]:
    """The order's fills, oldest first."""
    return rows_select(  # type: ignore[return-value]
        Fill, {"order": order.pk}, related=ORDER_RELATED, order_by=("executed_at", "id")
    )


def order_children(order: Order) -> list[Order]:
    """The orders an algorithm parent released, oldest first."""
    return rows_select(  # type: ignore[return-value]
        Order, {"parent": order.pk}, related=ORDER_RELATED, order_by=("created_at", "id")
    )


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


def open_orders_condition() -> RawSQL:
    """`status IN (the open statuses)` of a query on orders_order as its main table, with the
    statuses written as literals (states.OPEN_LITERALS): a filter the partial index of open
    orders (`order_open_account_created`) can serve in a prepared statement's generic plan
    too, which `status__in=OPEN` (parameters) cannot. A condition: `.filter()` and
    `.exclude()` take it. For a queryset handed on (DRF's filters and cursor pagination);
    a read that runs its own rows goes through `tradingsite.bulk.QueryTemplate`, which writes
    every constant as a literal (the expiry sweep)."""
    column = f'"{Order._meta.db_table}"."status"'
    return RawSQL(f"{column} IN ({OPEN_LITERALS})", (), output_field=BooleanField())
