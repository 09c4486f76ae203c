"""The order book of record. Fields, constraints and tiny properties; no behaviour that calls
out. Every write goes through orders.services."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from tradingsite.fastinit import FastInit
from tradingsite.ids import uuid7

from .states import OPEN, TERMINAL, EventType, OrderStatus

# 28 digits, 10 after the point: enough for BTC satoshis, JPY prices and 10^17 notionals.
QUANTITY = {"max_digits": 28, "decimal_places": 10}
PRICE = {"max_digits": 28, "decimal_places": 10}
AMOUNT = {"max_digits": 28, "decimal_places": 10}


class AssetClass(models.TextChoices):
    FX = "fx"
    EQUITY = "equity"
    CRYPTO = "crypto"


class Side(models.TextChoices):
    BUY = "buy"
    SELL = "sell"


class OrderType(models.TextChoices):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"


class TimeInForce(models.TextChoices):
    GTC = "gtc"
    DAY = "day"
    GTD = "gtd"
    IOC = "ioc"
    FOK = "fok"


class Liquidity(models.TextChoices):
    MAKER = "maker"
    TAKER = "taker"


class Instrument(FastInit, models.Model):
    symbol = models.CharField(max_length=32, unique=True)
    asset_class = models.CharField(max_length=16, choices=AssetClass.choices)
    base_currency = models.CharField(max_length=8)
    quote_currency = models.CharField(max_length=8)
    lot_size = models.DecimalField(**QUANTITY, help_text="Quantity must be a multiple of this.")
    min_quantity = models.DecimalField(**QUANTITY, help_text="Smallest quantity accepted.")
    tick_size = models.DecimalField(**PRICE, help_text="Prices must be a multiple of this.")
    reference_price = models.DecimalField(
        **PRICE, null=True, blank=True, help_text="Starting mid of the simulated venue's quotes."
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["symbol"]
        constraints = [
            models.CheckConstraint(condition=Q(lot_size__gt=0), name="instrument_lot_positive"),
            models.CheckConstraint(condition=Q(tick_size__gt=0), name="instrument_tick_positive"),
            models.CheckConstraint(condition=Q(min_quantity__gt=0), name="instrument_min_positive"),
        ]

    def __str__(self) -> str:
        return self.symbol

    @property
    def price_places(self) -> int:
        exponent = self.tick_size.normalize().as_tuple().exponent
        return max(0, -int(exponent))


class Account(FastInit, models.Model):
    code = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=128, blank=True)
    currency = models.CharField(max_length=8, default="USD")
    # Moved only by orders.books (fills) and account_cash_move (deposits, withdrawals).
    cash = models.DecimalField(**AMOUNT, default=Decimal(0))
    realized_pnl = models.DecimalField(
        **AMOUNT, default=Decimal(0), help_text="Cumulative, in the account currency."
    )
    fills_booked = models.PositiveBigIntegerField(
        default=0, help_text="Fills booked so far: the booking sequence of the next fill - 1."
    )
    users = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        related_name="trading_accounts",
        blank=True,
        help_text="Users who may trade and see this account.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


# The required relations an order's or a fill's state change and API body read: loaded with
# it (select_related, or tradingsite.bulk.rows_select's `related`).
ORDER_RELATED = ("instrument", "account")


class Order(FastInit, models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # order_account_created and the client order id key lead with the account: no index of its own.
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="orders", db_index=False
    )
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="orders")
    client_order_id = models.CharField(max_length=64)
    side = models.CharField(max_length=4, choices=Side.choices)
    type = models.CharField(max_length=16, choices=OrderType.choices)
    time_in_force = models.CharField(max_length=8, choices=TimeInForce.choices)
    quantity = models.DecimalField(**QUANTITY)
    limit_price = models.DecimalField(**PRICE, null=True, blank=True)
    stop_price = models.DecimalField(**PRICE, null=True, blank=True)
    expire_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        max_length=20, choices=OrderStatus.choices, default=OrderStatus.CREATED
    )
    filled_quantity = models.DecimalField(**QUANTITY, default=Decimal(0))
    remaining_quantity = models.DecimalField(**QUANTITY)
    average_fill_price = models.DecimalField(**PRICE, null=True, blank=True)
    commission = models.DecimalField(**AMOUNT, default=Decimal(0))
    venue = models.CharField(max_length=32)
    venue_order_id = models.CharField(max_length=64, blank=True, default="")
    # Indexed only where set (Meta.indexes, order_parent): most orders have no parent.
    parent = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="children",
        db_index=False,
    )
    # null, not "": the API distinguishes "no reason" (null) from an empty reason.
    reject_reason = models.TextField(null=True, blank=True)  # noqa: DJ001
    strategy_id = models.CharField(max_length=64, blank=True, default="")
    signal_id = models.CharField(max_length=64, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    # sha256 of the canonical request: a repeat with the same id and another body is a 409.
    request_fingerprint = models.CharField(max_length=64, blank=True, default="")
    reduce_only = models.BooleanField(
        default=False, help_text="May only shrink the position (the kill switch's flatten orders)."
    )
    needs_review = models.BooleanField(
        default=False, help_text="Parked after too many redeliveries; a person must look."
    )
    event_seq = models.PositiveIntegerField(default=0, help_text="Sequence of the last event.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "client_order_id"], name="order_unique_client_order_id"
            ),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="order_quantity_positive"),
            models.CheckConstraint(
                condition=Q(filled_quantity__gte=0) & Q(filled_quantity__lte=F("quantity")),
                name="order_filled_within_quantity",
            ),
            models.CheckConstraint(
                condition=Q(remaining_quantity__gte=0), name="order_remaining_not_negative"
            ),
        ]
        indexes = [
            models.Index(fields=["account", "-created_at"], name="order_account_created"),
            models.Index(fields=["-created_at"], name="order_created"),
            models.Index(fields=["status", "updated_at"], name="order_status_updated"),
            models.Index(fields=["venue", "venue_order_id"], name="order_venue_order_id"),
            # GET /orders/?status=... of one account, newest first (NewestFirst pagination).
            models.Index(
                fields=["account", "status", "-created_at"], name="order_account_status_created"
            ),
            # Partial indexes over the few open orders: an account's open orders newest first
            # (GET /orders/?open=true reads its page in order, however many orders are open),
            # the risk snapshot's open-order totals and the open count (per account), and the
            # expiry sweep. The condition is a literal, sorted list so that the migration is
            # stable; the planner proves a query's `status IN (...)` implies it whatever the
            # order of the query's list, when the statuses are literals (states.OPEN_LITERALS).
            models.Index(
                fields=["account", "-created_at", "-id"],
                condition=Q(status__in=sorted(OPEN)),
                name="order_open_account_created",
            ),
            models.Index(
                fields=["expire_at"],
                condition=Q(status__in=sorted(OPEN), expire_at__isnull=False),
                name="order_open_expire_at",
            ),
            # An algorithm's children (and the PROTECT check on a parent): only the orders that
            # have a parent are in it, so the others' row versions do not pay for an entry. A
            # lookup `parent_id = x` implies the condition, prepared with a parameter or not.
            models.Index(fields=["parent"], condition=Q(parent__isnull=False), name="order_parent"),
        ]

    def __str__(self) -> str:
        return f"{self.client_order_id} {self.side} {self.quantity} {self.instrument_id}"

    @property
    def symbol(self) -> str:
        return self.instrument.symbol

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def is_open(self) -> bool:
        return self.status in OPEN


class Fill(FastInit, models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # fill_order_executed leads with the order: no index of its own.
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="fills", db_index=False)
    # fill_account_executed and fill_account_booked lead with the account: no index of its own.
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="fills", db_index=False
    )
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="fills")
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = models.DecimalField(**QUANTITY)
    price = models.DecimalField(**PRICE)
    commission = models.DecimalField(**AMOUNT, default=Decimal(0))
    commission_currency = models.CharField(max_length=8, blank=True, default="")
    liquidity = models.CharField(max_length=8, choices=Liquidity.choices)
    venue = models.CharField(max_length=32)
    venue_execution_id = models.CharField(max_length=64)
    # Booking: one unit of the quote currency in the account currency when the fill was
    # booked, and the P&L it realized (quote currency). Kept so the books rebuild exactly.
    account_rate = models.DecimalField(**PRICE, default=Decimal(1))
    # The order in which the account's fills were booked (under the account's row lock): the
    # order a rebuild replays them in, since average cost depends on it.
    booked_seq = models.PositiveBigIntegerField(default=0)
    realized_pnl = models.DecimalField(**AMOUNT, default=Decimal(0))
    executed_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-executed_at"]
        constraints = [
            # The venue's execution id makes applying a report idempotent.
            models.UniqueConstraint(
                fields=["venue", "venue_execution_id"], name="fill_unique_venue_execution"
            ),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="fill_quantity_positive"),
            models.CheckConstraint(condition=Q(price__gt=0), name="fill_price_positive"),
        ]
        indexes = [
            models.Index(fields=["account", "-executed_at"], name="fill_account_executed"),
            models.Index(fields=["order", "executed_at"], name="fill_order_executed"),
            models.Index(fields=["account", "booked_seq"], name="fill_account_booked"),
            # GET /fills/ for users who read every account, newest first (NewestFillFirst).
            models.Index(fields=["-executed_at", "-id"], name="fill_executed"),
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.quantity} @ {self.price}"


class OrderEvent(FastInit, models.Model):
    """Append-only audit trail: on PostgreSQL a trigger refuses UPDATE and DELETE."""

    id = models.BigAutoField(primary_key=True)
    # (order, seq) is unique: that index serves every lookup by order; no second one.
    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, related_name="events", db_index=False
    )
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=32, choices=EventType.choices)
    at = models.DateTimeField(default=timezone.now)
    actor = models.CharField(max_length=128)
    correlation_id = models.CharField(max_length=64, blank=True, default="")
    data = models.JSONField(default=dict)

    class Meta:
        ordering = ["order_id", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["order", "seq"], name="order_event_unique_seq"),
        ]
        indexes = [
            models.Index(fields=["at"], name="order_event_at"),
            # The audit trail's searches (the admin's event list; docs/operations.md, Admin):
            # one request's events by its correlation id, and one actor's, newest first.
            # Not partial (correlation_id <> ''): a prepared statement's generic plan could not
            # prove that condition for a search term it does not see.
            models.Index(fields=["correlation_id"], name="order_event_correlation"),
            models.Index(fields=["actor", "at"], name="order_event_actor_at"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.type}"


class OutboxMessage(FastInit, models.Model):
    """Work written in the same transaction as the state change it belongs to (RELIABILITY.md #1).

    After commit the row is published to Celery at once; the relay publishes whatever is still
    unpublished a moment later, so a crash or a Redis outage between commit and publish loses
    nothing."""

    id = models.BigAutoField(primary_key=True)
    task = models.CharField(max_length=64)
    kwargs = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["created_at"],
                name="outbox_unpublished",
                condition=Q(published_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"{self.task} #{self.pk}"


class VenueCursor(models.Model):
    """How far the poller has read each venue's execution-report stream."""

    venue = models.CharField(max_length=32, unique=True)
    cursor = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.venue} @ {self.cursor}"


class Position(FastInit, models.Model):
    """Signed quantity and average cost per account and instrument (strategy_id ""), and per
    account, strategy and instrument for attribution. Moved only by orders.books, in the
    same transaction as the fill."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="positions")
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="positions")
    strategy_id = models.CharField(max_length=64, blank=True, default="")
    quantity = models.DecimalField(**QUANTITY, default=Decimal(0))
    average_price = models.DecimalField(**PRICE, default=Decimal(0))
    realized_pnl = models.DecimalField(**AMOUNT, default=Decimal(0), help_text="Quote currency.")
    commission = models.DecimalField(**AMOUNT, default=Decimal(0))
    commission_currency = models.CharField(max_length=8, blank=True, default="")
    opened_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["account_id", "instrument_id", "strategy_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "instrument", "strategy_id"], name="position_unique_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.instrument_id} {self.quantity}"


class CashMovement(models.Model):
    """Deposits and withdrawals: with the fills, they are everything that moves cash."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="cash_movements")
    amount = models.DecimalField(**AMOUNT)  # signed, account currency
    reason = models.CharField(max_length=200)
    actor = models.CharField(max_length=128)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at"]

    def __str__(self) -> str:
        return f"{self.account_id} {self.amount}"


class AccountSnapshot(models.Model):
    """The books at the daily cut-off: the base of daily P&L and drawdown."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="snapshots")
    trading_day = models.DateField()
    cash = models.DecimalField(**AMOUNT)
    equity = models.DecimalField(**AMOUNT)
    realized_pnl = models.DecimalField(**AMOUNT, help_text="Cumulative at the cut-off.")
    gross_exposure = models.DecimalField(**AMOUNT, default=Decimal(0))
    net_exposure = models.DecimalField(**AMOUNT, default=Decimal(0))
    taken_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-trading_day"]
        constraints = [
            models.UniqueConstraint(fields=["account", "trading_day"], name="snapshot_unique_day"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.trading_day}"


from .models_reconciliation import ReconciliationBreak, ReconciliationRun  # noqa: E402,F401
