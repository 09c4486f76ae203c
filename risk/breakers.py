"""Circuit breakers: conditions watched by beat (every few seconds) and after every fill.

A breaker whose condition holds trips ONCE: one open BreakerTrip per breaker (a unique
constraint), so a condition that comes and goes cannot flap the desk in and out of a halt.
Its actions run when it trips (halt the scope, cancel its open orders, flatten it, notify).
Resuming the scope (manual, risk role) resolves its trips; the breaker is armed again.

Metrics (observed value vs threshold, in the breaker's unit):
- drawdown: (peak equity today - equity) / peak x 100, the peak kept in the database per
  trading day (BreakerPeak: a Redis restart must not forget it); scope account (global: the
  sum of every account's equity).
- daily_loss: -(daily P&L) in the account currency (a loss is positive).
- volatility: |mid now - mid a window ago| / mid x 100, from mids sampled in Redis each run.
- reject_rate: rejected / all orders created in the window, in %, once at least 10 orders.
- position_size: the largest absolute position (quantity) in the scope.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cache

import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from brokers.marketdata import last_quotes
from orders.models import Account, Order, Position
from orders.valuation import account_value, last_cutoff

from .models import (
    BreakerAction,
    BreakerKind,
    BreakerPeak,
    BreakerTrip,
    CircuitBreaker,
    Scope,
)
from .notify import notify

logger = logging.getLogger(__name__)

MIN_ORDERS_FOR_REJECT_RATE = 10


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)


@dataclass(frozen=True)
class Observation:
    value: Decimal
    detail: dict


def _accounts(breaker: CircuitBreaker) -> list[Account]:
    accounts = Account.objects.filter(is_active=True)
    if breaker.scope == Scope.ACCOUNT:
        accounts = accounts.filter(code=breaker.target)
    return list(accounts)


def _observe_drawdown(breaker: CircuitBreaker, now: datetime) -> Observation | None:
    equity = sum((account_value(a, now=now).equity for a in _accounts(breaker)), Decimal(0))
    peak = _day_peak(breaker, last_cutoff(now).date(), equity)
    if peak <= 0:
        return None
    drawdown = (peak - equity) / peak * 100
    return Observation(drawdown, {"equity": str(equity), "peak": str(peak)})


def _day_peak(breaker: CircuitBreaker, day: date, equity: Decimal) -> Decimal:
    """The breaker's peak equity of `day`, raised to `equity` when that is higher. Under the
    row's lock: beat's run and a run after a fill may evaluate the breaker together."""
    with transaction.atomic():
        row, created = BreakerPeak.objects.select_for_update().get_or_create(
            breaker=breaker, trading_day=day, defaults={"peak": equity}
        )
        if not created and equity > row.peak:
            row.peak = equity
            row.updated_at = timezone.now()
            row.save(update_fields=["peak", "updated_at"])
    return row.peak


def _observe_daily_loss(breaker: CircuitBreaker, now: datetime) -> Observation | None:
    daily = sum((account_value(a, now=now).daily_pnl for a in _accounts(breaker)), Decimal(0))
    return Observation(-daily, {"daily_pnl": str(daily)})


def _observe_volatility(breaker: CircuitBreaker, now: datetime) -> Observation | None:
    if breaker.scope != Scope.SYMBOL:
        return None
    quote = last_quotes([breaker.target]).get(breaker.target)
    if quote is None:
        return None
    mid = quote.mid
    key = f"breaker:mids:{breaker.target}"
    client = _redis()
    stamp = time.time()
    client.zadd(key, {f"{stamp}:{mid}": stamp})
    client.zremrangebyscore(key, "-inf", stamp - 2 * breaker.window_seconds)
    oldest = client.zrangebyscore(key, stamp - breaker.window_seconds, "+inf", start=0, num=1)
    if not oldest or mid == 0:
        return None
    then = Decimal(oldest[0].decode().split(":", 1)[1])
    move = abs(mid - then) / mid * 100
    return Observation(move, {"mid": str(mid), "mid_before": str(then)})


def _observe_reject_rate(breaker: CircuitBreaker, now: datetime) -> Observation | None:
    orders = Order.objects.filter(created_at__gte=now - timedelta(seconds=breaker.window_seconds))
    if breaker.scope == Scope.ACCOUNT:
        orders = orders.filter(account__code=breaker.target)
    elif breaker.scope == Scope.SYMBOL:
        orders = orders.filter(instrument__symbol=breaker.target)
    elif breaker.scope == Scope.STRATEGY:
        orders = orders.filter(strategy_id=breaker.target)
    counts = orders.aggregate(total=Count("id"), rejected=Count("id", filter=Q(status="rejected")))
    if counts["total"] < MIN_ORDERS_FOR_REJECT_RATE:
        return None
    rate = Decimal(counts["rejected"]) / Decimal(counts["total"]) * 100
    return Observation(rate, counts)


def _observe_position_size(breaker: CircuitBreaker, now: datetime) -> Observation | None:
    positions = Position.objects.exclude(quantity=0)
    if breaker.scope == Scope.ACCOUNT:
        positions = positions.filter(account__code=breaker.target, strategy_id="")
    elif breaker.scope == Scope.SYMBOL:
        positions = positions.filter(instrument__symbol=breaker.target, strategy_id="")
    elif breaker.scope == Scope.STRATEGY:
        positions = positions.filter(strategy_id=breaker.target)
    else:
        positions = positions.filter(strategy_id="")
    largest = max((abs(q) for q in positions.values_list("quantity", flat=True)), default=None)
    return Observation(largest, {}) if largest is not None else None


OBSERVERS = {
    BreakerKind.DRAWDOWN: _observe_drawdown,
    BreakerKind.DAILY_LOSS: _observe_daily_loss,
    BreakerKind.VOLATILITY: _observe_volatility,
    BreakerKind.REJECT_RATE: _observe_reject_rate,
    BreakerKind.POSITION_SIZE: _observe_position_size,
}


def breakers_evaluate(
    *, account: str | None = None, now: datetime | None = None
) -> list[BreakerTrip]:
    """Evaluate every armed breaker (those of one account's scopes and the global ones when
    `account` is given, after a fill). Answers the trips made now."""
    now = now or timezone.now()
    breakers = CircuitBreaker.objects.filter(active=True).exclude(
        trips__resolved_at__isnull=True, trips__isnull=False
    )
    if account is not None:
        breakers = breakers.filter(
            Q(scope=Scope.GLOBAL)
            | Q(scope=Scope.ACCOUNT, target=account)
            | Q(scope__in=[Scope.SYMBOL, Scope.STRATEGY])
        )
    trips = []
    for breaker in breakers.order_by("pk"):
        try:
            observation = OBSERVERS[breaker.kind](breaker, now)
        except redis.RedisError:
            logger.warning("breaker %s not evaluated: Redis unavailable", breaker.name)
            continue
        if observation is None or observation.value < breaker.threshold:
            continue
        trip = breaker_trip(breaker=breaker, observation=observation, now=now)
        if trip is not None:
            trips.append(trip)
    return trips


def breaker_trip(
    *, breaker: CircuitBreaker, observation: Observation, now: datetime
) -> BreakerTrip | None:
    """Trip once and act. None when the breaker already has an open trip."""
    from . import services

    actor = f"breaker:{breaker.name}"
    reason = (
        f"circuit breaker {breaker.name}: {breaker.kind} {observation.value:.4f} "
        f">= {breaker.threshold.normalize()}"
    )
    try:
        with transaction.atomic():
            trip = BreakerTrip.objects.create(
                breaker=breaker,
                tripped_at=now,
                observed=observation.value.quantize(Decimal("1e-10")),
                detail=observation.detail,
            )
            services.risk_event_record(
                kind="breaker_tripped",
                actor=actor,
                scope=breaker.scope,
                target=breaker.target,
                reason=reason,
                data={
                    "breaker": breaker.name,
                    "observed": str(observation.value),
                    "actions": breaker.actions,
                    **observation.detail,
                },
            )
    except IntegrityError:
        return None  # tripped already: once per condition
    actions = set(breaker.actions)
    if BreakerAction.HALT in actions:
        services.trading_halt(
            scope=breaker.scope,
            target=breaker.target,
            reason=reason,
            actor=actor,
            cancel_open_orders=BreakerAction.CANCEL in actions,
            flatten=BreakerAction.FLATTEN in actions,
        )
    else:
        if BreakerAction.CANCEL in actions or BreakerAction.FLATTEN in actions:
            from orders import services as order_services

            order_services.order_cancel_many(
                orders=services.open_orders_in_scope(breaker.scope, breaker.target).exclude(
                    reduce_only=True
                ),
                actor=actor,
                reason=reason,
            )
        if BreakerAction.FLATTEN in actions:
            services.positions_flatten(
                scope=breaker.scope, target=breaker.target, reason=reason, actor=actor
            )
    if BreakerAction.NOTIFY in actions:
        notify(
            f"circuit breaker {breaker.name} tripped",
            reason,
            {
                "breaker": breaker.name,
                "scope": breaker.scope,
                "target": breaker.target,
                "observed": str(observation.value),
                "actions": sorted(actions),
            },
        )
    return trip


def trips_resolve(*, scope: str, target: str, actor: str) -> int:
    """Resuming a scope re-arms its breakers."""
    return BreakerTrip.objects.filter(
        resolved_at__isnull=True, breaker__scope=scope, breaker__target=target
    ).update(resolved_at=timezone.now(), resolved_by=actor)
