"""The transactional outbox (RELIABILITY.md, pitfall 1).

`enqueue` writes the work as a row in the caller's transaction and publishes it right after
commit; `relay` publishes what is still unpublished a moment later (the process died after
COMMIT, or Redis was down). Publishing twice is harmless: every task is idempotent.

The batch intake (`services.orders_submit_many`) writes one `orders.submit_batch` row per many
orders (`message`, inserted with the orders): one Celery task per order caps the pipeline near
900 orders/s on this machine kind (LIMITS.md), and a worker sends many orders per task.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.core.cache import cache
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
    """Publish one task message: pushed straight onto its queue (tradingsite/direct_publish.py)
    where that applies, else through `send_task`."""
    from tradingsite.celery import app, direct

    if direct.push(task, kwargs, retries=PUBLISH_RETRY_POLICY["max_retries"]):
        return
    app.send_task(
        task, kwargs=kwargs, retry=True, retry_policy=PUBLISH_RETRY_POLICY, producer=producer
    )


# Submissions: the publish after commit does not mark their rows in the database (one
# statement and one commit less per order on the request path). It leaves a mark in Redis
# instead, and the relay marks the rows in bulk: rows with a Redis mark, or whose orders have
# all moved past `validated`, were published; the others it publishes. A lost Redis mark only
# means one harmless duplicate publish.
SUBMISSIONS = ("orders.submit", "orders.submit_batch")
SENT_MARK_SECONDS = 3600


def _sent_key(pk: int) -> str:
    return f"outbox:sent:{pk}"


def enqueue(task: str, **kwargs: Any) -> OutboxMessage:
    """Write the work item in the current transaction; publish it after commit."""
    message = OutboxMessage.objects.create(task=task, kwargs=kwargs)
    publish_after_commit(message)
    return message


def message(task: str, **kwargs: Any) -> OutboxMessage:
    """A work item not yet written: the caller inserts it with its own rows (one statement,
    `tradingsite.bulk.rows_insert`), then calls `publish_after_commit`."""
    return OutboxMessage(task=task, kwargs=kwargs)


def publish_after_commit(*messages: OutboxMessage) -> None:
    """Publish written work items (of one task) once their transaction commits (at once in
    autocommit). A lone `orders.submit` is coalesced (`publish_submission`)."""
    if not messages:
        return
    if len(messages) == 1 and messages[0].task == SUBMIT:
        transaction.on_commit(lambda: publish_submission(messages[0]))
        return
    mark = messages[0].task not in SUBMISSIONS
    transaction.on_commit(lambda: publish(messages, mark=mark))


# One `orders.submit` task per order would cap single-order intake near the Celery task rate
# (LIMITS.md: ~900 no-op tasks/s on this machine kind, before any work), although a task
# sends the orders queued behind its own (services.orders_submit_to_venue_many). So a
# submission is published only when no submit task is queued and not yet started: the key
# SUBMIT_QUEUED says one is. The task clears it as it starts (orders.tasks, before its claim),
# so an order that found the key set was committed before that task's claim, which takes it
# along; a claim that took its limit publishes `orders.drain` for the rest. Idle, every order
# is published at once, as before; under load one task carries many orders.
SUBMIT = "orders.submit"
SUBMIT_QUEUED = "orders:submit:queued"
# A queued task that never starts (its message lost) holds the key this long at most; the
# orders skipped meanwhile are found by the sweeper (ORDERS_STUCK_AFTER_SECONDS).
SUBMIT_QUEUED_MS = 1000

# KEYS: the queued key, the message's sent mark. Marks the message sent (published now, or
# carried by the queued task); answers 0 (coalesced), or DUE when the caller must publish it. Given
# the broker's database on this server (ARGV[3]), its queue (KEYS[3]) and the task's message
# (ARGV[4]), a due message is pushed here (PUSHED): the publish costs no round trip of its
# own. A push Redis refuses is answered as an error (the caller clears the keys, as after any
# failed publish, and the relay publishes it).
_COALESCE = """
redis.call('SET', KEYS[2], 1, 'EX', ARGV[2])
if not redis.call('SET', KEYS[1], 1, 'NX', 'PX', ARGV[1]) then return 0 end
if not ARGV[3] then return 1 end
redis.call('SELECT', ARGV[3])
local pushed = redis.pcall('LPUSH', KEYS[3], ARGV[4])
if type(pushed) == 'table' and pushed.err then return pushed end
return 2
"""
DUE, PUSHED = 1, 2

_coalesce: Any = None


def _coalesce_script(client: Any) -> Any:
    """_COALESCE as a redis-py Script: sent by its SHA1 (EVALSHA), its text only when Redis
    does not know it yet (after a restart), instead of the text on every order."""
    global _coalesce
    if _coalesce is None:
        _coalesce = client.register_script(_COALESCE)
    return _coalesce


def submit_task_starts(pipe: Any = None) -> None:
    """A submit task starts: orders submitted from now on are not left to it (it clears
    SUBMIT_QUEUED before its claim). On `pipe` (a cache pipeline: in that round trip), or at
    once; Redis away, the key expires within SUBMIT_QUEUED_MS anyway."""
    if pipe is not None:
        pipe.delete(cache.make_and_validate_key(SUBMIT_QUEUED))
        return
    try:
        cache.delete(SUBMIT_QUEUED)
    except Exception:
        logger.warning("could not clear the queued-submission key", exc_info=True)


def publish_submission(message: OutboxMessage) -> bool:
    """Publish one committed `orders.submit`, unless a queued submit task will take its order
    along. One round trip to Redis either way (the key, the sent mark, and the message pushed
    when it is due), where the broker is a database of the cache's Redis server and the
    message is one `direct` pushes; else that round trip, plus the publish when it is due.
    Answers whether it was published. Redis away: the relay publishes it."""
    from tradingsite.celery import direct

    try:
        client, queued = cache.raw(SUBMIT_QUEUED)  # type: ignore[attr-defined]
        keys = [queued, cache.make_and_validate_key(_sent_key(message.pk))]
        args: list[Any] = [SUBMIT_QUEUED_MS, SENT_MARK_SECONDS]
        db = direct.broker_db(client)
        envelope = direct.envelope(message.task, message.kwargs) if db is not None else None
    except Exception:
        logger.warning("submission not coalesced; the relay publishes it", exc_info=True)
        return False
    if envelope is not None:
        queue, payload = envelope
        args += [db, payload]
        keys.append(queue)
    try:
        answer = _coalesce_script(client)(keys, args, client)
    except Exception:
        logger.warning("submission not coalesced; the relay publishes it", exc_info=True)
        _unmark(client, keys[:2])
        return False
    if answer != DUE:
        return answer == PUSHED
    try:
        _send(message.task, message.kwargs)
    except (OperationalError, OSError, ConnectionError):
        logger.warning("outbox publish failed; the relay will retry", exc_info=True)
        _unmark(client, keys)
        return False
    return True


def _unmark(client: Any, keys: list[str]) -> None:
    """A submission not sent after all: neither marked sent nor holding the queued key."""
    try:
        client.delete(*keys)
    except Exception:
        logger.warning("could not clear the marks of an unsent submission", exc_info=True)


def publish(messages: Sequence[OutboxMessage], *, mark: bool = True) -> int:
    """Publish messages and (unless `mark` is False) mark them published. A failure leaves
    the rest for the relay."""
    from tradingsite.celery import app

    sent: list[int] = []
    try:
        with app.producer_or_acquire() as producer:
            for message in messages:
                _send(message.task, message.kwargs, producer)
                sent.append(message.pk)
    except (OperationalError, OSError, ConnectionError):
        logger.warning("outbox publish failed; the relay will retry", exc_info=True)
    if sent and mark:
        OutboxMessage.objects.filter(pk__in=sent).update(published_at=timezone.now())
    elif sent:
        try:
            cache.set_many({_sent_key(pk): 1 for pk in sent}, timeout=SENT_MARK_SECONDS)
        except Exception:  # Redis away: the relay publishes these once more (harmless)
            logger.warning("outbox sent marks unavailable", exc_info=True)
    return len(sent)


def publish_now(task: str, **kwargs: Any) -> bool:
    """Publish without a row (re-dispatch paths that are themselves retried by a sweep)."""
    try:
        _send(task, kwargs)
    except (OperationalError, OSError, ConnectionError):
        logger.warning("publish failed", extra={"task": task}, exc_info=True)
        return False
    return True


def relay(*, older_than_seconds: float = 1.0, limit: int = 5000) -> int:
    """Publish unpublished rows older than a moment (younger ones are still being published
    by their own on_commit callback). A submission row whose orders are all past `validated`
    was published (its work is done): it is only marked. Answers the number published."""
    from .models import Order
    from .states import OrderStatus

    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    with transaction.atomic():
        due = list(
            OutboxMessage.objects.select_for_update(skip_locked=True)
            .filter(published_at__isnull=True, created_at__lt=cutoff)
            .order_by("id")[:limit]
        )
        if not due:
            return 0
        submissions = {m.pk: _order_ids(m) for m in due if m.task in SUBMISSIONS}
        try:
            marked = cache.get_many([_sent_key(pk) for pk in submissions])
        except Exception:
            logger.warning("outbox sent marks unavailable", exc_info=True)
            marked = {}
        sent = {pk for pk in submissions if _sent_key(pk) in marked}
        # Only the unmarked ones' orders are looked at: under load every row is marked, and
        # reading their orders (thousands of ids a second) was most of the relay's work.
        unmarked = [i for pk, ids in submissions.items() if pk not in sent for i in ids]
        waiting = (
            {
                str(pk)
                for pk in Order.objects.filter(
                    pk__in=unmarked, status=OrderStatus.VALIDATED
                ).values_list("pk", flat=True)
            }
            if unmarked
            else set()
        )
        done = [
            pk for pk, ids in submissions.items() if pk in sent or not waiting.intersection(ids)
        ]
        if done:
            OutboxMessage.objects.filter(pk__in=done).update(published_at=timezone.now())
        return publish([m for m in due if m.pk not in set(done)])


def _order_ids(message: OutboxMessage) -> list[str]:
    kwargs = message.kwargs
    return list(kwargs.get("order_ids") or [kwargs["order_id"]])


def prune(*, older_than: timedelta = timedelta(days=1)) -> int:
    deleted, _ = OutboxMessage.objects.filter(published_at__lt=timezone.now() - older_than).delete()
    return deleted
