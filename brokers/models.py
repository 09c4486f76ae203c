"""The simulated venue's own books. It is a venue: it shares nothing with `orders` but the
database server, and every worker and the market-data process see the same state."""

from decimal import Decimal

from django.db import models
from django.db.models import Q
from django.utils import timezone

from tradingsite.fastinit import FastInit

QUANTITY = {"max_digits": 28, "decimal_places": 10}


class SimQuote(FastInit, models.Model):
    """The current top of book per symbol, and what is left of its size for takers."""

    symbol = models.CharField(max_length=32, unique=True)
    seq = models.BigIntegerField(default=0)
    bid = models.DecimalField(**QUANTITY)
    ask = models.DecimalField(**QUANTITY)
    bid_size = models.DecimalField(**QUANTITY)
    ask_size = models.DecimalField(**QUANTITY)
    bid_available = models.DecimalField(**QUANTITY)
    ask_available = models.DecimalField(**QUANTITY)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "simulated quote"

    def __str__(self) -> str:
        return f"{self.symbol} {self.bid}/{self.ask}"


class SimOrder(FastInit, models.Model):
    client_order_id = models.CharField(max_length=64, unique=True)
    account = models.CharField(max_length=32, blank=True, default="")
    symbol = models.CharField(max_length=32)
    side = models.CharField(max_length=4)
    type = models.CharField(max_length=16)
    time_in_force = models.CharField(max_length=8)
    quantity = models.DecimalField(**QUANTITY)
    filled_quantity = models.DecimalField(**QUANTITY, default=Decimal(0))
    limit_price = models.DecimalField(**QUANTITY, null=True, blank=True)
    stop_price = models.DecimalField(**QUANTITY, null=True, blank=True)
    triggered = models.BooleanField(default=False)
    status = models.CharField(
        max_length=16, default="working"
    )  # working|filled|cancelled|rejected|expired
    expire_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "simulated venue order"
        # A quote step reads only the working orders it can act on (venue._may_act_on): each
        # arm of that filter is a range on one of these partial indexes, which PostgreSQL
        # combines (BitmapOr), so a step reads what the quote crosses, not the symbol's book.
        indexes = [
            models.Index(
                fields=["symbol", "id"],
                name="simorder_working",
                condition=Q(status="working"),
            ),
            # resting limits and triggered stop-limits: buy limit >= ask, sell limit <= bid
            models.Index(
                fields=["symbol", "side", "limit_price"],
                name="simorder_working_limit",
                condition=Q(status="working", limit_price__isnull=False),
            ),
            # stops not yet triggered: buy stop <= ask, sell stop >= bid
            models.Index(
                fields=["symbol", "side", "stop_price"],
                name="simorder_working_stop",
                condition=Q(status="working", stop_price__isnull=False, triggered=False),
            ),
            # orders that take any price: market orders, triggered stops
            models.Index(
                fields=["symbol"],
                name="simorder_working_at_market",
                condition=Q(status="working") & (Q(type="market") | Q(type="stop", triggered=True)),
            ),
            models.Index(
                fields=["symbol", "expire_at"],
                name="simorder_working_expire_at",
                condition=Q(status="working", expire_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.venue_order_id

    @property
    def venue_order_id(self) -> str:
        return sim_venue_order_id(self.pk)


def sim_venue_order_id(pk: int) -> str:
    """The id the simulated venue gives the order stored under `pk`."""
    return f"SIM-{pk}"


class SimReport(FastInit, models.Model):
    """The venue's execution-report stream; its id is the pollers' cursor."""

    id = models.BigAutoField(primary_key=True)
    order = models.ForeignKey(SimOrder, on_delete=models.CASCADE, related_name="reports")
    kind = models.CharField(max_length=16)
    execution_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    quantity = models.DecimalField(**QUANTITY, null=True, blank=True)
    price = models.DecimalField(**QUANTITY, null=True, blank=True)
    liquidity = models.CharField(max_length=8, blank=True, default="")
    limit_price = models.DecimalField(**QUANTITY, null=True, blank=True)
    stop_price = models.DecimalField(**QUANTITY, null=True, blank=True)
    reason = models.CharField(max_length=200, blank=True, default="")
    # Drift on purpose (SIM_DROP_FILL_REPORT_RATE): the venue filled but never told anyone;
    # left out of every answer and of the report stream, shown only by order_status.
    suppressed = models.BooleanField(default=False)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "simulated execution report"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"


class SimPosition(models.Model):
    """The venue's net position per account and symbol, moved with every fill in the fill's
    transaction (reported or not), as a real venue keeps it: reconciliation reads these rows
    instead of summing every report the venue ever wrote."""

    account = models.CharField(max_length=32, blank=True, default="")
    symbol = models.CharField(max_length=32)
    quantity = models.DecimalField(**QUANTITY, default=Decimal(0))  # signed

    class Meta:
        verbose_name = "simulated venue position"
        constraints = [
            models.UniqueConstraint(fields=["account", "symbol"], name="simposition_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.account} {self.symbol} {self.quantity}"
