"""The transactional outbox (RELIABILITY.md, pitfall 1).

`enqueue` writes the work as a row in the caller's transaction and publishes it right after
commit; `relay` publishes what is still unpublished a moment later (the process died after
COMMIT, or Redis was down). Publishing twice is harmless: every task is idempotent.

Inside `batched()` (the batch intake), committed submissions are gathered and published as one
`orders.submit_batch` task per BATCH_FLUSH_SIZE orders or BATCH_FLUSH_SECONDS, whichever comes
first: one Celery task per order caps the pipeline near 900 orders/s on this machine kind
(LIMITS.md), and a worker sends many orders per task. A lone order is never held back longer
than the flush interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from .models import OutboxMessage

logger = logging.getLogger(__name__)

# A publish must not hang a web request while Redis is away: fail fast, the relay retries.
PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.1,
    "interval_max": 0.2,
}


def _send(task: str, kwargs: dict[str, Any], producer: Any = None) -> None:
    from tradingsite.celery import app

    app.send_task(
        task, kwargs=kwargs, retry=True, retry_policy=PUBLISH_RETRY_POLICY, producer=producer
    )


BATCH_FLUSH_SIZE = 50
BATCH_FLUSH_SECONDS = 0.1

_batch = threading.local()


def enqueue(task: str, **kwargs: Any) -> OutboxMessage:
    """Write the work item in the current transaction; publish it after commit."""
    message = OutboxMessage.objects.create(task=task, kwargs=kwargs)
    gathering = getattr(_batch, "gathering", None)
    if gathering is not None and task == "orders.submit":
        transaction.on_commit(lambda: gathering.add(message))
    else:
        transaction.on_commit(lambda: publish([message]))
    return message


class _Gathering:
    def __init__(self) -> None:
        self.messages: list[OutboxMessage] = []
        self.since = time.monotonic()
        self.closed = False

    def add(self, message: OutboxMessage) -> None:
        self.messages.append(message)
        if (
            self.closed
            or len(self.messages) >= BATCH_FLUSH_SIZE
            or time.monotonic() - self.since >= BATCH_FLUSH_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        if self.messages:
            publish_submit_batch(self.messages)
        self.messages = []
        self.since = time.monotonic()


@contextmanager
def batched() -> Iterator[None]:
    """Gather the submissions committed inside into `orders.submit_batch` tasks."""
    gathering = _Gathering()
    _batch.gathering = gathering
    try:
        yield
    finally:
        _batch.gathering = None
        gathering.closed = True
        gathering.flush()


def publish_submit_batch(messages: Sequence[OutboxMessage]) -> int:
    """One task for many committed submissions; the rows are marked published together."""
    order_ids = [m.kwargs["order_id"] for m in messages]
    correlation_id = messages[0].kwargs.get("correlation_id", "")
    try:
        _send("orders.submit_batch", {"order_ids": order_ids, "correlation_id": correlation_id})
    except (OperationalError, OSError, ConnectionError):
        logger.warning("batch publish failed; the relay will retry", exc_info=True)
        return 0
    OutboxMessage.objects.filter(pk__in=[m.pk for m in messages]).update(
        published_at=timezone.now()
    )
    return len(messages)


def publish(messages: Sequence[OutboxMessage]) -> int:
    """Publish messages and mark them published. A failure leaves the rest for the relay."""
    from tradingsite.celery import app

    sent: list[int] = []
    try:
        with app.producer_or_acquire() as producer:
            for message in messages:
                _send(message.task, message.kwargs, producer)
                sent.append(message.pk)
    except (OperationalError, OSError, ConnectionError):
        logger.warning("outbox publish failed; the relay will retry", exc_info=True)
    if sent:
        OutboxMessage.objects.filter(pk__in=sent).update(published_at=timezone.now())
    return len(sent)


def publish_now(task: str, **kwargs: Any) -> bool:
    """Publish without a row (re-dispatch paths that are themselves retried by a sweep)."""
    try:
        _send(task, kwargs)
    except (OperationalError, OSError, ConnectionError):
        logger.warning("publish failed", extra={"task": task}, exc_info=True)
        return False
    return True


def relay(*, older_than_seconds: float = 1.0, limit: int = 500) -> int:
    """Publish unpublished rows older than a moment (younger ones are still being published
    by their own on_commit callback)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    with transaction.atomic():
        due = list(
            OutboxMessage.objects.select_for_update(skip_locked=True)
            .filter(published_at__isnull=True, created_at__lt=cutoff)
            .order_by("id")[:limit]
        )
        return publish(due) if due else 0


def prune(*, older_than: timedelta = timedelta(days=1)) -> int:
    deleted, _ = OutboxMessage.objects.filter(published_at__lt=timezone.now() - older_than).delete()
    return deleted
