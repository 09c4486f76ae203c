"""The simulated venue's own books, read-only: what the venue holds, to compare with ours."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import SimOrder, SimQuote, SimReport


class ReadOnlyAdminMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SimQuote)
class SimQuoteAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "symbol",
        "seq",
        "bid",
        "ask",
        "bid_size",
        "ask_size",
        "bid_available",
        "ask_available",
        "at",
    )
    search_fields = ("symbol",)
    ordering = ("symbol",)


class SimReportInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = SimReport
    extra = 0
    can_delete = False
    ordering = ("id",)
    fields = (
        "id",
        "kind",
        "execution_id",
        "quantity",
        "price",
        "liquidity",
        "limit_price",
        "stop_price",
        "reason",
        "at",
    )
    readonly_fields = fields


@admin.register(SimOrder)
class SimOrderAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "venue_order_id",
        "client_order_id",
        "account",
        "symbol",
        "side",
        "type",
        "time_in_force",
        "quantity",
        "filled_quantity",
        "limit_price",
        "stop_price",
        "status",
    )
    list_filter = ("status", "symbol", "side", "type", "created_at")
    date_hierarchy = "created_at"
    search_fields = ("=client_order_id", "=account")
    ordering = ("-id",)
    show_full_result_count = False
    list_per_page = 100
    inlines = (SimReportInline,)


@admin.register(SimReport)
class SimReportAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "at",
        "order",
        "kind",
        "execution_id",
        "quantity",
        "price",
        "liquidity",
        "reason",
    )
    list_filter = ("kind", "liquidity", "at")
    list_select_related = ("order",)
    search_fields = ("=execution_id", "=order__client_order_id")
    ordering = ("-id",)
    show_full_result_count = False
    list_per_page = 100
