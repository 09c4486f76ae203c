"""Celery task messages written straight onto the broker's Redis list.

`app.send_task` costs about 0.4 ms of CPU per message here (py-spy, the web's lone order
POST): Celery's routing and option merging, the message's headers through `saferepr`, kombu's
`Producer.publish` with its retry wrapper, its declaration check and its serializer registry.
The Redis transport then does one thing: LPUSH of a JSON envelope onto the queue's list. For
the common case (a task routed to a plain direct queue, keyword arguments that JSON carries as
they are) `push` builds that same envelope with orjson and LPUSHes it on kombu's own client, in
a tenth of the time. It is the message `send_task` writes, field for field
(tests/integration/test_direct_publish.py compares the two, and a worker runs it).

As `send_task` does, it applies the task's own execution options when the task is registered
in the process: its queue and its time limits. Anything else goes through `send_task`: a task
with other options of its own (expires, priority, serializer...), a queue with arguments
(expiry, priorities, TTL), a route that is not a direct exchange, a broker that is not Redis,
and arguments that are not plain JSON (kombu's JSON encodes decimals, datetimes and UUIDs with
type markers of its own). Only keyword arguments are pushed (`_send` has no other kind).
Celery's `before_task_publish`/`after_task_publish` signals are not sent for direct pushes;
nothing here connects them.
"""

from __future__ import annotations

import base64
import os
import threading
import uuid
from typing import Any

import orjson
import redis
from celery.utils.nodenames import anon_nodename
from celery.utils.saferepr import saferepr
from kombu.exceptions import OperationalError
from kombu.transport import redis as kombu_redis

# The third element of a protocol 2 body: no callbacks, errbacks, chain or chord.
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
_PLAIN = (str, int, bool, type(None))


def _plain(value: Any) -> bool:
    """JSON carries it as it is, in orjson and in kombu's encoder alike (floats excluded:
    they are written alike, but nothing here sends one)."""
    if isinstance(value, _PLAIN):
        return type(value) in _PLAIN  # not an int or str subclass (an enum member)
    if isinstance(value, list):
        return all(_plain(item) for item in value)
    if isinstance(value, dict):
        return all(type(k) is str and _plain(v) for k, v in value.items())
    return False


class DirectPublisher:
    """Per process: kombu's channel (its Redis client and key prefixing), the queue of each
    task name, this process's origin name."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._connection: Any = None
        self._channel: Any = None
        self._plans: dict[str, tuple[Any, tuple[str, list[Any]] | None]] = {}
        # id(a redis-py pool) -> (the pool, the broker's db on its server, or None)
        self._same_server: dict[int, tuple[Any, int | None]] = {}
        self._origin = ""

    def _ensure(self) -> Any:
        pid = os.getpid()
        if self._pid != pid:
            with self._lock:
                if self._pid != pid:
                    connection = self.app.connection_for_write()
                    channel = connection.default_channel
                    # The connection is kept: the channel (its Redis pool) belongs to it.
                    self._connection, self._channel = connection, channel
                    self._origin = anon_nodename()
                    self._plans = {}
                    self._same_server = {}
                    self._pid = pid
        return self._channel

    def plan(self, task: str) -> tuple[str, list[Any]] | None:
        """Where `task` goes and its time limits, as `send_task` would write them: its queue
        list and [time_limit, soft_time_limit]. None when `send_task` must write it: a route
        that is not a plain direct queue, or execution options of the task's own beyond its
        queue and time limits (expires, priority, serializer...). Like `send_task`, it reads
        the task's options only if the task is registered in this process."""
        channel = self._ensure()
        registered = self.app._tasks.get(task)
        try:
            seen, planned = self._plans[task]
            if seen is registered:
                return planned
        except KeyError:
            pass
        planned = self._plan(channel, task, registered)
        self._plans[task] = (registered, planned)
        return planned

    def _plan(self, channel: Any, task: str, registered: Any) -> tuple[str, list[Any]] | None:
        if not isinstance(channel, kombu_redis.Channel):
            return None
        options: dict[str, Any] = {}
        if registered is not None and hasattr(registered, "_get_exec_options"):
            options = {k: v for k, v in registered._get_exec_options().items() if v is not None}
        serializer = options.pop("serializer", None) or self.app.conf.task_serializer
        if serializer != "json" or self.app.conf.task_compression:
            return None
        if set(options) - {"queue", "time_limit", "soft_time_limit"}:
            return None
        limits = [options.pop("time_limit", None), options.pop("soft_time_limit", None)]
        queue = self.app.amqp.router.route(options, task).get("queue")
        if (
            queue is None
            or isinstance(queue, str)
            or getattr(queue.exchange, "type", "direct") != "direct"
            or queue.queue_arguments
            or queue.max_priority
            or queue.expires is not None
            or queue.message_ttl is not None
            or queue.name in (channel._expires or {})
        ):
            return None
        return queue.name, limits

    def message(self, task: str, kwargs: dict[str, Any], queue: str, limits: list[Any]) -> bytes:
        """The envelope kombu's Redis transport stores for `send_task(task, kwargs=kwargs)`:
        protocol 2 headers, the JSON body in base64, the delivery properties."""
        self._ensure()
        task_id = str(uuid.uuid4())
        body = orjson.dumps([[], kwargs, _EMBED])
        kwargsrepr = repr(kwargs)
        if len(kwargsrepr) > self.app.amqp.kwargsrepr_maxsize:
            kwargsrepr = saferepr(kwargs, self.app.amqp.kwargsrepr_maxsize)
        return orjson.dumps(
            {
                "body": base64.b64encode(body).decode(),
                "content-encoding": "utf-8",
                "content-type": "application/json",
                "headers": {
                    "lang": "py",
                    "task": task,
                    "id": task_id,
                    "shadow": None,
                    "eta": None,
                    "expires": None,
                    "group": None,
                    "group_index": None,
                    "retries": 0,
                    "timelimit": limits,
                    "root_id": task_id,
                    "parent_id": None,
                    "argsrepr": "()",
                    "kwargsrepr": kwargsrepr,
                    "origin": self._origin,
                    "ignore_result": None,
                    "replaced_task_nesting": 0,
                    "stamped_headers": None,
                    "stamps": {},
                },
                "properties": {
                    "correlation_id": task_id,
                    "reply_to": self.app.thread_oid,
                    "delivery_mode": 2,
                    "delivery_info": {"exchange": "", "routing_key": queue},
                    "priority": 0,
                    "body_encoding": "base64",
                    "delivery_tag": str(uuid.uuid4()),
                },
            }
        )

    def envelope(self, task: str, kwargs: dict[str, Any]) -> tuple[str, bytes] | None:
        """The broker list and the message `push` would LPUSH onto it, or None when the task
        must go through `send_task`."""
        planned = self.plan(task)
        if planned is None or not _plain(kwargs):
            return None
        queue, limits = planned
        return self._channel._q_for_pri(queue, 0), self.message(task, kwargs, queue, limits)

    def broker_db(self, client: Any) -> int | None:
        """The broker's database number when the broker's Redis is the server `client` (a
        redis-py client) talks to, so that one script run by `client` can push a message too
        (orders.outbox.publish_submission); else None. Read once per process and client."""
        channel = self._ensure()
        # With a global key prefix, kombu's client prefixes the queue's name, a script would not.
        if not isinstance(channel, kombu_redis.Channel) or channel.global_keyprefix:
            return None
        pool = client.connection_pool
        known = self._same_server.get(id(pool))
        if known is not None and known[0] is pool:
            return known[1]
        with channel.conn_or_acquire() as broker:
            ours, theirs = pool.connection_kwargs, broker.connection_pool.connection_kwargs
            same = pool.connection_class is broker.connection_pool.connection_class and all(
                ours.get(k) == theirs.get(k)
                for k in ("host", "port", "path", "username", "password")
            )
            db = int(theirs.get("db") or 0) if same else None
        self._same_server[id(pool)] = (pool, db)
        return db

    def push(self, task: str, kwargs: dict[str, Any], *, retries: int) -> bool:
        """LPUSH the task's message; False (nothing sent) when it must go through
        `send_task`. A broken connection is tried again on a new one up to `retries` times
        (the caller's publish retry policy, as kombu would apply it); then OperationalError,
        as kombu raises."""
        found = self.envelope(task, kwargs)
        if found is None:
            return False
        key, payload = found
        channel = self._channel
        for _ in range(retries + 1):
            try:
                with channel.conn_or_acquire() as client:
                    client.lpush(key, payload)
                return True
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                broken = exc
            except redis.RedisError as exc:
                raise OperationalError(str(exc)) from exc
        raise OperationalError(str(broken)) from broken
