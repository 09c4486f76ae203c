"""Every write of the risk app, and the pre-trade gate every order passes.

The gate runs inside `orders.services.order_submit` and `order_modify`, so every entry point
(API, batch, admin, algorithms, the Python client) passes the same checks, in this order:
rate limit, trading state, limits. A snapshot that cannot be read refuses the order.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import redis
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from brokers.base import VenueError
from orders.exceptions import ApplicationError
from orders.models import Account, Instrument, Order
from orders.states import OPEN

from . import checks, selectors
from .exceptions import RateLimited, RiskUnavailable, TradingHalted
from .models import RiskEvent, RiskLimit, Scope, TradingMode, TradingState
from .ratelimit import Bucket, admit, admit_many, release_many

logger = logging.getLogger(__name__)


def risk_event_record(
    *,
    kind: str,
    actor: str,
    reason: str = "",
    scope: str = "",
    target: str = "",
    account: str = "",
    order_id: Any = None,
    correlation_id: str = "",
    data: dict[str, Any] | None = None,
) -> RiskEvent:
    if not account and scope == Scope.ACCOUNT:
        account = target  # an action on an account is that account's event
    return RiskEvent.objects.create(
        kind=kind,
        actor=actor,
        reason=reason,
        scope=scope,
        target=target,
        account=account,
        order_id=order_id,
        correlation_id=correlation_id,
        data=data or {},
    )


# --- the pre-trade gate ----------------------------------------------------------------------


@dataclass(frozen=True)
class GateRequest:
    account: Account
    instrument: Instrument
    side: str
    type: str
    quantity: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    strategy_id: str
    venue: str
    reduce_only: bool = False
    # A modify: the order being changed, whose own remaining quantity the snapshot excludes.
    replacing: Order | None = None
    open_adjustment: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GateContext:
    """What the gate reads for any order, read once for a batch of orders: the restricting
    trading states, the active limits, and each account's rate buckets."""

    states: list[TradingState]
    limits: list[RiskLimit]
    buckets: dict[int, list[Bucket]] = field(default_factory=dict)

    @classmethod
    def read(cls) -> GateContext:
        return cls(
            states=selectors.trading_states_restricting(),
            limits=list(RiskLimit.objects.filter(active=True)),
        )

    def limits_apply(self, request: GateRequest) -> bool:
        return any(
            selectors.applies(
                limit,
                account=request.account.code,
                strategy_id=request.strategy_id,
                symbol=request.instrument.symbol,
            )
            for limit in self.limits
        )

    def rate_buckets(self, *, user: Any, account: Account) -> list[Bucket]:
        if account.pk not in self.buckets:
            self.buckets[account.pk] = selectors.rate_buckets(user=user, account=account)
        return self.buckets[account.pk]


def order_rate_limit(
    *,
    user: Any,
    account: Account,
    actor: str,
    correlation_id: str = "",
    context: GateContext | None = None,
    record: bool = True,
) -> RateAdmission | None:
    """Count one order for the trader; raises RateLimited (not counted) when over, and
    RiskUnavailable when Redis cannot be reached (fail safe). The refusal's risk event is
    recorded here, or with `record=False` left to the caller (`refusal_record`). Answers the
    admission, to `order_rate_release` if the order turns out to be a repeat."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    member = uuid.uuid4().hex
    try:
        buckets = (
            context.rate_buckets(user=user, account=account)
            if context is not None
            else selectors.rate_buckets(user=user, account=account)
        )
        wait = admit(buckets, member)
    except redis.RedisError as error:
        raise _rate_unreachable(error, account, actor, correlation_id, record) from error
    if wait:
        raise _rate_limited(wait, account, actor, correlation_id, record)
    return RateAdmission(buckets=buckets, member=member)


def orders_rate_limit_many(
    *,
    user: Any,
    accounts: Sequence[Account],
    counted: Sequence[bool],
    actor: str,
    correlation_id: str = "",
    context: GateContext,
) -> list[RateAdmission | ApplicationError | None]:
    """`order_rate_limit` for many orders of one trader (one per account given, in order), in
    one round trip to Redis: each is counted or refused as one call each would have, seeing
    the counts of those before it. An order not `counted` (refused later anyway, which would
    give its count back) is only checked: refused when over the limit, else answered None.
    Answers, per order, its admission or its refusal (its risk event recorded), never raising:
    the batch intake answers each order on its own."""
    if user is None or not getattr(user, "is_authenticated", False):
        return [None] * len(accounts)
    members = [uuid.uuid4().hex for _ in accounts]
    try:
        buckets = [context.rate_buckets(user=user, account=account) for account in accounts]
        waits = admit_many(list(zip(buckets, members, counted, strict=True)))
    except redis.RedisError as error:
        return [_rate_unreachable(error, a, actor, correlation_id, True) for a in accounts]
    return [
        _rate_limited(wait, account, actor, correlation_id, True)
        if wait
        else (RateAdmission(buckets=bucket, member=member) if count else None)
        for account, bucket, member, count, wait in zip(
            accounts, buckets, members, counted, waits, strict=True
        )
    ]


def _rate_unreachable(
    error: Exception, account: Account, actor: str, correlation_id: str, record: bool
) -> ApplicationError:
    refusal = RiskUnavailable("risk checks unavailable (rate limiter unreachable): order refused")
    reason = f"rate limiter unreachable: {error}"
    return _refused(
        refusal, record, **_fields("risk_unavailable", reason, account, actor, correlation_id)
    )


def _rate_limited(
    wait: float, account: Account, actor: str, correlation_id: str, record: bool
) -> ApplicationError:
    retry_after = max(1, math.ceil(wait))
    refusal = RateLimited(f"too many orders: retry after {retry_after} s", retry_after=retry_after)
    reason = f"order rate limit reached; retry after {retry_after} s"
    return _refused(
        refusal, record, **_fields("rate_limited", reason, account, actor, correlation_id)
    )


def _fields(kind: str, reason: str, account: Account, actor: str, correlation_id: str) -> dict:
    """A rate refusal's risk event."""
    return {
        "kind": kind,
        "actor": actor,
        "account": account.code,
        "reason": reason,
        "correlation_id": correlation_id,
    }


@dataclass(frozen=True)
class RateAdmission:
    buckets: list[Bucket]
    member: str


def order_rate_release(admission: RateAdmission | None) -> None:
    """Uncount an admitted order that was a repeat (best effort: Redis away, it stays counted
    for the rest of its minute)."""
    order_rate_release_many([admission])


def order_rate_release_many(admissions: Sequence[RateAdmission | None]) -> None:
    """`order_rate_release` for many admissions, in one round trip."""
    admitted = [(a.buckets, a.member) for a in admissions if a is not None and a.buckets]
    if not admitted:
        return
    try:
        release_many(admitted)
    except redis.RedisError:
        logger.warning("could not uncount %d orders", len(admitted), exc_info=True)


def _refused(error: ApplicationError, record: bool, **fields: Any) -> ApplicationError:
    """The refusal to raise, its risk event recorded now or (record=False) carried along."""
    if record:
        _refusal(**fields)
    else:
        error.refusal = fields  # type: ignore[attr-defined]
    return error


def refusal_record(error: Exception) -> None:
    """Record the risk event a refusal raised with `record=False` carries (if any)."""
    fields = getattr(error, "refusal", None)
    if fields:
        _refusal(**fields)


def _refusal(**fields: Any) -> None:
    """Record a refusal; a failure to record must not turn a refusal into an acceptance."""
    try:
        risk_event_record(**fields)
    except DatabaseError:
        logger.exception("could not record a risk refusal", extra={"kind": fields.get("kind")})


def order_trading_state_check(
    request: GateRequest,
    *,
    actor: str,
    correlation_id: str = "",
    context: GateContext | None = None,
    record: bool = True,
) -> bool:
    """Raises TradingHalted when a halted scope applies (reduce-only orders of the kill switch
    pass), its risk event recorded as `order_rate_limit` does. Answers whether a `reducing`
    state applies."""
    where_to = {
        "account": request.account.code,
        "strategy_id": request.strategy_id,
        "symbol": request.instrument.symbol,
    }
    state = (
        selectors.trading_state_among(context.states, **where_to)
        if context is not None
        else selectors.trading_state_for(**where_to)
    )
    if state is None:
        return False
    if state.mode == TradingMode.HALTED and not request.reduce_only:
        where = state.scope if state.scope == Scope.GLOBAL else f"{state.scope} {state.target}"
        raise _refused(
            TradingHalted(f"trading is halted ({where}): {state.reason or 'no reason given'}"),
            record,
            kind="order_refused_halted",
            actor=actor,
            account=request.account.code,
            scope=state.scope,
            target=state.target,
            reason=state.reason,
            correlation_id=correlation_id,
            data={
                "symbol": request.instrument.symbol,
                "side": request.side,
                "quantity": checks._plain(request.quantity),
            },
        )
    return True


# The rules whose check reads what the account's other orders change: its open orders, its
# positions, its books. Two orders checked at once against these would each pass without the
# other (max_open_orders 5 and ten orders sent together stored eight, 2026-12-05).
STATEFUL_RULES = selectors.NEEDS_POSITIONS | {checks.MAX_OPEN_ORDERS}
# pg_advisory_lock's first key: this lock's kind; the second is the account's id.
_ACCOUNT_CHECK_LOCK = 0x52534B  # "RSK"


def order_limit_breaches(request: GateRequest, *, reducing: bool) -> list[checks.Breach]:
    """Every limit the order breaches (empty: it passes), without the account's check lock:
    an order about to be stored is checked by `limits_checked`. Raises RiskUnavailable when
    the snapshot cannot be read."""
    return _breaches(request, _limits_of(request), reducing=reducing)


@contextmanager
def limits_checked(request: GateRequest, *, reducing: bool) -> Iterator[list[checks.Breach]]:
    """Every limit the order breaches (empty: it passes), the account's check lock held from
    before the check until the block ends, when a limit that applies reads what the account's
    other orders change (STATEFUL_RULES): orders of one account submitted at once are then
    checked one after the other, each against the ones stored before it. The caller stores
    the order inside the block. Any other order takes no lock. Inside a transaction the lock
    is the transaction's (released when it ends); outside, the session's, released when the
    block ends. PostgreSQL only: the SQLite fallback runs one writer. Raises RiskUnavailable
    when the lock or the snapshot cannot be had."""
    limits = _limits_of(request)
    stateful = selectors.rules_checked(limits, reducing=reducing) & STATEFUL_RULES
    if connection.vendor != "postgresql" or not stateful:
        yield _breaches(request, limits, reducing=reducing)
        return
    in_transaction = connection.in_atomic_block
    lock = "pg_advisory_xact_lock" if in_transaction else "pg_advisory_lock"
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {lock}(%s, %s)", [_ACCOUNT_CHECK_LOCK, request.account.pk])
    except DatabaseError as error:
        raise RiskUnavailable(f"risk check lock unavailable ({error}): order refused") from error
    try:
        yield _breaches(request, limits, reducing=reducing)
    finally:
        if not in_transaction:
            _account_check_unlock(request.account.pk)


def _account_check_unlock(account_id: int) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_ACCOUNT_CHECK_LOCK, account_id])
    except DatabaseError:
        # A session's locks end with it: closed, it holds none (a new one replaces it).
        logger.warning("risk check lock not released; closing the connection", exc_info=True)
        connection.close()


def _limits_of(request: GateRequest) -> list[checks.Limit]:
    try:
        return selectors.limits_for(
            account=request.account.code,
            strategy_id=request.strategy_id,
            symbol=request.instrument.symbol,
        )
    except DatabaseError as error:
        raise RiskUnavailable(f"risk limits unavailable ({error}): order refused") from error


def _breaches(
    request: GateRequest, limits: list[checks.Limit], *, reducing: bool
) -> list[checks.Breach]:
    if not limits and not reducing:
        return []
    try:
        snapshot = selectors.snapshot_for(
            account=request.account,
            instrument=request.instrument,
            strategy_id=request.strategy_id,
            venue=request.venue,
            limits=limits,
            reducing=reducing,
        )
    except (DatabaseError, VenueError, redis.RedisError) as error:
        raise RiskUnavailable(f"risk snapshot unavailable ({error}): order refused") from error
    if request.replacing is not None:
        snapshot = _without_order(snapshot, request.replacing)
    proposed = checks.ProposedOrder(
        account=request.account.code,
        symbol=request.instrument.symbol,
        side=request.side,
        type=request.type,
        quantity=request.quantity,
        tick_size=request.instrument.tick_size,
        strategy_id=request.strategy_id,
        limit_price=request.limit_price,
        stop_price=request.stop_price,
    )
    return checks.check_order(proposed, snapshot)


def _without_order(snapshot: checks.Snapshot, order: Order) -> checks.Snapshot:
    """The snapshot as if `order` were not working: a modify replaces it."""
    if order.status not in OPEN:
        return snapshot
    symbol = order.instrument.symbol
    side_totals = dict(snapshot.open_buy if order.side == "buy" else snapshot.open_sell)
    if symbol in side_totals:
        side_totals[symbol] = max(Decimal(0), side_totals[symbol] - order.remaining_quantity)
    changes: dict[str, Any] = {"open_order_count": max(0, snapshot.open_order_count - 1)}
    changes["open_buy" if order.side == "buy" else "open_sell"] = side_totals
    return replace(snapshot, **changes)


def reasons_of(breaches: list[checks.Breach]) -> list[dict[str, Any]]:
    return [breach.as_dict() for breach in breaches]


# --- trading state and the kill switch -------------------------------------------------------


@dataclass(frozen=True)
class HaltResult:
    state: TradingState
    cancelled: int
    flatten_order_ids: list[str]


def _check_target(scope: str, target: str) -> str:
    from orders.exceptions import OrderValidationError

    if scope not in Scope.values:
        raise OrderValidationError("validation_error", "scope", f"one of {', '.join(Scope.values)}")
    if scope == Scope.GLOBAL:
        return ""
    if not target:
        raise OrderValidationError("validation_error", "target", f"required for scope {scope}")
    if scope == Scope.ACCOUNT and not Account.objects.filter(code=target).exists():
        raise OrderValidationError("validation_error", "target", f"no account {target}")
    if scope == Scope.SYMBOL and not Instrument.objects.filter(symbol=target).exists():
        raise OrderValidationError("validation_error", "target", f"no symbol {target}")
    return target


def open_orders_in_scope(scope: str, target: str):  # type: ignore[no-untyped-def]
    orders = Order.objects.filter(status__in=list(OPEN))
    if scope == Scope.ACCOUNT:
        orders = orders.filter(account__code=target)
    elif scope == Scope.STRATEGY:
        orders = orders.filter(strategy_id=target)
    elif scope == Scope.SYMBOL:
        orders = orders.filter(instrument__symbol=target)
    return orders.order_by("created_at")


def trading_halt(
    *,
    scope: str,
    target: str = "",
    reason: str,
    actor: str,
    mode: str = TradingMode.HALTED,
    cancel_open_orders: bool = False,
    flatten: bool = False,
    correlation_id: str = "",
) -> HaltResult:
    """Stop trading for a scope at once: new orders and modifies are refused (423), and orders
    queued but not yet sent are refused by the worker before it calls the venue. Optionally
    cancel the scope's open orders, and flatten its positions with reduce-only market orders
    (flattening cancels open orders first, so nothing reopens them)."""
    from orders import services as order_services

    target = _check_target(scope, target)
    if mode not in (TradingMode.HALTED, TradingMode.REDUCING):
        raise ValueError(f"mode must be halted or reducing, not {mode}")
    with transaction.atomic():
        state, _ = TradingState.objects.update_or_create(
            scope=scope,
            target=target,
            defaults={
                "mode": mode,
                "reason": reason,
                "changed_by": actor,
                "changed_at": timezone.now(),
            },
        )
        risk_event_record(
            kind="halt" if mode == TradingMode.HALTED else "reduce_only",
            actor=actor,
            scope=scope,
            target=target,
            reason=reason,
            correlation_id=correlation_id,
            data={"cancel_open_orders": cancel_open_orders, "flatten": flatten},
        )
    cancelled = 0
    if cancel_open_orders or flatten:
        done = order_services.order_cancel_many(
            orders=open_orders_in_scope(scope, target).exclude(reduce_only=True),
            actor=actor,
            correlation_id=correlation_id,
            reason=f"kill switch: {reason}",
        )
        cancelled = len(done)
        risk_event_record(
            kind="cancel_open_orders",
            actor=actor,
            scope=scope,
            target=target,
            reason=reason,
            correlation_id=correlation_id,
            data={"cancelled": cancelled, "order_ids": [str(o.id) for o in done]},
        )
    flatten_ids = (
        positions_flatten(
            scope=scope, target=target, reason=reason, actor=actor, correlation_id=correlation_id
        )
        if flatten
        else []
    )
    logger.warning("trading %s", mode, extra={"scope": scope, "target": target, "actor": actor})
    return HaltResult(state=state, cancelled=cancelled, flatten_order_ids=flatten_ids)


def positions_flatten(
    *, scope: str, target: str, reason: str, actor: str, correlation_id: str = ""
) -> list[str]:
    """Submit a reduce-only market order against every position in the scope."""
    from orders import services as order_services
    from orders.validation import OrderTerms

    accounts = Account.objects.all()
    if scope == Scope.ACCOUNT:
        accounts = accounts.filter(code=target)
    order_ids: list[str] = []
    for account in accounts.order_by("code"):
        positions = selectors.account_positions(
            account,
            symbols=[target] if scope == Scope.SYMBOL else None,
            strategy_id=target if scope == Scope.STRATEGY else None,
        )
        for symbol, quantity in sorted(positions.items()):
            terms = OrderTerms(
                symbol=symbol,
                side="sell" if quantity > 0 else "buy",
                type="market",
                time_in_force="gtc",
                quantity=abs(quantity),
                strategy_id=target if scope == Scope.STRATEGY else "",
                metadata={"flatten": True, "reason": reason},
            )
            result = order_services.order_submit(
                account=account,
                terms=terms,
                user=None,
                actor=actor,
                correlation_id=correlation_id,
                reduce_only=True,
            )
            order_ids.append(str(result.order.id))
    risk_event_record(
        kind="flatten",
        actor=actor,
        scope=scope,
        target=target,
        reason=reason,
        correlation_id=correlation_id,
        data={"order_ids": order_ids},
    )
    return order_ids


def trading_resume(
    *, scope: str, target: str = "", reason: str, actor: str, correlation_id: str = ""
) -> TradingState:
    """Manual override: the scope trades again."""
    target = _check_target(scope, target)
    with transaction.atomic():
        state, _ = TradingState.objects.update_or_create(
            scope=scope,
            target=target,
            defaults={
                "mode": TradingMode.ACTIVE,
                "reason": reason,
                "changed_by": actor,
                "changed_at": timezone.now(),
            },
        )
        from .breakers import trips_resolve

        resolved = trips_resolve(scope=scope, target=target, actor=actor)
        risk_event_record(
            kind="resume",
            actor=actor,
            scope=scope,
            target=target,
            reason=reason,
            correlation_id=correlation_id,
            data={"breaker_trips_resolved": resolved},
        )
    return state


# --- limits ----------------------------------------------------------------------------------

LIMIT_FIELDS = ("scope", "target", "rule", "value", "symbols", "active", "note")


def _limit_state(limit: RiskLimit) -> dict[str, Any]:
    state = {name: getattr(limit, name) for name in LIMIT_FIELDS}
    state["value"] = checks._plain(limit.value)
    return state


def risk_limit_save(
    *, limit: RiskLimit | None, changes: dict[str, Any], actor: str, correlation_id: str = ""
) -> RiskLimit:
    """Create (limit None) or change a limit; the risk event records before and after."""
    with transaction.atomic():
        before = _limit_state(limit) if limit is not None else None
        limit = limit or RiskLimit()
        for name, value in changes.items():
            setattr(limit, name, value)
        limit.updated_by = actor
        limit.updated_at = timezone.now()
        limit.save()
        risk_event_record(
            kind="limit_created" if before is None else "limit_changed",
            actor=actor,
            scope=limit.scope,
            target=limit.target,
            correlation_id=correlation_id,
            data={"before": before, "after": _limit_state(limit), "limit_id": limit.pk},
        )
    return limit


def risk_limit_delete(*, limit: RiskLimit, actor: str, correlation_id: str = "") -> None:
    with transaction.atomic():
        risk_event_record(
            kind="limit_deleted",
            actor=actor,
            scope=limit.scope,
            target=limit.target,
            correlation_id=correlation_id,
            data={"before": _limit_state(limit), "limit_id": limit.pk},
        )
        limit.delete()
