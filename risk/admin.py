from django.contrib import admin, messages

from orders import actors

from . import services
from .models import (
    BreakerTrip,
    CircuitBreaker,
    RateLimitOverride,
    RiskEvent,
    RiskLimit,
    TradingMode,
    TradingState,
)


@admin.register(RiskLimit)
class RiskLimitAdmin(admin.ModelAdmin):
    list_display = [
        "rule",
        "scope",
        "target",
        "value",
        "symbols",
        "active",
        "updated_by",
        "updated_at",
    ]
    list_filter = ["rule", "scope", "active"]
    search_fields = ["target"]
    readonly_fields = ["updated_by", "created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        # Through the service, so the change is a risk event like any other.
        existing = RiskLimit.objects.get(pk=obj.pk) if change else None
        changes = {name: getattr(obj, name) for name in services.LIMIT_FIELDS}
        saved = services.risk_limit_save(
            limit=existing, changes=changes, actor=actors.admin_actor(request.user)
        )
        obj.pk = saved.pk

    def delete_model(self, request, obj):
        services.risk_limit_delete(limit=obj, actor=actors.admin_actor(request.user))

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # bulk deletes would bypass the audit
        return actions


@admin.register(TradingState)
class TradingStateAdmin(admin.ModelAdmin):
    """Changed only through the halt / resume actions, which record who and why."""

    list_display = ["scope", "target", "mode", "reason", "changed_by", "changed_at"]
    list_filter = ["mode", "scope"]
    actions = ["halt_selected", "halt_and_cancel_selected", "resume_selected"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_halt_permission(self, request):
        user = request.user
        return user.is_superuser or user.groups.filter(name="risk").exists()

    def _halt(self, request, queryset, *, cancel: bool):
        for state in queryset:
            result = services.trading_halt(
                scope=state.scope,
                target=state.target,
                mode=TradingMode.HALTED,
                reason=f"halted from the admin by {request.user.get_username()}",
                cancel_open_orders=cancel,
                actor=actors.admin_actor(request.user),
            )
            self.message_user(
                request, f"{state}: halted, {result.cancelled} orders cancelled", messages.WARNING
            )

    @admin.action(description="Halt the selected scopes", permissions=["halt"])
    def halt_selected(self, request, queryset):
        self._halt(request, queryset, cancel=False)

    @admin.action(
        description="Halt the selected scopes and cancel their open orders", permissions=["halt"]
    )
    def halt_and_cancel_selected(self, request, queryset):
        self._halt(request, queryset, cancel=True)

    @admin.action(description="Resume the selected scopes", permissions=["halt"])
    def resume_selected(self, request, queryset):
        for state in queryset:
            services.trading_resume(
                scope=state.scope,
                target=state.target,
                reason=f"resumed from the admin by {request.user.get_username()}",
                actor=actors.admin_actor(request.user),
            )
        self.message_user(request, f"{queryset.count()} scopes resumed")


@admin.register(RiskEvent)
class RiskEventAdmin(admin.ModelAdmin):
    list_display = ["at", "kind", "actor", "scope", "target", "account", "order_id", "reason"]
    list_filter = ["kind", "scope"]
    search_fields = ["account", "target", "actor", "=order_id"]
    date_hierarchy = "at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(RateLimitOverride)
class RateLimitOverrideAdmin(admin.ModelAdmin):
    list_display = ["user", "account", "orders_per_minute"]
    raw_id_fields = ["user", "account"]


@admin.register(CircuitBreaker)
class CircuitBreakerAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "kind",
        "scope",
        "target",
        "threshold",
        "window_seconds",
        "actions",
        "active",
    ]
    list_filter = ["kind", "scope", "active"]


@admin.register(BreakerTrip)
class BreakerTripAdmin(admin.ModelAdmin):
    """Trips are resolved by resuming their scope (halt / resume), never edited."""

    list_display = ["breaker", "tripped_at", "observed", "resolved_at", "resolved_by"]
    list_filter = ["breaker", "resolved_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
