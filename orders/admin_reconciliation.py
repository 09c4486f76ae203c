"""Reconciliation runs and breaks in the admin, read-only: they are findings, written only by
orders.reconcile. A break is dealt with on the order or the books it names, never here."""

from __future__ import annotations

from django.contrib import admin

from .admin import ReadOnlyAdminMixin
from .models_reconciliation import ReconciliationBreak, ReconciliationRun

BREAK_FIELDS = (
    "kind",
    "severity",
    "account",
    "symbol",
    "order",
    "expected",
    "actual",
    "healed",
    "detail",
    "created_at",
)


class ReconciliationBreakInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ReconciliationBreak
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("id",)
    fields = BREAK_FIELDS
    readonly_fields = BREAK_FIELDS


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("started_at", "venue", "trigger", "status", "finished_at", "break_count")
    list_filter = ("status", "venue", "trigger", "started_at")
    date_hierarchy = "started_at"
    ordering = ("-started_at", "-id")
    fields = ("venue", "trigger", "status", "started_at", "finished_at", "summary")
    readonly_fields = fields
    inlines = (ReconciliationBreakInline,)
    show_full_result_count = False
    list_per_page = 100

    @admin.display(description="breaks")
    def break_count(self, run: ReconciliationRun) -> int:
        breaks = run.summary.get("breaks", {}) if isinstance(run.summary, dict) else {}
        return sum(breaks.values()) if isinstance(breaks, dict) else 0


@admin.register(ReconciliationBreak)
class ReconciliationBreakAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "run",
        "kind",
        "severity",
        "account",
        "symbol",
        "order",
        "expected",
        "actual",
        "healed",
    )
    list_filter = ("kind", "severity", "healed", "run__venue", "created_at")
    date_hierarchy = "created_at"
    list_select_related = ("run", "order")
    search_fields = ("=account", "=symbol", "=order__client_order_id")
    ordering = ("-created_at", "-id")
    fields = ("run", *BREAK_FIELDS)
    readonly_fields = fields
    show_full_result_count = False
    list_per_page = 100
