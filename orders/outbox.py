"""The transactional outbox (RELIABILITY.md, pitfall 1).

`enqueue` writes the work as a row in the caller's transaction and publishes it right after
commit; `relay` publishes what is still unpublished a moment later (the process died after
COMMIT, or Redis was down). Publishing twice is harmless: every task is idempotent.

The batch intake (`services.orders_submit_many`) writes one `orders.submit_batch` row per many
orders with `enqueue_many`: one Celery task per order caps the pipeline near 900 orders/s on
this machine kind (LIMITS.md), and a worker sends many orders per task.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
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


def enqueue(task: str, **kwargs: Any) -> OutboxMessage:
    """Write the work item in the current transaction; publish it after commit."""
    message = OutboxMessage.objects.create(task=task, kwargs=kwargs)
    transaction.on_commit(lambda: publish([message]))
    return message


def enqueue_many(task: str, kwargs_list: Sequence[dict[str, Any]]) -> list[OutboxMessage]:
    """`enqueue` for many work items of one task: one INSERT, one publish after commit."""
    messages = OutboxMessage.objects.bulk_create(
        [OutboxMessage(task=task, kwargs=kwargs) for kwargs in kwargs_list]
    )
    transaction.on_commit(lambda: publish(messages))
    return messages


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
