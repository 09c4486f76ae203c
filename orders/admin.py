"""The trading desk's admin. Orders, fills and events are read-only here: an order changes only
through orders.services (the "Cancel selected orders" action calls order_cancel_many), and the
audit trail is never edited or deleted. Instruments and accounts are reference data and are
edited here directly."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property

from brokers.registry import venue_names

from . import actors
from .models import (
    Account,
    AccountSnapshot,
    CashMovement,
    Fill,
    Instrument,
    Order,
    OrderEvent,
    Position,
)
from .selectors import client_order_id_condition
from .services import order_cancel_many
from .states import OrderStatus


class VenueListFilter(admin.SimpleListFilter):
    """The venues the registry knows (brokers.registry.venue_names), not Django's
    AllValuesFieldListFilter: that one reads `SELECT DISTINCT venue` over the whole table on
    every page of the list (110 ms at 1,000,000 orders; docs/performance.md, Growth)."""

    title = "venue"
    parameter_name = "venue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in venue_names()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(venue=self.value()) if self.value() else queryset


class CappedCountPaginator(Paginator):
    """Counts a list's rows up to CAP and no further: `SELECT COUNT(*) FROM (SELECT ... LIMIT
    CAP + 1)` instead of Django's count of the whole filtered table on every page (57 ms at
    1,000,000 events, over half a second at 10,000,000). Beyond CAP the list shows its first
    CAP rows' pages and reads "more than CAP" (CappedChangeList); a filter (the date,
    the type, a search) narrows it. The count reads the rows of the list's own query, so an
    index that serves the filter serves the count."""

    cap = 10_000

    @cached_property
    def _counted(self) -> int:
        return self.object_list.order_by()[: self.cap + 1].count()

    @cached_property
    def count(self) -> int:
        return min(self._counted, self.cap)

    @property
    def capped(self) -> bool:
        return self._counted > self.cap


class CappedChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        if getattr(self.paginator, "capped", False):
            # The search box would print the capped count as the number of results found;
            # marked as the full count, it prints none, and the pagination line (templates/
            # admin/orders/pagination.html) reads "more than CAP".
            self.full_result_count = self.result_count


class CappedCountMixin:
    """A list counted by CappedCountPaginator."""

    paginator = CappedCountPaginator
    show_full_result_count = False

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return CappedChangeList


class ExactSearchMixin:
    """The big lists' search: an exact term, matched field by field through each field's index
    (`search_condition`). Django's `search_fields` OR every field (and the joined order's
    client id) into one condition no index serves: a search of 10,000,000 events read all of
    them (8.5 s). `search_fields` only shows the search box."""

    def search_condition(self, term: str) -> Q:
        raise NotImplementedError

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(self.search_condition(term)), False


def _order_ids_with_client_id(term: str) -> list[Any]:
    return list(Order.objects.filter(client_order_id_condition(term)).values_list("pk", flat=True))


# No date_hierarchy on the order, fill and event lists: Django's reads `SELECT DISTINCT
# date_trunc(...)` over every row of the period it shows, on every page (301 ms at 1,000,000
# events, seconds at 10,000,000). The date list filters (today, past 7 days, this month, this
# year) read nothing, and `?created_at__year=...&created_at__month=...` still filters.


class ReadOnlyAdminMixin:
    """View only: no add, change or delete, for any user."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- reference data ---------------------------------------------------------------------------


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = (
        "symbol",
        "asset_class",
        "base_currency",
        "quote_currency",
        "lot_size",
        "min_quantity",
        "tick_size",
        "reference_price",
        "is_active",
    )
    list_filter = ("asset_class", "is_active", "quote_currency")
    search_fields = ("symbol",)
    ordering = ("symbol",)


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "currency", "is_active", "created_at")
    list_filter = ("is_active", "currency")
    search_fields = ("code", "name")
    filter_horizontal = ("users",)
    readonly_fields = ("created_at",)
    ordering = ("code",)


# --- the order book ---------------------------------------------------------------------------


class FillInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Fill
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("executed_at", "venue_execution_id")
    fields = (
        "executed_at",
        "side",
        "quantity",
        "price",
        "liquidity",
        "commission",
        "commission_currency",
        "venue",
        "venue_execution_id",
    )
    readonly_fields = fields


class OrderEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = OrderEvent
    extra = 0
    can_delete = False
    ordering = ("seq",)
    fields = ("seq", "type", "at", "actor", "correlation_id", "data")
    readonly_fields = fields


@admin.register(Order)
class OrderAdmin(ReadOnlyAdminMixin, ExactSearchMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "client_order_id",
        "account",
        "symbol",
        "side",
        "type",
        "quantity",
        "limit_price",
        "status",
        "filled_quantity",
        "average_fill_price",
        "venue",
        "needs_review",
    )
    list_display_links = ("created_at", "client_order_id")
    list_filter = (
        "status",
        ("instrument", admin.RelatedFieldListFilter),
        ("account", admin.RelatedFieldListFilter),
        VenueListFilter,
        "created_at",
        "needs_review",
    )
    list_select_related = ("instrument", "account")
    search_fields = ("client_order_id", "venue_order_id")
    search_help_text = "Exact order id, client order id or venue order id."
    ordering = ("-created_at",)
    # The order table is the largest in the system: never count it twice per page.
    show_full_result_count = False
    list_per_page = 100
    actions = ("cancel_selected",)
    inlines = (FillInline, OrderEventInline)
    fieldsets = (
        (None, {"fields": ("id", "status", "needs_review", "reject_reason")}),
        ("Order", {"fields": (
            "account", "instrument", "client_order_id", "side", "type", "time_in_force",
            "quantity", "limit_price", "stop_price", "expire_at",
        )}),
        ("Execution", {"fields": (
            "filled_quantity", "remaining_quantity", "average_fill_price", "commission",
            "venue", "venue_order_id",
        )}),
        ("Origin", {"fields": (
            "created_by", "created_at", "updated_at", "event_seq", "parent", "strategy_id",
            "signal_id", "metadata",
        )}),
    )  # fmt: skip

    @admin.display(description="symbol", ordering="instrument__symbol")
    def symbol(self, order: Order) -> str:
        return order.instrument.symbol

    def search_condition(self, term: str) -> Q:
        # A client id or a venue order id through its index's leading column too (the account,
        # the venue); a substring search would scan the whole table.
        matches = client_order_id_condition(term) | Q(venue__in=venue_names(), venue_order_id=term)
        try:
            matches |= Q(pk=uuid.UUID(term))
        except ValueError:
            pass
        return matches

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        # Cancelling is the one write the desk makes here; Django's "change order" permission
        # grants it (the change form itself stays read-only).
        return request.user.has_perm("orders.change_order")

    @admin.action(description="Cancel selected orders", permissions=["cancel"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        selected = list(queryset.order_by("pk"))
        done = order_cancel_many(
            orders=selected,
            actor=actors.admin_actor(request.user),
            correlation_id=getattr(request, "correlation_id", ""),
            reason="cancelled in the admin",
        )
        cancelled = sum(1 for order in done if order.status == OrderStatus.CANCELLED)
        requested = len(done) - cancelled
        skipped = len(selected) - len(done)
        parts = [f"{cancelled} cancelled"]
        if requested:
            parts.append(f"{requested} cancel requested at the venue (pending_cancel)")
        parts.append(f"{skipped} skipped (already finished)")
        self.message_user(
            request,
            "Orders: " + ", ".join(parts) + ".",
            messages.SUCCESS if not skipped else messages.WARNING,
        )


@admin.register(Fill)
class FillAdmin(ReadOnlyAdminMixin, ExactSearchMixin, CappedCountMixin, admin.ModelAdmin):
    list_display = (
        "executed_at",
        "order",
        "account",
        "instrument",
        "side",
        "quantity",
        "price",
        "liquidity",
        "venue",
        "venue_execution_id",
    )
    list_filter = (
        "side",
        "liquidity",
        VenueListFilter,
        ("instrument", admin.RelatedFieldListFilter),
        ("account", admin.RelatedFieldListFilter),
        "executed_at",
    )
    list_select_related = ("order", "account", "instrument")
    search_fields = ("venue_execution_id", "order__client_order_id")
    search_help_text = "Exact venue execution id or client order id."
    list_per_page = 100

    def search_condition(self, term: str) -> Q:
        return Q(venue__in=venue_names(), venue_execution_id=term) | Q(
            order_id__in=_order_ids_with_client_id(term)
        )


@admin.register(OrderEvent)
class OrderEventAdmin(ReadOnlyAdminMixin, ExactSearchMixin, CappedCountMixin, admin.ModelAdmin):
    list_display = ("at", "order", "seq", "type", "actor", "correlation_id")
    # `type` offers states.EventType (the field's choices): nothing read to list them.
    list_filter = ("type", "at")
    list_select_related = ("order",)
    search_fields = ("correlation_id", "actor", "order__client_order_id")
    search_help_text = (
        "Exact correlation id (X-Request-ID), actor (user:<name>, worker, ...) or client order id."
    )
    ordering = ("-at", "-id")
    list_per_page = 100

    def search_condition(self, term: str) -> Q:
        # order_event_correlation, order_event_actor_at and the events' (order, seq) index.
        return (
            Q(correlation_id=term) | Q(actor=term) | Q(order_id__in=_order_ids_with_client_id(term))
        )


@admin.register(Position)
class PositionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Moved only by fills (orders.books); rebuild with manage.py rebuild_positions."""

    list_display = (
        "account",
        "instrument",
        "strategy_id",
        "quantity",
        "average_price",
        "realized_pnl",
        "commission",
        "commission_currency",
        "updated_at",
    )
    list_filter = (
        ("account", admin.RelatedFieldListFilter),
        ("instrument", admin.RelatedFieldListFilter),
        "strategy_id",
    )
    list_select_related = ("account", "instrument")


@admin.register(AccountSnapshot)
class AccountSnapshotAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "trading_day",
        "account",
        "cash",
        "equity",
        "realized_pnl",
        "gross_exposure",
        "net_exposure",
        "taken_at",
    )
    list_filter = (("account", admin.RelatedFieldListFilter),)
    date_hierarchy = "trading_day"
    list_select_related = ("account",)


@admin.register(CashMovement)
class CashMovementAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("at", "account", "amount", "reason", "actor")
    list_filter = (("account", admin.RelatedFieldListFilter),)
    list_select_related = ("account",)


from . import admin_reconciliation  # noqa: E402,F401
