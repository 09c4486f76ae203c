"""Task messages pushed straight onto the broker's Redis list (tradingsite/direct_publish.py)
are the messages `send_task` writes, field for field, and a real worker runs them."""

from __future__ import annotations

import base64
import enum
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis
from kombu.exceptions import OperationalError

from tradingsite.celery import app
from tradingsite.direct_publish import DirectPublisher

QUEUE = "tests-direct-publish"
KWARGS = {"order_id": "0190a0b0-0000-7000-8000-000000000001", "correlation_id": "c-1"}


@pytest.fixture
def broker(broker):
    """The shared broker client (tests/conftest.py), this module's queue emptied around."""
    broker.delete(QUEUE)
    yield broker
    broker.delete(QUEUE)


def registered() -> None:
    """The app's tasks registered, as a worker has them (and `send_task` then applies their
    own options)."""
    import orders.tasks  # noqa: F401

    assert "orders.submit" in app.tasks and "orders.relay_outbox" in app.tasks


@pytest.fixture
def publisher():
    """A publisher of its own whose orders.submit goes to a queue no worker reads (its time
    limits kept: the task is registered, as in a worker)."""
    registered()
    direct = DirectPublisher(app)
    queue, limits = direct.plan("orders.submit")
    assert (queue, limits) == ("orders", [30, 20])
    direct._plans["orders.submit"] = (app._tasks.get("orders.submit"), (QUEUE, limits))
    return direct


def popped(broker) -> dict:
    raw = broker.rpop(QUEUE)
    assert raw is not None
    return json.loads(raw)


def comparable(message: dict) -> dict:
    """The message without what differs between any two sends (ids, the origin's process)
    and with its body decoded (kombu's JSON and orjson space it differently)."""
    message = json.loads(json.dumps(message))
    headers, properties = message["headers"], message["properties"]
    task_id = headers["id"]
    assert headers["root_id"] == properties["correlation_id"] == task_id
    for key in ("id", "root_id", "origin"):
        headers.pop(key)
    properties.pop("correlation_id")
    properties.pop("delivery_tag")
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message


def test_a_pushed_message_is_the_one_send_task_writes(broker, publisher):
    # when the same task goes out both ways
    assert publisher.push("orders.submit", KWARGS, retries=1)
    app.send_task("orders.submit", kwargs=KWARGS, queue=QUEUE)
    # then they are the same message but for their ids
    direct, celery = popped(broker), popped(broker)
    a, b = comparable(direct), comparable(celery)
    assert {k: v for k, v in a["headers"].items() if b["headers"].get(k) != v} == {}
    assert a == b
    assert direct["headers"]["origin"].endswith(celery["headers"]["origin"].split("@", 1)[1])
    assert direct["body"] != celery["body"]  # only the body's spacing differs
    assert comparable(direct)["body"] == [[], KWARGS, comparable(celery)["body"][2]]
    # each message has ids of its own
    assert direct["properties"]["delivery_tag"] != celery["properties"]["delivery_tag"]


def test_long_arguments_are_shortened_in_their_repr_as_celery_does(broker, publisher):
    kwargs = {"order_ids": [f"{n:036d}" for n in range(200)]}
    assert publisher.push("orders.submit", kwargs, retries=1)
    app.send_task("orders.submit", kwargs=kwargs, queue=QUEUE)
    direct, celery = popped(broker), popped(broker)
    assert direct["headers"]["kwargsrepr"] == celery["headers"]["kwargsrepr"]
    assert len(direct["headers"]["kwargsrepr"]) < 2000
    assert comparable(direct)["body"][1] == kwargs


class Side(enum.StrEnum):
    BUY = "buy"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"amount": Decimal("1.5")},
        {"at": datetime(2026, 1, 1, tzinfo=UTC)},
        {"side": Side.BUY},
        {"ratio": 0.5},
        {"nested": {"amount": Decimal("1")}},
        {"ids": ("a", "b")},
    ],
)
def test_arguments_json_does_not_carry_as_they_are_go_through_send_task(broker, publisher, kwargs):
    """kombu's JSON writes decimals, datetimes and UUIDs with type markers of its own."""
    assert not publisher.push("orders.submit", kwargs, retries=1)
    assert broker.llen(QUEUE) == 0


def test_a_task_unknown_here_is_pushed_as_send_task_writes_it(broker):
    """Without the task in this process's registry there are no options of its own."""
    direct = DirectPublisher(app)
    assert direct.plan("tests.elsewhere") == ("default", [None, None])
    direct._plans["tests.elsewhere"] = (None, (QUEUE, [None, None]))
    assert direct.push("tests.elsewhere", KWARGS, retries=1)
    app.send_task("tests.elsewhere", kwargs=KWARGS, queue=QUEUE)
    direct_message, celery = popped(broker), popped(broker)
    assert comparable(direct_message) == comparable(celery)


def test_a_task_that_expires_goes_through_send_task(broker):
    """send_task stamps the task's own `expires` on the message (a time from now)."""
    import orders.tasks

    registered()
    assert orders.tasks.HOUSEKEEPING["expires"] == 30
    direct = DirectPublisher(app)
    assert direct.plan("orders.relay_outbox") is None
    assert not direct.push("orders.relay_outbox", {}, retries=1)


def test_a_queue_with_arguments_goes_through_send_task(monkeypatch):
    from kombu import Exchange, Queue

    direct = DirectPublisher(app)
    expiring = Queue("expiring", Exchange("expiring"), "expiring", expires=60)
    monkeypatch.setattr(app.amqp.router, "route", lambda options, name: {"queue": expiring})
    assert direct.plan("tests.anything") is None
    assert not direct.push("tests.anything", {"a": "b"}, retries=1)


def test_a_dropped_connection_is_replaced_once(broker, publisher):
    # given the publisher's pooled connection killed by the server (a Redis restart)
    assert publisher.push("orders.submit", KWARGS, retries=1)
    with publisher._channel.conn_or_acquire() as client:
        pooled = client.client_id()  # the pool's one idle connection, used again next
    assert broker.client_kill_filter(_id=pooled) == 1
    # when it pushes again, then the message goes out on a new connection
    assert publisher.push("orders.submit", KWARGS, retries=1)
    assert broker.llen(QUEUE) == 2


@pytest.mark.parametrize("retries, pushed", [(1, 1), (0, 0)])
def test_a_connection_error_is_tried_again_as_the_retry_policy_says(
    monkeypatch, broker, publisher, retries, pushed
):
    """A connection that breaks under the push (no FIN seen yet when the pool handed it out):
    tried again on a new one as many times as the caller's policy says, else kombu's error."""
    from contextlib import contextmanager

    real = publisher._channel.conn_or_acquire
    failures = [redis.ConnectionError("Connection reset by peer")]

    class Flaky:
        def __init__(self, client):
            self.client = client

        def lpush(self, *args):
            if failures:
                raise failures.pop()
            return self.client.lpush(*args)

    @contextmanager
    def flaky(client=None):
        with real() as client:
            yield Flaky(client)

    monkeypatch.setattr(publisher._channel, "conn_or_acquire", flaky)
    if pushed:
        assert publisher.push("orders.submit", KWARGS, retries=retries)
    else:
        with pytest.raises(OperationalError):
            publisher.push("orders.submit", KWARGS, retries=retries)
    assert (failures, broker.llen(QUEUE)) == ([], pushed)


def test_redis_away_is_an_operational_error(monkeypatch, publisher):
    """What kombu raises: the outbox's callers leave the message to the relay."""
    from contextlib import contextmanager

    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)

    @contextmanager
    def away(client=None):
        yield dead

    monkeypatch.setattr(publisher._channel, "conn_or_acquire", away)
    with pytest.raises(OperationalError):
        publisher.push("orders.submit", KWARGS, retries=1)


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_worker_runs_a_pushed_message(api, instruments, celery_worker):
    """The lone order's submission goes out as a direct push (no send_task) and the worker
    sends it to the venue."""
    from unittest import mock

    from tests.helpers import eur_usd_market, order_when, submit

    eur_usd_market()
    with mock.patch.object(app, "send_task", side_effect=AssertionError("not pushed")):
        order_id = submit(api)["id"]
        assert order_when(order_id, "filled").filled_quantity > 0


@pytest.mark.parametrize("setting", [("task_serializer", "pickle"), ("task_compression", "gzip")])
def test_another_serializer_or_compression_goes_through_send_task(monkeypatch, setting):
    direct = DirectPublisher(app)
    assert direct.plan("tests.anything") is not None
    monkeypatch.setitem(app.conf, *setting)
    assert DirectPublisher(app).plan("tests.anything") is None


def test_the_broker_db_is_answered_for_a_client_of_the_same_server_only(broker):
    """orders.outbox pushes a due submission from its coalescing script when the broker is on
    the cache's server: its database number then, None for another server."""
    from django.core.cache import cache

    direct = DirectPublisher(app)
    client, _ = cache.raw("any")
    assert direct.broker_db(client) == broker.connection_pool.connection_kwargs["db"]
    elsewhere = redis.Redis(host="127.0.0.1", port=1)
    assert direct.broker_db(elsewhere) is None


def test_a_broker_with_a_global_key_prefix_is_not_pushed_to_by_script(broker, monkeypatch):
    """kombu's client prefixes every key it sends (the `global_keyprefix` transport option);
    a script run on the cache's client would push onto the unprefixed name."""
    from django.core.cache import cache

    direct = DirectPublisher(app)
    client, _ = cache.raw("any")
    monkeypatch.setattr(direct._ensure(), "global_keyprefix", "fillmore:")
    assert direct.broker_db(client) is None
