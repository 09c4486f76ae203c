"""The outbox relay and submissions: the publish after commit marks a submission's row in
Redis only (and publishes it only when no submit task is queued: coalescing); the relay marks
it in the database without publishing again, and publishes only rows that were never sent and
whose orders still wait."""

from decimal import Decimal as D

import pytest
from django.core.cache import cache, caches

from orders import outbox, services
from orders.models import OutboxMessage
from tests.helpers import queued_order_ids, submit

pytestmark = pytest.mark.django_db(transaction=True)

ORDER_BODY = {
    "account": "ACC-1",
    "symbol": "EUR_USD",
    "side": "buy",
    "type": "market",
    "quantity": "1000",
}


@pytest.fixture
def sent(monkeypatch):
    """Publishes recorded instead of sent. A lone submission goes through `_send` too: the
    broker is taken to be on another Redis server, so the coalescing script pushes nothing
    itself (that path: the tests at the end)."""
    from tradingsite.celery import direct

    published = []

    def send(task, kwargs, producer=None):
        if task in outbox.SUBMISSIONS:
            published.append((task, kwargs))

    monkeypatch.setattr(outbox, "_send", send)
    monkeypatch.setattr(direct, "broker_db", lambda client: None)
    return published


def broker_unreachable(*args, **kwargs):
    from kombu.exceptions import OperationalError

    raise OperationalError("Connection refused")


def row_of(order_id: str) -> OutboxMessage:
    return OutboxMessage.objects.get(task="orders.submit", kwargs__order_id=order_id)


def left_to_the_relay_once(order_id: str, sent: list) -> None:
    """The order was accepted but not published, and nothing says otherwise: not marked sent,
    no submit task said to be queued (the next order publishes itself). The relay then
    publishes it, once."""
    assert sent == []
    assert cache.get(outbox._sent_key(row_of(order_id).pk)) is None
    assert cache.get(outbox.SUBMIT_QUEUED) is None
    assert outbox.relay(older_than_seconds=0) == 1
    assert outbox.relay(older_than_seconds=0) == 0
    assert [kwargs["order_id"] for _, kwargs in sent] == [order_id]


def test_a_sent_submission_is_marked_by_the_relay_without_a_second_publish(api, sent):
    order_id = submit(api, client_order_id="r1")["id"]
    assert len(sent) == 1
    assert row_of(order_id).published_at is None  # no UPDATE on the request path
    assert outbox.relay(older_than_seconds=0) == 0
    assert len(sent) == 1
    assert row_of(order_id).published_at is not None


def test_marked_submissions_are_marked_without_reading_their_orders(
    api, sent, django_assert_num_queries
):
    # given a batch's submissions, sent and marked in Redis (as under load: every one)
    orders = [{**ORDER_BODY, "client_order_id": f"rm-{n}"} for n in range(3)]
    assert api.post("/api/v1/orders/batch/", {"orders": orders}, format="json").status_code == 200
    # when the relay passes: the rows due and their marking (and the transaction's BEGIN and
    # COMMIT), not the orders they carry
    with django_assert_num_queries(4) as captured:
        assert outbox.relay(older_than_seconds=0) == 0
    assert not any('"orders_order"' in query["sql"] for query in captured.captured_queries)
    assert not OutboxMessage.objects.filter(published_at__isnull=True).exists()


def test_without_its_mark_a_submission_already_sent_is_not_published_again(api, sent):
    order_id = submit(api, client_order_id="r2")["id"]
    cache.delete(outbox._sent_key(row_of(order_id).pk))
    services.order_submit_to_venue(order_id=order_id)  # a worker took it
    assert outbox.relay(older_than_seconds=0) == 0
    assert len(sent) == 1
    assert row_of(order_id).published_at is not None


def test_an_unsent_submission_is_published_once(api, sent, monkeypatch):
    with monkeypatch.context() as broken:
        broken.setattr(outbox, "_send", broker_unreachable)
        order_id = submit(api, client_order_id="r3")["id"]
    assert sent == []
    assert outbox.relay(older_than_seconds=0) == 1
    assert outbox.relay(older_than_seconds=0) == 0
    assert [kwargs["order_id"] for _, kwargs in sent] == [order_id]
    assert row_of(order_id).published_at is not None


def test_an_unsent_batch_of_submissions_is_published_once(api, sent, monkeypatch):
    orders = [{**ORDER_BODY, "client_order_id": f"rb-{n}"} for n in range(3)]
    with monkeypatch.context() as broken:
        broken.setattr(outbox, "_send", broker_unreachable)
        results = api.post("/api/v1/orders/batch/", {"orders": orders}, format="json").json()
    ids = sorted(r["order"]["id"] for r in results["results"])
    assert sent == []
    assert outbox.relay(older_than_seconds=0) == 1
    assert outbox.relay(older_than_seconds=0) == 0
    assert [(task, sorted(kwargs["order_ids"])) for task, kwargs in sent] == [
        ("orders.submit_batch", ids)
    ]
    assert not OutboxMessage.objects.filter(published_at__isnull=True).exists()


def test_submissions_coalesce_behind_a_queued_submit_task(api, sent):
    """While a published submit task has not started, later submissions are not published:
    the task takes their orders along. They are marked sent, so the relay leaves them alone."""
    first = submit(api, client_order_id="c1")["id"]
    second = submit(api, client_order_id="c2")["id"]
    third = submit(api, client_order_id="c3")["id"]
    assert [kwargs["order_id"] for _, kwargs in sent] == [first]
    for order_id in (first, second, third):
        assert cache.get(outbox._sent_key(row_of(order_id).pk)) == 1
    assert outbox.relay(older_than_seconds=0) == 0
    assert len(sent) == 1
    # when the task starts (it clears the key before its claim), the next order has its own
    cache.delete(outbox.SUBMIT_QUEUED)
    fourth = submit(api, client_order_id="c4")["id"]
    assert [kwargs["order_id"] for _, kwargs in sent] == [first, fourth]


def test_coalescing_survives_redis_forgetting_its_script(api, sent):
    """The script goes by its SHA1; a Redis restarted since (SCRIPT FLUSH here) is sent its
    text again, and the order is published as usual."""
    first = submit(api, client_order_id="s1")["id"]
    client, _ = cache.raw(outbox.SUBMIT_QUEUED)
    client.script_flush()
    cache.delete(outbox.SUBMIT_QUEUED)  # the first one's task started
    second = submit(api, client_order_id="s2")["id"]
    assert [kwargs["order_id"] for _, kwargs in sent] == [first, second]
    assert cache.get(outbox._sent_key(row_of(second).pk)) == 1


def test_a_queued_task_that_never_starts_holds_the_key_for_a_moment_only(api, sent):
    submit(api, client_order_id="k1")
    client, stored = cache.raw(outbox.SUBMIT_QUEUED)
    assert 0 < client.pttl(stored) <= outbox.SUBMIT_QUEUED_MS


def test_redis_away_at_publish_the_relay_publishes_it_once(api, sent, monkeypatch):
    def down(*args, **kwargs):
        raise ConnectionError("Redis is away")

    with monkeypatch.context() as broken:
        broken.setattr(type(caches["default"]), "raw", down)  # the coalescing script's client
        order_id = submit(api, client_order_id="away")["id"]
    left_to_the_relay_once(order_id, sent)


def test_a_coalescing_answer_lost_on_the_way_leaves_the_order_to_the_relay_once(
    api, sent, monkeypatch
):
    """The script ran (the order marked sent, the queued key taken) but its answer never came
    back: the marks are cleared, so the relay publishes the order, once, and the next order
    publishes itself."""
    real = outbox._coalesce_script

    def answer_lost(client):
        script = real(client)

        def run(*args, **kwargs):
            script(*args, **kwargs)
            raise ConnectionError("connection reset while reading the answer")

        return run

    with monkeypatch.context() as broken:
        broken.setattr(outbox, "_coalesce_script", answer_lost)
        order_id = submit(api, client_order_id="lost-answer")["id"]
    left_to_the_relay_once(order_id, sent)


def test_a_failed_publish_frees_the_key_for_the_next_order(api, sent, monkeypatch):
    with monkeypatch.context() as broken:
        broken.setattr(outbox, "_send", broker_unreachable)
        failed = submit(api, client_order_id="f1")["id"]
    # not marked, and no task said to be queued: the next order is published itself
    assert cache.get(outbox._sent_key(row_of(failed).pk)) is None
    assert cache.get(outbox.SUBMIT_QUEUED) is None
    following = submit(api, client_order_id="f2")["id"]
    assert [kwargs["order_id"] for _, kwargs in sent] == [following]


def test_orders_coalesced_behind_a_lost_task_are_sent_once_by_the_sweeper(api, sent):
    """The published task's message is lost (nobody runs it; the key expires): the orders
    coalesced behind it are marked sent, so the relay leaves them, and the sweeper sends all
    of them, each exactly once at the venue."""
    from brokers.models import SimOrder
    from brokers.registry import venue_for
    from orders.models import Order
    from orders.tasks import order_submit_batch_task

    venue_for("sim").set_quote(
        "EUR_USD", bid=D("1.08490"), ask=D("1.08500"), bid_size=D("1e8"), ask_size=D("1e8")
    )
    ids = [submit(api, client_order_id=f"lost-{n}")["id"] for n in range(3)]
    assert [kwargs["order_id"] for _, kwargs in sent] == [ids[0]]  # the lost one
    assert outbox.relay(older_than_seconds=0) == 0
    sent.clear()
    services.orders_sweep_stuck(older_than=0)
    assert [task for task, _ in sent] == ["orders.submit_batch"]
    order_submit_batch_task(**sent[0][1])
    assert set(Order.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"filled"}
    assert SimOrder.objects.filter(client_order_id__in=ids).count() == 3


def test_a_direct_push_that_fails_leaves_the_order_to_the_relay_which_sends_it_once(
    api, broker, monkeypatch
):
    """The real publisher (tradingsite/direct_publish.py) with Redis away at the push: the
    order is accepted and stored, nothing is on the queue and nothing is marked; the relay
    then puts it on the queue exactly once."""
    from contextlib import contextmanager

    import redis

    from tradingsite.celery import direct

    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)

    @contextmanager
    def away(client=None):
        yield dead

    direct.plan("orders.submit")  # the publisher's channel, as a first publish makes it
    try:
        with monkeypatch.context() as broken:
            broken.setattr(direct._channel, "conn_or_acquire", away)
            broken.setattr(direct, "broker_db", lambda client: None)  # a broker of its own
            order_id = submit(api, client_order_id="push-away")["id"]
        assert queued_order_ids(broker).count(order_id) == 0
        assert cache.get(outbox._sent_key(row_of(order_id).pk)) is None
        assert cache.get(outbox.SUBMIT_QUEUED) is None  # the next order publishes itself
        assert outbox.relay(older_than_seconds=0) == 1
        assert outbox.relay(older_than_seconds=0) == 0
        assert queued_order_ids(broker).count(order_id) == 1
        assert row_of(order_id).published_at is not None
    finally:
        broker.delete("orders")


# --- the broker on the cache's Redis server: the coalescing script pushes a due message


def test_a_due_submission_is_pushed_by_the_coalescing_script_itself(api, broker, monkeypatch):
    """One round trip: the script marks it, takes the queued key and pushes the message that
    `direct.push` would have pushed; no publish of its own. The next order is coalesced and
    pushes nothing."""
    from tradingsite.celery import direct

    client, _ = cache.raw(outbox.SUBMIT_QUEUED)
    assert direct.broker_db(client) == broker.connection_pool.connection_kwargs["db"]
    monkeypatch.setattr(outbox, "_send", broker_unreachable)  # not called
    first = submit(api, client_order_id="one-trip")["id"]
    second = submit(api, client_order_id="one-trip-2")["id"]
    try:
        # (the message is `direct.envelope`'s, which test_direct_publish compares with
        # send_task's field by field)
        queued = queued_order_ids(broker)
        assert (queued.count(first), queued.count(second)) == (1, 0)
        for order_id in (first, second):
            assert cache.get(outbox._sent_key(row_of(order_id).pk)) == 1
        assert cache.get(outbox.SUBMIT_QUEUED) == 1
        assert outbox.relay(older_than_seconds=0) == 0
    finally:
        broker.delete("orders")


def test_a_push_the_script_cannot_make_frees_the_key_and_the_relay_sends_it_once(
    api, broker, sent, monkeypatch
):
    """Redis refuses the push (here a list key holding a string): the order is accepted,
    neither marked nor holding the queued key, and the relay publishes it once."""
    from tradingsite.celery import direct

    broker.set("tests-not-a-list", "x")
    monkeypatch.setattr(direct, "broker_db", direct.__class__.broker_db.__get__(direct))
    real = direct.envelope
    monkeypatch.setattr(
        direct, "envelope", lambda task, kwargs: ("tests-not-a-list", real(task, kwargs)[1])
    )
    try:
        order_id = submit(api, client_order_id="refused")["id"]
        left_to_the_relay_once(order_id, sent)
    finally:
        broker.delete("tests-not-a-list")
