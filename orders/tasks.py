"""Thin Celery wrappers: ids in, one service call, the retry policy.

Every task is idempotent (the services check state under a row lock), acks late, and is
capped in deliveries per order and step: a message that keeps killing its worker parks the
order for review instead of looping forever (RELIABILITY.md, pitfall 3).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.core.cache import cache
from kombu.exceptions import OperationalError

from brokers.base import VenueTransientError
from brokers.registry import venue_names

from . import outbox, services

logger = logging.getLogger(__name__)

ORDER_TASK = {
    "acks_late": True,
    "autoretry_for": (VenueTransientError,),
    "retry_backoff": True,
    "retry_backoff_max": 30,
    "retry_jitter": True,
    "max_retries": 5,
    "soft_time_limit": 20,
    "time_limit": 30,
}
HOUSEKEEPING = {"acks_late": True, "soft_time_limit": 50, "time_limit": 60, "expires": 30}


def _delivery_count(key: str, *, submit_starts: bool = False) -> int:
    """This delivery's number under `key`, counted in one round trip to Redis; with
    `submit_starts`, that round trip also clears outbox.SUBMIT_QUEUED (a submit task starts:
    orders submitted from now on are not left to it)."""
    client, stored = cache.raw(key)  # type: ignore[attr-defined]
    with client.pipeline(transaction=False) as pipe:
        pipe.set(stored, 0, nx=True, ex=3600)
        pipe.incr(stored)
        if submit_starts:
            outbox.submit_task_starts(pipe)
        return int(pipe.execute()[1])


@contextmanager
def _delivery_guard(
    step: str, order_id: str, *, park: bool = True, submit_starts: bool = False
) -> Iterator[int]:
    """Yields this delivery's number (1: the first), or 0 when this order's step has died too
    often to try again (the order is parked for review; with `park=False`, for a key that is
    not an order, nothing is parked and the number is yielded). The count only survives
    deliveries that never finished (worker killed); a finished one clears it."""
    key = f"deliveries:{step}:{order_id}"
    try:
        deliveries = _delivery_count(key, submit_starts=submit_starts)
    except Exception:  # Redis away: never block the order path on the guard itself
        logger.warning("delivery counter unavailable", exc_info=True)
        deliveries = 1
    if park and deliveries > settings.ORDERS_MAX_DELIVERIES:
        services.order_park_for_review(
            order_id=order_id, reason=f"{step} delivered {deliveries} times without finishing"
        )
        yield 0
        return
    try:
        yield deliveries
    finally:
        try:
            cache.delete(key)
        except Exception:
            logger.warning("delivery counter unavailable", exc_info=True)


def _guarded(step: str, order_id: str, call: Callable[[], Any]) -> None:
    with _delivery_guard(step, order_id) as allowed:
        if allowed:
            call()


# How many queued orders one `orders.submit` task takes along (services
# .orders_submit_to_venue_many); when it took that many, `orders.drain` takes the rest.
SUBMIT_BACKLOG = 99


@shared_task(name="orders.submit", queue="orders", **ORDER_TASK)
def order_submit_task(order_id: str, correlation_id: str = "") -> None:
    """Send one order, and the orders queued behind it: those taken along from the backlog,
    among them the ones coalesced behind this task, which have no task of their own
    (outbox.publish_submission). A lone order goes alone, at once; under load one task sends
    many. The order may be gone already (taken along by another task): the claim skips it and
    still takes the backlog."""
    with _delivery_guard("submit", order_id, submit_starts=True) as delivery:
        if not delivery:  # parked for review: the orders coalesced behind it go with a drain
            outbox.publish_now("orders.drain", correlation_id=correlation_id)
            return
        # A redelivery (the worker died under an earlier one) goes alone: an order taken along
        # that kills its worker must not take this one down with it again and again. The
        # orders coalesced behind it go with a drain, after it.
        batch = services.orders_submit_to_venue_many(
            order_ids=[order_id],
            correlation_id=correlation_id,
            backlog=SUBMIT_BACKLOG if delivery == 1 else 0,
        )
        _one_by_one([i for i in batch.one_by_one if i != order_id], correlation_id)
        # This task's own order takes the one-order path here, retried on transient errors.
        if order_id in batch.one_by_one:
            services.order_submit_to_venue(order_id=order_id, correlation_id=correlation_id)
    if delivery != 1 or batch.backlog_full:
        outbox.publish_now("orders.drain", correlation_id=correlation_id)


@shared_task(name="orders.drain", queue="orders", **ORDER_TASK)
def orders_drain_task(correlation_id: str = "") -> None:
    """Send the validated orders waiting for a worker (a submit task took its limit, or went
    alone as a redelivery): up to SUBMIT_BACKLOG + 1 a task, then another drain if more wait.
    A redelivered drain drains again: what its first delivery claimed is past `validated` and
    is the sweeper's (ORDERS_STUCK_AFTER_SECONDS), one by one."""
    outbox.submit_task_starts()
    batch = services.orders_submit_to_venue_many(
        order_ids=[], correlation_id=correlation_id, backlog=SUBMIT_BACKLOG + 1
    )
    _one_by_one(batch.one_by_one, correlation_id)
    if batch.backlog_full:
        outbox.publish_now("orders.drain", correlation_id=correlation_id)


def _one_by_one(order_ids: list[str], correlation_id: str) -> int:
    """The one-order path for the orders a batch handed back (found pending_submit, reached
    by a halt, or in a venue call that failed transiently). One that meets a transient venue
    error again is retried alone as its own `orders.submit` a second later; one that dies with
    the worker is found by the sweeper."""
    sent = 0
    for order_id in order_ids:
        try:
            services.order_submit_to_venue(order_id=order_id, correlation_id=correlation_id)
            sent += 1
        except VenueTransientError:
            order_submit_task.apply_async(
                kwargs={"order_id": order_id, "correlation_id": correlation_id}, countdown=1
            )
    return sent


@shared_task(name="orders.cancel", queue="orders", bind=True, **ORDER_TASK)
def order_cancel_task(self: Any, order_id: str, correlation_id: str = "") -> None:
    try:
        _guarded(
            "cancel",
            order_id,
            lambda: services.order_cancel_at_venue(
                order_id=order_id, correlation_id=correlation_id
            ),
        )
    except services.SubmitInFlight as waiting:
        # The submission may still land; ask again shortly (the sweeper also comes back).
        raise self.retry(
            exc=waiting, countdown=min(2**self.request.retries, 8), max_retries=10
        ) from waiting


@shared_task(name="orders.modify", queue="orders", **ORDER_TASK)
def order_modify_task(order_id: str, changes: dict[str, str], correlation_id: str = "") -> None:
    _guarded(
        "modify",
        order_id,
        lambda: services.order_modify_at_venue(
            order_id=order_id, changes=changes, correlation_id=correlation_id
        ),
    )


@shared_task(name="orders.poll_venues", queue="housekeeping", **HOUSEKEEPING)
def poll_venues_task() -> int:
    """Pull each venue's execution reports (fills of resting orders, expiries, venue cancels),
    until caught up or for VENUE_POLL_BUDGET_SECONDS a venue (services.venue_poll_caught_up)."""
    total = 0
    for name in venue_names():
        try:
            total += services.venue_poll_caught_up(
                venue_name=name, budget_seconds=settings.VENUE_POLL_BUDGET_SECONDS
            )
        except VenueTransientError:
            logger.warning("venue poll failed", extra={"venue": name}, exc_info=True)
    return total


@shared_task(name="orders.expire", queue="housekeeping", **HOUSEKEEPING)
def expire_orders_task() -> int:
    return services.orders_expire()


@shared_task(name="orders.sweep_stuck", queue="housekeeping", **HOUSEKEEPING)
def sweep_stuck_task() -> int:
    return services.orders_sweep_stuck()


@shared_task(name="orders.relay_outbox", queue="housekeeping", **HOUSEKEEPING)
def relay_outbox_task() -> int:
    return outbox.relay()


@shared_task(name="orders.prune_outbox", queue="housekeeping", **HOUSEKEEPING)
def prune_outbox_task() -> int:
    return outbox.prune()


@shared_task(name="orders.snapshot_accounts", queue="housekeeping", **HOUSEKEEPING)
def snapshot_accounts_task() -> int:
    from .valuation import account_snapshots_take

    return account_snapshots_take()


# A pass looks up each order at the venue: more time than housekeeping's other tasks, still
# far below the visibility timeout. Re-running one is harmless (a run is a snapshot, and its
# heals go through the idempotent report path), hence acks_late.
RECONCILE_TASK = {"acks_late": True, "soft_time_limit": 100, "time_limit": 120, "expires": 50}


@shared_task(name="orders.reconcile", queue="housekeeping", **RECONCILE_TASK)
def reconcile_task(trigger: str = "beat", venue_name: str = "") -> dict[str, str]:
    """Reconcile one venue, or every venue; answers each venue's run status."""
    from .reconcile import venue_reconcile

    names = [venue_name] if venue_name else venue_names()
    return {name: venue_reconcile(venue_name=name, trigger=trigger).status for name in names}


@worker_ready.connect
def reconcile_at_worker_start(sender: Any = None, **kwargs: Any) -> None:
    """A worker that starts publishes one reconciliation pass (trigger "startup"): whatever
    drifted while no worker ran is found now, not at the next beat. Celery's signal, not a
    model signal; a broker that cannot take the message only delays the check to beat."""
    if not settings.RECONCILE_ON_WORKER_START:
        return
    try:
        reconcile_task.apply_async(kwargs={"trigger": "startup"}, queue="housekeeping")
    except OperationalError:
        logger.warning("could not publish the start-up reconciliation", exc_info=True)


@shared_task(
    name="orders.submit_batch", queue="orders", acks_late=True, soft_time_limit=50, time_limit=60
)
def order_submit_batch_task(order_ids: list[str], correlation_id: str = "") -> int:
    """Send many committed orders in one task (the batch intake). A redelivery (the worker
    died under the first) splits the batch into one `orders.submit` per order, so an order
    that kills its worker is counted, and parked, on its own instead of sinking its batch."""
    batch_key = hashlib.sha256(",".join(sorted(order_ids)).encode()).hexdigest()[:32]
    with _delivery_guard("submit_batch", batch_key, park=False) as delivery:
        if delivery == 1:
            return _send_batch(order_ids, correlation_id)
    for order_id in order_ids:
        outbox.publish_now("orders.submit", order_id=order_id, correlation_id=correlation_id)
    return 0


def _send_batch(order_ids: list[str], correlation_id: str) -> int:
    """One claim, one venue call, one application of the answers
    (services.orders_submit_to_venue_many); the orders that need the one-order path go
    through it here (`_one_by_one`)."""
    batch = services.orders_submit_to_venue_many(order_ids=order_ids, correlation_id=correlation_id)
    return batch.sent + _one_by_one(batch.one_by_one, correlation_id)
