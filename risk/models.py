"""Risk limits, trading states, rate-limit overrides and the risk audit trail."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from . import checks


class Scope(models.TextChoices):
    GLOBAL = "global"
    ACCOUNT = "account"
    STRATEGY = "strategy"
    SYMBOL = "symbol"


class Rule(models.TextChoices):
    MAX_ORDER_QUANTITY = checks.MAX_ORDER_QUANTITY
    MAX_ORDER_NOTIONAL = checks.MAX_ORDER_NOTIONAL
    MAX_POSITION = checks.MAX_POSITION
    MAX_GROSS_EXPOSURE = checks.MAX_GROSS_EXPOSURE
    MAX_NET_EXPOSURE = checks.MAX_NET_EXPOSURE
    MAX_OPEN_ORDERS = checks.MAX_OPEN_ORDERS
    PRICE_COLLAR_PCT = checks.PRICE_COLLAR_PCT
    PRICE_COLLAR_TICKS = checks.PRICE_COLLAR_TICKS
    MAX_DAILY_LOSS = checks.MAX_DAILY_LOSS
    BUYING_POWER = checks.BUYING_POWER
    SYMBOL_BLOCKED = checks.SYMBOL_BLOCKED
    SYMBOL_ALLOWED = checks.SYMBOL_ALLOWED
    REDUCE_ONLY = checks.REDUCE_ONLY


class TradingMode(models.TextChoices):
    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


class RiskLimit(models.Model):
    scope = models.CharField(max_length=16, choices=Scope.choices)
    target = models.CharField(
        max_length=64,
        blank=True,
        default="",
        help_text="Account code, strategy id or symbol; empty for global.",
    )
    rule = models.CharField(max_length=32, choices=Rule.choices)
    value = models.DecimalField(max_digits=28, decimal_places=10)
    symbols = models.JSONField(
        default=list, blank=True, help_text="symbol_blocked / symbol_allowed: the list."
    )
    active = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True, default="")
    updated_by = models.CharField(max_length=128, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["rule", "scope", "target"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(scope="global", target="") | (~Q(scope="global") & ~Q(target=""))),
                name="risklimit_target_matches_scope",
            ),
        ]
        indexes = [models.Index(fields=["active", "scope", "target"], name="risklimit_lookup")]

    def __str__(self) -> str:
        where = self.scope if self.scope == "global" else f"{self.scope} {self.target}"
        return f"{self.rule} {self.value} ({where})"


class TradingState(models.Model):
    scope = models.CharField(max_length=16, choices=Scope.choices)
    target = models.CharField(max_length=64, blank=True, default="")
    mode = models.CharField(max_length=16, choices=TradingMode.choices, default=TradingMode.ACTIVE)
    reason = models.CharField(max_length=500, blank=True, default="")
    changed_by = models.CharField(max_length=128, blank=True, default="")
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["scope", "target"]
        constraints = [
            models.UniqueConstraint(fields=["scope", "target"], name="tradingstate_unique_scope"),
        ]

    def __str__(self) -> str:
        where = self.scope if self.scope == "global" else f"{self.scope} {self.target}"
        return f"{where}: {self.mode}"


class RateLimitOverride(models.Model):
    """Orders per minute for one user or one account, instead of the default."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
    )
    account = models.ForeignKey(
        "orders.Account", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    orders_per_minute = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(user__isnull=False, account__isnull=True)
                    | Q(user__isnull=True, account__isnull=False)
                ),
                name="ratelimit_one_subject",
            ),
            models.UniqueConstraint(
                fields=["user"], name="ratelimit_unique_user", condition=Q(user__isnull=False)
            ),
            models.UniqueConstraint(
                fields=["account"],
                name="ratelimit_unique_account",
                condition=Q(account__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        subject = f"user {self.user_id}" if self.user_id else f"account {self.account_id}"
        return f"{subject}: {self.orders_per_minute}/min"


class RiskEvent(models.Model):
    """Append-only: every refused order and every emergency action. On PostgreSQL a trigger
    refuses UPDATE and DELETE."""

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=32)
    actor = models.CharField(max_length=128)
    scope = models.CharField(max_length=16, blank=True, default="")
    target = models.CharField(max_length=64, blank=True, default="")
    account = models.CharField(max_length=32, blank=True, default="")
    order_id = models.UUIDField(null=True, blank=True)
    reason = models.TextField(blank=True, default="")
    correlation_id = models.CharField(max_length=64, blank=True, default="")
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["-at"], name="riskevent_at"),
            models.Index(fields=["account", "-at"], name="riskevent_account_at"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} by {self.actor}"


class BreakerKind(models.TextChoices):
    DRAWDOWN = "drawdown", "drawdown from the day's peak equity (%)"
    DAILY_LOSS = "daily_loss", "daily P&L below -threshold (account currency)"
    VOLATILITY = "volatility", "mid move over the window vs its recent range (ratio)"
    REJECT_RATE = "reject_rate", "rejected orders over the window (%)"
    POSITION_SIZE = "position_size", "absolute position (quantity)"


class BreakerAction(models.TextChoices):
    HALT = "halt"
    CANCEL = "cancel"
    FLATTEN = "flatten"
    NOTIFY = "notify"


class CircuitBreaker(models.Model):
    """A condition watched by beat and after every fill; when it holds, the breaker trips
    once and takes its actions. It stays tripped until a person resumes the scope."""

    name = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=BreakerKind.choices)
    scope = models.CharField(max_length=16, choices=Scope.choices)
    target = models.CharField(max_length=64, blank=True, default="")
    threshold = models.DecimalField(max_digits=28, decimal_places=10)
    window_seconds = models.PositiveIntegerField(default=300)
    actions = models.JSONField(default=list, help_text='e.g. ["halt", "cancel", "notify"]')
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class BreakerPeak(models.Model):
    """The highest equity a drawdown breaker has seen in a trading day. Kept in the database,
    not in Redis: this project's Redis keeps nothing on disk, and a peak forgotten in a
    restart would measure the day's drawdown again from the equity of that moment. One row a
    breaker and trading day, raised in place; the rows of past days stay (a few bytes a day)."""

    breaker = models.ForeignKey(CircuitBreaker, on_delete=models.CASCADE, related_name="peaks")
    trading_day = models.DateField()
    peak = models.DecimalField(max_digits=28, decimal_places=10)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["breaker", "trading_day"], name="breakerpeak_one_a_day"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.breaker_id} {self.trading_day}: {self.peak}"


class BreakerTrip(models.Model):
    breaker = models.ForeignKey(CircuitBreaker, on_delete=models.PROTECT, related_name="trips")
    tripped_at = models.DateTimeField(default=timezone.now)
    observed = models.DecimalField(max_digits=28, decimal_places=10)
    detail = models.JSONField(default=dict)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=128, blank=True, default="")

    class Meta:
        ordering = ["-tripped_at"]
        constraints = [
            # Trips once per condition: at most one unresolved trip per breaker.
            models.UniqueConstraint(
                fields=["breaker"],
                condition=Q(resolved_at__isnull=True),
                name="breakertrip_one_open",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.breaker} at {self.tripped_at:%Y-%m-%d %H:%M:%S}"
