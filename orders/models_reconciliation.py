"""Reconciliation with the venues: one run per venue and pass, and the breaks it found.

Written only by orders.reconcile. A run is a snapshot: every difference it sees becomes a
break of that run (a break healed during the run says so), so the newest finished run of a
venue says how our books and the venue's stand. Imported by orders.models (app label
`orders`); a module of its own so the order models stay readable.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class ReconciliationRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running"
        OK = "ok"  # nothing differs
        BREAKS = "breaks"  # at least one break (healed ones included)
        FAILED = "failed"  # the venue could not be asked; summary["error"] says why

    class Trigger(models.TextChoices):
        BEAT = "beat"
        STARTUP = "startup"
        MANUAL = "manual"

    id = models.BigAutoField(primary_key=True)
    venue = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    summary = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            # One run per venue at a time, settled by the database rather than check-then-act;
            # a run whose worker died is closed as failed by the next one (orders.reconcile).
            models.UniqueConstraint(
                fields=["venue"],
                condition=Q(status="running"),
                name="reconciliation_one_running_per_venue",
            ),
        ]
        indexes = [
            models.Index(fields=["venue", "-started_at"], name="reconciliation_venue_started"),
            models.Index(fields=["-started_at", "-id"], name="reconciliation_started"),
        ]

    def __str__(self) -> str:
        return f"{self.venue} {self.started_at:%Y-%m-%d %H:%M:%S} {self.status}"


class ReconciliationBreak(models.Model):
    class Kind(models.TextChoices):
        LOST_ORDER = "lost_order"  # we think it is at the venue; the venue does not know it
        MISSED_FILL = "missed_fill"  # the venue filled, we had not heard (healed by applying it)
        STATUS_MISMATCH = "status_mismatch"  # our status differs from the venue's
        POSITION_MISMATCH = "position_mismatch"  # quantities differ after every fill is applied
        UNKNOWN_VENUE_ORDER = "unknown_venue_order"  # the venue holds working orders we do not

    class Severity(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        CRITICAL = "critical"

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="breaks")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    account = models.CharField(max_length=32, blank=True, default="", help_text="Account code.")
    symbol = models.CharField(max_length=32, blank=True, default="")
    order = models.ForeignKey(
        "orders.Order",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="reconciliation_breaks",
    )
    expected = models.TextField(blank=True, default="", help_text="What our books say.")
    actual = models.TextField(blank=True, default="", help_text="What the venue says.")
    healed = models.BooleanField(default=False)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run_id", "id"]
        indexes = [
            models.Index(fields=["account", "-created_at"], name="recon_break_account"),
            models.Index(fields=["kind", "-created_at"], name="recon_break_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.account} {self.symbol}".strip()
